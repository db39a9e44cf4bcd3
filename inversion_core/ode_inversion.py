"""Probability-flow inversion: integrate the continuous ODE upward instead of inverting the N-step sampler.

An edit samples the inverted noise under a new conditioning, and its ideal is the continuous transport: the
probability-flow ODE dx/dsigma = d(x, sigma) (Song et al. 2021, eq. 13; Karras et al. 2022, eq. 3) integrated up
under the source conditioning, then down under the edit's. What the edit needs from an inversion is therefore the
noise the *continuous* flow reaches, x_T*, not the preimage of one N-step Euler sampler.

The two are far apart where the flow is stiff, which is the last sampler step (sigma_1 -> 0). Along a thin data
direction of std s the ODE keeps (x - mu) / sqrt(s^2 + sigma^2) constant, so the continuous flow grows that
component by sqrt(s^2 + sigma_1^2) / s from 0 to sigma_1. The exact inverse of the Euler step x_0 = D(x_1, sigma_1)
must grow it by (s^2 + sigma_1^2) / s^2 -- the square of that factor -- because the denoiser shrinks it by
s^2 / (s^2 + sigma_1^2) (Tweedie). At sigma_1 / s = 8 (a 10-step flow schedule, sigma_1 = 0.25, and s = 0.03) the
exact inverse overshoots the continuous noise eight-fold in that direction, lands off the typical set, and the edit
sampled from it inherits the overshoot. DDIM inversion (d evaluated at the known lower latent) undershoots it
instead. Both are one-step approximations of the same interval; the flow needs several.

So this solver integrates each step's interval with Heun's method (the explicit trapezoidal rule, second order;
Karras et al. 2022, Algorithm 1 run upward) and splits the interval that ends at sigma 0 into ``bottom_substeps``
log-spaced substeps from ``bottom_floor`` x sigma_1 (where the stiff growth happens), the first of them a DDIM step
(d at the clean latent, evaluated at the substep's upper sigma, since d is 0/0 at sigma 0). Its calls per step:
2 x ``substeps`` on a step above 0, 2 x ``bottom_substeps`` - 1 on the last one. Each step's first evaluation is at
its lower latent at its lower sigma, which is exactly the evaluation the forward sampler makes there, so stored
per-step residuals (``residuals``) cost one extra call at the top latent, plus the mirrored last interval below.

Sampling back. The ideal edit is the continuous transport downward too, and ComfyUI's Euler step into sigma 0,
x_0 = D(x_1, sigma_1), shrinks a thin direction by s^2 / (s^2 + sigma_1^2) where the flow shrinks it by
s / sqrt(s^2 + sigma_1^2): an edit sampled with it is too smooth (too likely under the target class). So the
Inverted Sampler mirrors this inversion on that interval (:func:`integrate_down`: Heun down the same levels, then
x_0 = D(x, lowest level), 2 x ``bottom_substeps`` - 1 calls), and the stored residuals are taken against that
sampler, so the source prompt still reconstructs exactly. Where the last interval is short (its upper sigma, in
variance-exploding units, at most ``MIRROR_ABOVE``) ComfyUI's Euler step plus the stored residual edits as well and
more cheaply, so ``mirror="auto"`` mirrors only above it (the threshold is read off the edit front,
``benchmarks/EDIT_FRONT.md``).

Without residuals the forward sampler does *not* reproduce the input from this latent (it was never meant to invert
that sampler); use it through Inverted Sampler, or Exact Invert where the stock-sampler path must reconstruct.
"""
from __future__ import annotations

import math

import torch

from .errors import InversionError
from .problem import StepProblem, StepSolution, StepSolver
from .spaces import check_parametrization, derivative

MIRROR_ABOVE = 0.15     # "auto" mirrors the last interval where its upper sigma (ve units) exceeds this
MIRROR = ("auto", "on", "off")


def heun(denoise, x: torch.Tensor, sigma_from: float, sigma_to: float) -> torch.Tensor:
    """One Heun step of dx/dsigma = d(x, sigma) from ``sigma_from`` to ``sigma_to`` (both > 0, either direction;
    Karras et al. 2022, Algorithm 1, lines 5-8)."""
    d_from = derivative(x, denoise(x, sigma_from), sigma_from)
    predictor = x + (sigma_to - sigma_from) * d_from
    d_to = derivative(predictor, denoise(predictor, sigma_to), sigma_to)
    return x + (sigma_to - sigma_from) * 0.5 * (d_from + d_to)


