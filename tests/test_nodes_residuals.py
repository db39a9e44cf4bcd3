"""Stored residuals through the real host: every invert node (and Noise Correct) records, per forward step, what the
sampler's step from the stored latent misses of the next stored latent, and Inverted Sampler adds it back, so with
the source conditioning every image comes back exactly, whatever the method (issue #23 item 3; design in
inversion_core/residuals.py).

Thresholds: the sampling visits every stored latent bit for bit, so the internal latent comes back exactly and the
only error left is the float32 round trip through the latent format (process_in / process_out, ~140 dB); required
>= 120 dB (``inversion_core.metrics.psnr``'s data range, InvTestCompare's ``range_psnr``). Without residuals the
approximate methods reconstruct at ~40 dB on the same graphs, which also shows that the sampler really samples.
"""
from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

EXACT_DB = 120.0
c.CACHEABLE.update({"SolidMask", "MaskComposite"})

# (label, node id, parameters): every invert node, Noise Correct for both stochastic samplers
METHODS = [
    ("exact", "ExactInvExactInvert", {}),
    ("ddim_target", "ExactInvDDIMInvert", {"convention": "target"}),
    ("ddim_current", "ExactInvDDIMInvert", {"convention": "current"}),
    ("ode", "ExactInvODEInvert", {"bottom_substeps": 4}),
    ("renoise", "ExactInvReNoiseInvert", {"iterations": 3, "average_start": 2, "average_end": 4}),
    ("easyinv", "ExactInvEasyInvInvert", {}),
    ("rnri", "ExactInvRNRIInvert", {}),
    ("nc_ancestral", "ExactInvNoiseCorrect", {"sampler_name": "euler_ancestral"}),
    ("nc_lcm", "ExactInvNoiseCorrect", {"sampler_name": "lcm"}),
]
APPROXIMATE = {"ddim_target", "ddim_current", "easyinv"}   # one call a step, nothing solved: ~40 dB without residuals


def range_psnr(outputs, node) -> list:
    return outputs[node.id]["range_psnr"]


def left_half_mask(g, latent):
    """Stock nodes: a 64x64 px MASK, ones on the left half (exactly 0 / 1 on the 8x8 latent), as noise_mask."""
    blank = g.node("SolidMask", value=0.0, width=64, height=64)
    ones = g.node("SolidMask", value=1.0, width=32, height=64)
    mask = g.node("MaskComposite", destination=blank, source=ones, x=0, y=0, operation="add")
    return g.node("SetLatentNoiseMask", samples=latent, mask=mask)


@pytest.mark.parametrize("steps", [4, 10])
@pytest.mark.parametrize("patch", ["eps", "sd3"])
def test_every_inversion_samples_back_exactly_with_residuals(executor, patch, steps):
    g = ch.Graph()
    m, pos, lat = c.model(g, "analytic", patch), c.cond(g), c.latent(g, batch=2)
    compares = {}
    for label, node_id, params in METHODS:
        inv = c.invert(g, node_id, m, pos, pos, lat, steps, **params)
        back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals="all")
        plain = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals="none")
        compares[label] = (c.compare(g, lat, back), c.compare(g, lat, plain))
    out = c.run(executor, g)
    worst = {label: (min(range_psnr(out, a)), min(range_psnr(out, b))) for label, (a, b) in compares.items()}
    print(f"\n[{patch}, {steps} steps] worst reconstruction PSNR (with, without residuals): "
          + ", ".join(f"{k} {a:.1f} / {b:.1f}" for k, (a, b) in worst.items()))
    for label, (with_residuals, without) in worst.items():
        assert with_residuals >= EXACT_DB, label
        if label in APPROXIMATE:
            assert without < 100.0, label      # the residuals do the work: the sampler really samples


@pytest.mark.parametrize("label,node_id,params", [m for m in METHODS if m[0] in ("ddim_target", "nc_ancestral")])
def test_learned_unet_samples_back_exactly_with_residuals(executor, label, node_id, params):
    """The narrow SD1.5 UNet through the stock UNETLoader: a real network, evaluated again at sampling time."""
    g = ch.Graph()
    m, pos, lat = c.model(g, "sd15"), c.cond(g, "sd15"), c.latent(g)
    inv = c.invert(g, node_id, m, pos, pos, lat, 4, **params)
    back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals="all")
    rec = c.compare(g, lat, back)
    out = c.run(executor, g)
    print(f"\n[sd15 {label}] {c.fmt(range_psnr(out, rec))} dB")
    assert min(range_psnr(out, rec)) >= EXACT_DB


