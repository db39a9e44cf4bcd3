"""DDIM / Euler inversion: one model call per step, two conventions.

* ``"target"`` (diffusers ``DDIMInverseScheduler``, null-text inversion, ReNoise's first iterate): the model is
  evaluated at the step's *target* noise level with the known lower latent,
  x_hi = anchor + delta * d(x_lo, sigma_hi) -- one fixed-point iteration of eq. (1) in ``problem`` from x_lo.
* ``"current"`` (the convention of ComfyUI ``FlipSigmas`` + euler and of Unsampler): the model is evaluated where
  the latent is, x_hi = anchor + delta * d(x_lo, sigma_lo). At sigma_lo = 0, where d is 0/0, it is evaluated at
  sigma_hi instead; FlipSigmas evaluates that first step at its stand-in 1e-4 for 0, where d is mostly the
  model's error on a clean latent, so from the second step on both agree and the first differs (ours is the
  better one, ``benchmarks/DESIGN_MEASUREMENTS.md``).

Both replace d(x_hi) by a nearby value, which is the whole error of DDIM inversion (Mokady et al. 2023, Sec. 3;
Wallace et al. 2023 "EDICT", Sec. 3.1).
"""
from __future__ import annotations

import torch

from .problem import StepProblem, StepSolution, StepSolver
from .spaces import derivative

CONVENTIONS = ("target", "current")


class DDIMInversion(StepSolver):
    name = "ddim"

    def __init__(self, convention: str = "target"):
        if convention not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
        self.convention = convention

    def solve(self, problem: StepProblem) -> StepSolution:
        x_lo = problem.x_lo
        batch = x_lo.shape[0]
        if self.convention == "current" and problem.sigma_lo > 0:
            d = derivative(x_lo, problem.denoiser(x_lo, problem.sigma_lo), problem.sigma_lo)
            x = problem.image_of(d)
        else:
            x = problem.evaluate(x_lo).image
        nan = torch.full((batch,), float("nan"))
        return StepSolution(x=x, iterations=torch.ones(batch, dtype=torch.long), residual=nan)
