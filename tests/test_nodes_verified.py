"""Exact Invert's end-to-end check through the real host: the frozen hard case (close, thin mixture components) that
the per-step tolerance alone loses, and the reported reconstruction PSNR against stock samplers."""
import pytest

import node_graphs as c
from devkit import harness as ch

HARD = dict(seed=0, components=8, channels=4, latent_format="identity", hard=True)


def hard_model(g, sampling):
    return g.node("InvTestAnalyticModel", sampling=sampling, **HARD)


def hard_latent(g, batch=8):
    return g.node("InvTestAnalyticLatent", seed=1, batch=batch, latent_width=8, latent_height=8, gmm_seed=0,
                  **{k: v for k, v in HARD.items() if k != "seed"})


def range_psnr(outputs, node):
    return outputs[node.id]["range_psnr"]


@pytest.mark.host_independent   # the solver's end-to-end check; the host's flow path: test_nodes_reconstruct
def test_exact_invert_verified_on_the_hard_flow_case(executor):
    """Flow, 6 steps: Exact Invert without the end-to-end check (target 0, no candidates) loses images; with its
    defaults no image is worse than DDIM Invert or ReNoise Invert (regularize off), sampled back by Inverted Sampler
    (ComfyUI's own euler)."""
    g = ch.Graph()
    m, pos, lat = hard_model(g, "flow"), c.cond(g), hard_latent(g)
    runs = {
        "exact": c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 6),
        "unchecked": c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 6, target_psnr=0.0, refinements=0,
                              candidates=False),
        "ddim": c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 6),
        "renoise": c.invert(g, "ExactInvReNoiseInvert", m, pos, pos, lat, 6, regularize=False),
    }
    # residuals "none": the sampler alone, so the comparison is of the inversions (stored residuals would bring
    # every one of them back exactly, tests/test_nodes_residuals.py)
    cmps = {k: c.compare(g, lat, c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), residuals="none"))
            for k, inv in runs.items()}
    out = c.run(executor, g)
    got = {k: range_psnr(out, cmp) for k, cmp in cmps.items()}
    print("\n" + "\n".join(f"{k}: mean {sum(v) / len(v):.1f} worst {min(v):.1f}" for k, v in got.items()))
    reported = c.summary(out, runs["exact"])["reconstruction"]
    print(reported["summary"])
    assert min(got["unchecked"]) < min(got["renoise"]) - 15.0          # the failure the check exists for
    for i, value in enumerate(got["exact"]):
        assert value >= max(got["ddim"][i], got["renoise"][i]) - 0.5, (i, got)
    assert reported["psnr"] == pytest.approx(got["exact"], abs=0.1)
    assert reported["worst_psnr"] == pytest.approx(min(got["exact"]), abs=0.1)


def test_reported_psnr_matches_ksampler_advanced(executor):
    """eps, 6 steps: the PSNR Exact Invert reports equals a re-measurement through stock KSamplerAdvanced."""
    g = ch.Graph()
    m, pos, lat = hard_model(g, "eps"), c.cond(g), hard_latent(g, batch=4)
    inv = c.invert(g, "ExactInvExactInvert", m, pos, pos, lat, 6)
    cmp = c.compare(g, lat, c.ksampler_advanced(g, m, pos, pos, inv.out(c.LATENT), 6))
    out = c.run(executor, g)
    reported = c.summary(out, inv)["reconstruction"]
    print(f"\nreported {reported['psnr']}, KSamplerAdvanced {range_psnr(out, cmp)}")
    assert reported["psnr"] == pytest.approx(range_psnr(out, cmp), abs=0.1)
    assert reported["under_30db"] == sum(1 for p in range_psnr(out, cmp) if p < 30)
