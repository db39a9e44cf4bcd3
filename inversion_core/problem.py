"""The per-step inversion problem shared by every method.

A deterministic Euler step of ComfyUI's sampler maps x_hi (at sigma_hi) to
x_lo = x_hi + (sigma_lo - sigma_hi) * d(x_hi, sigma_hi). Inverting it exactly means solving the implicit equation

    x_hi = anchor + delta * d(x_hi, sigma_hi)                                         (1)

with anchor = x_lo and delta = sigma_hi - sigma_lo (Hong et al. 2023 "exact inversion"; ReNoise, Garibi et al.
2024, eq. 5 is the fixed-point iteration on (1)). Stochastic steps fit the same form once their noise is fixed:
Euler-ancestral moves anchor by the injected noise and uses sigma_down, LCM uses delta = sigma_hi (see
``steps``). So every method is a solver for (1): the map G(x) = anchor + delta * d(x, sigma_hi) and the
residual r(x) = G(x) - x, whose scaled norm is exactly the error with which the forward step from x lands on x_lo.

Everything is per sample: a batch of B latents is B independent problems, each with its own stopping, while the
model is still evaluated on the whole batch (so conditioning batches keep their order).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Optional

import torch

from .errors import NonFiniteError
from .monitor import SILENT, Monitor
from .spaces import derivative, per_sample, scatter_rows

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def batch_rms(t: torch.Tensor) -> torch.Tensor:
    """Root mean square per sample: [B, ...] -> [B]."""
    return t.flatten(1).pow(2).mean(dim=1).sqrt()


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True if a and b are bit for bit the same tensor value (shape, dtype, device and every bit; so -0.0 differs
    from 0.0 and a NaN equals itself): the model cannot tell them apart."""
    if a.shape != b.shape or a.dtype != b.dtype or a.device != b.device:
        return False
    if not a.dtype.is_floating_point:
        return torch.equal(a, b)
    bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    return torch.equal(a.detach().view(bits), b.detach().view(bits))


class Denoiser:
    """A model callable D(x, sigma_vec) -> x0 that counts calls (and the images they evaluated), reports them and
    checks for NaN.

    The state stays in ``dtype`` (float32 at least) whatever precision the model runs in.

    ``trace``: while a list, every call appends (x, sigma_vec, D) (detached copies), so that :meth:`recall` can hand
    back an evaluation the run already made at bit-identical inputs (``residuals``' capture reuses them).
    """

    def __init__(self, fn: DenoiseFn, monitor: Monitor = SILENT, dtype: torch.dtype = torch.float32):
        self.fn = fn
        self.monitor = monitor
        self.dtype = dtype
        self.calls = 0
        self.image_evaluations = 0
        self.trace: Optional[list] = None

    def sigma_vector(self, sigma, x: torch.Tensor) -> torch.Tensor:
        """The [B] sigma tensor the model is called with (one construction for calls and :meth:`recall`)."""
        sigma_vec = torch.as_tensor(sigma, dtype=self.dtype, device=x.device)
        return sigma_vec.expand(x.shape[0]) if sigma_vec.ndim == 0 else sigma_vec

    def __call__(self, x: torch.Tensor, sigma) -> torch.Tensor:
        self.monitor.check()
        sigma_vec = self.sigma_vector(sigma, x)
        out = self.fn(x, sigma_vec).to(self.dtype)
        self.calls += 1
        self.image_evaluations += x.shape[0]
        self.monitor.model_call()
        if not torch.isfinite(out).all():
            raise NonFiniteError(
                f"the model returned NaN/inf at sigma={float(sigma_vec.max()):.4g}", sigma=float(sigma_vec.max())
            )
        if self.trace is not None:
            self.trace.append((x.detach().clone(), sigma_vec.detach().clone(), out.detach().clone()))
        return out

    def recall(self, x: torch.Tensor, sigma) -> Optional[torch.Tensor]:
        """D(x, sigma) from ``trace`` if a call had bit-identical inputs (the whole batch x and its sigmas; a call
        on a sub-batch does not count), else None. No model call."""
        if not self.trace:
            return None
        sigma_vec = self.sigma_vector(sigma, x)
        for seen, seen_sigma, out in reversed(self.trace):
            if same_bits(seen, x) and same_bits(seen_sigma, sigma_vec.contiguous()):
                return out
        return None


@dataclass
class Evaluation:
    """One model evaluation at x: D(x), d(x), the fixed-point image G(x) and the residual G(x) - x."""

    x: torch.Tensor
    denoised: torch.Tensor
    d: torch.Tensor
    image: torch.Tensor
    residual: torch.Tensor