@pytest.mark.parametrize("label", ["ddim_target", "renoise", "exact", "nc_ancestral", "ode"])
def test_masked_and_edit_strength_paths_sample_back_exactly(executor, label):
    """With the source prompt, a masked edit and a later start (edit strength 0.5) both give the image back."""
    _, node_id, params = next(m for m in METHODS if m[0] == label)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, batch=2)
    masked = left_half_mask(g, lat)
    inv = c.invert(g, node_id, m, pos, pos, lat, 10, **params)
    results = {}
    for name, extra in (("masked", {"latent": masked}), ("strength", {"edit_strength": 0.5}),
                        ("masked_strength", {"latent": masked, "edit_strength": 0.5})):
        for mode in ("all", "none"):
            back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals=mode, **extra)
            results[name, mode] = c.compare(g, lat, back)
    out = c.run(executor, g)
    worst = {k: min(range_psnr(out, v)) for k, v in results.items()}
    print(f"\n[{label}] " + ", ".join(f"{k[0]}/{k[1]} {v:.1f}" for k, v in worst.items()))
    for name in ("masked", "strength", "masked_strength"):
        assert worst[name, "all"] >= EXACT_DB, name
    if label == "ddim_target":
        assert worst["strength", "none"] < 100.0      # the later start really samples the last steps


@pytest.mark.parametrize("label", ["ddim_target", "nc_ancestral"])
def test_residuals_none_samples_as_before(executor, label):
    """"none" is the sampler without residuals, bit for bit: on the plain path ComfyUI's own sampler as the stock
    SamplerCustomAdvanced + Replay Sampler + NOISE run it, and on every path the same as an INVERSION that stores
    no residuals (as before they existed)."""
    _, node_id, params = next(m for m in METHODS if m[0] == label)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, batch=2)
    masked = left_half_mask(g, lat)
    edited = c.cond(g, seed=2)
    inv = c.invert(g, node_id, m, pos, pos, lat, 6, **params)
    bare = g.node("InvTestWithoutResiduals", inversion=inv.out(c.INVERSION))
    replay = g.node("ExactInvReplaySampler", inversion=inv.out(c.INVERSION))
    stock = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), lat, sampler=replay)
    plain = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals="none")
    same = {"stock": c.compare(g, stock.out(0), plain)}
    for name, extra in (("plain", {}), ("masked", {"latent": masked}), ("strength", {"edit_strength": 0.5})):
        for p in (pos, edited):
            a = c.inverted_sampler(g, m, p, pos, inv.out(c.INVERSION), residuals="none", **extra)
            b = c.inverted_sampler(g, m, p, pos, bare.out(0), residuals="all", **extra)
            same[name, p.id] = c.compare(g, a, b)
    out = c.run(executor, g)
    for key, node in same.items():
        assert max(c.max_abs(out, node)) == 0.0, key


def test_capture_costs_and_exact_invert_costs_nothing(executor):
    """The invert nodes' model calls include the residual capture (``residual_calls`` in the summary): zero for
    Exact Invert (its verification replay evaluated every stored latent already), one for DDIM "current" (its calls
    are the next step's, all but the top latent's), one a step for DDIM "target"."""
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, batch=2)
    steps = 6
    invs = {label: c.invert(g, node_id, m, pos, pos, lat, steps, **params) for label, node_id, params in METHODS}
    for inv in invs.values():     # an output node runs each inversion (its summary is the invert node's ui)
        c.compare(g, lat, c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION)))
    out = c.run(executor, g)
    digests = {label: c.summary(out, inv) for label, inv in invs.items()}
    calls = {label: d["residual_calls"] for label, d in digests.items()}
    print(f"\nresidual capture calls at {steps} steps: {calls}")
    exact = digests["exact"]
    assert calls["exact"] == 0
    assert exact["model_calls"] == exact["reconstruction"]["model_calls"]     # the verified run's, unchanged
    assert calls["ddim_current"] == 1
    assert calls["ddim_target"] == steps and calls["easyinv"] == steps
    assert calls["ode"] == 1 + (2 * 4 - 1)    # the top latent, and the last interval integrated down again
    for label, n in calls.items():
        assert 0 <= n <= steps or label == "ode", label
    assert all(math.isfinite(d["model_calls"]) for d in digests.values())
