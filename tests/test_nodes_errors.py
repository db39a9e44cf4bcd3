"""Bad input gives a clear error that names the node and the input (reported by ComfyUI's executor)."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import node_graphs as c  # noqa: E402
from devkit import harness as ch  # noqa: E402


def _error(runner, g) -> ch.PromptExecutionError:
    with pytest.raises(ch.PromptExecutionError) as info:
        c.run(runner, g)
    return info.value


def _loaded(g, runner, name, tensor):
    runner.put_tensor(name, tensor)
    return g.node("InvTestLoadTensor", filename=name, key="samples")


def test_channel_mismatch(executor):
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    inv = c.invert(g, "ExactInvRNRIInvert", m, pos, pos, c.latent(g, channels=16), 4)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="err_channels")
    err = _error(executor, g)
    assert err.node_type == "ExactInvRNRIInvert"
    assert "RNRI Invert: input 'latent' has 16 channels but the model expects 4" in err.exception_message


@pytest.mark.parametrize("what", ["empty", "nan", "inf"])
def test_empty_and_non_finite_latents(executor, what):
    x = torch.randn(1, 4, 8, 8)
    if what == "empty":
        x = torch.zeros(0, 4, 8, 8)
    else:
        x[0, 1, 2, 3] = float("nan") if what == "nan" else float("inf")
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    inv = c.invert(g, "ExactInvExactInvert", m, pos, pos, _loaded(g, executor, f"bad_{what}.safetensors", x), 4)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name=f"err_{what}")
    err = _error(executor, g)
    expected = "is an empty batch" if what == "empty" else "contains 1 NaN/inf values"
    assert f"Exact Invert: input 'latent' {expected}" in err.exception_message


def test_denoise_out_of_range(executor):
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, c.latent(g), 4, denoise=0.0)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="err_denoise")
    err = _error(executor, g)
    assert "DDIM Invert: input 'denoise' is 0.0; it must be in (0, 1]" in err.exception_message


def test_empty_sigmas(executor):
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    sched = g.node("BasicScheduler", model=m, scheduler="simple", steps=4, denoise=1.0)
    last = g.node("SplitSigmas", sigmas=sched, step=4)
    inv = c.invert(g, "ExactInvEasyInvInvert", m, pos, pos, c.latent(g), 4, sigmas=last.out(1))
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="err_sigmas")
    err = _error(executor, g)
    assert "EasyInv Invert: input 'sigmas' has 1 value(s)" in err.exception_message


def test_inversion_from_another_model(executor):
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 4)
    v_model = g.node("ModelSamplingDiscrete", model=m, sampling="v_prediction", zsnr=False)
    back = c.inverted_sampler(g, v_model, pos, pos, inv.out(c.INVERSION))
    g.node("InvTestSaveTensor", latent=back, name="err_model")
    err = _error(executor, g)
    assert err.node_type == "ExactInvInvertedSampler"
    assert "Inverted Sampler: input 'inversion' was made with another model" in err.exception_message
    assert "V_PREDICTION" in err.exception_message or "ModelSamplingDiscrete" in err.exception_message


def test_inversion_batch_mismatch(executor):
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvDDIMInvert", m, pos, pos, lat, 4)
    back = c.inverted_sampler(g, m, pos, pos, inv.out(c.INVERSION), latent=c.latent(g, batch=2))
    g.node("InvTestSaveTensor", latent=back, name="err_batch")
    err = _error(executor, g)
    assert ("Inverted Sampler: input 'latent' has shape (2, 4, 8, 8) but the inversion's latent has shape "
            "(1, 4, 8, 8) (batch 1)") in err.exception_message


def test_noise_and_replay_misuse(executor):
    """The NOISE output fed another latent size, and a Replay Sampler run over other sigmas."""
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g)
    inv = c.invert(g, "ExactInvNoiseCorrect", m, pos, pos, lat, 4, iterations=3)
    big = c.latent(g, size=16)
    wrong_size = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), big)
    g.node("InvTestSaveTensor", latent=wrong_size.out(0), name="err_noise")
    err = _error(executor, g)
    assert "Noise Correct: the NOISE output was fed a latent of shape (1, 4, 16, 16)" in err.exception_message

    g = ch.Graph()
    wrong_sigmas = c.replay_over_other_sigmas(g, 4, "simple", 5)
    g.node("InvTestSaveTensor", latent=wrong_sigmas.out(0), name="err_replay")
    err = _error(executor, g)
    assert "Replay Sampler: the sampler asked for the noise of a step" in err.exception_message
    assert "sample with the inversion's own SIGMAS" in err.exception_message


def test_noise_correct_settings(executor):
    g = ch.Graph()
    m, pos = c.model(g), c.cond(g)
    inv = c.invert(g, "ExactInvNoiseCorrect", m, pos, pos, c.latent(g), 4, solver="renoise", iterations=0)
    g.node("InvTestSaveTensor", latent=inv.out(c.LATENT), name="err_nc")
    err = _error(executor, g)
    assert "Noise Correct: input 'iterations' must be at least 1 for the renoise solver" in err.exception_message
