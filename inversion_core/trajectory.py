"""Inversion driver and forward sampling over a whole sigma schedule.

``invert`` walks the sampler's own sigmas upward: for each forward step i (sigma_i -> sigma_{i+1}, taken in
reverse) it builds the step problem (``problem``, eq. 1) from the latent already found at sigma_{i+1} and the
step's noise, asks a ``StepSolver`` for x at sigma_i, and, for stochastic samplers, corrects the stored noise
so that replaying the step lands on the latent below (exactly, or with ReNoise's damped rule). ``sample`` is
the matching forward sampler that replays given noises and adds stored residuals (``residuals``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .errors import InversionError, NonFiniteError
from .monitor import SILENT, Monitor
from .ode_inversion import integrate_down
from .problem import DenoiseFn, Denoiser, StepProblem, StepSolver, batch_rms
from .spaces import check_parametrization, derivative
from .steps import make_steps

CORRECTIONS = ("none", "exact", "damped")


@dataclass
class StepStats:
    """Per-step diagnostics (inversion order), per sample where a list."""

    index: int
    sigma_lo: float
    sigma_hi: float
    iterations: list
    residual: list
    model_calls: int
    fallback: list = field(default_factory=list)
    noise_correction: Optional[list] = None   # RMS distance of the stored noise from the exact one, per sample


@dataclass
class Inversion:
    """The result: latents[j] lies at sigmas[j] (sampling order), latents[0] is the inverted latent."""

    sigmas: torch.Tensor
    latents: list
    noises: list               # per forward step i: the noise to replay, or None for deterministic steps
    stats: list                # StepStats in inversion order
    step_kind: str
    parametrization: str
    method: str
    model_calls: int = 0
    verification: Optional[object] = None   # ``verified.Verification`` when the run was verified end to end
    image_evaluations: int = 0              # images evaluated by those calls (fewer than calls x batch with
                                            # ``independent``: converged samples leave the batch)
    # per forward step i: latents[i+1] minus the sampler's step from latents[i] (None = zero); ``residuals``
    residuals: Optional[list] = None
    residual_calls: int = 0                 # the model calls capturing them cost (included in model_calls)
    # per forward step i: D(latents[i], sigmas[i]) where the run evaluated exactly that whole batch, else None
    # (``residuals.capture_residuals`` reuses them instead of calling the model again)
    evaluations: Optional[list] = field(default=None, repr=False)
    # the levels on which the sampler integrates the interval into sigma 0 to mirror the inversion
    # (``ode_inversion.integrate_down``; ``StepSolver.sampling_bottom``), None = the sampler's own last step
    bottom: Optional[list] = None

    @property
    def latent(self) -> torch.Tensor:
        return self.latents[0]

def damped_noise(noise: torch.Tensor, target: torch.Tensor, steps: int = 10, step_size: float = 1.8,
                 monitor: Monitor = SILENT) -> torch.Tensor:
    """ReNoise's noise correction (official code, ``step_and_update_noise``): ``steps`` gradient steps on the
    L2 norm ||n - target|| per sample, each moving n by ``step_size`` toward target (stopping on it)."""
    for _ in range(steps):
        monitor.check()
        diff = target - noise
        dist = diff.flatten(1).norm(dim=1).clamp_min(1e-12)
        move = torch.clamp(step_size / dist, max=1.0)
        noise = noise + move.reshape(-1, *([1] * (noise.ndim - 1))) * diff
    return noise


def seeded_noises(steps, shape, seed: int, dtype, device) -> list:
    """Initial per-step noises, drawn per sample from seed + b in sampling order, so that a batch equals its
    single runs (sample b of a batch is the single run with seed + b) whatever the solver."""
    noises = [None] * len(steps)
    stochastic = [step for step in steps if step.stochastic]
    if not stochastic:
        return noises
    per_sample = []
    for b in range(shape[0]):
        generator = torch.Generator(device="cpu").manual_seed(int(seed) + b)
        per_sample.append([torch.randn(shape[1:], generator=generator, dtype=dtype) for _ in stochastic])
    for k, step in enumerate(stochastic):
        noises[step.index] = torch.stack([draws[k] for draws in per_sample]).to(device)
    return noises


def _validate(x0: torch.Tensor, sigmas: torch.Tensor):
    if x0.ndim < 3:
        raise InversionError(f"the latent must be [B, C, ...] with spatial dims, got shape {tuple(x0.shape)}")
    if x0.shape[0] == 0:
        raise InversionError("the latent batch is empty")
    if not torch.isfinite(x0).all():
        raise InversionError("the latent contains NaN or inf")
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise InversionError("sigmas must be a 1-D schedule with at least one step")


def invert(
    denoise: DenoiseFn,
    x0: torch.Tensor,
    sigmas: torch.Tensor,
    solver: StepSolver,
    *,
    step_kind: str = "euler",
    parametrization: str = "ve",
    eta: float = 1.0,
    s_noise: float = 1.0,
    noise_seed: int = 0,
    correction: str = "exact",
    independent: bool = False,
    monitor: Monitor = SILENT,
) -> Inversion:
    """Invert ``x0`` (the latent at sigmas[-1]) through the sampler ``step_kind`` over ``sigmas`` (descending).

    For stochastic samplers the per-step noises start as seeded Gaussians; the solver finds x_hi for that
    noise, then ``correction`` replaces the noise by the exact one that lands on x_lo ("exact", +1 model call per
    step unless the solver evaluated the model at its answer), by ReNoise's damped update ("damped"), or keeps it.
    ``independent``: ``denoise`` treats every image of the batch on its own (e.g. conditioning of batch 1), so a
    solver may evaluate only the images it has not yet converged (``StepProblem.evaluate_active``).
    """
    check_parametrization(parametrization)
    if correction not in CORRECTIONS:
        raise InversionError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    sigmas = torch.as_tensor(sigmas).detach().flatten().to(torch.float64).cpu()
    _validate(x0, sigmas)
    dtype = torch.promote_types(x0.dtype, torch.float32)
    x0 = x0.to(dtype)
    steps = make_steps(step_kind, sigmas, parametrization, eta, s_noise)
    den = Denoiser(denoise, monitor, dtype)
    noises = seeded_noises(steps, x0.shape, noise_seed, dtype, x0.device)

    latents = [None] * len(sigmas)
    latents[-1] = x0
    stats = []
    evaluations = [None] * len(steps)
    den.trace = []
    solver.reset()
    for k, step in enumerate(reversed(steps)):
        monitor.check()
        den.trace.clear()
        x_lo = latents[step.index + 1]
        noise = noises[step.index]
        problem = StepProblem(
            denoiser=den, x_lo=x_lo, anchor=step.anchor(x_lo, noise), delta=step.delta,
            sigma_hi=step.sigma_hi, sigma_lo=step.sigma_lo, index=step.index, inversion_step=k, x0=x0,
            parametrization=parametrization, error_scale=step.out_scale, stochastic=step.stochastic,
            monitor=monitor, independent=independent,
        )
        calls_before = den.calls
        solution = solver.solve(problem)
        x_hi = solution.x
        if not torch.isfinite(x_hi).all():
            raise NonFiniteError(f"the solver produced NaN/inf at step {step.index}", step.index, step.sigma_hi)
        correction_gap = None
        if step.stochastic and correction != "none":
            exact = step.exact_noise(x_lo, x_hi, problem.evaluation_at(solution).d)
            if correction == "exact":
                noises[step.index] = exact
            else:
                noises[step.index] = damped_noise(noise, exact, monitor=monitor)
            correction_gap = batch_rms(noises[step.index] - exact).tolist()
        latents[step.index] = x_hi
        # the forward steps from x_hi (this step) and from x_lo (DDIM "current" evaluates there) need D at exactly
        # those latents: keep the run's own evaluation when it made one
        for j in (step.index, step.index + 1):
            if j < len(steps) and evaluations[j] is None:
                evaluations[j] = den.recall(latents[j], steps[j].sigma_hi)
        fallback = solution.fallback.tolist() if solution.fallback is not None else [False] * x0.shape[0]
        stats.append(StepStats(step.index, step.sigma_lo, step.sigma_hi, solution.iterations.tolist(),
                               solution.residual.tolist(), den.calls - calls_before, fallback, correction_gap))
        monitor.step({"i": k, "x": x_hi, "sigma": step.sigma_hi, "denoised": solution.evaluation.denoised
                      if solution.evaluation is not None else x_hi})
    den.trace = None
    return Inversion(sigmas.to(dtype), latents, noises, stats, step_kind, parametrization, solver.name, den.calls,
                     image_evaluations=den.image_evaluations, evaluations=evaluations,
                     bottom=solver.sampling_bottom(sigmas, parametrization))


def sampler_step(den: Denoiser, step, x: torch.Tensor, noise: Optional[torch.Tensor], bottom: Optional[list] = None,
                 denoised: Optional[torch.Tensor] = None, callback: Optional[Callable[[dict], None]] = None):
    """Forward ``step`` from x as an inversion is sampled back: the step of its sampler (``denoised``: D(x, sigma_hi)
    where already known, else one model call), or, on the deterministic step into sigma 0 with ``bottom`` levels
    (``Inversion.bottom``), ``ode_inversion.integrate_down`` over them. ``callback`` as in :func:`sample`."""
    if bottom is not None and step.sigma_lo == 0.0 and not step.stochastic:
        if callback is not None:
            callback({"i": step.index, "x": x, "sigma": step.sigma_hi, "denoised": x})
        return integrate_down(den, x, bottom)
    if denoised is None:
        denoised = den(x, step.sigma_hi)
    if callback is not None:
        callback({"i": step.index, "x": x, "sigma": step.sigma_hi, "denoised": denoised})
    return step.forward(x, derivative(x, denoised, step.sigma_hi), noise)


def sample(
    denoise: DenoiseFn,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    step_kind: str = "euler",
    parametrization: str = "ve",
    noises: Optional[list] = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    generator: Optional[torch.Generator] = None,
    monitor: Monitor = SILENT,
    return_trajectory: bool = False,
    residuals: Optional[list] = None,
    callback: Optional[Callable[[dict], None]] = None,
    bottom: Optional[list] = None,
):
    """Forward sampler (Euler / Euler-ancestral / LCM as in k-diffusion) replaying ``noises`` where given.

    ``residuals`` (per step, None = zero; ``Inversion.residuals``): added after each step, x_{i+1} = F_i(x_i) + r_i,
    so that from an inversion's latents[0] with its own denoiser the sampler visits every stored latent.
    ``callback``: called before each step's update with {"i", "x", "sigma", "denoised"} (k-diffusion's keys).
    ``bottom`` (``Inversion.bottom``): the deterministic step into sigma 0 integrates down those levels instead
    (``ode_inversion.integrate_down``, mirroring an ODE inversion)."""
    sigmas = torch.as_tensor(sigmas).detach().flatten().to(torch.float64).cpu()
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    den = Denoiser(denoise, monitor, dtype)
    trajectory = [x]
    for step in make_steps(step_kind, sigmas, parametrization, eta, s_noise):
        noise = None
        if step.stochastic:
            noise = noises[step.index] if noises is not None and noises[step.index] is not None else \
                torch.randn(x.shape, generator=generator, dtype=dtype).to(x.device)
        x = sampler_step(den, step, x, noise, bottom, callback=callback)
        if residuals is not None and residuals[step.index] is not None:
            x = x + residuals[step.index].to(device=x.device, dtype=dtype)
        trajectory.append(x)
    return (x, trajectory) if return_trajectory else x
