"""One inversion run through ComfyUI: the schedule, progress, the inversion SAMPLER, the guider run, its digests.

Every inversion runs *through ComfyUI's own guider*: ``comfy.samplers.CFGGuider(model)`` with the node's conds and
cfg (``handoff.make_guider``), ``guider.sample(...)`` with :class:`InversionSampler` (a ``comfy.samplers.KSAMPLER``
subclass, the pattern of core's ``comfy_extras/nodes_train.py`` ``TrainSampler``). So model loading
(``load_models_gpu``), conds, areas, masks, ControlNet, hooks, wrappers and ``process_latent_in/out`` all stay
ComfyUI's; the sampler only calls ``inversion_core.trajectory.invert`` with
``denoise = lambda x, sigma: model_wrap(x, sigma, **extra_args)`` (the CFG-combined x0 prediction in the internal
latent space).

:func:`run_inversion` makes the four node outputs (the LATENT and NOISE hand-offs are ``handoff``'s);
:func:`summary`, :func:`describe_run` and :func:`verification_stats` digest a run for the ui output, the log and
the INVERSION stats.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Callable, Optional

import torch

import comfy.model_management
import comfy.model_sampling
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview

from ..inversion_core.monitor import Monitor
from ..inversion_core.residuals import capture_residuals
from ..inversion_core.trajectory import invert
from ..inversion_core.verified import invert_verified
from . import model_errors, validation
from .handoff import InversionNoise, exit_latent, make_guider
from .record import InversionRecord, model_fingerprint

log = logging.getLogger("exact_inversion")

FLIP_SIGMAS_PLACEHOLDER = 1e-4   # comfy_extras FlipSigmas replaces a leading 0 by this value


# --------------------------------------------------------------------------------------------------- schedules
def schedule(node: str, model, steps: int, scheduler: str, denoise: float, sigmas=None) -> torch.Tensor:
    """The sampling-order sigmas (CPU float32) a KSampler / BasicScheduler would use, or the SIGMAS override.

    denoise < 1: the last ``steps + 1`` sigmas of a ``int(steps / denoise)``-step schedule, as ``BasicScheduler``
    and ``KSampler.set_steps`` compute them, i.e. inversion only up to the noise level that sampling starts from.
    A SIGMAS override may be in sampling order or in FlipSigmas order (see :func:`sampling_order`).
    """
    if sigmas is not None:
        return sampling_order(node, validation.sigmas(node, "sigmas", sigmas)).to(torch.float32)
    steps = validation.steps(node, steps)
    denoise = validation.denoise(node, denoise)
    validation.choice(node, "scheduler", scheduler, comfy.samplers.SCHEDULER_NAMES)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    full = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), scheduler, total).cpu()
    values = validation.sigmas(node, "steps", full[-(steps + 1):].to(torch.float32))
    return sampling_order(node, values).to(torch.float32)


def sampling_order(node: str, sigmas: torch.Tensor) -> torch.Tensor:
    """Descending float64 CPU sigmas without repeats, from whatever a SIGMAS socket delivered.

    * FlipSigmas order (ascending) is reversed, and FlipSigmas' 1e-4 stand-in for the final 0 becomes 0 again, so
      the inversion matches the unflipped schedule a sampler will use.
    * Repeated sigmas (e.g. "simple" with more steps than the model has noise levels) are dropped: a zero-length
      step is the identity for euler and euler_ancestral, so the stock sampler over the repeating schedule still
      samples the inversion back. The SIGMAS output is the schedule without repeats.
    """
    values = sigmas.detach().flatten().to(torch.float64).cpu()
    if values.numel() >= 2 and values[0] < values[-1]:
        values = values.flip(0)
        if math.isclose(float(values[-1]), FLIP_SIGMAS_PLACEHOLDER, rel_tol=1e-5):
            values[-1] = 0.0
    keep = torch.ones(values.numel(), dtype=torch.bool)
    keep[1:] = values[1:] != values[:-1]
    if not keep.all():
        log.warning("%s: the schedule repeats %d sigma(s) (more steps than the model has noise levels?); they are "
                    "zero-length steps and were skipped", node, int((~keep).sum()))
        values = values[keep]
    return values


# --------------------------------------------------------------------------------------------------- progress
class HostProgress:
    """Progress in model calls (one ComfyUI ProgressBar tick per model evaluation), latent previews per step
    (``latent_preview.prepare_callback``, same unit so the bar never jumps) and interrupts at every core loop."""

    def __init__(self, model, expected_calls: int, preview: bool = True):
        self.total = max(1, int(expected_calls))
        self.calls = 0
        self.bar = comfy.utils.ProgressBar(self.total)
        self.preview = latent_preview.prepare_callback(model, self.total) if preview else None

    def model_call(self) -> None:
        self.calls += 1
        self.total = max(self.total, self.calls)
        self.bar.update_absolute(self.calls, self.total)

    def step(self, info: dict) -> None:
        if self.preview is not None and info.get("denoised") is not None:
            self.preview(max(self.calls - 1, 0), info["denoised"], info["x"], self.total)

    def monitor(self) -> Monitor:
        return Monitor(self.model_call, comfy.model_management.throw_exception_if_processing_interrupted, self.step)


def step_callback_monitor(callback, total_steps: int) -> Monitor:
    """Monitor for the SAMPLER path: the sampler node's own per-step callback, interrupts at every core loop."""
    on_step = None
    if callback is not None:
        def on_step(info):
            callback(info["i"], info["denoised"], info["x"], total_steps)
    return Monitor(None, comfy.model_management.throw_exception_if_processing_interrupted, on_step)


