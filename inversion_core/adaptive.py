"""Adaptive exact inversion: Anderson-accelerated fixed point on eq. (1), verified, with a ReNoise fallback.

Our own method (beyond the papers), the recommended default when the goal is exact reconstruction. Each step
solves ``problem``'s eq. (1), x = G(x) = anchor + delta * d(x, sigma_hi), with

* **Anderson acceleration**, type II (Anderson 1965; Walker & Ni 2011, "Anderson acceleration for fixed-point
  iterations", SIAM J. Numer. Anal. 49(4), eq. (2.2) / Alg. AA): with residuals f_k = G(x_k) - x_k, images
  g_k = G(x_k) and the last m_k <= m differences dF = [f_{j+1} - f_j], dG = [g_{j+1} - g_j], dX = [x_{j+1} - x_j],

      gamma_k = argmin_gamma ||f_k - dF gamma||^2 + lambda_k ||gamma||^2                        (AA-LS)
      x_{k+1} = x_k + beta f_k - (dX + beta dF) gamma_k      (= g_k - dG gamma_k for beta = 1)   (AA-step)

  solved PER SAMPLE (each latent its own small m x m system; lambda_k = ``regularization`` * tr(dF^T dF) / m_k,
  Tikhonov as in Walker & Ni Sec. 5 / Fang & Saad 2009), no damping (beta = 1) by default.
* **Safeguards**: an extrapolation whose coefficients blow up (||gamma||_1 > ``max_coefficient``, or non-finite) is
  replaced by the plain fixed-point step x_{k+1} = g_k; a residual that grows past ``restart_growth`` times the
  best one so far restarts that sample's memory from the best iterate (x_{k+1} = G(x_best)).
* **Warm start** from the previous step's derivative: x^0 = anchor + delta_k * d(x_lo, sigma_lo), where d(x_lo,
  sigma_lo) is the derivative the previous step evaluated at its answer (= x_lo). For a deterministic step solved
  exactly this is x^0 = x_lo + (delta_k / delta_{k-1}) (x_lo - x_lo_prev): the previous increment extrapolated, no
  model call. The first step (or a step without a usable previous derivative) starts at x_lo, so its first
  evaluation is DDIM inversion's G(x_lo).
* **Per-sample stopping**: a sample stops once its true landing error ``problem.relative_error`` (the RMS error with
  which the forward step from x lands on x_lo, relative to x_lo) is <= ``tolerance`` times the step's own relative
  displacement ||G(x) - x_lo|| / ||x_lo|| (capped at 1); it is then frozen (``keep_where``) while the others go
  on, at most ``max_calls`` model calls per step; when the images are independent (``StepProblem.independent``)
  a frozen sample also leaves the batch the model evaluates. Landing errors add up along the
  trajectory (the reconstruction error is about their sum, each carried forward by the sampler), so a bound relative
  to the step's displacement keeps the total at about ``tolerance`` times the trajectory's path length whatever the
  number of steps N, whereas a bound relative to x_lo alone lets it grow with N (measured on the Gaussian mixture,
  ve, tolerance 1e-3: 103 dB at N=4 but 61 dB at N=50, where warm-started steps stop after one call).
  ``step_relative=False`` restores that per-step bound. Easy steps stop after 2-4 calls, hard ones use the budget.
* **Stall stop on the intermediate steps**: a sample whose best landing error has not fallen below
  ``stall_ratio`` times its value ``stall_window`` calls earlier stops too. Where (1) has no solution near the data
  (close modes, thin directions) Anderson's error plateaus, and the calls after it change neither the landing nor
  what the end-to-end check keeps. The window (12 calls) must outlast Anderson's excursions: on the 4-component
  mixture the top step's error wandered 1-6x above its best for 10 calls and then converged by call 21, which an
  8-call window froze. The final step is exempt: there Anderson's error can sit flat for 16-24 calls and then fall
  2-5x (measured per image on the learned models), and that step's error reaches the user undamped.
* **The final step** (the forward step that lands on sigma_lo = 0, x_0 = D(x_1, sigma_1) for Euler) gets its own,
  larger budget ``final_max_calls``. There G(x) = x + x_0 - D(x, sigma_1), so G' = I - dD/dx with dD/dx =
  Cov[x_0 | x] / sigma_1^2 (Tweedie's second-order identity): in every direction in which the data are thinner
  than sigma_1 (std s << sigma_1) that eigenvalue is about s^2 / sigma_1^2, so G' is close to I and the fixed point,
  accelerated or not, contracts slowest exactly there; and this step's landing error enters the reconstruction
  as it is, with no later step to shrink it (the k = 0 term of ``verified``'s (V1)). Spending the calls there and
  not on the other steps is where the end-to-end error responds (measured per image in the reconstruction
  benchmark).
  That step is also **over-relaxed**: beta = ``final_relaxation`` (1.5) in (AA-step). For the plain iteration the
  error propagates by I - beta dD/dx; with the eigenvalues lambda of dD/dx = Cov[x_0 | x] / sigma_1^2 in [0, 1)
  (exactly so for Gaussian data, C (C + sigma_1^2 I)^-1), beta = 1 contracts the slow, thin directions by
  1 - lambda and beta = 1.5 by 1 - 1.5 lambda, while |1 - beta lambda| <= 1/2 still holds where lambda is near 1
  (beta = 2, Richardson's optimum for lambda_min -> 0, stops contracting there). Measured per image on the
  learned models' worst crops: 3-7 dB more at the same calls; beta = 1.75 and 2 gave less than 1.5.
* **The free last step** (``free_last_step``, for callers that verify the whole trajectory themselves, as ``verified``
  does by replaying the sampler). The evaluation at x_k already fixes the next iterate x_{k+1} of (AA-step), the point
  the next call would evaluate only to verify it. For G affine near the solution, G(x) = J x + c, (AA-step) with beta
  = 1 gives x_{k+1} = G(y) with y = x_k - dX gamma_k, so its landing error is r(x_{k+1}) = J r(y) = J (f_k - dF
  gamma_k), and since gamma = 0 is feasible in (AA-LS), |r(x_{k+1})| <= q |f_k| with q = ||J|| (the plain step, no
  memory, is the case gamma = 0): the a posteriori estimate of the contraction mapping theorem (Ortega & Rheinboldt
  1970, "Iterative Solution of Nonlinear Equations in Several Variables", Sec. 12.1), carried over to Anderson's
  iterate. q is estimated per sample as the largest secant ratio |G(x_j) - G(x_{j-1})| / |x_j - x_{j-1}| seen in the
  step (at most 1; a secant ratio can only underestimate ||J||). A sample stops once q |f_k| meets the tolerance and
  answers x_{k+1} without the call. On the intermediate steps delta * dd/dx is small, so q is well below 1 and a
  sample stops one call sooner. The final step (its error reaches the user undamped, and there q ~ 1 in the thin
  directions) and stochastic steps (their noise correction needs the model at the answer) keep the evaluated iterate.
  The reported residual of such a sample is the estimate q |f_k|, not a measurement.
* **An end-to-end stop on the final step** (``final_stop_psnr``). That step's landing error is the k = 0 term of
  ``verified``'s (V1): it reaches the reconstruction as it is. A sample whose final landing alone reaches
  ``final_stop_psnr`` against x_0 (``metrics.psnr``'s data range) stops there; ``verified`` sets it ``HEADROOM_DB``
  above the end-to-end target, where further calls change nothing a user can see.
* **The final step's rescue** (``final_rescue_psnr``). A sample whose final landing alone is still below the
  end-to-end target when ``final_max_calls`` are spent cannot reach it, whatever the other steps do; it goes on for
  ``final_rescue_calls`` more, while the others stop. This is the cheapest place for the calls such an image needs:
  the final step is solved first (inversion runs upward from sigma 0), so nothing above it has to be solved again,
  whereas a ``verified`` defect-correction pass re-solves all N steps and, where the final step's landing explains
  the shortfall, mostly re-solves that same equation.
* **Verify and fall back**: the answer is an *evaluated* iterate (the best one per sample; the free last step
  excepted), so its landing error is known exactly -- no residual estimate is trusted, the model was called at exactly
  the returned x (the last call of the budget is that verification), and that evaluation is handed to the driver
  (``StepSolution.evaluation``) so the noise correction of stochastic samplers needs no extra call. Extrapolating
  solvers can jump into another basin of the data, where an unverified extrapolation looks converged; a sample whose
  verified error is still above ``fallback_tolerance`` and which the acceleration did not improve by ``fallback_gain``
  over one plain fixed-point step is redone by the ``fallback`` solver (default ReNoise with averaging, Garibi et al.
  2024, eq. 5 + Sec. 4.2), whose answer is evaluated too (one call) and kept per sample only where it lands better.
  (Steps that are merely hard -- few-step inversions often have no exact solution near the data -- show a large but
  steadily reduced error and are not redone.)
"""
from __future__ import annotations

