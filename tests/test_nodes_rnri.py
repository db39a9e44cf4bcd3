"""RNRI Invert's gradient path inside ComfyUI's ``torch.inference_mode()``: it runs on the narrow SD1.5 UNet
through a private autograd-capable MODEL clone, leaves the caller's MODEL unchanged (its sampling output is
bit-identical before and after, and it carries no weight wrappers), and falls back to the released variant
where backward is unavailable."""
from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402

STEPS = 4


def _pack_autograd_clone():
    """The pack's ``nodes.autograd_clone`` module as ComfyUI imported it. ComfyUI names a custom node package after its
    path (0.3.75: the full path of custom_nodes/<link>; other versions: custom_nodes.<link>)."""
    suffix = f"{ch.PACK_LINK_NAME}.nodes.autograd_clone"
    found = [m for k, m in sys.modules.items() if k.endswith(suffix) and k[: -len(suffix)][-1:] in ("/", ".", "")]
    assert len(found) == 1, f"the pack's autograd_clone is not imported once: {[k for k in sys.modules if suffix in k]}"
    return found[0]


def _before_after_graph(g, rnri_params):
    """KSampler on the MODEL, then RNRI Invert on the same MODEL, then the same KSampler again (forced after the
    inversion through a zero-valued dependency on its output)."""
    m = c.model(g, "sd15")
    pos, neg = c.cond(g, "sd15", seed=1), c.cond(g, "sd15", seed=2)
    empty = g.node("EmptyLatentImage", width=64, height=64, batch_size=1)
    before = g.node("KSampler", model=m, seed=3, steps=3, cfg=2.0, sampler_name="euler", scheduler="normal",
                    positive=pos, negative=neg, latent_image=empty, denoise=1.0)
    inv = c.invert(g, "ExactInvRNRIInvert", m, pos, pos, before, STEPS, **rnri_params)
    zero = g.node("LatentMultiply", samples=inv.out(c.LATENT), multiplier=0.0)
    empty_after = g.node("LatentAdd", samples1=empty, samples2=zero)
    after = g.node("KSampler", model=m, seed=3, steps=3, cfg=2.0, sampler_name="euler", scheduler="normal",
                   positive=pos, negative=neg, latent_image=empty_after, denoise=1.0)
    rec = c.ksampler_advanced(g, m, pos, pos, inv.out(c.LATENT), STEPS)
    return inv, c.compare(g, before, after), c.compare(g, before, rec)


def test_rnri_newton_runs_in_host_and_leaves_model_unchanged(executor, monkeypatch):
    autograd_clone = _pack_autograd_clone()
    seen = []
    original = autograd_clone.autograd_model

    def spy(model):
        clone, wrapped = original(model)
        seen.append((model, clone, dict(model.weight_wrapper_patches), len(clone.weight_wrapper_patches)))
        return clone, wrapped

    monkeypatch.setattr(autograd_clone, "autograd_model", spy)
    g = ch.Graph()
    inv, same, rec = _before_after_graph(g, {"iterations": 1})
    out = c.run(executor, g)
    s = c.summary(out, inv)
    print(f"\nRNRI newton on narrow SD1.5: {s['model_calls']} model calls, notes {s['notes']}, "
          f"reconstruction {c.psnr(out, rec)[0]:.1f} dB (random UNet)")
    assert s["settings"]["variant"] == "newton"
    assert not any("fell back" in n for n in s["notes"])
    assert any("autograd through" in n for n in s["notes"])
    assert c.max_abs(out, same)[0] == 0.0                     # the MODEL samples bit-identically afterwards
    assert len(seen) == 1
    model, clone, wrappers_before, clone_wrappers = seen[0]
    assert clone is not model and clone_wrappers > 0
    assert model.weight_wrapper_patches == wrappers_before == {}   # nothing leaked into the caller's MODEL
    # the original was loaded again for the last KSampler: its modules run without the clone's wrappers
    leaked = [n for n, mod in model.model.named_modules()
              if hasattr(mod, "comfy_cast_weights") and (getattr(mod, "weight_function", []) or
                                                         getattr(mod, "bias_function", []))]
    assert not leaked, leaked[:5]


def test_rnri_falls_back_to_released_without_backward(executor, monkeypatch):
    """A MODEL whose weights autograd cannot use (here: the clone without the identity wrappers, i.e. ComfyUI's
    inference-mode weights) makes the newton variant fail; the node falls back to 'released' and says so."""
    autograd_clone = _pack_autograd_clone()
    monkeypatch.setattr(autograd_clone, "autograd_model", lambda model: (model.clone(), 0))
    g = ch.Graph()
    inv, same, _ = _before_after_graph(g, {"iterations": 1})
    out = c.run(executor, g)
    s = c.summary(out, inv)
    print(f"\nfallback notes: {s['notes']}")
    assert s["settings"]["variant"] == "released" and s["settings"]["requested_variant"] == "newton"
    assert any("fell back" in n for n in s["notes"])
    assert c.max_abs(out, same)[0] == 0.0
