"""A class-conditional analytic denoiser with a known ideal edit (the ground truth for measuring edits).

Data: K classes x0 | c = k ~ N(mu_k, diag(s^2)) that SHARE the per-dimension std s, with class prior pi_k; the
unconditional data is their mixture p(x0) = sum_k pi_k N(mu_k, s^2). A conditioning selects a class prior w
(one-hot = one class; all zeros = "no prompt" = the prior pi, i.e. the marginal), and the denoiser is the exact
posterior mean under that prior (Tweedie; Bishop 2006, eq. 2.116 per component):

    E[x0 | u, w] = sum_k r_k(u) (mu_k + alpha s^2 / (alpha^2 s^2 + beta^2) (u - alpha mu_k)),
    r_k(u)       = softmax_k(log w_k + log N(u; alpha mu_k, alpha^2 s^2 + beta^2))

for u = alpha x0 + beta eps (the unit view of ``spaces``). ComfyUI's cfg combines it like a real model's branches:
D_u + cfg (D_c - D_u) with the empty conditioning as the marginal.

Ideal edit. For one class the probability-flow ODE is affine per dimension and keeps the standardised coordinate
z = (u - alpha mu_k) / sqrt(alpha^2 s^2 + beta^2) constant (d/dsigma of x - mu = (x - mu) sigma / (s^2 + sigma^2)
in VE form, solved by x - mu = c sqrt(s^2 + sigma^2)). Inverting x0 exactly under class A up to (alpha_T, beta_T)
and sampling back exactly under class B is therefore the closed form (:meth:`transport`)

    x0' = mu_B + (x0 - mu_A) + g_T (mu_A - mu_B),      g_T = s alpha_T / sqrt(alpha_T^2 s^2 + beta_T^2),

i.e. the optimal-transport translation x0 - mu_A + mu_B (shared covariance) plus a term that vanishes as the top
noise level grows (exactly 0 at flow sigma 1). Euler sampling is affine in the same way with a per-step factor
that does not depend on the class mean, so ComfyUI's euler sampler over N steps edits exactly to the same form
with g_T replaced by :meth:`euler_gain` (the product of the step factors). Edit success is the class posterior of
the result (:meth:`class_posterior`), realism its excess negative log-likelihood under the target class
(:meth:`excess_nll`: 0 for a typical sample of that class).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from .spaces import per_sample, unit_signal_noise


def class_weights_from_context(context: Optional[torch.Tensor], classes: int) -> Optional[torch.Tensor]:
    """[B, T, D] conditioning -> per-sample class weights [B, K] (None = the prior for every sample).

    The first K features of every token are non-negative class weights, summed over tokens; a row that sums to 0
    (the empty prompt) means "no class": the prior pi, i.e. the unconditional model.
    """
    if context is None:
        return None
    if context.ndim != 3 or context.shape[-1] < classes:
        raise ValueError(f"conditioning must be [B, tokens, >= {classes}] for a {classes}-class model, "
                         f"got {tuple(context.shape)}")
    return context[..., :classes].to(torch.float64).clamp_min(0.0).sum(dim=1)


class ClassConditionalGaussian:
    """K Gaussian classes over latents of a fixed shape sharing their per-dimension std; see the module docstring."""

    def __init__(self, means: torch.Tensor, std, weights: Optional[torch.Tensor] = None):
        if means.ndim < 2:
            raise ValueError("means must be [K, *shape]")
        self.means = means
        self.classes = int(means.shape[0])
        self.shape = tuple(means.shape[1:])
        std = torch.as_tensor(std, dtype=means.dtype)
        self.std = (std.expand(self.shape) if std.ndim == 0 else std).contiguous()
        if self.std.shape != self.shape or (self.std <= 0).any():
            raise ValueError("std must be positive, a scalar or [*shape]")
        weights = torch.ones(self.classes, dtype=means.dtype) if weights is None else \
            torch.as_tensor(weights, dtype=means.dtype)
        if weights.shape != (self.classes,) or (weights <= 0).any():
            raise ValueError("weights must be positive, [K]")
        self.log_prior = torch.log(weights / weights.sum())

    @classmethod
    def random(cls, shape=(4, 8, 8), classes: int = 4, seed: int = 0, separation: float = 5.0,
               dtype=torch.float64) -> "ClassConditionalGaussian":
        """Random classes whose means are ``separation`` class stds apart (whitened distance, every pair about
        the same): far enough that a class is recognisable, close enough that a half-done edit is not.
        The std varies per dimension (0.3-0.7), the prior is uniform."""
        g = torch.Generator().manual_seed(int(seed))
        std = 0.3 + 0.4 * torch.rand(shape, generator=g, dtype=dtype)
        base = torch.randn(shape, generator=g, dtype=dtype) * 0.5                  # a shared "image" component
        directions = torch.randn((classes, *shape), generator=g, dtype=dtype)
        directions = directions / directions.flatten(1).norm(dim=1).reshape(-1, *([1] * len(shape)))
        # orthonormal-ish directions scaled so that |mu_i - mu_j| / s ~ separation in whitened units
        means = base + directions * std * (separation / math.sqrt(2.0))
        return cls(means, std)

    # ------------------------------------------------------------------------------------------- sampling
    def sample(self, classes: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """One clean latent per entry of ``classes`` [B] (class indices)."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        eps = torch.randn((classes.numel(), *self.shape), generator=generator, dtype=self.means.dtype)
        return self.means[classes] + self.std * eps

    # ------------------------------------------------------------------------------------------- denoiser
    def _log_prior(self, class_weights: Optional[torch.Tensor], batch: int, device, dtype) -> torch.Tensor:
        prior = self.log_prior.to(device, dtype).expand(batch, -1)
        if class_weights is None:
            return prior
        w = class_weights.to(device, dtype)
        if w.shape != (batch, self.classes):
            raise ValueError(f"class weights must be [{batch}, {self.classes}], got {tuple(w.shape)}")
        total = w.sum(dim=1, keepdim=True)
        chosen = torch.log(w / torch.where(total > 0, total, torch.ones_like(total)))
        return torch.where(total > 0, chosen, prior)

    def posterior_mean(self, u: torch.Tensor, alpha, beta, class_weights: Optional[torch.Tensor] = None):
        """E[x0 | u = alpha x0 + beta eps, class prior] for u [B, *shape]; alpha, beta scalars or [B]."""
        work = torch.promote_types(u.dtype, torch.float32)
        means, s = self.means.to(u.device, work), self.std.to(u.device, work)
        u = u.to(work)
        alpha = per_sample(torch.as_tensor(alpha, dtype=work, device=u.device), u).unsqueeze(1)
        beta = per_sample(torch.as_tensor(beta, dtype=work, device=u.device), u).unsqueeze(1)
        var = alpha ** 2 * s ** 2 + beta ** 2                       # [B, 1, *shape] (shared by the classes)
        resid = u.unsqueeze(1) - alpha * means                      # [B, K, *shape]
        dims = tuple(range(2, resid.ndim))
        log_lik = -0.5 * (resid ** 2 / var + torch.log(var)).sum(dim=dims)
        r = torch.softmax(self._log_prior(class_weights, u.shape[0], u.device, work) + log_lik, dim=1)
        cond_mean = means + alpha * s ** 2 / var * resid
        return (r.reshape(r.shape + (1,) * len(dims)) * cond_mean).sum(dim=1)

    def denoiser(self, parametrization: str):
        """fn(x [B, *shape], sigma [B], context=None) -> D(x, sigma | context) in the given parametrization;
        context: CONDITIONING tensors [B, T, D] (see :func:`class_weights_from_context`) or None (unconditional)."""

        def denoise(x: torch.Tensor, sigma: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
            sigma = torch.as_tensor(sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
            if sigma.ndim == 0:
                sigma = sigma.expand(x.shape[0])
            alpha, beta, r = unit_signal_noise(sigma, parametrization)
            weights = class_weights_from_context(context, self.classes)
            return self.posterior_mean(x / per_sample(r, x), alpha, beta, weights).to(x.dtype)

        return denoise

    def class_denoiser(self, parametrization: str, k: int):
        """fn(x, sigma) -> D(x, sigma | class k): a one-hot conditioning fixed in."""

        def denoise(x, sigma):
            context = torch.zeros((x.shape[0], 1, self.classes), dtype=torch.float64, device=x.device)
            context[:, :, int(k)] = 1.0
            return self.denoiser(parametrization)(x, sigma, context)

        return denoise

    # ------------------------------------------------------------------------------------------- scores
    def class_log_likelihood(self, x0: torch.Tensor) -> torch.Tensor:
        """log N(x0; mu_k, s^2) summed over dimensions, [B, K]."""
        work = torch.promote_types(x0.dtype, torch.float64)
        x0 = x0.to(work)
        means, s = self.means.to(x0.device, work), self.std.to(x0.device, work)
        z = (x0.unsqueeze(1) - means) / s
        dims = tuple(range(2, z.ndim))
        return -0.5 * (z ** 2).sum(dim=dims) - torch.log(s).sum() - 0.5 * s.numel() * math.log(2 * math.pi)

    def class_posterior(self, x0: torch.Tensor) -> torch.Tensor:
        """p(c = k | x0) under the uniform-or-given prior, [B, K] (the ideal classifier)."""
        return torch.softmax(self.log_prior.to(x0.device, torch.float64) + self.class_log_likelihood(x0), dim=1)

    def excess_nll(self, x0: torch.Tensor, k) -> torch.Tensor:
        """Negative log-likelihood per dimension under class k minus its expected value for a sample of class k
        (nats/dim; 0 = as likely as a typical sample, > 0 = less realistic). k: int or [B]."""
        k = torch.as_tensor(k, dtype=torch.long, device=x0.device).expand(x0.shape[0])
        work = torch.promote_types(x0.dtype, torch.float64)
        z = (x0.to(work) - self.means.to(x0.device, work)[k]) / self.std.to(x0.device, work)
        return 0.5 * (z.flatten(1).pow(2).mean(dim=1) - 1.0)

    # ------------------------------------------------------------------------------------------- edits
    def exact_gain(self, sigma_max: float, parametrization: str) -> torch.Tensor:
        """g_T = s alpha_T / sqrt(alpha_T^2 s^2 + beta_T^2) of the exact probability-flow ODE, [*shape]."""
        alpha, beta, _ = unit_signal_noise(torch.tensor(float(sigma_max), dtype=torch.float64), parametrization)
        s = self.std.to(torch.float64)
        return s * alpha / torch.sqrt(alpha ** 2 * s ** 2 + beta ** 2)

    def euler_gain(self, sigmas, parametrization: str) -> torch.Tensor:
        """The G of ComfyUI's euler sampler over ``sigmas`` (sampling order), [*shape]: an exact inversion of that
        schedule under class A sampled back under class B gives x0' = mu_B + (x0 - mu_A) + G (mu_A - mu_B).

        Under one class D(x) = mu + c (x - a mu) with c = a s^2 / (a^2 s^2 + b^2) (x = a x0 + b eps), so one euler
        step x_lo = x + h (x - D), h = (sigma_lo - sigma_hi) / sigma_hi, is x_lo = f x + m mu with
        f = 1 + h (1 - c), m = -h (1 - a c); over the schedule x0 = slope x_T + offset mu, and G = 1 - offset."""
        sig = torch.as_tensor(sigmas, dtype=torch.float64).flatten()
        s2 = self.std.to(torch.float64) ** 2
        offset = torch.zeros_like(s2)
        for s_hi, s_lo in zip(sig[:-1].tolist(), sig[1:].tolist(), strict=True):
            if s_hi == s_lo:
                continue
            a, b = (1.0, s_hi) if parametrization == "ve" else (1.0 - s_hi, s_hi)
            c = a * s2 / (a * a * s2 + b * b)
            h = (s_lo - s_hi) / s_hi
            offset = offset * (1.0 + h * (1.0 - c)) - h * (1.0 - a * c)
        return 1.0 - offset

    def transport(self, x0: torch.Tensor, source, target, sigma_max: float, parametrization: str,
                  sigmas=None) -> torch.Tensor:
        """The ideal edit of x0 (class ``source``) into class ``target``: exact inversion under the source class
        up to ``sigma_max``, exact sampling under the target class (probability-flow ODE; with ``sigmas``: the
        euler sampler over that schedule instead). source, target: int or [B]."""
        work = torch.promote_types(x0.dtype, torch.float64)
        src = torch.as_tensor(source, dtype=torch.long, device=x0.device).expand(x0.shape[0])
        tgt = torch.as_tensor(target, dtype=torch.long, device=x0.device).expand(x0.shape[0])
        means = self.means.to(x0.device, work)
        gain = (self.exact_gain(sigma_max, parametrization) if sigmas is None
                else self.euler_gain(sigmas, parametrization)).to(x0.device, work)
        return means[tgt] + (x0.to(work) - means[src]) + gain * (means[src] - means[tgt])
