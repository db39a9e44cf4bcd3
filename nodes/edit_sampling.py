"""Edits from an INVERSION: a later start (edit strength) and masked edits, on ComfyUI's own samplers.

:class:`TrajectorySampler` is a ``comfy.samplers.KSAMPLER`` that runs ComfyUI's own k-diffusion function of the
inversion's step kind (``sample_euler`` / ``sample_euler_ancestral`` / ``sample_lcm``, stored noises replayed as in
``handoff.replay_sampler``) over the inversion's schedule from step ``start`` on, starting at the stored latent of
that step (``latents[start]``): the first ``start`` steps are the source trajectory itself (the "replay the stored
latents, then edit" way of keeping structure; ``start`` 0 is the full edit).

Masks. ComfyUI's own ``denoise_mask`` (``KSamplerX0Inpaint``) blends, before every model call,
x <- m x + (1 - m) noise_scaling(sigma, noise, source), and after it, D <- m D + (1 - m) source. For an inversion
the source's latent at each sigma is known exactly -- it is the stored trajectory -- so :class:`TrajectoryInpaint`
blends with ``latents[i]`` at sigma_i instead of a re-noised source: inside the mask the edit, outside the source
trajectory, per step, and the clean source outside at the end. The mask is ComfyUI's (``prepare_mask`` in the
guider, so a LATENT's ``noise_mask`` from SetLatentNoiseMask or an inpaint encode works at any resolution), and
``model_options["denoise_mask_function"]`` is honoured as in core.

Residuals. With ``residuals`` and a record that stores them, the steps are ``handoff.residual_sampler``'s from step
``start`` on (each adds that step's stored residual), so with the source conditioning the masked and later-start
paths also sample back onto the stored latents.
"""
from __future__ import annotations

import torch

import comfy.samplers

from . import handoff, validation
from .record import InversionRecord


class TrajectoryInpaint:
    """Stands in for ``KSamplerX0Inpaint``: the model call of a k-diffusion sampler, with the source trajectory
    outside the mask (see the module docstring)."""

    def __init__(self, model_wrap, sigmas: torch.Tensor, record: InversionRecord, node: str):
        self.inner_model = model_wrap
        self.sigmas = sigmas
        self.record, self.node = record, node
        self.latent_image = None
        self.noise = None
        self._levels = [float(s) for s in record.sigmas]

    def trajectory(self, sigma, like: torch.Tensor) -> torch.Tensor:
        value = float(sigma.flatten()[0]) if isinstance(sigma, torch.Tensor) else float(sigma)
        for i, level in enumerate(self._levels):
            if abs(level - value) <= 1e-5 * max(1.0, abs(level)):
                return self.record.latents[i].to(device=like.device, dtype=like.dtype)
        if self.record.bottom is not None and 0.0 < value < self._levels[-2]:
            # a substep of ODE Invert's last interval: the source between its two stored latents, linear in sigma
            # (the path x0 + sigma * eps of a fixed noise, exact for ve and flow alike at these two ends)
            w = value / self._levels[-2]
            top, clean = self.record.latents[-2], self.record.latents[-1]
            return (clean + w * (top - clean)).to(device=like.device, dtype=like.dtype)
        raise validation.NodeInputError(
            f"{self.node}: the sampler evaluated the model at sigma {value:.5g}, which is not a level of the "
            "inversion; a masked edit needs the inversion's own schedule")

    def __call__(self, x, sigma, denoise_mask, model_options={}, seed=None):  # noqa: B006 (ComfyUI's signature)
        if denoise_mask is not None:
            if "denoise_mask_function" in model_options:
                denoise_mask = model_options["denoise_mask_function"](
                    sigma, denoise_mask, extra_options={"model": self.inner_model, "sigmas": self.sigmas})
            keep = 1.0 - denoise_mask
            x = x * denoise_mask + self.trajectory(sigma, x) * keep
        out = self.inner_model(x, sigma, model_options=model_options, seed=seed)
        if denoise_mask is not None:
            out = out * denoise_mask + self.latent_image * keep
        return out


