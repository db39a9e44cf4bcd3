"""RNRI: regularised Newton-Raphson inversion (Samuel et al., "Lightning-Fast Image Inversion and Editing for
Text-to-Image Diffusion Models", ICLR 2025, arXiv 2312.12540; code dvirsamuel/NewtonRaphsonInversion).

The paper solves each step's implicit equation (``problem``, eq. 1: r(x) = G(x) - x = 0) by Newton-Raphson on a
SCALAR function of the latent -- a norm of r plus a Gaussian prior on x_t given x_0 (the forward marginal
q(x_t | x_0) = N(a x0, b^2 I)) that keeps the answer in distribution. For a scalar
F: R^n -> R the Newton-Raphson root step is the minimum-norm solution of F(x) + grad F . s = 0,

    x <- x - F(x) * grad F(x) / ||grad F(x)||^2                                            (NR)

Two variants:

* ``"released"`` -- the official code (``SDXLDDIMPipeline.inversion_step``): Jacobian-free. With y = G(x),
  f = |y - x| + (alpha / 2) ((y - a x0) / b)^2 element-wise and F = mean(f) per sample, the code treats y as a
  constant, so grad F = -sign(y - x) / n and (NR) becomes x <- x + F * sign(y - x): every element moves by the
  same amount towards y (the official 1 / (64*64*4) normalisation is the per-sample mean here, so any latent size
  works). It keeps the y with the lowest F per sample; ``iterations`` = 2 (``inv_hp``), alpha = 0.1. Costs
  ``iterations`` model calls, no backward; the returned y is not evaluated (``evaluation`` None).
* ``"newton"`` -- the paper's method with the model Jacobian, by autograd (one vector-Jacobian product per
  iteration). The naive transcription (F = ||r||^2 + prior NLL, (NR) from x_lo, return the last iterate) was
  measured to be no better than DDIM inversion (see the benchmark): squaring F halves the Newton step (with
  J_G = 0 it is x + r / 2), the never-vanishing NLL makes (NR) overshoot near the root, and the last iterate of an
  unsafeguarded Newton iteration is often not its best. What works, and is what we implement:

      F(x) = ||r(x)||_rms * (1 + lambda * max(0, P(x) - 1/2)),   P(x) = mean(-log q(x | x0)) + const
           = ||r(x)||_rms * (1 + lambda * max(0, nu(x)^2 - 1) / 2),   nu(x) = ||(x - a x0) / b||_rms     (F)

  Newton root-finding on the RMS norm of the residual (with J_G = 0, (NR) is exactly the fixed-point step
  x + r, the step ReNoise repeats; with the true Jacobian it is a scaled Gauss-Newton step), weighted by the
  Gaussian prior's excess over its typical value (P = 1/2 per element for a sample of q(x_t | x_0)). The prior
  enters multiplicatively so that the root of (F) is exactly the root of r -- an additive prior has no root, so
  root-finding on it stalls at a biased point (measured: ``benchmarks/DESIGN_MEASUREMENTS.md``) -- while
  iterates drifting into atypical, out-of-distribution solutions (the paper's motivation for the prior) get a
  larger objective and a gradient pulling them back. The iteration starts at DDIM inversion's answer G(x_lo)
  (one call without gradient), takes ``iterations`` (NR) steps with per-sample step lengths, evaluates the last
  iterate, and returns the evaluated iterate with the lowest F per sample (with its evaluation, so the noise
  correction needs no extra call).
  Cost: ``iterations`` + 2 forward calls and ``iterations`` backward passes (``StepSolution.info``).

Gradients inside ComfyUI: the host runs everything under ``torch.inference_mode()``. The newton variant enters
``torch.inference_mode(False)`` and ``torch.enable_grad()``, differentiates w.r.t. a fresh
``x.detach().clone().requires_grad_(True)``, detaches between iterations and makes its non-gradient calls under
``torch.no_grad()``. The model must still have weights usable by autograd (the node clones them); if the
backward pass fails (inference-tensor weights, kernels without backward such as sage attention or fp8 matmuls,
out of memory) or the model's output is detached from its input (a model run under ``no_grad``),
``GradientUnavailable`` is raised so the caller can fall back to the released variant or to ReNoise.
"""
from __future__ import annotations

import torch

from .problem import BestIterate, Evaluation, StepProblem, StepSolution, StepSolver, batch_rms
from .spaces import per_sample, signal_noise

VARIANTS = ("newton", "released")
DEFAULT_ITERATIONS = {"newton": 2, "released": 2}


class GradientUnavailable(RuntimeError):
    """The model could not be differentiated (no backward, inference-tensor weights, out of memory, ...)."""


def _detached(ev: Evaluation) -> Evaluation:
    return Evaluation(*(t.detach() for t in (ev.x, ev.denoised, ev.d, ev.image, ev.residual)))