# ------------------------------------------------------------------------------------------ inversion sampler
def describe_run(result) -> str:
    """One log line for an inversion run (a SAMPLER has no ui output): steps, batch, model calls, worst landing
    error over the steps and samples, fallbacks."""
    residuals = [float(r) for s in result.stats for r in s.residual]
    residuals = [r for r in residuals if math.isfinite(r)]
    worst = f"{max(residuals):.2g}" if residuals else "unknown"
    fallbacks = sum(1 for s in result.stats if any(s.fallback or []))
    line = (f"inverted {len(result.stats)} steps, batch {result.latent.shape[0]}, {result.model_calls} model calls, "
            f"worst landing error {worst}, {fallbacks} step(s) with a fallback")
    if result.residuals is not None:
        line += f", residuals stored ({result.residual_calls} of the model calls)"
    if result.verification is not None:
        line += "; verified: " + result.verification.describe()
    return line


def verification_stats(verification) -> Optional[dict]:
    """The end-to-end check of a verified run as JSON-safe INVERSION stats (None for an unverified run)."""
    if verification is None:
        return None
    return {
        "psnr": [_finite(p) for p in verification.psnr], "mean_psnr": _finite(verification.mean),
        "worst_psnr": _finite(verification.worst), "under_30db": verification.below(30.0),
        "target_psnr": verification.target_psnr, "chosen": list(verification.chosen),
        "passes": [{"kind": p["kind"], "model_calls": p["model_calls"], "kept": int(sum(p["kept"]))}
                   for p in verification.passes],
        "refinement_passes": verification.refinement_passes, "model_calls": verification.model_calls,
        "image_evaluations": verification.image_evaluations,
        "budget_exhausted": verification.budget_exhausted,
        "last_step_limited": int(sum(verification.last_step_limited)), "summary": verification.describe(),
    }



