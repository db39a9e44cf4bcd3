"""An analytic denoiser: the exact posterior mean of a Gaussian mixture.

If x0 ~ sum_k pi_k N(mu_k, diag(s_k^2)) and u = alpha * x0 + beta * eps with eps ~ N(0, I), then
u | k ~ N(alpha mu_k, diag(alpha^2 s_k^2 + beta^2)) and, by Gaussian conditioning (Bishop 2006, eq. 2.116),

    E[x0 | u] = sum_k w_k(u) * (mu_k + alpha s_k^2 / (alpha^2 s_k^2 + beta^2) * (u - alpha mu_k)),
    w_k(u)    = softmax_k(log pi_k + log N(u; alpha mu_k, alpha^2 s_k^2 + beta^2)).

This is the Bayes-optimal denoiser (Tweedie's formula for the mixture), so sampling and inversion with it have a
known ground truth and no learning error. It works in both of ComfyUI's parametrizations (see ``spaces``).
"""
from __future__ import annotations

import math

import torch

from .spaces import per_sample, unit_signal_noise


class GaussianMixture:
    """Diagonal-covariance Gaussian mixture over latents of a fixed shape (without the batch dimension)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor):
        if means.ndim < 2:
            raise ValueError("means must be [K, *shape]")
        self.means = means
        self.shape = tuple(means.shape[1:])
        stds = torch.as_tensor(stds, dtype=means.dtype)
        if stds.ndim == 1:
            stds = stds.reshape(-1, *([1] * len(self.shape))).expand_as(means)
        if stds.shape != means.shape or (stds <= 0).any():
            raise ValueError("stds must be positive, [K] or [K, *shape]")
        self.stds = stds.contiguous()
        weights = torch.as_tensor(weights, dtype=means.dtype)
        self.log_weights = torch.log(weights / weights.sum())

    @classmethod
    def random(cls, shape=(4, 8, 8), components: int = 3, seed: int = 0, dtype=torch.float64) -> "GaussianMixture":
        g = torch.Generator().manual_seed(seed)
        means = torch.randn((components, *shape), generator=g, dtype=dtype) * 0.8
        stds = 0.2 + 0.3 * torch.rand(components, generator=g, dtype=dtype)
        weights = 0.5 + torch.rand(components, generator=g, dtype=dtype)
        return cls(means, stds, weights)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self.log_weights.exp(), batch, replacement=True, generator=generator)
        eps = torch.randn((batch, *self.shape), generator=generator, dtype=self.means.dtype)
        return self.means[k] + self.stds[k] * eps

    def posterior_mean(self, u: torch.Tensor, alpha, beta) -> torch.Tensor:
        """E[x0 | u = alpha x0 + beta eps] for a batch u [B, *shape]; alpha, beta scalars or [B]."""
        work = torch.promote_types(u.dtype, torch.float32)
        means, stds = self.means.to(u.device, work), self.stds.to(u.device, work)
        u = u.to(work)
        alpha = per_sample(torch.as_tensor(alpha, dtype=work, device=u.device), u).unsqueeze(1)
        beta = per_sample(torch.as_tensor(beta, dtype=work, device=u.device), u).unsqueeze(1)
        uk = u.unsqueeze(1)                                    # [B, 1, *shape]
        var = alpha ** 2 * stds ** 2 + beta ** 2               # [B, K, *shape]
        resid = uk - alpha * means
        dims = tuple(range(2, resid.ndim))
        log_lik = -0.5 * ((resid ** 2 / var) + torch.log(var) + math.log(2 * math.pi)).sum(dim=dims)
        w = torch.softmax(self.log_weights.to(u.device, work) + log_lik, dim=1)        # [B, K]
        cond_mean = means + alpha * stds ** 2 / var * resid
        w = w.reshape(w.shape + (1,) * len(dims))
        return (w * cond_mean).sum(dim=1)

    def denoiser(self, parametrization: str):
        """fn(x [B, *shape], sigma [B]) -> D(x, sigma), the exact x0 estimate in the given parametrization."""

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
            if sigma.ndim == 0:
                sigma = sigma.expand(x.shape[0])
            alpha, beta, r = unit_signal_noise(sigma, parametrization)
            return self.posterior_mean(x / per_sample(r, x), alpha, beta).to(x.dtype)

        return denoise
