"""Edits through the real host on the class-conditional analytic MODEL (InvTestConditionalModel): the model obeys
ComfyUI's cfg like a real one, an exact inversion edits to the closed form, masked edits keep the source outside
the mask, and the edit strength replays the source trajectory first.

Closed forms (inversion_core.analytic_conditional): an exact inversion under class A sampled back with ComfyUI's
euler under class B gives x0 - mu_A + mu_B + G (mu_A - mu_B), G the schedule's euler gain (InvTestEditScore's
``euler_psnr`` compares with it; ``ideal_psnr`` with the continuous transport, the ideal edit).
"""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402
from inversion_core.analytic_conditional import ClassConditionalGaussian  # noqa: E402

SEED, CLASSES, SEP = 5, 4, 5.0
MODEL = dict(seed=SEED, classes=CLASSES, separation=SEP, channels=4, latent_format="sd15")
SD15_SCALE = 0.18215    # comfy.latent_formats.SD15.scale_factor: internal = external * scale
c.CACHEABLE.update({"InvTestConditionalModel", "InvTestClassConditioning", "InvTestConditionalLatent",
                    "SolidMask", "MaskComposite"})


def cond_model(g, sampling="eps"):
    return g.node("InvTestConditionalModel", sampling=sampling, **MODEL)


def klass(g, k):
    return g.node("InvTestClassConditioning", class_index=k, classes=CLASSES)


def source(g, batch=4, k=0, seed=1):
    return g.node("InvTestConditionalLatent", sample_seed=seed, batch=batch, source_class=k, latent_size=8, **MODEL)


def score(g, m, src, edited, sigmas, a=0, b=2, mask=None):
    extra = {} if mask is None else {"mask": mask}
    return g.node("InvTestEditScore", model=m, source=src, edited=edited, sigmas=sigmas, source_class=a,
                  target_class=b, **extra)


def left_half_mask(g, latent):
    """Stock nodes: a 64x64 px MASK, ones on the left half, as the latent's noise_mask (SetLatentNoiseMask)."""
    blank = g.node("SolidMask", value=0.0, width=64, height=64)
    ones = g.node("SolidMask", value=1.0, width=32, height=64)
    mask = g.node("MaskComposite", destination=blank, source=ones, x=0, y=0, operation="add")
    return g.node("SetLatentNoiseMask", samples=latent, mask=mask)


def exact_edit(g, m, lat, steps=10, a=0, b=2, cfg=1.0, tolerance=1e-6, **sampler):
    inv = c.invert(g, "ExactInvExactInvert", m, klass(g, a), klass(g, -1), lat, steps, cfg=cfg, tolerance=tolerance)
    edit = c.inverted_sampler(g, m, klass(g, b), klass(g, -1), inv.out(c.INVERSION), cfg=cfg, **sampler)
    return inv, edit


@pytest.mark.parametrize("sampling", ["eps", "v_prediction", "flow"])
def test_cfg_combines_the_class_and_the_empty_prompt_as_on_a_real_model(executor, sampling):
    """Through CFGGuider (a one-call KSAMPLER): cfg 1 with a class prompt is that class's posterior mean, the
    empty prompt the mixture's, and cfg 3 with the empty prompt as negative is D_u + 3 (D_c - D_u)."""
    g = ch.Graph()
    m = cond_model(g, sampling)
    lat = source(g, batch=2)
    sigma = 0.5 if sampling == "flow" else 2.0
    probe = {name: g.node("InvTestProbeDenoiser", model=m, latent=lat, sigma=sigma, mode="sampler",
                          positive=klass(g, k), negative=klass(g, -1), cfg=w)
             for name, k, w in (("c", 1, 1.0), ("u", -1, 1.0), ("g", 1, 3.0))}
    saves = {k: g.node("InvTestSaveTensor", latent=v.out(0), name=f"probe_{sampling}_{k}") for k, v in probe.items()}
    keep = g.node("InvTestSaveTensor", latent=lat, name=f"probe_{sampling}_x")
    out = c.run(executor, g)
    d = {k: executor.load_tensor(out, v).double() * SD15_SCALE for k, v in saves.items()}
    x = executor.load_tensor(out, keep).double() * SD15_SCALE
    prov = ClassConditionalGaussian.random((4, 8, 8), CLASSES, SEED, SEP)
    param = "flow" if sampling == "flow" else "ve"
    s = torch.full((2,), sigma, dtype=torch.float64)
    closed_c = prov.class_denoiser(param, 1)(x, s)
    closed_u = prov.denoiser(param)(x, s, None)
    tol = 1e-5 * float(closed_c.abs().max())
    assert (d["c"] - closed_c).abs().max() <= tol
    assert (d["u"] - closed_u).abs().max() <= tol
    assert (closed_c - closed_u).abs().max() > 1e-2               # the conditioning matters
    assert (d["g"] - (closed_u + 3.0 * (closed_c - closed_u))).abs().max() <= 3 * tol


