"""EasyInv (Zhang et al., ICML 2025, "EasyInv: Toward Fast and Better DDIM Inversion").

DDIM inversion (one model call per step, at the target noise level: ``ddim`` "target") whose latent is blended
with the previous one on a window of steps, the paper's constant-gain "Kalman" update (eq. 16 as implemented):

    z~_i = eta * z_i + (1 - eta) * z~_{i-1}     for inversion steps i with start*N < i < (start+length)*N

(i = 0 is the first inversion step, lowest noise; N the number of steps). The official code has two orders:

* ``"before"`` (``utilsV14.py invert(opt_invert=True)`` and ``EasyInv_SDXL/utils.py``, the code behind the
  paper's results; default): eps is predicted at the unblended input latent x_lo, the input is blended with the
  previous step's (blended) input, and the inverse step is taken from the blend with that eps.
* ``"after"`` (``example.py``): the step's output is blended with the previous output (= this step's x_lo).

The blend is taken in the model's own latent scale, as the official code does (it blends diffusers latents):
the variance-preserving latent z = x / sqrt(1 + sigma^2) for "ve" (exactly the SD latent for eps/v models) and
the latent itself for "flow". Blending ComfyUI's ve latents directly would mix different signal scales.

Zero extra model calls. ``EASYINV_PRESETS`` holds the official settings (potato-kitty/EasyInv:
``utilsV14.py`` for SD 1.4, ``EasyInv_SDXL/utils.py`` for SDXL).
"""
from __future__ import annotations

from typing import Optional

import torch

from .problem import StepProblem, StepSolution, StepSolver

EASYINV_PRESETS = {
    "sd1": dict(eta=0.5, start=0.05, length=0.2),     # utilsV14.py (SD 1.4, N = 50: steps 3..12)
    "sdxl": dict(eta=0.8, start=0.85, length=0.1),    # EasyInv_SDXL/utils.py
}
ORDERS = ("before", "after")


def model_scale(sigma: float, parametrization: str) -> float:
    """Factor from ComfyUI's latent to the model's own latent: 1/sqrt(1 + sigma^2) (ve), 1 (flow)."""
    return 1.0 / (1.0 + sigma * sigma) ** 0.5 if parametrization == "ve" else 1.0


def blend(x: torch.Tensor, sigma: float, previous: torch.Tensor, previous_sigma: float, eta: float,
          parametrization: str) -> torch.Tensor:
    """eta * x + (1 - eta) * previous in the model's latent scale, returned at x's noise level ``sigma``."""
    s, s_prev = model_scale(sigma, parametrization), model_scale(previous_sigma, parametrization)
    return (eta * s * x + (1.0 - eta) * s_prev * previous) / s


class EasyInv(StepSolver):
    """EasyInv step solver.

    Args:
        eta: blend weight of the current latent (official ``or_latent_idx``; sd1 0.5, sdxl 0.8).
        start, length: the window (start*N, (start+length)*N) of inversion step indices, both ends excluded
            (official ``inject_steps``, ``inject_len``).
        order: "before" (default) or "after" (module docstring).
        num_steps: N; by default inferred from each problem as index + inversion_step + 1.
    """

    name = "easyinv"

    def __init__(self, eta: float = 0.5, start: float = 0.05, length: float = 0.2, order: str = "before",
                 num_steps: Optional[int] = None):
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {eta}")
        self.eta = float(eta)
        self.start = float(start)
        self.length = float(length)
        self.order = order
        self.num_steps = num_steps
        self._previous = None    # "before": (inversion_step, blended input, its sigma)

    @classmethod
    def preset(cls, name: str, **overrides) -> "EasyInv":
        if name not in EASYINV_PRESETS:
            raise ValueError(f"preset must be one of {tuple(EASYINV_PRESETS)}, got {name!r}")
        return cls(**{**EASYINV_PRESETS[name], **overrides})

    def reset(self) -> None:
        self._previous = None

    def blends(self, problem: StepProblem) -> bool:
        """Whether inversion step i = problem.inversion_step lies strictly inside the window."""
        n = self.num_steps if self.num_steps is not None else problem.index + problem.inversion_step + 1
        i = problem.inversion_step
        return i > 0 and self.start * n < i < (self.start + self.length) * n

    def solve(self, problem: StepProblem) -> StepSolution:
        x_lo, step, param = problem.x_lo, problem.inversion_step, problem.parametrization
        active = self.blends(problem)
        ev = problem.evaluate(x_lo)                 # DDIM, model at the target sigma with the known latent
        if self.order == "after":
            x = ev.image
            if active:
                x = blend(x, problem.sigma_hi, x_lo, problem.sigma_lo, self.eta, param)
        else:
            x_in = x_lo
            previous = self._previous
            if active and previous is not None and previous[0] == step - 1 and previous[1].shape == x_lo.shape:
                x_in = blend(x_lo, problem.sigma_lo, previous[1], previous[2], self.eta, param)
            self._previous = (step, x_in, problem.sigma_lo)
            # the anchor is affine in x_lo with slope 1/out_scale (steps.ForwardStep.anchor)
            x = ev.image if x_in is x_lo else ev.image + (x_in - x_lo) / problem.error_scale
        batch = x.shape[0]
        return StepSolution(x=x, iterations=torch.ones(batch, dtype=torch.long),
                            residual=torch.full((batch,), float("nan")), info={"blended": active})
