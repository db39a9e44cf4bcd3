"""An analytic denoiser: the exact posterior mean of a Gaussian mixture.

If x0 ~ sum_k pi_k N(mu_k, diag(s_k^2)) and u = alpha * x0 + beta * eps with eps ~ N(0, I), then
u | k ~ N(alpha mu_k, diag(alpha^2 s_k^2 + beta^2)) and, by Gaussian conditioning (Bishop 2006, eq. 2.116),

    E[x0 | u] = sum_k w_k(u) * (mu_k + alpha s_k^2 / (alpha^2 s_k^2 + beta^2) * (u - alpha mu_k)),
    w_k(u)    = softmax_k(log pi_k + log N(u; alpha mu_k, alpha^2 s_k^2 + beta^2)).

This is the Bayes-optimal denoiser (Tweedie's formula for the mixture), so sampling and inversion with it have a
known ground truth and no learning error. It works in both of ComfyUI's parametrizations (see ``spaces``).

Components may also carry a low-rank factor F_k [r, n]: Sigma_k = diag(s_k^2) + F_k^T F_k. Then
u | k ~ N(alpha mu_k, C_k) with C_k = D_k + alpha^2 F_k^T F_k, D_k = alpha^2 diag(s_k^2) + beta^2, and the same
conditioning gives E[x0 | u, k] = mu_k + alpha Sigma_k C_k^{-1} (u - alpha mu_k), with C_k^{-1} and log det C_k from
the Woodbury identity and the matrix determinant lemma (Petersen & Pedersen, "The Matrix Cookbook", eqs. 156, 24):

    C^{-1} = D^{-1} - alpha^2 D^{-1} F^T M^{-1} F D^{-1},   log det C = log det D + log det M,
    M = I_r + alpha^2 F D^{-1} F^T.

A small diagonal s_k (thinner than the schedule's smallest sigma) beside wide factor directions makes the data a
set of thin, close sheets: the hard case where the denoiser's Jacobian is stiff and the sampler's sensitivity to
small errors is large (``GaussianMixture.hard``).
"""
from __future__ import annotations

import math

import torch

from .spaces import per_sample, unit_signal_noise