@pytest.mark.parametrize("sampling", ["eps", "flow"])
def test_exact_invert_then_inverted_sampler_is_the_closed_form_edit(executor, sampling):
    g = ch.Graph()
    m = cond_model(g, sampling)
    lat = source(g)
    inv, edit = exact_edit(g, m, lat)
    back = c.inverted_sampler(g, m, klass(g, 0), klass(g, -1), inv.out(c.INVERSION))
    s = score(g, m, lat, edit, inv.out(c.SIGMAS))
    rec = c.compare(g, lat, back)
    out = c.run(executor, g)
    r = out[s.id]
    print(f"\n[{sampling}] euler closed form {c.fmt(r['euler_psnr'])} dB, ideal {c.fmt(r['ideal_psnr'])} dB, "
          f"success {c.fmt(r['success'])}, reconstruction {c.fmt(c.psnr(out, rec))} dB")
    assert min(r["euler_psnr"]) >= 60.0
    assert min(c.psnr(out, rec)) >= 60.0
    assert min(r["ideal_psnr"]) >= 15.0            # euler at 10 steps vs the ODE: close but not equal
    assert sum(p > 0.5 for p in r["success"]) >= 3 and max(r["source_posterior"]) < 0.5


def test_masked_edit_keeps_the_source_outside_and_edits_inside(executor):
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g)
    masked = left_half_mask(g, lat)
    inv = c.invert(g, "ExactInvExactInvert", m, klass(g, 0), klass(g, -1), masked, 10, tolerance=1e-6)
    edit = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), latent=masked)
    whole = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), latent=lat)
    s_mask = score(g, m, lat, edit, inv.out(c.SIGMAS), mask=masked)
    s_whole = score(g, m, lat, whole, inv.out(c.SIGMAS), mask=masked)
    out = c.run(executor, g)
    rm, rw = out[s_mask.id], out[s_whole.id]
    print(f"\nmasked: outside {c.fmt(rm['outside_psnr'])} dB, inside success {c.fmt(rm['inside_success'])}, "
          f"inside vs closed form {c.fmt(rm['euler_psnr'])} dB; unmasked outside {c.fmt(rw['outside_psnr'])} dB")
    assert rm["inside_fraction"][0] == pytest.approx(0.5)
    assert all(math.isinf(p) or p >= 100.0 for p in rm["outside_psnr"])          # the source, exactly
    assert max(rw["outside_psnr"]) < 40.0                                          # without the mask it changes
    # the class-B denoiser is independent per dimension, so inside the mask the edit is the closed form
    assert min(rm["euler_psnr"]) >= 60.0
    assert sum(p > 0.5 for p in rm["inside_success"]) >= 3


def test_masked_edit_replays_a_stochastic_trajectory_outside(executor):
    """Noise Correct (euler_ancestral): outside the mask the stored latents, inside an edit."""
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g)
    masked = left_half_mask(g, lat)
    inv = c.invert(g, "ExactInvNoiseCorrect", m, klass(g, 0), klass(g, -1), lat, 10)
    edit = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), latent=masked)
    same = c.inverted_sampler(g, m, klass(g, 0), klass(g, -1), inv.out(c.INVERSION), latent=masked)
    s = score(g, m, lat, edit, inv.out(c.SIGMAS), mask=masked)
    rec = c.compare(g, lat, same)
    out = c.run(executor, g)
    r = out[s.id]
    assert all(math.isinf(p) or p >= 100.0 for p in r["outside_psnr"])
    assert min(c.psnr(out, rec)) >= 60.0                # unedited, the masked replay is the reconstruction
    assert sum(p > 0.5 for p in r["inside_success"]) >= 3


