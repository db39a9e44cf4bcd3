"""Edit-friendly stochastic trajectory (Huberman-Spiegelglas, Kulikov & Michaeli, CVPR 2024, "An Edit Friendly
DDPM Noise Space", eq. 6; the inversion behind LEDITS++, Brack et al. 2024).

Instead of solving each ancestral step's implicit equation for a random noise (ReNoise's way, ``renoise``), the
latent at every noise level is drawn independently from the forward marginal, x_hi = a x0 + b eps_hi
(``spaces.add_noise``), and the driver's exact noise correction then solves for the noise that makes the
stochastic step x_hi -> x_lo land exactly (one model call per step). The latents keep the right marginal
statistics whatever the sampler, which matters for the rectified-flow ancestral step: inverting it with an
arbitrary noise divides by its signal factor a_lo / a_down < 1 at every step and inflates the latent.

Deterministic steps (the last one, into sigma 0, for Euler-ancestral and LCM; all of them with eta 0) have no
noise to absorb an error, so they are delegated to ``exact_solver`` (an ``AdaptiveInversion`` by default).
"""
from __future__ import annotations

from typing import Optional

import torch

from .problem import StepProblem, StepSolution, StepSolver
from .spaces import add_noise


class EditFriendly(StepSolver):
    name = "edit_friendly"

    def __init__(self, seed: int = 0, exact_solver: Optional[StepSolver] = None):
        self.seed = int(seed)
        if exact_solver is None:
            from .adaptive import AdaptiveInversion
            exact_solver = AdaptiveInversion()
        self.exact_solver = exact_solver

    def reset(self) -> None:
        self.exact_solver.reset()

    def expected_calls(self, corrected: bool = False) -> int:
        """A stochastic step's only call is the noise correction's; one call per step is budgeted on top for the
        deterministic steps handed to ``exact_solver``."""
        return 1 + int(corrected)

    def noise_for(self, problem: StepProblem) -> torch.Tensor:
        """eps for this level, per sample from (seed + b, step index) so a batch equals its single runs."""
        draws = []
        for b in range(problem.x0.shape[0]):
            g = torch.Generator(device="cpu").manual_seed(self.seed + b + 7919 * (problem.index + 1))
            draws.append(torch.randn(problem.x0.shape[1:], generator=g, dtype=problem.x0.dtype))
        return torch.stack(draws).to(problem.x0.device)

    def solve(self, problem: StepProblem) -> StepSolution:
        if not problem.stochastic:
            return self.exact_solver.solve(problem)
        batch = problem.x0.shape[0]
        x = add_noise(problem.x0, self.noise_for(problem), problem.sigma_hi, problem.parametrization)
        return StepSolution(x=x, iterations=torch.zeros(batch, dtype=torch.long),
                            residual=torch.full((batch,), float("nan")), info={"trajectory": "edit_friendly"})
