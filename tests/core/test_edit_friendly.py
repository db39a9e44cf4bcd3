"""Edit-friendly stochastic trajectories: exact replay with Gaussian-like latents, also for rectified flow."""
import torch

from inversion_core import GaussianMixture, ReNoise, invert, sample
from inversion_core.edit_friendly import EditFriendly
from inversion_core.metrics import psnr

FLOW_SIGMAS = torch.cat([torch.linspace(1.0, 0.05, 10), torch.zeros(1)])
VE_SIGMAS = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.4, 0.1, 0.0])


def _mixture_batch(batch=2):
    gmm = GaussianMixture.random((4, 8, 8), 3, seed=0)
    return gmm, gmm.sample(batch, torch.Generator().manual_seed(0)).float()


def _roundtrip(gmm, x0, sigmas, parametrization, kind, solver):
    den = gmm.denoiser(parametrization)
    inv = invert(den, x0, sigmas, solver, step_kind=kind, parametrization=parametrization)
    rec = sample(den, inv.latent, sigmas, step_kind=kind, parametrization=parametrization, noises=inv.noises)
    return inv, rec


def test_flow_euler_ancestral_replays_exactly_without_inflating_the_latent():
    gmm, x0 = _mixture_batch()
    inv, rec = _roundtrip(gmm, x0, FLOW_SIGMAS, "flow", "euler_ancestral", EditFriendly(seed=3))
    assert psnr(x0, rec).min() > 80
    assert 0.8 < float(inv.latent.std()) < 1.25          # a unit Gaussian at sigma = 1
    renoise_inv, _ = _roundtrip(gmm, x0, FLOW_SIGMAS, "flow", "euler_ancestral", ReNoise(iterations=3))
    assert float(renoise_inv.latent.std()) > 3 * float(inv.latent.std())


def test_lcm_and_ve_ancestral_replay_exactly_with_one_call_per_noisy_step():
    gmm, x0 = _mixture_batch()
    for kind in ("euler_ancestral", "lcm"):
        inv, rec = _roundtrip(gmm, x0, VE_SIGMAS, "ve", kind, EditFriendly(seed=1))
        assert psnr(x0, rec).min() > 60, kind
        noisy_steps = len(VE_SIGMAS) - 2
        assert sum(s.model_calls for s in inv.stats[1:]) == noisy_steps


def test_batch_equals_single_runs():
    gmm, x0 = _mixture_batch(2)
    den = gmm.denoiser("ve")
    both = invert(den, x0, VE_SIGMAS, EditFriendly(seed=5), step_kind="euler_ancestral")
    second = invert(den, x0[1:], VE_SIGMAS, EditFriendly(seed=6), step_kind="euler_ancestral", noise_seed=1)
    torch.testing.assert_close(both.latent[1:], second.latent, atol=1e-5, rtol=1e-5)


def test_deterministic_steps_are_solved_not_drawn():
    """eta 0 makes every ancestral step deterministic: all of them go to the exact solver."""
    gmm, x0 = _mixture_batch()
    den = gmm.denoiser("ve")
    inv = invert(den, x0.double(), VE_SIGMAS, EditFriendly(seed=1), step_kind="euler_ancestral", eta=0.0)
    rec = sample(den, inv.latent, VE_SIGMAS, step_kind="euler_ancestral", eta=0.0)
    assert psnr(x0.double(), rec).min() > 50