def test_edit_strength_replays_the_source_first(executor):
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g)
    inv, full = exact_edit(g, m, lat)
    scores, saves = {}, {}
    for strength in (0.0, 0.5, 1.0):
        e = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), edit_strength=strength)
        scores[strength] = score(g, m, lat, e, inv.out(c.SIGMAS))
        saves[strength] = c.compare(g, lat, e)
    same = c.compare(g, full, g.node("ExactInvInvertedSampler", model=m, positive=klass(g, 2), negative=klass(g, -1),
                                     cfg=1.0, inversion=inv.out(c.INVERSION), edit_strength=1.0))
    out = c.run(executor, g)
    to_source = {k: min(c.psnr(out, v)) for k, v in saves.items()}
    success = {k: sum(out[v.id]["success"]) / 4 for k, v in scores.items()}
    print(f"\nedit strength -> worst PSNR to the source {to_source}, mean success {success}")
    assert to_source[0.0] >= 120.0                      # nothing sampled: the source (float32 round trip)
    assert to_source[0.5] > to_source[1.0] + 1.0
    assert success[0.5] < success[1.0]
    assert c.max_abs(out, same)[0] == 0.0               # strength 1 is the plain Inverted Sampler


def test_masked_edit_needs_an_inversion_and_a_valid_strength(executor):
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g, batch=1)
    masked = left_half_mask(g, lat)
    bad = g.node("ExactInvInvertedSampler", model=m, positive=klass(g, 2), negative=klass(g, -1), cfg=1.0,
                 latent=masked, sigmas=g.node("BasicScheduler", model=m, scheduler="simple", steps=4, denoise=1.0))
    c.compare(g, lat, bad)
    with pytest.raises(ch.PromptExecutionError, match=r"Inverted Sampler.*inversion.*masked edit"):
        c.run(executor, g)
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g, batch=1)
    inv = c.invert(g, "ExactInvDDIMInvert", m, klass(g, 0), klass(g, -1), lat, 4)
    bad = g.node("ExactInvInvertedSampler", model=m, positive=klass(g, 2), negative=klass(g, -1), cfg=1.0,
                 inversion=inv.out(c.INVERSION), edit_strength=float("nan"))
    c.compare(g, lat, bad)
    with pytest.raises(ch.PromptExecutionError, match=r"Inverted Sampler.*edit_strength"):
        c.run(executor, g)


class _BadMask:
    """LATENT -> the same LATENT with a noise_mask of value ``value`` everywhere (in-process test node)."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "build"
    CATEGORY = "testing/exact_inversion"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "value": ("FLOAT", {"default": 2.0, "min": -10.0, "max": 10.0})}}

    def build(self, samples, value):
        return ({**samples, "noise_mask": torch.full((1, 1, 8, 8), float(value))},)


@pytest.mark.parametrize("value", [2.0, -0.5])
def test_a_noise_mask_outside_zero_one_is_refused(executor, monkeypatch, value):
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "EditBadMask", _BadMask)
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g, batch=1)
    inv = c.invert(g, "ExactInvDDIMInvert", m, klass(g, 0), klass(g, -1), lat, 4)
    bad = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION),
                             latent=g.node("EditBadMask", samples=lat, value=value))
    c.compare(g, lat, bad)
    with pytest.raises(ch.PromptExecutionError, match=r"Inverted Sampler.*latent.*noise_mask.*\[0, 1\]"):
        c.run(executor, g)


def test_masked_edit_with_a_later_start_still_keeps_the_outside(executor):
    g = ch.Graph()
    m = cond_model(g)
    lat = source(g)
    masked = left_half_mask(g, lat)
    inv = c.invert(g, "ExactInvExactInvert", m, klass(g, 0), klass(g, -1), lat, 10, tolerance=1e-6)
    half = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), latent=masked, cfg=3.0,
                              edit_strength=0.5)
    full = c.inverted_sampler(g, m, klass(g, 2), klass(g, -1), inv.out(c.INVERSION), latent=masked, cfg=3.0)
    s_half = score(g, m, lat, half, inv.out(c.SIGMAS), mask=masked)
    s_full = score(g, m, lat, full, inv.out(c.SIGMAS), mask=masked)
    out = c.run(executor, g)
    rh, rf = out[s_half.id], out[s_full.id]
    assert all(math.isinf(p) or p >= 100.0 for p in rh["outside_psnr"])
    # the outside is the source in both, so the whole-latent PSNR to the source compares the insides: the later
    # start keeps more of the source there
    assert sum(rh["source_psnr"]) > sum(rf["source_psnr"])
