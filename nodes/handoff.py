"""Handing an inversion to ComfyUI's stock samplers: the LATENT and NOISE outputs, replay samplers, sampling back.

ComfyUI's ``KSAMPLER.sample`` in ``comfy/samplers.py`` starts from
``model_sampling.noise_scaling(sigma_0, noise, latent, max_denoise)`` and returns
``model_sampling.inverse_noise_scaling(sigma_last, x)``:

* LATENT (path A, :func:`exit_latent`): ``process_out(inverse_noise_scaling(sigma_N, x_N))`` -- what
  KSamplerAdvanced (add_noise disable) / SamplerCustom (add_noise off) turn back into x_N. For flow models at
  sigma_N = 1 it cannot exist.
* NOISE (path B, :class:`InversionNoise`): N with ``noise_scaling(sigma_N, N, L_in, max_denoise) = x_N``, for
  SamplerCustomAdvanced; works for every parametrization including flow sigma = 1.

Sampling back: :func:`replay_sampler` is ComfyUI's own k-diffusion sampler of the inversion's step kind replaying
its stored noises (:class:`ReplayNoiseSampler`), started exactly at x_N (:func:`starting_at_inverted`); with stored
residuals, :func:`residual_sampler` runs the core's forward sampler of the same step kind and adds them
(``inversion_core.residuals``); :func:`sample_back` runs either through a CFG guider (:func:`make_guider`, the
guider every sampling of the pack uses, the inversion's own included) and :func:`finite_output` keeps NaN latents
from going downstream.
"""
from __future__ import annotations

import math
from typing import Optional

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview

from ..inversion_core.monitor import Monitor
from ..inversion_core.trajectory import sample as core_sample
from . import host_features, validation
from .record import InversionRecord


