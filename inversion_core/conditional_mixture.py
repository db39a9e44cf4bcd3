"""A hard class-conditional analytic denoiser, and the continuous ideal edit it defines.

Data. Each class c is itself a Gaussian mixture with low-rank-plus-thin covariances
(``analytic.GaussianMixture.hard``'s components): class c owns components k in K_c, and

    p(x0 | c) = sum_{k in K_c} pi_k N(x0; mu_k, diag(s_k^2) + F_k^T F_k),

with diagonal stds drawn log-uniformly down to ``thin`` (below the smallest sigma of a flow schedule) and close
components within a class. A conditioning is a class prior w (one-hot = one class, zeros = the empty prompt = the
marginal); the denoiser is the exact posterior mean under the component prior pi_k w_c(k) (Tweedie; ``analytic``).
ComfyUI's cfg is applied as ComfyUI applies it to a real model's two branches (``comfy.samplers.cfg_function``):
D = D_u + cfg (D_c - D_u), which the core reproduces with :meth:`ConditionalMixture.guided`.

Unlike ``analytic_conditional`` (classes sharing one Gaussian covariance, where the probability-flow ODE is affine
and every Euler preimage is a typical noise), the flow here is nonlinear and stiff: an inverse that reproduces one
N-step sampler exactly can land where no continuous trajectory starts, and its edit can leave the data.

The ideal edit. Inverting x0 with the continuous probability-flow ODE (Song et al. 2021, eq. 13; in ComfyUI's sigma
space dx/dsigma = (x - D(x, sigma)) / sigma, ``spaces.derivative``) under the source field up to the schedule's top
sigma, then integrating back down under the edit field, is the transport the N-step samplers approximate.
:func:`probability_flow` integrates it in float64 with classical RK4 (Hairer, Norsett & Wanner, Sec. II.1) on a fine
grid, uniform in log(sigma) (in the flow parametrization log(sigma / (1 - sigma)), with a uniform-in-sigma segment
at the sigma = 1 end), from/to a floor ``SIGMA_FLOOR`` where the last jump x0 = D(x, floor) is exact to the
floor's square over the thinnest std. ``tests/core/test_conditional_mixture.py`` checks that halving the grid moves
the ideal edit by far less than 0.1 dB.

Realism is the log-likelihood per dimension of an edit under the target class, beside the ideal edit's own.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from .analytic import GaussianMixture
from .analytic_conditional import class_weights_from_context
from .spaces import check_parametrization, derivative, per_sample, unit_signal_noise

SIGMA_FLOOR = 1e-5     # the reference solve's stand-in for sigma = 0 (see the module docstring)
FLOW_TOP_SEGMENT = 0.95  # flow: above this sigma the grid is uniform in sigma (log(s / (1 - s)) is infinite at 1)

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ConditionalMixture:
    """Classes that are hard Gaussian mixtures (module docstring). ``mixture`` holds every component; ``owner[k]``
    is the class of component k."""

    def __init__(self, mixture: GaussianMixture, owner: torch.Tensor, classes: int):
        owner = torch.as_tensor(owner, dtype=torch.long)
        if owner.shape != (mixture.means.shape[0],) or int(owner.min()) < 0 or int(owner.max()) >= classes:
            raise ValueError("owner must give a class in [0, classes) for every component")
        self.mixture = mixture
        self.owner = owner
        self.classes = int(classes)
        self.shape = mixture.shape

    @classmethod
    def hard(cls, shape=(4, 16, 16), classes: int = 3, per_class: int = 2, seed: int = 0, rank: int = 4,
             class_spread: float = 0.15, component_spread: float = 0.1, factor_scale: float = 0.5,
             stds=(0.03, 0.5), dtype=torch.float64) -> "ConditionalMixture":
        """``classes`` classes of ``per_class`` close components each: class centres ``class_spread`` per element
        around a shared base, components ``component_spread`` around their class centre (closer than their own
        extent), ``rank`` wide directions of per-element scale ``factor_scale`` and thin diagonal stds
        log-uniform in ``stds``. The defaults put the thinnest std (0.03) an order below the last non-zero sigma
        of a 10-step schedule (0.25 flow, 0.34 SD1.5 ``simple``) and keep the classes apart (every source is
        classified as its class with posterior 1.00) while an edit moves the image by about 9 dB; with thinner
        stds or farther classes even the continuous inverse sampled by 10 Euler steps misses the ideal edit by
        more than 15 dB and the methods are no longer told apart."""
        g = torch.Generator().manual_seed(int(seed))
        base = torch.randn(shape, generator=g, dtype=dtype) * 0.5
        centres = base + class_spread * torch.randn((classes, *shape), generator=g, dtype=dtype)
        owner = torch.arange(classes).repeat_interleave(per_class)
        means = centres[owner] + component_spread * torch.randn((classes * per_class, *shape), generator=g,
                                                                dtype=dtype)
        factors = factor_scale / math.sqrt(rank) * torch.randn((classes * per_class, rank, *shape), generator=g,
                                                               dtype=dtype)
        low, high = math.log(stds[0]), math.log(stds[1])
        diag = torch.exp(low + (high - low) * torch.rand((classes * per_class, *shape), generator=g, dtype=dtype))
        weights = 0.5 + torch.rand(classes * per_class, generator=g, dtype=dtype)
        return cls(GaussianMixture(means, diag, weights, factors), owner, classes)

    # ------------------------------------------------------------------------------------------ priors
    def component_log_prior(self, class_weights: Optional[torch.Tensor], batch: int) -> torch.Tensor:
        """[B, K] log prior over components for per-sample class weights [B, classes] (None or a zero row = the
        marginal)."""
        base = self.mixture.log_weights.to(torch.float64).expand(batch, -1)
        if class_weights is None:
            return base
        w = class_weights.to(torch.float64)
        if w.shape != (batch, self.classes):
            raise ValueError(f"class weights must be [{batch}, {self.classes}], got {tuple(w.shape)}")
        total = w.sum(dim=1, keepdim=True)
        chosen = base + torch.log(w / torch.where(total > 0, total, torch.ones_like(total)))[:, self.owner]
        return torch.where(total > 0, chosen, base)

    def one_hot(self, k, batch: int) -> torch.Tensor:
        """Class weights [B, classes] selecting class k (an int or [B]); k = -1 is the empty prompt."""
        k = torch.as_tensor(k, dtype=torch.long).expand(batch)
        w = torch.zeros((batch, self.classes), dtype=torch.float64)
        rows = (k >= 0).nonzero().flatten()
        w[rows, k[rows]] = 1.0
        return w

    # ------------------------------------------------------------------------------------------ denoisers
    def posterior_mean(self, u, alpha, beta, class_weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.mixture.posterior_mean(u, alpha, beta, self.component_log_prior(class_weights, u.shape[0]))

    def denoiser(self, parametrization: str):
        """fn(x, sigma [B], context=None) -> D(x, sigma | context): ``analytic_conditional``'s interface (context =
        CONDITIONING tensors [B, T, >= classes]), for the ComfyUI test MODEL."""

        def denoise(x: torch.Tensor, sigma: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
            return self._denoise(x, sigma, parametrization, class_weights_from_context(context, self.classes))

        return denoise

    def _denoise(self, x, sigma, parametrization, class_weights):
        sigma = torch.as_tensor(sigma, dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        alpha, beta, r = unit_signal_noise(sigma, parametrization)
        return self.posterior_mean(x / per_sample(r, x), alpha, beta, class_weights).to(x.dtype)

    def guided(self, parametrization: str, cond, cfg: float = 1.0, uncond=-1) -> DenoiseFn:
        """fn(x, sigma) -> D_u + cfg (D_c - D_u) for class ``cond`` (int or [B]) against ``uncond`` (-1 = the empty
        prompt), as ComfyUI's cfg_function combines a model's branches (cfg 1 evaluates the positive only)."""
        check_parametrization(parametrization)

        def denoise(x, sigma):
            d_c = self._denoise(x, sigma, parametrization, self.one_hot(cond, x.shape[0]))
            if cfg == 1.0:
                return d_c
            d_u = self._denoise(x, sigma, parametrization, self.one_hot(uncond, x.shape[0]))
            return d_u + cfg * (d_c - d_u)

        return denoise

    # ------------------------------------------------------------------------------------------ data
    def sample(self, classes, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """One clean latent per entry of ``classes`` [B]: a component of that class by its weight, then its
        Gaussian."""
        classes = torch.as_tensor(classes, dtype=torch.long)
        prior = self.component_log_prior(self.one_hot(classes, classes.numel()), classes.numel()).exp()
        k = torch.multinomial(prior, 1, generator=generator).flatten()
        mix = self.mixture
        x = mix.means[k] + mix.stds[k] * torch.randn((k.numel(), *self.shape), generator=generator,
                                                     dtype=mix.means.dtype)
        z = torch.randn((k.numel(), mix.factors.shape[1]), generator=generator, dtype=mix.means.dtype)
        return x + torch.einsum("br,br...->b...", z, mix.factors[k])

    def log_likelihood(self, x0: torch.Tensor, k) -> torch.Tensor:
        """log p(x0 | class k) per dimension [B] (nats/dim); k an int or [B]."""
        weights = self.one_hot(k, x0.shape[0])
        return self.mixture.log_density(x0.to(torch.float64), self.component_log_prior(weights, x0.shape[0])) \
            / float(x0[0].numel())

    def class_posterior(self, x0: torch.Tensor) -> torch.Tensor:
        """p(c | x0) under the uniform-over-components prior [B, classes] (the ideal classifier)."""
        log_lik, _ = self.mixture.component_terms(x0.to(torch.float64), 1.0, 0.0)
        joint = self.mixture.log_weights.to(torch.float64) + log_lik                      # [B, K]
        per_class = torch.stack([torch.logsumexp(joint[:, self.owner == c], dim=1) for c in range(self.classes)], 1)
        return torch.softmax(per_class, dim=1)


# ============================================================================================ the reference solve
def fine_grid(sigma_from: float, sigma_to: float, parametrization: str, steps: int) -> torch.Tensor:
    """A float64 grid from ``sigma_from`` to ``sigma_to`` (either order; a 0 end becomes ``SIGMA_FLOOR``),
    ``steps`` intervals uniform in log(sigma) (ve) or log(sigma / (1 - sigma)) (flow), flow's top segment above
    ``FLOW_TOP_SEGMENT`` uniform in sigma (one interval in eight of the budget, at least 4)."""
    check_parametrization(parametrization)
    lo, hi = sorted((max(float(sigma_from), SIGMA_FLOOR), max(float(sigma_to), SIGMA_FLOOR)))
    parts = []
    if parametrization == "flow" and hi > FLOW_TOP_SEGMENT:
        top_steps = max(4, steps // 8)
        split = max(lo, FLOW_TOP_SEGMENT)
        parts.append(torch.linspace(hi, split, top_steps + 1, dtype=torch.float64))
        hi, steps = split, max(1, steps - top_steps)
    if hi > lo:
        if parametrization == "ve":
            grid = torch.exp(torch.linspace(math.log(hi), math.log(lo), steps + 1, dtype=torch.float64))
        else:
            logit = torch.linspace(math.log(hi / (1 - hi)), math.log(lo / (1 - lo)), steps + 1, dtype=torch.float64)
            grid = torch.sigmoid(logit)
            grid[0], grid[-1] = hi, lo
        parts.append(grid[1:] if parts else grid)
    grid = torch.cat(parts) if parts else torch.tensor([hi], dtype=torch.float64)
    return grid if float(sigma_from) >= float(sigma_to) else grid.flip(0)


def rk4(denoise: DenoiseFn, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Classical RK4 on dx/dsigma = (x - D(x, sigma)) / sigma along ``grid`` (float64, any direction)."""
    x = x.to(torch.float64)

    def f(y, s):
        return derivative(y, denoise(y, torch.full((y.shape[0],), s, dtype=torch.float64)), s)

    for s0, s1 in zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True):
        h = s1 - s0
        k1 = f(x, s0)
        k2 = f(x + 0.5 * h * k1, s0 + 0.5 * h)
        k3 = f(x + 0.5 * h * k2, s0 + 0.5 * h)
        k4 = f(x + h * k3, s1)
        x = x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4)
    return x


def probability_flow(denoise: DenoiseFn, x: torch.Tensor, sigma_from: float, sigma_to: float, parametrization: str,
                     steps: int = 400) -> torch.Tensor:
    """The continuous probability-flow map from ``sigma_from`` to ``sigma_to`` (float64 RK4 on :func:`fine_grid`).
    Down to sigma 0 it ends with x0 = D(x, SIGMA_FLOOR); up from 0 it starts at the clean latent, which is also
    the state at the floor to the same order."""
    grid = fine_grid(sigma_from, sigma_to, parametrization, steps)
    x = rk4(denoise, x, grid)
    if float(sigma_to) == 0.0:
        x = denoise(x, torch.full((x.shape[0],), float(grid[-1]), dtype=torch.float64)).to(torch.float64)
    return x


def ideal_edit(source_field: DenoiseFn, edit_field: DenoiseFn, x0: torch.Tensor, sigma_max: float,
               parametrization: str, steps: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    """(the continuous inverse x_T of x0 under ``source_field``, its transport to sigma 0 under ``edit_field``)."""
    x_top = probability_flow(source_field, x0, 0.0, sigma_max, parametrization, steps)
    return x_top, probability_flow(edit_field, x_top, sigma_max, 0.0, parametrization, steps)
