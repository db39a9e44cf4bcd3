"""Stored residuals (``inversion_core.residuals``): with them the forward sampler from any inversion's latents[0]
visits every stored latent (same denoiser), and their capture reuses the inversion's own model calls.

Exactness: F + (target - F) is target bit for bit except on the few elements near zero that a step misses by more
than their own size (``landing_residual``), which land within half an ulp of the step there; required: every
latent >= 200 dB in float64 and >= 120 dB in float32 (``metrics.psnr``), and most of them bit for bit."""
import pytest
import torch

from inversion_core import invert, sample
from inversion_core.adaptive import AdaptiveInversion
from inversion_core.ddim import DDIMInversion
from inversion_core.easyinv import EasyInv
from inversion_core.edit_friendly import EditFriendly
from inversion_core.metrics import psnr
from inversion_core.renoise import ReNoise
from inversion_core.residuals import capture_residuals, landing_residual
from inversion_core.rnri import RNRI
from inversion_core.verified import invert_verified

from .helpers import mixture_batch, schedule

pytestmark = pytest.mark.usefixtures("one_thread")

SOLVERS = {
    "ddim_target": lambda: DDIMInversion("target"),
    "ddim_current": lambda: DDIMInversion("current"),
    "renoise": lambda: ReNoise(iterations=3, window=(2, 4), regularizer=None),
    "easyinv": lambda: EasyInv.preset("sd1"),
    "rnri": lambda: RNRI("newton", iterations=2),
    "adaptive": lambda: AdaptiveInversion(max_calls=8, final_max_calls=8),
}


class Counted:
    """A denoiser that counts its calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return self.fn(x, sigma)


def setup(parametrization, dtype, n=6, batch=3):
    gmm, x0 = mixture_batch(batch=batch, dtype=dtype)
    # the stored sigmas (Inversion.sigmas) are what the sampler uses: take them representable in the state's dtype
    sigmas = schedule(parametrization, n).to(dtype).to(torch.float64)
    return Counted(gmm.denoiser(parametrization)), x0, sigmas


def check_visits_every_latent(denoise, inversion, parametrization, **step):
    """The sampler with the residuals from latents[0] reproduces every stored latent, the input last; returns
    (worst PSNR over the latents, fraction of latents reproduced bit for bit)."""
    _, trajectory = sample(denoise, inversion.latent, inversion.sigmas, step_kind=inversion.step_kind,
                           parametrization=parametrization, noises=inversion.noises,
                           residuals=inversion.residuals, return_trajectory=True, **step)
    floor = 200.0 if inversion.latent.dtype == torch.float64 else 120.0
    worst, exact = float("inf"), 0
    for j, (got, want) in enumerate(zip(trajectory, inversion.latents, strict=True)):
        value = float(psnr(want, got).min())
        assert value >= floor, f"latent {j}: {value:.1f} dB"
        worst, exact = min(worst, value), exact + int(torch.equal(got, want))
    return worst, exact / len(trajectory)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("parametrization", ["ve", "flow"])
@pytest.mark.parametrize("name", list(SOLVERS))
def test_every_solver_samples_back_bit_for_bit(name, parametrization, dtype):
    denoise, x0, sigmas = setup(parametrization, dtype)
    inversion = invert(denoise, x0, sigmas, SOLVERS[name](), parametrization=parametrization)
    plain = sample(denoise, inversion.latent, inversion.sigmas, parametrization=parametrization)
    captured = capture_residuals(denoise, inversion)
    worst, exact = check_visits_every_latent(denoise, captured, parametrization)
    assert captured.model_calls == inversion.model_calls + captured.residual_calls
    assert captured.evaluations is None
    print(f"\n{name} {parametrization} {dtype}: without residuals {float(psnr(x0, plain).min()):.1f} dB, with "
          f"{worst:.1f} dB ({exact:.0%} of the latents bit for bit), capture {captured.residual_calls} calls")


@pytest.mark.parametrize("n", [4, 10])
def test_capture_costs_per_method(n):
    """Measured counts (module docstring): DDIM target / EasyInv / ReNoise one call a step, DDIM current one, the
    adaptive solver and RNRI's newton variant none (each answers with an iterate it evaluated)."""
    denoise, x0, sigmas = setup("ve", torch.float64, n=n)
    expected = {"ddim_target": n, "easyinv": n, "renoise": n, "rnri": 0, "ddim_current": 1, "adaptive": 0}
    counts = {}
    for name, make in SOLVERS.items():
        inversion = invert(denoise, x0, sigmas, make())
        before = denoise.calls
        captured = capture_residuals(denoise, inversion)
        assert denoise.calls - before == captured.residual_calls
        counts[name] = captured.residual_calls
    print(f"\ncapture calls at N={n}: {counts}")
    assert counts == expected


@pytest.mark.parametrize("parametrization", ["ve", "flow"])
def test_verified_inversion_stores_its_residuals_for_free(parametrization):
    denoise, x0, sigmas = setup(parametrization, torch.float32)
    result = invert_verified(denoise, x0, sigmas, AdaptiveInversion, parametrization=parametrization)
    assert result.residuals is not None and all(r is None for r in result.residuals[:-1])
    before = denoise.calls
    captured = capture_residuals(denoise, result)
    assert denoise.calls == before and captured.residual_calls == 0 and captured.model_calls == result.model_calls
    worst, exact = check_visits_every_latent(denoise, captured, parametrization)
    print(f"\nverified {parametrization}: {worst:.1f} dB, {exact:.0%} of the latents bit for bit")
    assert exact == 1.0


@pytest.mark.parametrize("kind", ["euler_ancestral", "lcm"])
@pytest.mark.parametrize("parametrization", ["ve", "flow"])
def test_stochastic_steps_need_no_capture_call(kind, parametrization):
    """With the exact noise correction the driver evaluated every answer: no call, and what is left is round-off."""
    denoise, x0, sigmas = setup(parametrization, torch.float32)
    inversion = invert(denoise, x0, sigmas, EditFriendly(seed=0), step_kind=kind, parametrization=parametrization)
    captured = capture_residuals(denoise, inversion)
    assert captured.residual_calls == 0
    check_visits_every_latent(denoise, captured, parametrization)
    for r, latent in zip(captured.residuals, captured.latents[1:], strict=True):
        if r is not None:      # float round-off of the noise's landing, nothing the method left unsolved
            assert float(r.abs().max()) <= 1e-5 * float(latent.abs().max())


def test_without_residuals_sample_is_unchanged():
    denoise, x0, sigmas = setup("ve", torch.float32)
    inversion = invert(denoise, x0, sigmas, DDIMInversion())
    a = sample(denoise, inversion.latent, inversion.sigmas)
    b = sample(denoise, inversion.latent, inversion.sigmas, residuals=[None] * (len(sigmas) - 1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_landing_residual_is_exact_where_sterbenz_holds(dtype):
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4096, generator=g, dtype=dtype)
    landed = target * (1.0 + 0.4 * torch.rand(4096, generator=g, dtype=dtype))   # within a factor 2
    assert torch.equal(landed + landing_residual(target, landed), target)
    assert landing_residual(target, target.clone()) is None
