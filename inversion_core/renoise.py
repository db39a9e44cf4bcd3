"""ReNoise inversion (Garibi et al., ECCV 2024, "ReNoise: Real Image Inversion Through Iterative Noising").

Alg. 1 / eq. 5-6 of the paper in the per-step form of ``problem`` (eq. 1): starting from x^(0) = x_lo, renoise
K times with the model at the step's target noise level,

    d^(i) = d(x^(i), sigma_hi),   x^(i+1) = anchor + delta * Reg(d^(i)),   i = 0..K      (K+1 model calls)

then, with averaging on, return x = anchor + delta * Reg(sum_i w_i d^(i)) with uniform weights w_i on an index
window [a, b) (the official incremental mean; default (8, 10): the last two of K = 9) or user weights. The
average is taken over the unregularised d^(i), as the official code. Reg (``NoiseRegularizer``, Sec. 4.2) acts on
the noise estimate eps = ``spaces.eps_from_derivative``(x, d) and its change is added to d (the x0 estimate held
fixed, see ``regularize``; for "ve" d is eps itself, and for "flow" this stays finite up to sigma = 1); it runs
on iterates i >= a (with averaging off: i > 0) and on the average, exactly where the official code runs it.
Its patch-KL reference is eps_opt = eps(add_noise(x0, n, sigma_hi)) for one seeded noise n shared by the whole
run and batch (official ``pipe.noise``): +1 model call on steps where the regulariser runs with lambda_kl != 0
(the official code spends it on every step whenever regularisation is configured).

First-step rule (``first_step``), the only special case of the official code:

* ``"official"``: steps whose timestep is < 250 (here: sigma_hi < ``first_step_sigma``, the sigma of timestep
  250, which the host computes) use min(5, K) iterations and average iterates [0, 5). At 50 steps that is a
  quarter of the steps, all averaged with the plain DDIM iterate d^(0), which costs reconstruction accuracy at
  many steps (``benchmarks/DESIGN_MEASUREMENTS.md``).
* ``"first"`` (default): the same special case, but only for the first inversion step (lowest sigma), and its
  average leaves out the DDIM iterate i = 0 and the transient: window [4, 6) over min(5, K) iterations, the last
  two iterates as the official (8, 10) is for K = 9 (``FIRST_WINDOW``). Chosen by measurement on analytic
  mixtures against the other windows [a, 6) and against no rule, which it beats where the fixed-point iteration
  does not settle (``benchmarks/DESIGN_MEASUREMENTS.md``).
* ``"none"``: every step uses ``iterations`` and ``window``.

Diagnostics: ReNoise never evaluates the model at the x it returns, so ``StepSolution.residual`` is the true
relative residual of the last evaluated iterate x^(K) (from its unregularised d^(K)): an estimate of the
returned x's error, not a measurement of it; ``evaluation`` is None.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from .problem import StepProblem, StepSolution, StepSolver
from .regularizers import NoiseRegularizer
from .spaces import add_noise, derivative, eps_from_derivative

FIRST_STEP_RULES = ("first", "official", "none")
OFFICIAL_FIRST_WINDOW = (0, 5)   # src/config.py average_first_step_range
FIRST_WINDOW = (4, 6)            # ours: the last two of min(5, K) + 1 iterates (see the module docstring)


class ReNoise(StepSolver):
    """ReNoise step solver. Defaults are the official ``RunConfig`` (``src/config.py``).

    Args:
        iterations: K, renoising iterations per step (K + 1 model calls; official ``num_renoise_steps`` 9).
        average: average the iterates' d (official ``average_latent_estimations``).
        window: [a, b) index window of the uniform average (official ``average_step_range`` (8, 10)).
        weights: optional per-iterate weights w_0, w_1, ... (normalised; replace ``window`` except on the
            first-step rule's steps); iterates past the list get weight 0.
        first_step: "first" | "official" | "none" (module docstring).
        first_iterations: K on the first-step rule's steps is min(first_iterations, K) (official 5).
        first_window: the average window there (default: (0, 5) for "official", ``FIRST_WINDOW`` for "first").
        first_step_sigma: the "official" rule's threshold (sigma of timestep 250).
        regularizer: a ``NoiseRegularizer`` or None (no regularisation, no extra model call).
        reference_seed: seed of the fixed noise n of eps_opt.
    """

    name = "renoise"

    def __init__(
        self,
        iterations: int = 9,
        average: bool = True,
        window: Sequence[int] = (8, 10),
        weights: Optional[Sequence[float]] = None,
        first_step: str = "first",
        first_iterations: int = 5,
        first_window: Optional[Sequence[int]] = None,
        first_step_sigma: Optional[float] = None,
        regularizer: Optional[NoiseRegularizer] = None,
        reference_seed: int = 0,
    ):
        if iterations < 0 or first_iterations < 0:
            raise ValueError("iterations must be >= 0")
        if first_step not in FIRST_STEP_RULES:
            raise ValueError(f"first_step must be one of {FIRST_STEP_RULES}, got {first_step!r}")
        if first_step == "official" and first_step_sigma is None:
            raise ValueError('first_step="official" needs first_step_sigma (the sigma of timestep 250)')
        self.iterations = int(iterations)
        self.average = bool(average)
        self.window = _check_window(window)
        self.weights = None
        if weights is not None:
            self.weights = [float(w) for w in weights]
            if any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
                raise ValueError("weights must be >= 0 with a positive sum")
        self.first_step = first_step
        self.first_iterations = int(first_iterations)
        if first_window is None:
            first_window = OFFICIAL_FIRST_WINDOW if first_step == "official" else FIRST_WINDOW
        self.first_window = _check_window(first_window)
        self.first_step_sigma = first_step_sigma
        self.regularizer = regularizer
        self.reference_seed = int(reference_seed)
        self._noise = None

    def reset(self) -> None:
        self._noise = None
        if self.regularizer is not None:
            self.regularizer.reset()

    # -- schedule ---------------------------------------------------------------------------------------------

    def is_first_rule_step(self, problem: StepProblem) -> bool:
        if self.first_step == "first":
            return problem.inversion_step == 0
        if self.first_step == "official":
            return problem.sigma_hi < float(self.first_step_sigma)
        return False

    def schedule(self, problem: StepProblem):
        """(K, weights[K+1]) for this step; weights is None without averaging."""
        if self.is_first_rule_step(problem):
            iterations, window, weights = min(self.first_iterations, self.iterations), self.first_window, None
        else:
            iterations, window, weights = self.iterations, self.window, self.weights
        if not self.average:
            return iterations, None
        if weights is None:
            weights = [1.0 if window[0] <= i < window[1] else 0.0 for i in range(iterations + 1)]
        weights = (list(weights) + [0.0] * (iterations + 1))[: iterations + 1]
        return iterations, weights

    def model_calls(self, problem: StepProblem) -> int:
        """Model calls ``solve`` will make for this problem: K + 1, plus 1 for eps_opt where needed."""
        iterations, weights = self.schedule(problem)
        return iterations + 1 + int(self._needs_reference(iterations, weights))

    def expected_calls(self, corrected: bool = False) -> int:
        """K + 1, plus 1 for eps_opt when the patch-KL term is on, plus the evaluation at the answer a noise
        correction needs (ReNoise does not evaluate its answer); the first-step rule's steps make fewer."""
        reference = self.regularizes and self.regularizer.needs_reference
        return self.iterations + 1 + int(reference) + int(corrected)

    @property
    def regularizes(self) -> bool:
        return self.regularizer is not None and self.regularizer.enabled

    @staticmethod
    def _regularizes_iterate(i: int, weights) -> bool:
        if weights is None:
            return i > 0
        start = next((k for k, w in enumerate(weights) if w > 0), len(weights))
        return i >= start

    def _needs_reference(self, iterations, weights) -> bool:
        if not self.regularizes or not self.regularizer.needs_reference:
            return False
        averaged = weights is not None and sum(weights) > 0
        return averaged or any(self._regularizes_iterate(i, weights) for i in range(iterations + 1))

    # -- solve ------------------------------------------------------------------------------------------------

    def reference_noise(self, problem: StepProblem) -> torch.Tensor:
        """The run's fixed noise n [1, *shape] (seeded; shared by every sample of the batch)."""
        like = problem.x_lo
        key = (tuple(like.shape[1:]), like.dtype, like.device)
        if self._noise is None or self._noise[0] != key:
            generator = torch.Generator(device="cpu").manual_seed(self.reference_seed)
            noise = torch.randn((1, *like.shape[1:]), generator=generator, dtype=like.dtype).to(like.device)
            self._noise = (key, noise)
        return self._noise[1]

    def reference_eps(self, problem: StepProblem) -> torch.Tensor:
        """eps_opt: the noise predicted at the forward-noised clean latent (one model call)."""
        x0 = problem.x0.to(problem.x_lo.dtype)
        x_fwd = add_noise(x0, self.reference_noise(problem).expand_as(x0), problem.sigma_hi, problem.parametrization)
        d = derivative(x_fwd, problem.denoiser(x_fwd, problem.sigma_hi), problem.sigma_hi)
        return eps_from_derivative(x_fwd, d, problem.sigma_hi, problem.parametrization)

    def regularize(self, problem: StepProblem, x: torch.Tensor, d: torch.Tensor, eps_opt) -> torch.Tensor:
        """Reg applied to the noise estimate eps implied by (x, d); the change is applied to d with the x0
        estimate x - sigma * d held fixed: d' = d + (Reg(eps) - eps). For "ve" (d = eps) that is simply
        d' = Reg(eps); for "flow" it stays finite at sigma -> 1, where holding x fixed instead
        (d = (eps - x) / (1 - sigma)) would scale the change by 1 / (1 - sigma)."""
        eps = eps_from_derivative(x, d, problem.sigma_hi, problem.parametrization)
        return d + (self.regularizer(eps, eps_opt, problem.monitor) - eps)

    def solve(self, problem: StepProblem) -> StepSolution:
        iterations, weights = self.schedule(problem)
        regularizes = self.regularizes
        eps_opt = self.reference_eps(problem) if self._needs_reference(iterations, weights) else None

        x = problem.x_lo
        weighted_d = weighted_x = None
        total = 0.0
        residual = None
        for i in range(iterations + 1):
            problem.monitor.check()
            ev = problem.evaluate(x)
            residual = ev.residual
            d = ev.d
            w = weights[i] if weights is not None else 0.0
            if w > 0:
                weighted_d = w * d if weighted_d is None else weighted_d + w * d
                weighted_x = w * x if weighted_x is None else weighted_x + w * x
                total += w
            if regularizes and self._regularizes_iterate(i, weights):
                d = self.regularize(problem, x, d, eps_opt)
            x = problem.image_of(d)
        if weighted_d is not None:
            d_mean, x_mean = weighted_d / total, weighted_x / total
            if regularizes:
                d_mean = self.regularize(problem, x_mean, d_mean, eps_opt)
            x = problem.image_of(d_mean)

        batch = x.shape[0]
        return StepSolution(
            x=x,
            iterations=torch.full((batch,), iterations + 1, dtype=torch.long),
            residual=problem.relative_error(residual).detach().cpu(),
            info={"renoise_iterations": iterations, "averaged": weighted_d is not None,
                  "regularized": regularizes, "reference_call": eps_opt is not None,
                  "residual_of": "last_iterate"},
        )


def _check_window(window) -> tuple:
    a, b = (int(v) for v in window)
    if not 0 <= a <= b:
        raise ValueError(f"an averaging window must satisfy 0 <= a <= b, got {window}")
    return a, b
