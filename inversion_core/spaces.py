"""Noise parametrizations of ComfyUI's sampling space (k-diffusion sigma space).

ComfyUI samples every model in one of two latent spaces (``comfy/model_sampling.py``):

* ``"ve"`` (variance exploding; EPS, V_PREDICTION, X0, EDM, LCM models):  x = x0 + sigma * eps
* ``"flow"`` (rectified flow; the CONST class used by SD3, Flux, ...):     x = (1 - sigma) * x0 + sigma * eps

In both, the denoiser returns the x0 estimate D(x, sigma) and the sampler's ODE derivative is
d = (x - D) / sigma (Karras et al. 2022, eq. 3 in VE form; for flow d is the velocity eps - x0).
One Euler step along d is DDIM for eps, v and flow models alike (Song et al. 2021, eq. 13).

Each state can also be written as u = alpha * x0 + beta * eps with alpha^2 + beta^2 = 1 after
normalising by r = sqrt(a^2 + b^2); that variance-preserving view (Ho et al. 2020) is what
model-independent code such as the analytic denoiser uses, and it is finite at flow sigma = 1.
"""
from __future__ import annotations

import torch

PARAMETRIZATIONS = ("ve", "flow")


def check_parametrization(parametrization: str) -> str:
    if parametrization not in PARAMETRIZATIONS:
        raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    return parametrization


def per_sample(value, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a scalar or a per-sample vector [B] against a batch tensor like [B, ...]."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if value.ndim == 0:
        return value
    return value.reshape(value.shape[:1] + (1,) * (like.ndim - 1))


def scatter_rows(index: torch.Tensor, part, whole):
    """``whole`` [B, ...] with the samples at ``index`` replaced by ``part`` [len(index), ...] (a copy). None stays
    None on either side (a deterministic step's noise): the other one is returned."""
    if part is None or whole is None:
        return whole if part is None else part
    out = whole.clone()
    out[index] = part.to(out.dtype)
    return out


def signal_noise(sigma, parametrization: str):
    """(a, b) with x = a * x0 + b * eps at noise level sigma."""
    if check_parametrization(parametrization) == "ve":
        return torch.ones_like(sigma), sigma
    return 1.0 - sigma, sigma


def unit_signal_noise(sigma, parametrization: str):
    """(alpha, beta, r): the state x equals r * u with u = alpha * x0 + beta * eps, alpha^2 + beta^2 = 1."""
    a, b = signal_noise(sigma, parametrization)
    r = torch.sqrt(a * a + b * b)
    return a / r, b / r, r


def add_noise(x0: torch.Tensor, eps: torch.Tensor, sigma, parametrization: str) -> torch.Tensor:
    """Forward marginal q(x_sigma | x0): the noisy latent for a given eps."""
    a, b = signal_noise(per_sample(sigma, x0), parametrization)
    return a * x0 + b * eps


def derivative(x: torch.Tensor, denoised: torch.Tensor, sigma) -> torch.Tensor:
    """ODE derivative d = (x - D(x, sigma)) / sigma, as ``to_d`` in k-diffusion."""
    return (x - denoised) / per_sample(sigma, x)


def eps_from_derivative(x: torch.Tensor, d: torch.Tensor, sigma, parametrization: str) -> torch.Tensor:
    """The noise estimate eps_hat implied by the derivative d at x.

    ve: d is eps_hat itself. flow: x = (1-s) x0 + s eps and d = eps - x0 give eps_hat = x + (1 - s) d.
    """
    if check_parametrization(parametrization) == "ve":
        return d
    return x + (1.0 - per_sample(sigma, x)) * d