class InversionSampler(comfy.samplers.KSAMPLER):
    """A SAMPLER that *inverts*: from the (processed-in) latent at the lowest sigma up to the highest one.

    Accepts sampling-order or FlipSigmas-order sigmas. Works in SamplerCustom / SamplerCustomAdvanced graphs with
    add_noise off (a nonzero noise is ignored with a warning). Returns inverse_noise_scaling(sigma_top, x_top),
    so the sampler node's output LATENT is path A (zeros for flow at sigma 1). ``self.result`` holds the core's
    ``Inversion`` after a run. ``sampler_function`` is a k-diffusion style function (for code that inspects it);
    ComfyUI calls :meth:`sample`. ``capture``: also store the residuals (``inversion_core.residuals``, for the
    INVERSION output; their model calls are counted in the result's).
    """

    def __init__(self, make_solver: Callable, step_kind: str = "euler", eta: float = 1.0, s_noise: float = 1.0,
                 noise_seed: int = 0, correction: str = "exact", progress: Optional[HostProgress] = None,
                 node: str = "Inversion Sampler", verify: Optional[dict] = None, independent: bool = False,
                 capture: bool = False):
        super().__init__(self._sampler_function)
        self.capture = bool(capture)
        self.make_solver = make_solver
        self.verify = verify     # keyword arguments of ``invert_verified`` (end-to-end check), or None
        self.independent = bool(independent)   # the conditioning lets any sub-batch be evaluated on its own
        self.step_kind, self.eta, self.s_noise = step_kind, float(eta), float(s_noise)
        self.noise_seed, self.correction = int(noise_seed), correction
        self.progress, self.node = progress, node
        self.latent_input = "latent" if progress is not None else "latent_image (of the sampler node)"
        self.result = None
        self.exit_ok = True

    def _run(self, model_wrap, x0: torch.Tensor, sigmas, extra_args: dict, callback, model_sampling):
        order = sampling_order(self.node, sigmas)
        monitor = self.progress.monitor() if self.progress is not None else \
            step_callback_monitor(callback, order.numel() - 1)
        param = "flow" if isinstance(model_sampling, comfy.model_sampling.CONST) else "ve"
        extra = {k: v for k, v in extra_args.items() if k != "denoise_mask"}
        first_call = [True]

        def denoise(x, sigma):
            if not first_call[0]:
                return model_wrap(x, sigma, **extra)
            first_call[0] = False
            try:
                return model_wrap(x, sigma, **extra)
            except Exception as error:  # noqa: BLE001 -- re-raised, named (model_errors.first_call)
                model_errors.first_call(self.node, self.latent_input, x0, error)
                raise

        options = dict(step_kind=self.step_kind, parametrization=param, eta=self.eta, s_noise=self.s_noise,
                       noise_seed=self.noise_seed, correction=self.correction, independent=self.independent,
                       monitor=monitor)
        with validation.core_errors(self.node):
            if self.verify is None:
                self.result = invert(denoise, x0, order, self.make_solver(), **options)
            else:
                self.result = invert_verified(denoise, x0, order, self.make_solver, **self.verify, **options)
            if self.capture:
                self.result = capture_residuals(denoise, self.result, eta=self.eta, s_noise=self.s_noise,
                                                monitor=monitor)
        log.info("%s: %s", self.node, describe_run(self.result))
        return self.result

    def _sampler_function(self, model, x, sigmas, extra_args=None, callback=None, disable=None):
        """k-diffusion contract: ``model`` a KSamplerX0Inpaint (model.inner_model the guider), x at sigmas[0]."""
        model_sampling = model.inner_model.inner_model.model_sampling
        k_callback = None
        if callback is not None:
            def k_callback(i, denoised, xx, total):
                callback({"x": xx, "i": i, "sigma": None, "sigma_hat": None, "denoised": denoised})
        return self._run(model, x, sigmas, extra_args or {}, k_callback, model_sampling).latent

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        model_sampling = model_wrap.inner_model.model_sampling
        if noise is not None and torch.count_nonzero(noise) > 0:
            log.warning("%s: the sampler received noise (add_noise on?); an inversion starts from the latent and "
                        "ignores it", self.node)
        if denoise_mask is not None:
            log.warning("%s: the latent's noise_mask is ignored by inversion", self.node)
        result = self._run(model_wrap, latent_image, sigmas, extra_args, callback, model_sampling)
        out, self.exit_ok = exit_latent(model_sampling, float(result.sigmas[0]), result.latent)
        if not self.exit_ok:
            log.warning("%s: the inverted latent lies at sigma %.4g of a flow model, where a LATENT cannot carry "
                        "it (the sampler scales its start latent by 1 - sigma = 0): the LATENT output is zeros; use "
                        "the NOISE output with SamplerCustomAdvanced", self.node, float(result.sigmas[0]))
        return out


# --------------------------------------------------------------------------------------------------- running
@dataclasses.dataclass
class InversionOutputs:
    latent: dict
    record: InversionRecord
    noise: InversionNoise
    sigmas: torch.Tensor


def shared_conditioning(*conditionings) -> bool:
    """True if every conditioning tensor has batch 1 and no ControlNet is attached: then ComfyUI repeats it to any
    batch, so a sub-batch of the latents can be evaluated on its own (the core's ``independent``)."""
    for conditioning in conditionings:
        for entry in conditioning or []:
            tensor, extras = entry[0], entry[1] if len(entry) > 1 else {}
            if not isinstance(tensor, torch.Tensor) or tensor.shape[0] != 1 or "control" in extras:
                return False
            if any(isinstance(v, torch.Tensor) and v.ndim > 0 and v.shape[0] != 1 for v in extras.values()):
                return False
    return True