class GaussianMixture:
    """Diagonal-covariance Gaussian mixture over latents of a fixed shape (without the batch dimension)."""

    def __init__(self, means: torch.Tensor, stds: torch.Tensor, weights: torch.Tensor,
                 factors: torch.Tensor | None = None):
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
        if factors is not None:
            factors = torch.as_tensor(factors, dtype=means.dtype)
            if factors.ndim != means.ndim + 1 or factors.shape[0] != means.shape[0] \
                    or tuple(factors.shape[2:]) != self.shape:
                raise ValueError("factors must be [K, r, *shape]")
            factors = factors.contiguous()
        self.factors = factors

    @classmethod
    def random(cls, shape=(4, 8, 8), components: int = 3, seed: int = 0, dtype=torch.float64) -> "GaussianMixture":
        g = torch.Generator().manual_seed(seed)
        means = torch.randn((components, *shape), generator=g, dtype=dtype) * 0.8
        stds = 0.2 + 0.3 * torch.rand(components, generator=g, dtype=dtype)
        weights = 0.5 + torch.rand(components, generator=g, dtype=dtype)
        return cls(means, stds, weights)

    @classmethod
    def hard(cls, shape=(4, 16, 16), components: int = 16, rank: int = 4, seed: int = 0, spread: float = 0.3,
             factor_scale: float = 0.8, stds=(0.01, 0.5), dtype=torch.float64) -> "GaussianMixture":
        """Many close components with stiff directions: means spread ``spread`` per element around a shared base
        (closer than their own extent), ``rank`` wide directions of per-element scale ``factor_scale``, and a
        diagonal std drawn log-uniformly per element from ``stds`` (the low end below SD's smallest sigma,
        0.029, and far below a flow schedule's smallest non-zero sigma)."""
        g = torch.Generator().manual_seed(seed)
        base = torch.randn(shape, generator=g, dtype=dtype) * 0.5
        means = base + spread * torch.randn((components, *shape), generator=g, dtype=dtype)
        factors = factor_scale / math.sqrt(rank) * torch.randn((components, rank, *shape), generator=g, dtype=dtype)
        low, high = math.log(stds[0]), math.log(stds[1])
        stds = torch.exp(low + (high - low) * torch.rand((components, *shape), generator=g, dtype=dtype))
        weights = 0.5 + torch.rand(components, generator=g, dtype=dtype)
        return cls(means, stds, weights, factors)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        k = torch.multinomial(self.log_weights.exp(), batch, replacement=True, generator=generator)
        eps = torch.randn((batch, *self.shape), generator=generator, dtype=self.means.dtype)
        x = self.means[k] + self.stds[k] * eps
        if self.factors is not None:
            z = torch.randn((batch, self.factors.shape[1]), generator=generator, dtype=self.means.dtype)
            x = x + torch.einsum("br,br...->b...", z, self.factors[k])
        return x

    def posterior_mean(self, u: torch.Tensor, alpha, beta, log_weights: torch.Tensor | None = None) -> torch.Tensor:
        """E[x0 | u = alpha x0 + beta eps] for a batch u [B, *shape]; alpha, beta scalars or [B]. ``log_weights``
        [B, K] replaces the mixture's log weights per sample (a class prior over the components, unnormalised:
        -inf drops a component)."""
        log_lik, cond_mean = self.component_terms(u, alpha, beta)
        prior = self.log_weights.to(u.device, log_lik.dtype) if log_weights is None \
            else log_weights.to(u.device, log_lik.dtype)
        w = torch.softmax(prior + log_lik, dim=1)                                 # [B, K]
        w = w.reshape(w.shape + (1,) * (cond_mean.ndim - 2))
        out = (w * cond_mean).sum(dim=1)
        return out.to(torch.promote_types(u.dtype, torch.float32))

    def component_terms(self, u: torch.Tensor, alpha, beta):
        """(log N(u; alpha mu_k, C_k) [B, K], E[x0 | u, k] [B, K, *shape]) for u = alpha x0 + beta eps."""
        if self.factors is not None:
            return self._component_terms_low_rank(u, alpha, beta)
        work = torch.promote_types(u.dtype, torch.float32)
        means, stds = self.means.to(u.device, work), self.stds.to(u.device, work)
        u = u.to(work)
        alpha = per_sample(torch.as_tensor(alpha, dtype=work, device=u.device), u).unsqueeze(1)
        beta = per_sample(torch.as_tensor(beta, dtype=work, device=u.device), u).unsqueeze(1)
        var = alpha ** 2 * stds ** 2 + beta ** 2               # [B, K, *shape]
        resid = u.unsqueeze(1) - alpha * means
        dims = tuple(range(2, resid.ndim))
        log_lik = -0.5 * ((resid ** 2 / var) + torch.log(var) + math.log(2 * math.pi)).sum(dim=dims)
        return log_lik, means + alpha * stds ** 2 / var * resid

    def _component_terms_low_rank(self, u: torch.Tensor, alpha, beta):
        """The low-rank-plus-diagonal case (module docstring), in float64 whatever u's dtype."""
        work = torch.float64
        batch = u.shape[0]
        means = self.means.to(u.device, work).flatten(1)                         # [K, n]
        var0 = self.stds.to(u.device, work).flatten(1) ** 2                      # [K, n]
        factors = self.factors.to(u.device, work).flatten(2)                     # [K, r, n]
        rank = factors.shape[1]
        x = u.to(work).flatten(1)                                                 # [B, n]
        alpha = torch.as_tensor(alpha, dtype=work, device=u.device).expand(batch).reshape(batch, 1, 1)
        beta = torch.as_tensor(beta, dtype=work, device=u.device).expand(batch).reshape(batch, 1, 1)
        resid = x[:, None, :] - alpha * means                                     # [B, K, n]
        diag = alpha ** 2 * var0 + beta ** 2                                      # [B, K, n]
        scaled = resid / diag                                                     # D^{-1} v
        fd = factors.unsqueeze(0) / diag.unsqueeze(2)                             # F D^{-1}  [B, K, r, n]
        m = torch.eye(rank, dtype=work, device=u.device) \
            + alpha[..., None] ** 2 * torch.einsum("bkrn,ksn->bkrs", fd, factors)  # [B, K, r, r]
        chol = torch.linalg.cholesky(m)
        proj = torch.einsum("krn,bkn->bkr", factors, scaled)                      # F D^{-1} v
        solved = torch.cholesky_solve(proj.unsqueeze(-1), chol).squeeze(-1)       # M^{-1} F D^{-1} v
        cinv = scaled - alpha ** 2 * torch.einsum("bkr,bkrn->bkn", solved, fd)    # C^{-1} v
        logdet = torch.log(diag).sum(dim=2) + 2 * torch.log(torch.diagonal(chol, dim1=2, dim2=3)).sum(dim=2)
        n = x.shape[1]
        log_lik = -0.5 * ((resid * cinv).sum(dim=2) + logdet + n * math.log(2 * math.pi))
        cov_cinv = var0 * cinv + torch.einsum("bkr,krn->bkn", torch.einsum("krn,bkn->bkr", factors, cinv), factors)
        cond_mean = means + alpha * cov_cinv
        return log_lik, cond_mean.reshape(batch, -1, *self.shape)

    def log_density(self, x0: torch.Tensor, log_weights: torch.Tensor | None = None) -> torch.Tensor:
        """log p(x0) [B] of clean latents (alpha 1, beta 0), with optional per-sample log weights [B, K]."""
        log_lik, _ = self.component_terms(x0, 1.0, 0.0)
        prior = self.log_weights.to(x0.device, log_lik.dtype) if log_weights is None \
            else log_weights.to(x0.device, log_lik.dtype)
        prior = prior - torch.logsumexp(prior.expand(log_lik.shape), dim=-1, keepdim=True)
        return torch.logsumexp(prior + log_lik, dim=1)

    def denoiser(self, parametrization: str):
        """fn(x [B, *shape], sigma [B]) -> D(x, sigma), the exact x0 estimate in the given parametrization."""

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
            if sigma.ndim == 0:
                sigma = sigma.expand(x.shape[0])
            alpha, beta, r = unit_signal_noise(sigma, parametrization)
            return self.posterior_mean(x / per_sample(r, x), alpha, beta).to(x.dtype)

        return denoise
