"""The hard analytic ground truth: many close components with thin (stiff) directions (``GaussianMixture.hard``).

Its posterior mean is checked against a dense computation of the same closed form, and a frozen hard case records
the failure that a per-step tolerance cannot see: every step of the adaptive solver lands within its tolerance,
yet the reconstruction the user gets by sampling back is far worse than that of cheap methods on some images.
"""
import inspect
import math

import pytest
import torch

from inversion_core import GaussianMixture, invert, sample
from inversion_core.adaptive import AdaptiveInversion
from inversion_core.ddim import DDIMInversion
from inversion_core.metrics import psnr
from inversion_core.renoise import ReNoise
from inversion_core.verified import invert_verified

from .helpers import schedule

pytestmark = pytest.mark.usefixtures("one_thread")


def dense_posterior_mean(gmm, u, alpha, beta):
    """E[x0 | u] by explicit n x n Gaussian conditioning (Bishop 2006, eq. 2.116), per sample and component."""
    mu, factors, var = gmm.means.flatten(1), gmm.factors.flatten(2), gmm.stds.flatten(1) ** 2
    n = mu.shape[1]
    out = []
    for x in u.flatten(1):
        log_lik, means = [], []
        for k in range(mu.shape[0]):
            cov = torch.diag(var[k]) + factors[k].T @ factors[k]
            c = alpha ** 2 * cov + beta ** 2 * torch.eye(n, dtype=torch.float64)
            v = x - alpha * mu[k]
            solved = torch.linalg.solve(c, v)
            log_lik.append(gmm.log_weights[k] - 0.5 * (v @ solved + torch.logdet(c) + n * math.log(2 * math.pi)))
            means.append(mu[k] + alpha * cov @ solved)
        w = torch.softmax(torch.stack(log_lik), 0)
        out.append((w[:, None] * torch.stack(means)).sum(0))
    return torch.stack(out).reshape(u.shape)