def run_inversion(node: str, model, positive, negative, latent: dict, cfg: float, sigmas: torch.Tensor,
                  make_solver: Callable, *, method: str, settings: dict, expected_calls: int,
                  step_kind: str = "euler", eta: float = 1.0, s_noise: float = 1.0, noise_seed: int = 0,
                  correction: str = "exact", sampling_model=None, notes=(),
                  verify: Optional[dict] = None) -> InversionOutputs:
    """Invert ``latent`` through ComfyUI's guider; build the four node outputs.

    ``sampling_model`` (default ``model``) is the MODEL the guider runs (RNRI passes an autograd-capable clone);
    ``model`` is the one the outputs are tied to (fingerprint, NOISE). ``verify``: keyword arguments of
    ``inversion_core.verified.invert_verified`` to check (and control) the reconstruction end to end.
    """
    samples = validation.latent_samples(node, "latent", latent)
    samples = comfy.sample.fix_empty_latent_channels(model, samples)
    validation.latent_for_model(node, "latent", samples, model)
    validation.conditioning(node, "positive", positive, model, samples.shape[0])
    validation.conditioning(node, "negative", negative, model, samples.shape[0])
    cfg = validation.finite(node, "cfg", cfg)
    run_model = sampling_model if sampling_model is not None else model
    guider = make_guider(run_model, positive, negative, cfg)
    progress = HostProgress(model, expected_calls)
    sampler = InversionSampler(make_solver, step_kind, eta, s_noise, noise_seed, correction, progress, node,
                               verify=verify, independent=shared_conditioning(positive, negative), capture=True)
    noise = torch.zeros(samples.shape, dtype=torch.float32, device="cpu")
    out = guider.sample(noise, samples, sampler, sigmas, denoise_mask=None, callback=None,
                        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=int(noise_seed))
    result = sampler.result
    device = comfy.model_management.intermediate_device()
    out = out.to(device)
    if not sampler.exit_ok:
        out = torch.zeros_like(out)

    fingerprint, description = model_fingerprint(model)
    stats = {
        "model_calls": int(result.model_calls),
        "residual_calls": int(result.residual_calls),
        "steps": [dataclasses.asdict(s) for s in result.stats],
        "latent_output_valid": bool(sampler.exit_ok),
        "notes": list(notes),
    }
    verified = verification_stats(result.verification)
    if verified is not None:
        stats["verification"] = verified
        log.info("%s: %s", node, verified["summary"])
    record = InversionRecord(
        sigmas=result.sigmas.to(torch.float32),
        latents=[t.detach().to(device) for t in result.latents],
        noises=[None if t is None else t.detach().to(device) for t in result.noises],
        parametrization=result.parametrization, step_kind=result.step_kind, eta=float(eta), s_noise=float(s_noise),
        fingerprint=fingerprint, model_description=description, method=method,
        settings=dict(settings, cfg=float(cfg)), stats=stats, noise_seed=int(noise_seed),
        noise_scale=float(getattr(model.get_model_object("model_sampling"), "noise_scale", 1.0) or 1.0)
        if result.parametrization == "flow" else 1.0,
        residuals=None if result.residuals is None else
        [None if t is None else t.detach().to(device) for t in result.residuals],
        bottom=result.bottom,
    )
    out_latent = {k: v for k, v in latent.items() if k != "noise_mask"}
    out_latent["samples"] = out
    if "noise_mask" in latent:
        log.info("%s: the input latent's noise_mask was dropped from the inverted LATENT (the whole latent is "
                 "inverted; for a masked edit connect the masked LATENT to Inverted Sampler's latent input)", node)
    return InversionOutputs(out_latent, record, InversionNoise(record, model, node), sigmas.to(torch.float32).cpu())


def _finite(value):
    value = float(value)
    return value if math.isfinite(value) else None


def summary(record: InversionRecord) -> dict:
    """A JSON-safe digest of an inversion for the node's ui output (shown in the history / executed message):
    method, step kind, parametrization, steps, model calls, worst per-sample landing residual, fallbacks, notes."""
    steps = record.stats.get("steps", [])
    residuals = [_finite(r) for s in steps for r in s["residual"]]
    residuals = [r for r in residuals if r is not None]
    return {
        "method": record.method, "step_kind": record.step_kind, "parametrization": record.parametrization,
        "steps": record.steps, "batch": record.batch, "model_calls": int(record.stats.get("model_calls", 0)),
        "residual_calls": int(record.stats.get("residual_calls", 0)),
        "max_residual": max(residuals) if residuals else None,
        "fallback_steps": sum(1 for s in steps if any(s.get("fallback") or [])),
        "sigma_max": _finite(record.sigmas[0]), "sigma_min": _finite(record.sigmas[-1]),
        "latent_output_valid": bool(record.stats.get("latent_output_valid", True)),
        "settings": {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                     for k, v in record.settings.items()},
        "notes": [str(n) for n in record.stats.get("notes", [])],
        "reconstruction": _reconstruction_digest(record.stats.get("verification")),
    }


def _reconstruction_digest(verified: Optional[dict]) -> Optional[dict]:
    if verified is None:
        return None
    return {k: verified[k] for k in ("summary", "mean_psnr", "worst_psnr", "under_30db", "target_psnr",
                                     "refinement_passes", "model_calls", "budget_exhausted", "psnr")}
