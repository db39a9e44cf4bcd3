"""Sampling an inversion back, and the SAMPLER objects for custom-sampling graphs.

* Inverted Sampler: INVERSION (+ same or edited conditioning and cfg) -> LATENT, through ComfyUI's own
  k-diffusion sampler of the inversion's step kind (``sample_euler``, ``sample_euler_ancestral``, ``sample_lcm``)
  replaying the stored noises, inside a guider run. Unedited, it returns the inverted latent. An edit strength
  below 1 replays the source trajectory for the first steps; a LATENT with a noise_mask edits inside the mask
  only (``edit_sampling``).
* Inversion Sampler: a SAMPLER that inverts (for SamplerCustom / FlipSigmas graphs).
* Replay Sampler: a SAMPLER replaying an INVERSION's noises (for SamplerCustomAdvanced with its NOISE).
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..inversion_core.ddim import DDIMInversion
from ..inversion_core.easyinv import EasyInv
from ..inversion_core.renoise import ReNoise
from ..inversion_core.verified import exact_solver
from . import edit_sampling, handoff, inversion_run, validation
from .invert_nodes import ExactInvert
from .record import INVERSION
from .schema import PackNode

EDIT_STRENGTH_TOOLTIP = ("Fraction of the steps sampled with this conditioning (1 = the whole schedule). Below 1 "
                         "the first (1 - strength) x steps are the source's own stored trajectory, so the edit "
                         "starts later and keeps more of the source's structure.")


RESIDUALS = ("all", "none")
RESIDUALS_TOOLTIP = ("With an inversion: what the inversion's step from each stored latent missed of the next one "
                     "(its residual, stored by the invert nodes and Noise Correct). all: every sampled step adds its "
                     "residual back, so with the inversion's conditioning and cfg the sampler passes through every "
                     "stored latent and returns the input whatever the method; with an edited conditioning the "
                     "same corrections are added to the edit. none: the sampler alone, as without stored "
                     "residuals. After ODE Invert with a mirrored last interval, that interval is integrated down "
                     "the inversion's substeps either way.")


class InvertedSampler(PackNode):
    NODE_ID = "ExactInvInvertedSampler"
    DISPLAY_NAME = "Inverted Sampler"
    SEARCH_ALIASES = ("inversion", "sample back", "reconstruct", "edit", "unsampler", "noise replay")
    DESCRIPTION = ("Samples an inversion back to an image latent: ComfyUI's own sampler of the inversion's kind "
                   "(euler, or euler_ancestral / lcm replaying the stored noises) from the inverted latent over the "
                   "inverted schedule. With the inversion's conditioning and cfg it returns the input latent; with "
                   "an edited conditioning it gives the edit. Edit strength below 1 keeps more of the source: the "
                   "first steps replay the source trajectory. A noise_mask on the latent (SetLatentNoiseMask) edits "
                   "inside the mask and keeps the source outside it. Without an INVERSION it samples a LATENT (from "
                   "an invert node's latent output) with euler over SIGMAS. With residuals 'all' every step also adds "
                   "what the inversion's own step missed of the stored trajectory (see that input). After ODE "
                   "Invert it integrates the last interval down the inversion's substeps where the inversion "
                   "mirrored it.")

    @classmethod
    def schema_inputs(cls):
        return [
            io.Model.Input("model", tooltip="The model the inversion was made with."),
            io.Conditioning.Input("positive", tooltip="The inversion's conditioning to reproduce, or an edit."),
            io.Conditioning.Input("negative"),
            io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                           tooltip="The inversion's cfg reproduces it; other values change the result."),
            INVERSION.Input("inversion", optional=True, tooltip="From an invert node or Noise Correct."),
            io.Latent.Input("latent", optional=True,
                            tooltip="With an inversion: the latent that was inverted (optional; it must have the "
                            "inversion's shape). Give it a noise_mask (SetLatentNoiseMask) to edit only inside the "
                            "mask: outside, every step uses the source's own stored trajectory and the result is "
                            "the source. Without an inversion: an inverted LATENT to sample with euler over sigmas."),
            io.Sigmas.Input("sigmas", optional=True,
                            tooltip="Without an inversion: the schedule the latent was inverted with."),
            io.Float.Input("edit_strength", default=1.0, min=0.0, max=1.0, step=0.05, optional=True,
                           tooltip=EDIT_STRENGTH_TOOLTIP),
            io.Combo.Input("residuals", options=list(RESIDUALS), default="all", optional=True,
                           tooltip=RESIDUALS_TOOLTIP),
        ]

    @classmethod
    def schema_outputs(cls):
        return [io.Latent.Output(id="sampled_latent", display_name="latent")]

    @classmethod
    def execute(cls, model, positive, negative, cfg, inversion=None, latent=None, sigmas=None, edit_strength=1.0,
                residuals="all"):
        node = cls.DISPLAY_NAME
        validation.model(node, "model", model)
        cfg = validation.finite(node, "cfg", cfg)
        if inversion is not None:
            validation.inversion(node, "inversion", inversion)
            validation.inversion_for_model(node, "inversion", inversion, model)
            latent_image = None
            if latent is not None:
                latent_image = validation.latent_samples(node, "latent", latent)
                validation.batch_matches(node, "latent", latent_image, inversion)
            validation.conditioning(node, "positive", positive, model, inversion.batch)
            validation.conditioning(node, "negative", negative, model, inversion.batch)
            strength = validation.finite(node, "edit_strength", edit_strength)
            if not 0.0 <= strength <= 1.0:
                validation.fail(node, "edit_strength", f"must be between 0 and 1, got {strength}")
            add = validation.choice(node, "residuals", residuals, RESIDUALS) == "all"
            mask = edit_sampling.noise_mask(node, "latent", latent)
            if mask is None and strength >= 1.0:
                samples = handoff.sample_back(node, model, positive, negative, cfg, inversion, latent_image, add)
            else:
                samples = edit_sampling.sample_edit(node, model, positive, negative, cfg, inversion, latent_image,
                                                    mask, strength, add)
            return io.NodeOutput({"samples": samples})
        if latent is None or sigmas is None:
            validation.fail(node, "inversion", "is not connected: connect an INVERSION, or a LATENT and SIGMAS")
        if edit_sampling.noise_mask(node, "latent", latent) is not None or float(edit_strength) < 1.0:
            validation.fail(node, "inversion", "is not connected: a masked edit or an edit strength below 1 needs "
                            "the INVERSION (the source trajectory it replays)")
        samples = validation.latent_samples(node, "latent", latent)
        samples = comfy.sample.fix_empty_latent_channels(model, samples)
        validation.latent_for_model(node, "latent", samples, model)
        validation.conditioning(node, "positive", positive, model, samples.shape[0])
        validation.conditioning(node, "negative", negative, model, samples.shape[0])
        schedule = inversion_run.schedule(node, model, 1, "simple", 1.0, sigmas)
        guider = handoff.make_guider(model, positive, negative, cfg)
        callback = latent_preview.prepare_callback(model, schedule.numel() - 1)
        out = guider.sample(torch.zeros(samples.shape, dtype=torch.float32), samples,
                            comfy.samplers.ksampler("euler"), schedule, callback=callback,
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=0)
        result = {k: v for k, v in latent.items() if k != "noise_mask"}
        result["samples"] = handoff.finite_output(node, out).to(comfy.model_management.intermediate_device())
        return io.NodeOutput(result)


SAMPLER_METHODS = {
    "exact": lambda tol, iters: exact_solver(ExactInvert.verification({})["target_psnr"], tolerance=tol,
                                             max_calls=iters)(),
    "renoise": lambda tol, iters: ReNoise(iterations=iters),
    "easyinv": lambda tol, iters: EasyInv.preset("sd1"),
    "ddim": lambda tol, iters: DDIMInversion("target"),
}


class InversionSamplerNode(PackNode):
    NODE_ID = "ExactInvInversionSampler"
    DISPLAY_NAME = "Inversion Sampler"
    SEARCH_ALIASES = ("invert", "inversion", "unsample", "unsampler", "reverse", "reverse sampler", "FlipSigmas",
                      "noise")
    DESCRIPTION = ("A SAMPLER that inverts instead of denoising, for SamplerCustom / SamplerCustomAdvanced with "
                   "add_noise off: give it the schedule in sampling order (BasicScheduler) or flipped (FlipSigmas). "
                   "Its output latent is the inverted LATENT (sample it back with SamplerCustom, euler and the "
                   "unflipped sigmas).")

    @classmethod
    def schema_inputs(cls):
        return [
            io.Combo.Input("method", options=list(SAMPLER_METHODS), default="exact",
                           tooltip="exact: adaptive exact solver with Exact Invert's end-to-end check (it samples "
                           "back with euler over the same sigmas and keeps each image's best verified answer; the "
                           "reconstruction PSNR goes to the log); renoise: ReNoise with the "
                           "official averaging, no regularisation; easyinv: the sd1 preset; ddim: plain DDIM."),
            io.Float.Input("tolerance", default=1e-4, min=1e-7, max=0.5, step=1e-4, round=False,
                           tooltip="(exact) landing error per step, relative to how far the step moves the latent."),
            io.Int.Input("iterations", default=30, min=1, max=1000,
                         tooltip="(exact) model-call budget per step, twice this for the final step to sigma 0 "
                         "(and twice again there for images still below the target); (renoise) renoising "
                         "iterations."),
        ]

    @classmethod
    def schema_outputs(cls):
        return [io.Sampler.Output(id="sampler", display_name="sampler")]

    @classmethod
    def execute(cls, method, tolerance, iterations):
        node = cls.DISPLAY_NAME
        validation.choice(node, "method", method, SAMPLER_METHODS)
        factory = SAMPLER_METHODS[method]
        tol, iters = validation.finite(node, "tolerance", tolerance), int(iterations)
        # exact: the same end-to-end check as Exact Invert, inside the sampler node's own guider (its log line
        # reports the reconstruction; a SAMPLER has no ui output of its own)
        verify = ExactInvert.verification({}) if method == "exact" else None
        return io.NodeOutput(inversion_run.InversionSampler(lambda: factory(tol, iters), node=node, verify=verify))


class ReplaySamplerNode(PackNode):
    NODE_ID = "ExactInvReplaySampler"
    DISPLAY_NAME = "Replay Sampler"
    SEARCH_ALIASES = ("inversion", "replay noise", "noise", "unsampler")
    DESCRIPTION = ("A SAMPLER that samples like the inverted sampler (euler, euler_ancestral or lcm: ComfyUI's own) "
                   "while replaying the INVERSION's stored noises. Use with SamplerCustomAdvanced, the invert node's "
                   "NOISE and SIGMAS and the input latent.")

    @classmethod
    def schema_inputs(cls):
        return [INVERSION.Input("inversion")]

    @classmethod
    def schema_outputs(cls):
        return [io.Sampler.Output(id="sampler", display_name="sampler")]

    @classmethod
    def execute(cls, inversion):
        node = cls.DISPLAY_NAME
        validation.inversion(node, "inversion", inversion)
        return io.NodeOutput(handoff.replay_sampler(inversion, node))


SAMPLE_NODES = [InvertedSampler, InversionSamplerNode, ReplaySamplerNode]