@dataclass
class StepProblem:
    """Equation (1) for one sampler step (index ``index`` in sampling order, sigma_hi -> sigma_lo)."""

    denoiser: Denoiser
    x_lo: torch.Tensor           # the latent this step must land on
    anchor: torch.Tensor         # (1)'s constant term
    delta: float                 # (1)'s step length
    sigma_hi: float              # the model is evaluated here
    sigma_lo: float
    index: int                   # step index in sampling order (0 = highest sigma)
    inversion_step: int          # 0 for the first inversion step (lowest sigma), counting up
    x0: torch.Tensor             # the clean latent being inverted (for priors and regulariser references)
    parametrization: str = "ve"
    error_scale: float = 1.0     # forward(x) - x_lo = -error_scale * r(x)
    stochastic: bool = False     # the step injects noise (its anchor depends on a noise the driver may correct)
    monitor: Monitor = field(default_factory=lambda: SILENT)
    independent: bool = False    # the model treats every image on its own: any sub-batch may be evaluated

    def evaluate(self, x: torch.Tensor) -> Evaluation:
        denoised = self.denoiser(x, self.sigma_hi)
        d = derivative(x, denoised, self.sigma_hi)
        image = self.anchor + self.delta * d
        return Evaluation(x, denoised, d, image, image - x)

    def evaluate_active(self, x: torch.Tensor, active: torch.Tensor, previous: Optional[Evaluation]) -> Evaluation:
        """``evaluate(x)`` where only the samples in ``active`` [B] need a new evaluation: with ``independent``
        they alone are sent to the model and the others keep ``previous`` (which must be at their current x);
        otherwise the whole batch is evaluated (conditioning per image must stay aligned with its latent)."""
        if not self.independent or previous is None or bool(active.all()):
            return self.evaluate(x)
        index = active.nonzero().squeeze(1)
        part = x[index]
        denoised = self.denoiser(part, self.sigma_hi)
        d = derivative(part, denoised, self.sigma_hi)
        image = self.anchor[index] + self.delta * d
        return Evaluation(*(scatter_rows(index, new, old) for new, old in (
            (part, previous.x), (denoised, previous.denoised), (d, previous.d), (image, previous.image),
            (image - part, previous.residual))))

    def image_of(self, d: torch.Tensor) -> torch.Tensor:
        """G for a given derivative: the x_hi that a derivative d implies through (1)."""
        return self.anchor + self.delta * d

    @cached_property
    def x_lo_rms(self) -> torch.Tensor:
        """Per-sample RMS of x_lo (at least 1e-8), computed once per step: [B]."""
        return batch_rms(self.x_lo).clamp_min(1e-8)

    def relative_error(self, residual: torch.Tensor) -> torch.Tensor:
        """Per-sample RMS error of landing on x_lo, relative to the RMS of x_lo: [B]."""
        return self.error_scale * batch_rms(residual) / self.x_lo_rms

    def evaluation_at(self, solution: "StepSolution") -> Evaluation:
        """The model evaluation at ``solution.x``: the solver's own where it has one at exactly that x, else one
        model call."""
        evaluation = solution.evaluation
        if evaluation is None or evaluation.x is not solution.x:
            evaluation = self.evaluate(solution.x)
        return evaluation


def keep_where(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Per-sample select: samples with mask [B] True take ``new``."""
    return torch.where(per_sample(mask.to(new.dtype), new) > 0, new, old)


def merge_evaluations(mask: torch.Tensor, new: Evaluation, old: Evaluation) -> Evaluation:
    """Per-sample select between two evaluations (samples with mask True take ``new``)."""
    return Evaluation(*(keep_where(mask, getattr(new, name), getattr(old, name))
                        for name in ("x", "denoised", "d", "image", "residual")))


class BestIterate:
    """The best evaluated iterate per sample: for each sample, the evaluation with the lowest score offered so far
    (the first one offered is taken whole, whatever its score)."""

    def __init__(self):
        self.evaluation: Optional[Evaluation] = None
        self.score: Optional[torch.Tensor] = None

    def offer(self, evaluation: Evaluation, score: torch.Tensor) -> torch.Tensor:
        """Keep ``evaluation`` for the samples whose ``score`` [B] is below the best so far; returns them [B]."""
        if self.evaluation is None:
            self.evaluation, self.score = evaluation, score
            return torch.ones_like(score, dtype=torch.bool)
        better = score < self.score
        self.evaluation = merge_evaluations(better, evaluation, self.evaluation)
        self.score = torch.where(better, score, self.score)
        return better


@dataclass
class StepSolution:
    """A solver's answer for one step, with per-sample diagnostics."""

    x: torch.Tensor
    iterations: torch.Tensor          # [B] fixed-point / Newton iterations used per sample
    residual: torch.Tensor            # [B] relative error (see StepProblem.relative_error), NaN if unknown
    evaluation: Optional[Evaluation] = None   # the model evaluation the answer comes from: at exactly x where
                                              # evaluation.x is x (``evaluation_at`` checks), else at the iterate x
                                              # was computed from (``AdaptiveInversion``'s free last step)
    fallback: Optional[torch.Tensor] = None   # [B] bool: sample redone by the fallback solver
    info: dict = field(default_factory=dict)


class StepSolver:
    """Base class: one inversion method = one ``solve`` per step. Instances may keep state across steps."""

    name = "solver"

    def reset(self) -> None:
        """Called once before an inversion run."""

    def expected_calls(self, corrected: bool = False) -> int:
        """Model calls per step this solver expects to make, for progress reporting (an estimate: adaptive solvers
        stop early, first-step rules and fallbacks change it). ``corrected``: count the one evaluation at the
        answer that the driver's noise correction of a stochastic step may need. Default: one call."""
        return 1 + int(corrected)

    def sampling_bottom(self, sigmas, parametrization: str = "ve") -> Optional[list]:
        """The levels on which the sampler should integrate the interval into sigma 0 to mirror this inversion
        (``ode_inversion.integrate_down``), or None: the sampler's own last step (every method but ODE
        inversion)."""
        return None

    def solve(self, problem: StepProblem) -> StepSolution:  # pragma: no cover - interface
        raise NotImplementedError