class RNRI(StepSolver):
    """Regularised Newton-Raphson inversion (module docstring).

    Args:
        variant: "newton" (paper, autograd Jacobian) or "released" (official Jacobian-free code).
        iterations: Newton iterations per step (default 2 for both, the official ``n_iters``).
        prior_weight: lambda / alpha, the weight of the Gaussian prior q(x_t | x_0) (official alpha = 0.1).
    """

    name = "rnri"

    def __init__(self, variant: str = "newton", iterations: int | None = None, prior_weight: float = 0.1):
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        self.iterations = DEFAULT_ITERATIONS[variant] if iterations is None else int(iterations)
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        self.prior_weight = float(prior_weight)

    def expected_calls(self, corrected: bool = False) -> int:
        """newton: the DDIM start, one per iteration and the evaluation of the last iterate (its answer is
        evaluated); released: one per iteration, and its answer is not evaluated."""
        if self.variant == "newton":
            return self.iterations + 2
        return self.iterations + int(corrected)

    def solve(self, problem: StepProblem) -> StepSolution:
        if self.variant == "released":
            return self._solve_released(problem)
        return self._solve_newton(problem)

    def _prior_scale(self, problem: StepProblem, like: torch.Tensor):
        a, b = signal_noise(torch.as_tensor(problem.sigma_hi, dtype=like.dtype, device=like.device),
                            problem.parametrization)
        return a, b

    # -- the official Jacobian-free surrogate ------------------------------------------------------------------
    def _solve_released(self, problem: StepProblem) -> StepSolution:
        x = problem.x_lo
        a, b = self._prior_scale(problem, x)
        x0 = problem.x0.to(x.dtype)
        best = BestIterate()                        # keeps the y = G(x) with the lowest mean f per sample
        with torch.no_grad():
            for _ in range(self.iterations):
                problem.monitor.check()
                ev = problem.evaluate(x)
                y = ev.image
                f = (y - x).abs() + 0.5 * self.prior_weight * ((y - a * x0) / b) ** 2
                f_mean = f.flatten(1).mean(dim=1)
                best.offer(ev, f_mean)
                x = x + per_sample(f_mean, x) * torch.sign(y - x)
        batch = x.shape[0]
        nan = torch.full((batch,), float("nan"))
        return StepSolution(
            x=best.evaluation.image, iterations=torch.full((batch,), self.iterations, dtype=torch.long),
            residual=nan, info={"variant": "released", "model_calls": self.iterations, "backward_passes": 0,
                                "objective": best.score.tolist()},
        )

    # -- Newton-Raphson with the model Jacobian ----------------------------------------------------------------
    def objective(self, problem: StepProblem, ev: Evaluation) -> torch.Tensor:
        """(F): per-sample RMS residual weighted by the prior's excess over its typical value, [B]."""
        value = batch_rms(ev.residual)
        if self.prior_weight:
            a, b = self._prior_scale(problem, ev.x)
            nu2 = ((ev.x - a * problem.x0.to(ev.x.dtype)) / b).flatten(1).pow(2).mean(dim=1)
            value = value * (1.0 + 0.5 * self.prior_weight * torch.relu(nu2 - 1.0))
        return value

    def _value_and_grad(self, problem: StepProblem, x: torch.Tensor):
        xg = x.detach().clone().requires_grad_(True)
        try:
            ev = problem.evaluate(xg)
            if not ev.denoised.requires_grad:
                raise RuntimeError("the model output is detached from its input (no autograd graph)")
            value = self.objective(problem, ev)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        except (RuntimeError, NotImplementedError) as error:
            raise GradientUnavailable(
                f"RNRI (newton) could not differentiate the model: {error}. Use variant='released' or a "
                "fixed-point method (ReNoise / adaptive) for this model."
            ) from error
        return _detached(ev), value.detach(), grad.detach()

    def _solve_newton(self, problem: StepProblem) -> StepSolution:
        batch = problem.x_lo.shape[0]
        with torch.inference_mode(False), torch.enable_grad():
            with torch.no_grad():
                x = problem.evaluate(problem.x_lo.clone()).image       # DDIM inversion's answer G(x_lo)
            best = BestIterate()
            for _ in range(self.iterations):
                problem.monitor.check()
                ev, value, grad = self._value_and_grad(problem, x)
                best.offer(ev, value)
                # (NR) per sample; a sample at its root (F = 0, where the RMS has no gradient) stays put
                usable = torch.isfinite(grad).flatten(1).all(dim=1) & (value > 0)
                grad = torch.nan_to_num(grad) * per_sample(usable.to(grad.dtype), grad)
                norm2 = grad.flatten(1).pow(2).sum(dim=1)
                step = torch.where(usable & (norm2 > 0), value / norm2.clamp_min(torch.finfo(norm2.dtype).tiny),
                                   torch.zeros_like(value))
                x = ev.x - per_sample(step, grad) * grad
            problem.monitor.check()
            with torch.no_grad():
                ev = problem.evaluate(x)
                best.offer(ev, self.objective(problem, ev))
        answer = best.evaluation
        residual = problem.relative_error(answer.residual).detach().cpu()
        return StepSolution(
            x=answer.x, iterations=torch.full((batch,), self.iterations, dtype=torch.long), residual=residual,
            evaluation=answer,
            info={"variant": "newton", "model_calls": self.iterations + 2, "backward_passes": self.iterations,
                  "objective": best.score.tolist()},
        )