@pytest.mark.parametrize("alpha,beta", [(0.95, 0.31), (0.3, 0.95), (0.999, 0.045)])
def test_low_rank_posterior_mean_is_the_closed_form(alpha, beta):
    gmm = GaussianMixture.hard((2, 3, 3), components=4, rank=2, seed=1)
    u = torch.randn(5, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    fast = gmm.posterior_mean(u, alpha, beta)
    assert torch.allclose(fast, dense_posterior_mean(gmm, u, alpha, beta), rtol=1e-10, atol=1e-12)


def test_hard_mixture_samples_have_thin_directions():
    gmm = GaussianMixture.hard((4, 8, 8), components=8, seed=0)
    assert float(gmm.stds.min()) < 0.0292 < float(gmm.stds.max())   # below SD's smallest sigma, and above it
    x = gmm.sample(4000, torch.Generator().manual_seed(0))
    k0 = gmm.means.flatten(1)
    # components are closer than their own extent: mean distance between means < RMS spread of the data
    gaps = torch.cdist(k0, k0)[~torch.eye(len(k0), dtype=torch.bool)]
    spread = (x.flatten(1) - x.flatten(1).mean(0)).norm(dim=1).mean()
    assert float(gaps.mean()) < float(spread)


def frozen_hard_case():
    """Flow, 6 Euler steps, 8 images of the hard mixture (float32 state, as ComfyUI runs)."""
    gmm = GaussianMixture.hard((4, 8, 8), components=8, seed=0)
    x0 = gmm.sample(8, torch.Generator().manual_seed(1)).float()
    return gmm.denoiser("flow"), x0, schedule("flow", 6)


def reconstruction_psnr(denoise, x0, sigmas, solver):
    inversion = invert(denoise, x0, sigmas, solver, parametrization="flow")
    return psnr(x0, sample(denoise, inversion.latent, sigmas, parametrization="flow")), inversion


def test_per_step_tolerance_does_not_bound_the_reconstruction():
    """The failure the end-to-end check exists for (measured: adaptive worst image 11.1 dB with every step within
    its tolerance, where ReNoise's worst is 33.9 dB and DDIM's 16.1 dB)."""
    denoise, x0, sigmas = frozen_hard_case()
    adaptive, inversion = reconstruction_psnr(denoise, x0, sigmas, AdaptiveInversion())
    renoise, _ = reconstruction_psnr(denoise, x0, sigmas, ReNoise())
    ddim, _ = reconstruction_psnr(denoise, x0, sigmas, DDIMInversion())
    print(f"\nadaptive {adaptive.min():.1f}, ReNoise {renoise.min():.1f}, DDIM {ddim.min():.1f} dB worst image")
    assert float(adaptive.min()) < float(renoise.min()) - 15.0
    assert float(adaptive.min()) < float(ddim.min())


def test_a_plateaued_intermediate_step_stops_before_its_budget():
    """On the hard mixture Anderson's landing error plateaus on the intermediate steps (measured at N=10: after
    12-20 calls the best error of ~half the images improves by under 5 % in 8 calls) and the rest of the 30-call
    budget buys nothing the user gets back: those images stop early (measured here, 12-call window: 903 -> 757
    intermediate-step evaluations), and the verified reconstruction is the same up to the target
    (there the cheap candidates give the answer). The final step is exempt (``AdaptiveInversion.stall_window``).

    Above the target the figure is not stable across CPUs: on this chaotic case the stopped steps change the warm
    starts of the later ones. On the CI machine the two means agreed within 0.5 dB; on an AVX-512 one image 7's
    primary answer came out at 70.2 dB without the stall stop and 17.9 dB with it (ReNoise's 53.2 then kept),
    mean 48.7 -> 46.6 dB. Both are above the 40 dB target, which is what the node promises; so the test asserts
    the worst image and the target."""
    denoise, x0, sigmas = frozen_hard_case()

    def run(**options):
        inversion = invert_verified(denoise, x0, sigmas, lambda: AdaptiveInversion(tolerance=1e-4, **options),
                                    parametrization="flow", independent=True)
        intermediate = sum(sum(s.iterations) for s in inversion.stats if s.sigma_lo > 0)   # the primary's
        return torch.tensor(inversion.verification.psnr), inversion.image_evaluations, intermediate

    full, full_evaluations, full_intermediate = run(stall_window=0)
    stopped, stopped_evaluations, stopped_intermediate = run()
    print(f"\nevaluations {full_evaluations} -> {stopped_evaluations} (intermediate steps {full_intermediate} -> "
          f"{stopped_intermediate}); verified worst {full.min():.2f} -> {stopped.min():.2f} dB, mean "
          f"{full.mean():.2f} -> {stopped.mean():.2f}")
    assert stopped_intermediate < 0.9 * full_intermediate and stopped_evaluations < full_evaluations
    assert float(stopped.min()) > float(full.min()) - 0.5
    target = inspect.signature(invert_verified).parameters["target_psnr"].default   # what both runs aimed at
    assert bool((stopped > torch.clamp(full, max=target) - 0.5).all()), (full, stopped)


def test_the_stall_stop_lets_a_wandering_iteration_converge():
    """The benchmark's 4-component mixture, ve, 4 steps of the "simple" schedule, image 61 of its 64: on the top
    step Anderson's error wanders between 4.6e-2 and 0.29 for 10 calls and then converges to 5e-5 by call 21. An
    8-call stall window froze it at 4.6e-2 (reconstruction 108.8 -> 51.8 dB, and the fallback ran); the window
    must outlast such an excursion."""
    from benchmarks.core_benchmark import schedule as benchmark_schedule
    gmm = GaussianMixture.random((4, 16, 16), components=4, seed=0)
    x0 = gmm.sample(64, torch.Generator().manual_seed(1)).float()[[61]]
    denoise, sigmas = gmm.denoiser("ve"), benchmark_schedule("ve", 4, "simple")

    def reconstruction(**options):
        inversion = invert(denoise, x0, sigmas, AdaptiveInversion(tolerance=1e-4, **options))
        return float(psnr(x0, sample(denoise, inversion.latent, sigmas))[0])

    unstopped, default = reconstruction(stall_window=0), reconstruction()
    print(f"\nwithout the stall stop {unstopped:.1f} dB, with it {default:.1f} dB")
    assert unstopped > 100.0
    assert default > unstopped - 1.0