# --------------------------------------------------------------------------------------------------- LATENT / NOISE
def exit_latent(model_sampling, sigma: float, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """(inverse_noise_scaling(sigma, x), ok): the internal-space value whose process_out is the LATENT (path A).
    Not finite (flow at sigma = 1, where the start latent is multiplied by 1 - sigma = 0): zeros, ok False."""
    sigma_t = torch.tensor(float(sigma), dtype=x.dtype, device=x.device)
    out = model_sampling.inverse_noise_scaling(sigma_t, x)
    if not torch.isfinite(out).all():
        return torch.zeros_like(x), False
    return out, True


def noise_for_start(model_sampling, sigma: float, x_start: torch.Tensor, latent_in: torch.Tensor,
                    max_denoise: bool) -> torch.Tensor:
    """N with model_sampling.noise_scaling(sigma, N, latent_in, max_denoise) == x_start.

    noise_scaling is affine in the noise with an elementwise coefficient for every ComfyUI parametrization (EPS/V:
    N * sqrt(1 + s^2) or N * s, plus L; CONST: s N + (1 - s) L; newer versions may scale N further), so
    N = (x - noise_scaling(s, 0, L)) / noise_scaling(s, 1, 0): no formula of ours, the model's own.
    """
    sigma_t = torch.tensor(float(sigma), dtype=torch.float32, device=x_start.device)
    x_start = x_start.to(torch.float32)
    latent_in = latent_in.to(device=x_start.device, dtype=torch.float32)
    base = model_sampling.noise_scaling(sigma_t, torch.zeros_like(x_start), latent_in.clone(), max_denoise)
    scale = model_sampling.noise_scaling(sigma_t, torch.ones_like(x_start), torch.zeros_like(x_start), max_denoise)
    if not torch.is_tensor(scale) or (scale == 0).any():
        raise validation.NodeInputError(
            f"this model's sampling ({type(model_sampling).__name__}) ignores the starting noise, so an inverted "
            "latent cannot be handed to it as NOISE (an image-to-image model?)")
    return (x_start - base) / scale


def is_max_denoise(model_sampling, sigma: float) -> bool:
    """``comfy.samplers.Sampler.max_denoise`` for a given first sigma."""
    max_sigma = float(model_sampling.sigma_max)
    return math.isclose(max_sigma, float(sigma), rel_tol=1e-05) or float(sigma) > max_sigma


class InversionNoise:
    """NOISE socket object (``.seed``, ``generate_noise(latent) -> CPU tensor``) that makes SamplerCustomAdvanced
    start exactly at the inverted latent x_N, for any LATENT of the inverted shape fed to it (usually the inverted
    image's own latent, or an EmptyLatentImage)."""

    def __init__(self, record: InversionRecord, model, node: str):
        self.record = record
        self.seed = int(record.noise_seed)
        self.model_sampling = model.get_model_object("model_sampling")
        self.process_latent_in = model.get_model_object("process_latent_in")
        self.node = node

    def generate_noise(self, input_latent) -> torch.Tensor:
        samples = input_latent["samples"]
        validation.not_nested(self.node, "latent_image (of SamplerCustomAdvanced, for the NOISE output)", samples)
        record = self.record
        if tuple(samples.shape) != record.shape:
            raise validation.NodeInputError(
                f"{self.node}: the NOISE output was fed a latent of shape {tuple(samples.shape)}, but the inversion "
                f"has shape {record.shape}; give SamplerCustomAdvanced the latent that was inverted")
        l_in = self.process_latent_in(samples) if torch.count_nonzero(samples) > 0 else samples
        sigma = float(record.sigmas[0])
        try:
            noise = noise_for_start(self.model_sampling, sigma, record.inverted, l_in,
                                    is_max_denoise(self.model_sampling, sigma))
        except validation.NodeInputError as error:
            raise validation.NodeInputError(f"{self.node}: {error}") from None
        return noise.to(device="cpu", dtype=torch.float32)


# --------------------------------------------------------------------------------------------------- replay
class ReplayNoiseSampler:
    """k-diffusion ``noise_sampler(sigma, sigma_next)`` returning the stored noise of the matching step."""

    def __init__(self, record: InversionRecord, node: str = "Replay Sampler"):
        self.record, self.node = record, node

    def __call__(self, sigma, sigma_next):
        record = self.record
        device = sigma.device if isinstance(sigma, torch.Tensor) else record.inverted.device
        if float(sigma) == float(sigma_next):     # a repeated sigma: zero-length step, its noise is scaled by 0
            return torch.zeros(record.shape, dtype=torch.float32, device=device)
        try:
            i = record.noise_index(float(sigma), float(sigma_next))
        except KeyError:
            raise validation.NodeInputError(
                f"{self.node}: the sampler asked for the noise of a step {float(sigma):.5g} -> {float(sigma_next):.5g} "
                f"that is not a step of the inversion (sigmas {[round(float(s), 5) for s in record.sigmas]}); sample "
                "with the inversion's own SIGMAS") from None
        noise = record.noises[i]
        if noise is None:   # a deterministic step (e.g. eta 0): ComfyUI still draws noise and multiplies it by 0
            return torch.zeros(record.shape, dtype=torch.float32, device=device)
        noise = noise.to(device=device, dtype=torch.float32)
        # Newer ComfyUI multiplies the noise by model_sampling.noise_scale (sample_euler_ancestral_RF scales s_noise,
        # sample_lcm renoises through noise_scaling); the stored noises are the unscaled ones: divide by whatever this
        # host's sampler will apply (host_features measures it).
        factor = host_features.replay_noise_factor(record.step_kind, record.noise_scale)
        return noise / factor if factor != 1.0 else noise


def starting_at_inverted(sampler: comfy.samplers.KSAMPLER, record: InversionRecord) -> comfy.samplers.KSAMPLER:
    """``sampler`` with its start snapped onto x_N bit for bit.

    KSAMPLER starts at ``noise_scaling(sigma_0, NOISE, latent)``, which lands within float32 round-off of x_N (the
    NOISE is solved for it), not on it. A replay that must follow an ill-conditioned trajectory (the paper's
    seeded-noise euler_ancestral inversion amplifies a perturbation of x_N up to ~1e6) needs the exact start, so a
    start within 1e-5 (relative) of x_N over the inversion's own first sigma becomes x_N; any other start (another
    NOISE, another schedule) is left alone.
    """
    def sampler_function(model, x, sigmas, *args, **kwargs):
        x_n = record.inverted
        if tuple(x.shape) == tuple(x_n.shape) and sigmas.numel() > 0 \
                and float(sigmas[0]) == float(record.sigmas[0]):
            x_n = x_n.to(device=x.device, dtype=x.dtype)
            if bool(((x - x_n).abs() <= 1e-5 * (x_n.abs() + 1.0)).all()):
                x = x_n.clone()
        return sampler.sampler_function(model, x, sigmas, *args, **kwargs)

    return comfy.samplers.KSAMPLER(sampler_function, sampler.extra_options, sampler.inpaint_options)


def replay_sampler(record: InversionRecord, node: str = "Replay Sampler") -> comfy.samplers.KSAMPLER:
    """ComfyUI's own k-diffusion sampler of the inversion's step kind, replaying its stored noises (stochastic
    kinds start exactly at x_N, :func:`starting_at_inverted`)."""
    if record.step_kind == "euler":
        return comfy.samplers.ksampler("euler")
    replay = ReplayNoiseSampler(record, node)
    if record.step_kind == "euler_ancestral":
        sampler = comfy.samplers.ksampler("euler_ancestral",
                                          {"eta": record.eta, "s_noise": record.s_noise, "noise_sampler": replay})
    else:
        sampler = comfy.samplers.ksampler("lcm", {"noise_sampler": replay})
    return starting_at_inverted(sampler, record)


def residual_sampler(record: InversionRecord, node: str, start: int = 0,
                     residuals: bool = True) -> comfy.samplers.KSAMPLER:
    """A KSAMPLER over ``record.sigmas[start:]`` that adds the stored residuals: the core's forward sampler of the
    inversion's step kind (``inversion_core.trajectory.sample``, the arithmetic the residuals were taken with;
    ComfyUI's ``sample_euler`` and friends take the same steps up to float rounding) with the stored noises, whose
    model is ComfyUI's own (the ``KSamplerX0Inpaint`` the guider hands every sampler function, so masks, conds and
    wrappers stay ComfyUI's). From ``latents[start]`` with the inversion's conditioning it visits every stored
    latent. Only the stable KSAMPLER sampler-function contract is used (model, x, sigmas, extra_args, callback).
    ``residuals`` False: the same sampler without them (an ODE Invert record's last interval is still integrated
    down its ``bottom`` levels, as the inversion went up them)."""
    levels = record.sigmas[start:].to(torch.float64)

    def sampler_function(model, x, sigmas, extra_args=None, callback=None, disable=None, **_options):
        given = sigmas.detach().flatten().to(device="cpu", dtype=torch.float64)
        close = given.shape == levels.shape and bool(
            ((given - levels).abs() <= 1e-5 * levels.abs().clamp_min(1.0)).all())
        if not close:
            raise validation.NodeInputError(
                f"{node}: sampling with the residuals needs the inversion's own schedule from step {start}; got sigmas "
                f"{[round(float(v), 5) for v in given]}")
        extra = extra_args or {}

        def denoise(latent, sigma):
            return model(latent, sigma, **extra)

        def moved(tensors):
            return [None if t is None else t.to(device=x.device, dtype=torch.float32) for t in tensors[start:]]

        k_callback = None
        if callback is not None:
            def k_callback(info):
                callback({"x": info["x"], "i": info["i"], "sigma": sigmas[info["i"]], "sigma_hat": sigmas[info["i"]],
                          "denoised": info["denoised"]})
        monitor = Monitor(None, comfy.model_management.throw_exception_if_processing_interrupted, None)
        with validation.core_errors(node):
            return core_sample(denoise, x, levels, step_kind=record.step_kind, parametrization=record.parametrization,
                               noises=moved(record.noises), eta=record.eta, s_noise=record.s_noise,
                               residuals=moved(record.residuals) if residuals and record.residuals else None,
                               monitor=monitor, callback=k_callback, bottom=record.bottom)

    return comfy.samplers.KSAMPLER(sampler_function)


# --------------------------------------------------------------------------------------------------- sampling back
def make_guider(model, positive, negative, cfg: float) -> comfy.samplers.CFGGuider:
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(float(cfg))
    return guider


def sample_back(node: str, model, positive, negative, cfg: float, record: InversionRecord,
                latent_image: Optional[torch.Tensor] = None, residuals: bool = False) -> torch.Tensor:
    """Sample an INVERSION back with ComfyUI's own sampler of its step kind, replaying its noises: the
    SamplerCustomAdvanced path (NOISE that starts at x_N; latent_image default: the inverted latent itself).
    ``residuals`` and a record that stores some: :func:`residual_sampler` instead, started exactly at x_N."""
    if latent_image is None:
        process_out = model.get_model_object("process_latent_out")
        source = record.source
        latent_image = process_out(source.clone()) if torch.count_nonzero(source) > 0 else source
    latent_image = latent_image.to(torch.float32).cpu()
    noise = InversionNoise(record, model, node).generate_noise({"samples": latent_image})
    guider = make_guider(model, positive, negative, cfg)
    callback = latent_preview.prepare_callback(model, record.steps)
    if (residuals and record.has_residuals) or record.bottom is not None:
        sampler = starting_at_inverted(residual_sampler(record, node, residuals=residuals), record)
    else:
        sampler = replay_sampler(record, node)
    out = guider.sample(noise, latent_image, sampler, record.sigmas.to(torch.float32),
                        denoise_mask=None, callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                        seed=int(record.noise_seed))
    return finite_output(node, out).to(comfy.model_management.intermediate_device())


def finite_output(node: str, samples: torch.Tensor) -> torch.Tensor:
    """Never hand a NaN latent downstream (VAE Decode would make a black image of it)."""
    if not torch.isfinite(samples).all():
        raise validation.NodeInputError(
            f"{node}: sampling produced NaN/inf (the model returned non-finite values). Try fp32 weights, a lower cfg, "
            "or check the model and conditioning")
    return samples
