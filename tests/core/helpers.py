"""Schedules and ground-truth data shared by the core tests."""
import torch

from inversion_core import GaussianMixture


def karras(n, sigma_min=0.0292, sigma_max=14.6146, rho=7.0, final_zero=True):
    """Karras et al. (2022) sigmas over SD's range, float64, in sampling order (a final 0 unless ``final_zero``
    is False)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    s = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([s, s.new_zeros(1)]) if final_zero else s


def flow_sigmas(n, sigma_max=1.0, sigma_min=0.0):
    """n linear flow steps from ``sigma_max`` down to ``sigma_min``, float64."""
    return torch.linspace(sigma_max, sigma_min, n + 1, dtype=torch.float64)


def schedule(parametrization, n, flow_max=1.0):
    """n steps: Karras sigmas for "ve", linear from ``flow_max`` to 0 for "flow"."""
    return karras(n) if parametrization == "ve" else flow_sigmas(n, flow_max)


def mixture_batch(shape=(4, 8, 8), batch=3, seed=0, dtype=torch.float64):
    """A random 3-component Gaussian mixture and ``batch`` samples of it (the exact denoiser's data)."""
    gmm = GaussianMixture.random(shape, components=3, seed=seed)
    return gmm, gmm.sample(batch, torch.Generator().manual_seed(seed + 1)).to(dtype)
