"""Stored residuals: every inversion samples back exactly, whatever its method.

An inversion stores the latents x_0..x_N of a trajectory (``Inversion.latents``, sampling order: latents[0] at the
top sigma, latents[N] the clean input). Forward step i of the sampler maps latents[i] to
F_i(latents[i]) = forward_i(latents[i], d(latents[i], sigma_i), noise_i) (``steps``), which misses latents[i+1] by
what the method left unsolved (DDIM's d(x_lo) in place of d(x_hi), ReNoise's finite iterations, ...). Record that
miss,

    r_i = latents[i+1] - F_i(latents[i]),

and sample with x_{i+1} = F_i(x_i) + r_i (``trajectory.sample(..., residuals=...)``): started at latents[0] with the
inversion's own denoiser (same conditioning and cfg) the sampler then visits every stored latent and ends on the
input. Under an edited conditioning the same r_i are added to the edit's steps (a user choice in the nodes).

Exactness in floating point. r_i is computed in the state's dtype with the sampler's own arithmetic
(``ForwardStep.forward``), so F_i(latents[i]) + r_i is latents[i+1] exactly wherever the two are within a factor 2
of each other (Sterbenz's lemma: the subtraction is exact) -- all but the elements near zero that the step misses
by more than their own size, which land within half an ulp of F_i there (no single float can do better: the exact
sums are multiples of about that ulp). The model must give the same bits for the same inputs at sampling time.

Cost. r_i needs D(latents[i], sigma_i); :func:`capture_residuals` reuses every evaluation the inversion made at
exactly that whole batch and sigma (``Inversion.evaluations``, kept by ``trajectory.invert`` through
``Denoiser.trace``) and calls the model for the others. Measured per method (N steps; tests/core/test_residuals.py):

* Exact Invert (``verified.invert_verified``): 0 calls. Its latents are the verification replay's forward trajectory,
  so r_i = 0 for every step but the last, and r_{N-1} = x0 - the replay's landing (``verified`` sets them).
* ``AdaptiveInversion`` alone, RNRI "newton", and the stochastic samplers with "exact"/"damped" noise correction:
  0 calls where the answer is an iterate evaluated as a whole batch (the correction evaluates at the answer); a step
  whose answer was assembled from per-image best iterates or sub-batch calls (``independent``) costs one.
* DDIM "current": 1 call (each step evaluates at (latents[i+1], sigma_{i+1}), the next forward step's point; only
  the top latent is new).
* DDIM "target", EasyInv, ReNoise, RNRI "released": N calls, one per step (their answers are never evaluated).
* ODE inversion (``ode_inversion``): 1 call at the top latent (each Heun step starts at its lower latent, the forward
  step's point), plus the mirrored last interval (``Inversion.bottom``): 2 x bottom_substeps - 1 calls, since the
  sampler integrates that interval down and the residual is taken against what it lands on.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import torch

from .monitor import SILENT, Monitor
from .problem import DenoiseFn, Denoiser
from .steps import make_steps
from .trajectory import Inversion, sampler_step


def landing_residual(target: torch.Tensor, landed: torch.Tensor) -> Optional[torch.Tensor]:
    """r = target - landed in ``landed``'s dtype (None where it is zero everywhere): landed + r is target exactly
    wherever the two are within a factor 2 of each other (Sterbenz); elsewhere (a target near zero that the landing
    misses by more than its own size) the exact sum is a multiple of about ulp(landed), so it lands within half of
    that (module docstring)."""
    r = target.to(landed.dtype) - landed
    return r if bool((r != 0).any()) else None


def capture_residuals(denoise: DenoiseFn, inversion: Inversion, *, eta: float = 1.0, s_noise: float = 1.0,
                      monitor: Monitor = SILENT) -> Inversion:
    """``inversion`` with ``residuals`` set (a copy; one that has them already is returned as it is).

    ``denoise`` must be the inversion's own (same model, conditioning, cfg): r_i is taken against D(latents[i],
    sigma_i), reused from ``inversion.evaluations`` where the run evaluated exactly that, else one model call of the
    whole batch. ``eta``, ``s_noise``: the stochastic sampler's, as given to ``invert``. The calls are added to
    ``model_calls`` and counted in ``residual_calls`` (see the module docstring for each method's count).
    """
    if inversion.residuals is not None:
        return inversion
    latents = inversion.latents
    dtype = latents[-1].dtype
    steps = make_steps(inversion.step_kind, inversion.sigmas.to(torch.float64).cpu(), inversion.parametrization,
                       eta, s_noise)
    known = inversion.evaluations or [None] * len(steps)
    den = Denoiser(denoise, monitor, dtype)
    residuals = []
    for step in steps:
        monitor.check()
        landed = sampler_step(den, step, latents[step.index], inversion.noises[step.index], inversion.bottom,
                              denoised=known[step.index])
        residuals.append(landing_residual(latents[step.index + 1], landed))
    return dataclasses.replace(
        inversion, residuals=residuals, residual_calls=den.calls, model_calls=inversion.model_calls + den.calls,
        image_evaluations=inversion.image_evaluations + den.image_evaluations, evaluations=None)