from typing import Optional

import torch

from .metrics import psnr_of_rms, rms_of_psnr
from .problem import Evaluation, StepProblem, StepSolution, StepSolver, batch_rms, keep_where, merge_evaluations
from .renoise import ReNoise


def anderson_coefficients(residual: torch.Tensor, d_residual: torch.Tensor, valid: torch.Tensor,
                          regularization: float) -> torch.Tensor:
    """Per-sample Tikhonov-regularised least squares (AA-LS).

    residual [B, n], d_residual [B, n, m], valid [B, m] (columns outside a sample's memory) -> gamma [B, m].
    Invalid columns get gamma = 0 exactly (zero column, unit diagonal); the system is solved in float64 and a
    sample whose system is singular gets NaN coefficients (rejected by the caller).
    """
    df = d_residual.to(torch.float64) * valid.unsqueeze(1)
    f = residual.to(torch.float64)
    gram = df.transpose(1, 2) @ df                                       # [B, m, m]
    rhs = (df.transpose(1, 2) @ f.unsqueeze(2)).squeeze(2)               # [B, m]
    m_valid = valid.sum(dim=1).clamp_min(1)
    scale = torch.diagonal(gram, dim1=1, dim2=2).sum(dim=1) / m_valid    # tr(dF^T dF) / m_k
    eps = torch.finfo(torch.float64).eps
    ridge = max(regularization, eps) * scale + torch.finfo(torch.float64).tiny
    diag = ridge.unsqueeze(1) * valid + (1.0 - valid)
    gram = gram + torch.diag_embed(diag)
    gamma, info = torch.linalg.solve_ex(gram, rhs.unsqueeze(2))
    gamma = gamma.squeeze(2) * valid
    # a (numerically) singular system gives NaN coefficients: the caller takes the plain step for that sample
    return torch.where((info != 0).unsqueeze(1), torch.full_like(gamma, float("nan")), gamma)