class TrajectorySampler(comfy.samplers.KSAMPLER):
    """ComfyUI's sampler of the inversion's kind from step ``start`` of the stored trajectory, mask-aware."""

    def __init__(self, record: InversionRecord, start: int, node: str, residuals: bool = False):
        if (residuals and record.has_residuals) or record.bottom is not None:
            base = handoff.residual_sampler(record, node, start, residuals)
        else:
            base = handoff.replay_sampler(record, node)
        super().__init__(base.sampler_function, base.extra_options, base.inpaint_options)
        self.record, self.start, self.node = record, int(start), node

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None,
               disable_pbar=False):
        extra_args["denoise_mask"] = denoise_mask
        model_k = TrajectoryInpaint(model_wrap, sigmas, self.record, self.node)
        model_k.latent_image = latent_image
        model_k.noise = noise
        x = self.record.latents[self.start].to(device=latent_image.device, dtype=latent_image.dtype)
        total = len(sigmas) - 1
        k_callback = None
        if callback is not None:
            def k_callback(info):
                callback(info["i"], info["denoised"], info["x"], total)
        samples = self.sampler_function(model_k, x, sigmas, extra_args=extra_args, callback=k_callback,
                                        disable=disable_pbar, **self.extra_options)
        samples = model_wrap.inner_model.model_sampling.inverse_noise_scaling(sigmas[-1], samples)
        if denoise_mask is not None:   # the last step lands on D, already the source outside; make it exact
            samples = samples * denoise_mask + latent_image * (1.0 - denoise_mask)
        return samples


def start_step(steps: int, edit_strength: float) -> int:
    """The first sampled step for an edit strength in [0, 1]: round((1 - strength) * steps) (steps = none)."""
    return max(0, min(int(round((1.0 - float(edit_strength)) * steps)), steps))


def sample_edit(node: str, model, positive, negative, cfg: float, record: InversionRecord,
                latent_image: torch.Tensor | None, noise_mask: torch.Tensor | None, edit_strength: float,
                residuals: bool = False):
    """Inverted Sampler's path with an edit strength below 1 or a mask: the guider runs :class:`TrajectorySampler`
    over ``sigmas[start:]`` (ComfyUI prepares the mask as for KSampler), adding the stored residuals if
    ``residuals``. Returns external-space samples."""
    import comfy.model_management
    import comfy.utils
    import latent_preview

    process_out = model.get_model_object("process_latent_out")
    if latent_image is None:
        latent_image = process_out(record.source.clone())
    latent_image = latent_image.to(torch.float32).cpu()
    start = start_step(record.steps, edit_strength)
    if start >= record.steps:       # nothing is sampled: the source itself
        return latent_image.to(comfy.model_management.intermediate_device())
    sigmas = record.sigmas[start:].to(torch.float32)
    guider = handoff.make_guider(model, positive, negative, cfg)
    callback = latent_preview.prepare_callback(model, sigmas.numel() - 1)
    out = guider.sample(torch.zeros(latent_image.shape, dtype=torch.float32), latent_image,
                        TrajectorySampler(record, start, node, residuals), sigmas, denoise_mask=noise_mask,
                        callback=callback, disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
                        seed=int(record.noise_seed))
    return handoff.finite_output(node, out).to(comfy.model_management.intermediate_device())


def noise_mask(node: str, name: str, latent) -> torch.Tensor | None:
    """The LATENT's ``noise_mask`` as a float32 CPU tensor (None without one), checked: finite, in [0, 1],
    spatial ([H, W], [B, H, W] or [B, 1, H, W]; any resolution, ComfyUI rescales it to the latent)."""
    mask = latent.get("noise_mask") if isinstance(latent, dict) else None
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.ndim < 2 or mask.numel() == 0:
        validation.fail(node, name, "has a noise_mask that is not a [B, 1, H, W] (or [H, W]) tensor")
    mask = mask.detach().to(torch.float32).cpu()
    if not torch.isfinite(mask).all() or mask.min() < 0.0 or mask.max() > 1.0:
        validation.fail(node, name, "has a noise_mask with values outside [0, 1] (or NaN): use a MASK from "
                        "SetLatentNoiseMask / an inpaint encode")
    return mask