def integrate_down(denoise, x: torch.Tensor, levels) -> torch.Tensor:
    """The bottom interval sampled as :class:`ODEInversion` inverted it: Heun down ``levels`` (ascending, from 0,
    as ``ODEInversion.grid``) to the lowest positive level, then the Euler step into 0, x_0 = D(x, levels[1])."""
    levels = [float(v) for v in levels]
    for hi, lo in zip(levels[:1:-1], levels[-2:0:-1], strict=True):
        x = heun(denoise, x, hi, lo)
    return denoise(x, levels[1]).to(x.dtype)


class ODEInversion(StepSolver):
    """Heun integration of the probability-flow ODE upward, log-spaced substeps on the interval from sigma 0."""

    name = "ode"

    def __init__(self, substeps: int = 1, bottom_substeps: int = 8, bottom_floor: float = 0.05,
                 mirror: str = "auto"):
        if int(substeps) < 1 or int(bottom_substeps) < 1:
            raise ValueError("substeps and bottom_substeps must be >= 1")
        if not 0.0 < float(bottom_floor) < 1.0:
            raise ValueError("bottom_floor must be in (0, 1)")
        if mirror not in MIRROR:
            raise ValueError(f"mirror must be one of {MIRROR}, got {mirror!r}")
        self.mirror = mirror
        self.substeps = int(substeps)
        self.bottom_substeps = int(bottom_substeps)
        self.bottom_floor = float(bottom_floor)

    def expected_calls(self, corrected: bool = False) -> int:
        return 2 * self.substeps

    def grid(self, sigma_lo: float, sigma_hi: float) -> list:
        """The substep levels from sigma_lo up to sigma_hi."""
        if sigma_lo > 0:
            return [sigma_lo + (sigma_hi - sigma_lo) * k / self.substeps for k in range(self.substeps + 1)]
        if self.bottom_substeps == 1:
            return [0.0, sigma_hi]
        low, high = math.log(self.bottom_floor * sigma_hi), math.log(sigma_hi)
        n = self.bottom_substeps - 1
        return [0.0] + [math.exp(low + (high - low) * k / n) for k in range(n + 1)]

    def sampling_bottom(self, sigmas, parametrization: str = "ve") -> list | None:
        """``grid(0, sigma_1)`` for a schedule that ends at 0 with more than one bottom substep, when ``mirror`` is
        "on", or "auto" and sigma_1 in ve units (flow: sigma / (1 - sigma)) exceeds ``MIRROR_ABOVE``; else None."""
        values = [float(v) for v in sigmas]
        if len(values) < 2 or values[-1] != 0.0 or self.bottom_substeps == 1 or self.mirror == "off":
            return None
        sigma_1 = values[-2]
        ve_sigma = sigma_1 if check_parametrization(parametrization) == "ve" else sigma_1 / max(1.0 - sigma_1, 1e-12)
        if self.mirror == "auto" and ve_sigma <= MIRROR_ABOVE:
            return None
        return self.grid(0.0, sigma_1)

    def solve(self, problem: StepProblem) -> StepSolution:
        if problem.stochastic:
            raise InversionError("ODE inversion inverts deterministic (euler) steps only; use Noise Correct for "
                                 "euler_ancestral and lcm")
        den = problem.denoiser
        x = problem.x_lo
        levels = self.grid(problem.sigma_lo, problem.sigma_hi)
        for lo, hi in zip(levels[:-1], levels[1:], strict=True):
            if lo == 0.0:     # d is 0/0 at sigma 0: one DDIM ("target") substep to the first level
                x = x + hi * derivative(x, den(x, hi), hi)
                continue
            x = heun(den, x, lo, hi)
        batch = x.shape[0]
        calls = torch.full((batch,), len(levels) - 1, dtype=torch.long)
        return StepSolution(x=x, iterations=calls, residual=torch.full((batch,), float("nan")))