class AdaptiveInversion(StepSolver):
    """Anderson-accelerated exact inversion with per-sample stopping and verify-and-fallback (see module doc).

    Args:
        tolerance: stop a sample once its relative landing error (``StepProblem.relative_error``) is <= this times
            the step's relative displacement (capped at 1; see ``step_relative``).
        max_calls: model calls per step for the accelerated iteration, INCLUDING the evaluation at the returned x
            (the verification); the fallback, when it runs, costs its own calls plus one verification call.
        final_max_calls: the same budget for the final denoising step (the one that lands on sigma = 0); default
            ``2 * max_calls`` (see "The final step" in the module docstring).
        memory: Anderson memory m (number of secant pairs; 2-3 works best on diffusion models).
        damping: beta in (AA-step); 1 = undamped.
        regularization: Tikhonov weight of (AA-LS), relative to the mean squared column norm.
        max_coefficient: reject an extrapolation with ||gamma||_1 above this (take the fixed-point step instead).
        restart_growth: restart a sample's memory from its best iterate when its residual exceeds this multiple of
            the best residual so far.
        warm_start: start from anchor + delta * (previous step's derivative) instead of x_lo.
        step_relative: scale the stopping tolerance by min(1, ||G(x) - x_lo|| / ||x_lo||), the step's own relative
            displacement, so the reconstruction error stays about the same at any number of steps; False: the
            tolerance bounds each step's landing error relative to x_lo.
        fallback: solver to redo poorly converged samples with; "renoise" (default: ReNoise with averaging, its
            defaults), any ``StepSolver``, or None to disable.
        fallback_tolerance: relative landing error above which a sample may be redone by the fallback; default
            ``max(10 * tolerance, 1e-2)``.
        fallback_gain: ... and only if the accelerated answer is not at least this many times better than the
            first plain fixed-point iterate G(x^0) (a step that is merely hard, where the acceleration still
            gained, is not redone); ``float("inf")`` redoes every sample above ``fallback_tolerance``.
        final_relaxation: beta in (AA-step) on the final step (over-relaxation; in (0, 2)).
        stall_window, stall_ratio: on every step but the final one, stop a sample whose best error is above
            ``stall_ratio`` times its best ``stall_window`` calls earlier (0: never).
        free_last_step: on deterministic intermediate steps, stop a sample once the estimated landing error of its
            next iterate meets the tolerance and answer that iterate without the call that would verify it (module
            docstring); only for callers that verify the trajectory end to end.
        final_stop_psnr: stop a sample on the final step once its landing error alone reaches this PSNR (dB,
            ``metrics.psnr``'s per-image data range); None: the tolerance alone decides.
        final_rescue_psnr, final_rescue_calls: a sample whose final landing is still below ``final_rescue_psnr``
            (dB) when ``final_max_calls`` are spent goes on for up to ``final_rescue_calls`` more (default
            ``final_max_calls``); None: no rescue.
    """

    name = "adaptive"

    def __init__(
        self,
        tolerance: float = 1e-3,
        max_calls: int = 30,
        final_max_calls: Optional[int] = None,
        memory: int = 3,
        damping: float = 1.0,
        regularization: float = 1e-10,
        max_coefficient: float = 1e3,
        restart_growth: float = 10.0,
        warm_start: bool = True,
        step_relative: bool = True,
        fallback="renoise",
        fallback_tolerance: Optional[float] = None,
        fallback_gain: float = 2.0,
        stall_window: int = 12,
        stall_ratio: float = 0.95,
        final_relaxation: float = 1.5,
        free_last_step: bool = False,
        final_stop_psnr: Optional[float] = None,
        final_rescue_psnr: Optional[float] = None,
        final_rescue_calls: Optional[int] = None,
    ):
        if max_calls < 1:
            raise ValueError("max_calls must be >= 1")
        if memory < 0:
            raise ValueError("memory must be >= 0")
        if not 0.0 < damping <= 1.0:
            raise ValueError("damping must be in (0, 1]")
        self.tolerance = float(tolerance)
        self.max_calls = int(max_calls)
        self.final_max_calls = 2 * self.max_calls if final_max_calls is None else int(final_max_calls)
        if self.final_max_calls < 1:
            raise ValueError("final_max_calls must be >= 1")
        self.memory = int(memory)
        self.damping = float(damping)
        self.regularization = float(regularization)
        self.max_coefficient = float(max_coefficient)
        self.restart_growth = float(restart_growth)
        self.warm_start = bool(warm_start)
        self.step_relative = bool(step_relative)
        if fallback == "renoise":
            fallback = ReNoise()
        self.fallback: Optional[StepSolver] = fallback
        self.fallback_tolerance = max(10 * self.tolerance, 1e-2) if fallback_tolerance is None \
            else float(fallback_tolerance)
        self.fallback_gain = float(fallback_gain)
        if not 0.0 < final_relaxation < 2.0:
            raise ValueError("final_relaxation must be in (0, 2)")
        self.final_relaxation = float(final_relaxation)
        self.stall_window = int(stall_window)
        self.stall_ratio = float(stall_ratio)
        self.free_last_step = bool(free_last_step)
        self.final_stop_psnr = None if final_stop_psnr is None else float(final_stop_psnr)
        self.final_rescue_psnr = None if final_rescue_psnr is None else float(final_rescue_psnr)
        self.final_rescue_calls = self.final_max_calls if final_rescue_calls is None else int(final_rescue_calls)
        if self.final_rescue_calls < 0:
            raise ValueError("final_rescue_calls must be >= 0")
        self._previous = None     # (inversion_step, shape, derivative at the previous answer)

    def reset(self) -> None:
        self._previous = None
        if self.fallback is not None:
            self.fallback.reset()

    def expected_calls(self, corrected: bool = False) -> int:
        """An estimate: easy steps stop after 2-4 calls, hard ones use ``max_calls``; 6 unless the budget is less."""
        return min(self.max_calls, 6) + int(corrected)

    # -- the accelerated iteration -------------------------------------------------------------------------------
    def _start(self, problem: StepProblem) -> torch.Tensor:
        prev = self._previous
        if (self.warm_start and prev is not None and prev[0] == problem.inversion_step - 1
                and prev[1] == tuple(problem.x_lo.shape) and problem.sigma_lo > 0):
            return problem.image_of(prev[2].to(problem.x_lo.dtype))
        return problem.x_lo

    def _threshold(self, problem: StepProblem, ev: Evaluation) -> torch.Tensor:
        """Per-sample stopping threshold on ``relative_error``: the tolerance, scaled by the step's displacement;
        on the final step at least the error at which its landing reaches ``final_stop_psnr``."""
        if not self.step_relative:
            threshold = torch.full((ev.x.shape[0],), self.tolerance, dtype=torch.float64, device=ev.x.device)
        else:
            displacement = batch_rms(ev.image - problem.x_lo) / batch_rms(problem.x_lo).clamp_min(1e-8)
            threshold = self.tolerance * displacement.to(torch.float64).clamp(max=1.0)
        if self.final_stop_psnr is not None and problem.sigma_lo == 0:
            psnr_error = rms_of_psnr(problem.x_lo, self.final_stop_psnr) / problem.x_lo_rms
            threshold = torch.maximum(threshold, psnr_error.to(threshold))
        return threshold

    @staticmethod
    def _secant_contraction(x, ev: Evaluation, previous, active, contraction, secants):
        """The free last step's q: the largest secant ratio |G(x_k) - G(x_{k-1})| / |x_k - x_{k-1}| seen so far
        in the step (at most 1), per sample, updated for the samples that moved."""
        moved = (x.flatten(1) - previous[0]).norm(dim=1).to(torch.float64)
        ratio = (ev.image.flatten(1) - previous[2]).norm(dim=1).to(torch.float64) / moved.clamp_min(1e-300)
        update = active & (moved > 0)
        ratio = torch.where(secants, torch.maximum(ratio, contraction), ratio).clamp(max=1.0)
        return torch.where(update, ratio, contraction), secants | update

    def _frees_last_step(self, problem: StepProblem) -> bool:
        return self.free_last_step and problem.sigma_lo > 0 and not problem.stochastic

    def _iterate(self, problem: StepProblem):
        batch = problem.x_lo.shape[0]
        device = problem.x_lo.device
        x = self._start(problem)
        active = torch.ones(batch, dtype=torch.bool, device=device)
        iterations = torch.zeros(batch, dtype=torch.long, device=device)
        best_err = torch.full((batch,), float("inf"), dtype=torch.float64, device=device)
        best: Optional[Evaluation] = None
        history = []                                   # (dX, dF, dG) flattened [B, n] each, newest last
        valid = torch.zeros(batch, 0, device=device, dtype=torch.float64)
        previous = None                                # (x, f, g) flattened of the last evaluated iterate
        restarts = torch.zeros(batch, dtype=torch.long, device=device)
        rejected = torch.zeros(batch, dtype=torch.long, device=device)
        plain_err = None                               # error of the first plain fixed-point image G(x^0)
        calls = 0
        final = problem.sigma_lo == 0                  # the step that lands on sigma 0 ("The final step")
        budget = self.final_max_calls if final else self.max_calls
        rescue = final and self.final_rescue_psnr is not None     # "The final step's rescue"
        limit = budget + (self.final_rescue_calls if rescue else 0)
        ev = None
        best_history = []
        free = self._frees_last_step(problem)
        contraction = torch.ones(batch, dtype=torch.float64, device=device)   # q, "The free last step"
        secants = torch.zeros(batch, dtype=torch.bool, device=device)         # q has been estimated
        met = torch.zeros(batch, dtype=torch.bool, device=device)
        answer, answer_err = x, torch.full((batch,), float("nan"), dtype=torch.float64, device=device)
        while True:
            problem.monitor.check()
            ev = problem.evaluate_active(x, active, ev)   # frozen samples keep their evaluation (same x)
            calls += 1
            err = problem.relative_error(ev.residual).to(torch.float64)
            if free and previous is not None:
                contraction, secants = self._secant_contraction(x, ev, previous, active, contraction, secants)
            if calls <= 2:
                plain_err = err
            iterations += active.long()
            improved = active & (err < best_err)
            best = ev if best is None else merge_evaluations(improved, ev, best)
            best_err = torch.where(improved, err, best_err)
            predicted = err * contraction if free else err
            converged = active & (predicted <= self._threshold(problem, ev))
            met |= converged
            active = active & ~converged
            if self.stall_window > 0 and not final:      # stall stop (not on the final step)
                best_history.append(best_err)
                if len(best_history) > self.stall_window:
                    active = active & (best_err <= self.stall_ratio * best_history.pop(0))
            if rescue and calls >= budget:   # past the budget only samples that would miss the target go on
                landing = psnr_of_rms(problem.x_lo, best_err * problem.x_lo_rms.to(torch.float64))
                active = active & (landing < self.final_rescue_psnr)
            done = not bool(active.any()) or calls >= limit
            if done and not (free and bool(converged.any())):
                break

            xf, f, g = x.flatten(1), ev.residual.flatten(1), ev.image.flatten(1)
            if previous is not None and self.memory > 0:
                history.append((xf - previous[0], f - previous[1], g - previous[2]))
                valid = torch.cat([valid, torch.ones(batch, 1, device=device, dtype=valid.dtype)], dim=1)
                if len(history) > self.memory:
                    history.pop(0)
                    valid = valid[:, 1:]
            previous = (xf, f, g)

            beta = self.final_relaxation if final else self.damping
            step = xf + beta * f
            if history:
                d_x = torch.stack([h[0] for h in history], dim=2)
                d_f = torch.stack([h[1] for h in history], dim=2)
                gamma = anderson_coefficients(f, d_f, valid, self.regularization)
                correction = ((d_x + beta * d_f) @ gamma.to(d_x.dtype).unsqueeze(2)).squeeze(2)
                accelerated = step - correction
                ok = torch.isfinite(gamma).all(dim=1) & (gamma.abs().sum(dim=1) <= self.max_coefficient)
                ok = ok & torch.isfinite(accelerated).all(dim=1)
                rejected += (active & ~ok).long()
                step = torch.where(ok.unsqueeze(1), torch.nan_to_num(accelerated), step)
            next_x = step.view_as(x)

            # residual growth: restart the sample's memory from its best iterate, x_{k+1} = G(x_best)
            grown = active & (err > self.restart_growth * best_err)
            if bool(grown.any()):
                restarts += grown.long()
                next_x = keep_where(grown, best.image, next_x)
                valid = valid * (~grown).unsqueeze(1).to(valid.dtype)
            if free:     # the free last step: a converged sample answers the iterate its next call would verify
                answer = keep_where(converged, next_x, answer)
                answer_err = torch.where(converged, predicted, answer_err)
            if done:
                break
            x = keep_where(active, next_x, x)

        diagnostics = {"calls": calls, "restarts": restarts, "rejected_extrapolations": rejected,
                       "plain_error": plain_err, "met": met if free else None, "answer": answer,
                       "answer_error": answer_err}
        return best, best_err, iterations, diagnostics

    # -- solve -------------------------------------------------------------------------------------------------------
    def solve(self, problem: StepProblem) -> StepSolution:
        calls_before = problem.denoiser.calls
        best, best_err, iterations, diagnostics = self._iterate(problem)
        batch = best.x.shape[0]
        tried = torch.zeros(batch, dtype=torch.bool, device=best.x.device)
        used = tried.clone()
        per_sample_calls = iterations.clone()
        if self.fallback is not None:
            # poor: above the fallback tolerance, and the acceleration did not beat one plain fixed-point step
            # by ``fallback_gain`` (the signature of an extrapolation that went astray, not of a hard step)
            tried = (best_err > self.fallback_tolerance) & (best_err * self.fallback_gain > diagnostics["plain_error"])
            if bool(tried.any()):
                fallback_start = problem.denoiser.calls
                ev = problem.evaluation_at(self.fallback.solve(problem))
                fallback_err = problem.relative_error(ev.residual).to(torch.float64)
                used = tried & (fallback_err < best_err)
                best = merge_evaluations(used, ev, best)
                best_err = torch.where(used, fallback_err, best_err)
                per_sample_calls = per_sample_calls + tried.long() * (problem.denoiser.calls - fallback_start)
        self._previous = (problem.inversion_step, tuple(best.x.shape), best.d.detach())
        x, residual = best.x, best_err
        if diagnostics["met"] is not None:    # the free last step: converged samples answer their next iterate
            imaged = diagnostics["met"] & ~used
            x = keep_where(imaged, diagnostics["answer"], best.x)
            residual = torch.where(imaged, diagnostics["answer_error"], best_err)
        info = {
            "model_calls": problem.denoiser.calls - calls_before,
            "calls": per_sample_calls.tolist(),
            "iterations": iterations.tolist(),
            "residual": residual.tolist(),
            "fallback_tried": tried.tolist(),
            "fallback_used": used.tolist(),
            "restarts": diagnostics["restarts"].tolist(),
            "rejected_extrapolations": diagnostics["rejected_extrapolations"].tolist(),
        }
        return StepSolution(x=x, iterations=iterations, residual=residual.to(best.x.dtype).cpu(),
                            evaluation=best, fallback=used, info=info)
