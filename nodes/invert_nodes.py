"""The inversion nodes: one node per method, all with the same inputs and the same four outputs.

Inputs: MODEL, positive / negative CONDITIONING, LATENT, steps, scheduler, cfg, denoise, the method's own
parameters, and an optional SIGMAS that overrides steps / scheduler / denoise.
Outputs: LATENT (for KSamplerAdvanced / SamplerCustom with add_noise off), INVERSION (for Inverted Sampler),
NOISE (for SamplerCustomAdvanced), SIGMAS (the schedule used). See ``inversion_run`` and ``handoff``
(LATENT, NOISE) for how they are made.
"""
from __future__ import annotations

import comfy.samplers
from comfy_api.latest import io

from ..inversion_core.ddim import DDIMInversion
from ..inversion_core.easyinv import EASYINV_PRESETS, EasyInv
from ..inversion_core.ode_inversion import MIRROR as ODE_MIRROR, ODEInversion
from ..inversion_core.regularizers import NoiseRegularizer
from ..inversion_core.renoise import FIRST_STEP_RULES, ReNoise
from ..inversion_core.rnri import RNRI, VARIANTS as RNRI_VARIANTS, GradientUnavailable
from ..inversion_core.verified import HEADROOM_DB, exact_solver
from . import autograd_clone, inversion_run, validation
from .record import INVERSION
from .schema import PackNode

RECONSTRUCT_HINT = ("To get the image back: KSamplerAdvanced with add_noise disable, the same steps, scheduler, cfg "
                    "and conditioning, sampler euler, start 0, end 10000 -- or SamplerCustom with add_noise off, the "
                    "SIGMAS output and KSamplerSelect euler. Inverted Sampler does it in one node.")


def common_inputs():
    return [
        io.Model.Input("model", tooltip="The diffusion model that will sample the latent back."),
        io.Conditioning.Input("positive", tooltip="Conditioning of the image (its prompt, or an empty prompt). "
                              "Sample back with the same conditioning to reproduce it, or with an edited one."),
        io.Conditioning.Input("negative", tooltip="Negative conditioning; only used when cfg is not 1."),
        io.Latent.Input("latent", tooltip="The latent to invert (VAE Encode of the image). Batches are inverted "
                        "per image."),
        io.Int.Input("steps", default=20, min=1, max=10000,
                     tooltip="Sampling steps of the schedule to invert; sample back with the same number."),
        io.Combo.Input("scheduler", options=list(comfy.samplers.SCHEDULER_NAMES), default="simple",
                       tooltip="Scheduler of the schedule to invert (the model's own sigmas, as KSampler)."),
        io.Float.Input("cfg", default=1.0, min=0.0, max=100.0, step=0.1, round=0.01,
                       tooltip="Classifier-free guidance used while inverting; sample back with the same cfg to "
                       "reconstruct. 1 is the most invertible and needs one model evaluation per call instead of "
                       "two; for edits, invert at 1 and raise cfg only in the sampler that edits."),
        io.Float.Input("denoise", default=1.0, min=0.0, max=1.0, step=0.01,
                       tooltip="Partial inversion: invert only up to the noise level a KSampler with this denoise "
                       "starts from (sampling back with BasicScheduler(steps, denoise) + SamplerCustom)."),
    ]


def sigmas_input():
    return io.Sigmas.Input("sigmas", optional=True,
                           tooltip="Optional schedule; overrides steps, scheduler and denoise. Sampling order "
                           "(BasicScheduler) or FlipSigmas order.")


def common_outputs():
    return [
        io.Latent.Output(id="inverted_latent", display_name="latent",
                         tooltip="The inverted latent. " + RECONSTRUCT_HINT +
                         " For a full inversion of a flow model (SD3, Flux: sigma 1) a LATENT cannot hold it and this "
                         "is zeros: use the NOISE output with SamplerCustomAdvanced."),
        INVERSION.Output(id="inversion", display_name="inversion",
                         tooltip="Everything needed to sample back exactly (schedule, latents, noises, settings, "
                         "stats): connect to Inverted Sampler or Replay Sampler."),
        io.Noise.Output(id="noise", display_name="noise",
                        tooltip="NOISE for SamplerCustomAdvanced (with the input latent as latent_image and the "
                        "SIGMAS output): it starts sampling exactly at the inverted latent. Works for every model "
                        "type, including full flow-model inversions. Only with this node's SIGMAS: a NOISE is not "
                        "told the schedule, so another one cannot be detected and will not reproduce the image."),
        io.Sigmas.Output(id="used_sigmas", display_name="sigmas",
                         tooltip="The schedule that was inverted (sampling order)."),
    ]


class InvertNode(PackNode):
    """Base of the inverting nodes (not registered): the schema every node that inverts shares (the common inputs,
    the node's own :meth:`method_inputs` and the optional SIGMAS; the four common outputs) and the one execution
    path of the method nodes and Noise Correct. Subclasses set the schema fields and :meth:`method_inputs`, build
    their solver in :meth:`solver`, and may override the other hooks :meth:`execute` calls (:meth:`verification`,
    :meth:`calls_per_step`, :meth:`schedule_settings`, :meth:`method`, :meth:`step_arguments`, :meth:`run`)."""

    SEARCH_ALIASES = ("invert", "inversion", "unsample", "unsampler", "reverse", "reverse sampling", "image to noise",
                      "noise")

    @classmethod
    def method_inputs(cls) -> list:
        return []

    @classmethod
    def schema_inputs(cls):
        return common_inputs() + cls.method_inputs() + [sigmas_input()]

    @classmethod
    def schema_outputs(cls):
        return common_outputs()

    METHOD = ""

    @classmethod
    def solver(cls, model, params: dict):
        """(make_solver, settings dict); the progress bar's budget is :meth:`calls_per_step` per step."""
        raise NotImplementedError

    @classmethod
    def verification(cls, params: dict):
        """Keyword arguments of ``invert_verified`` for an end-to-end checked run, or None (the default)."""
        return None

    @classmethod
    def calls_per_step(cls, make_solver) -> int:
        """Model calls one inverse step is expected to take (the progress bar's unit)."""
        return make_solver().expected_calls()

    @classmethod
    def schedule_settings(cls, steps: int, scheduler: str, denoise: float, sigmas) -> dict:
        """The schedule's part of the INVERSION settings (a SIGMAS override replaces scheduler and denoise)."""
        return {"steps": steps, "scheduler": scheduler if sigmas is None else "custom sigmas",
                "denoise": float(denoise) if sigmas is None else None}

    @classmethod
    def method(cls, settings: dict) -> str:
        """The INVERSION's method name."""
        return cls.METHOD

    @classmethod
    def step_arguments(cls, params: dict) -> dict:
        """Keyword arguments of ``inversion_run.run_inversion`` that say which step is inverted (step_kind, eta,
        s_noise, noise_seed, correction); none: the deterministic euler step."""
        return {}

    @classmethod
    def execute(cls, model, positive, negative, latent, steps, scheduler, cfg, denoise, sigmas=None, **params):
        node = cls.DISPLAY_NAME
        validation.model(node, "model", model)
        # JSON NaN passes ComfyUI's min/max check: every FLOAT parameter of the method must be finite
        params = {k: validation.finite(node, k, v) if isinstance(v, float) else v for k, v in params.items()}
        schedule = inversion_run.schedule(node, model, steps, scheduler, denoise, sigmas)
        n_steps = schedule.numel() - 1
        make_solver, settings = cls.solver(model, params)
        calls_per_step = cls.calls_per_step(make_solver)
        verify = cls.verification(params)
        if verify is not None:
            calls_per_step += 1      # the replay of the forward sampler (more if images need further passes)
            settings = dict(settings, **{k: (list(v) if isinstance(v, tuple) else v) for k, v in verify.items()})
        settings = dict(settings, **cls.schedule_settings(n_steps, scheduler, denoise, sigmas))
        out = cls.run(model, positive, negative, latent, cfg, schedule, make_solver, settings,
                      n_steps * calls_per_step, [], verify=verify, **cls.step_arguments(params))
        return io.NodeOutput(out.latent, out.record, out.noise, out.sigmas,
                             ui={"inversion": [inversion_run.summary(out.record)]})

    @classmethod
    def run(cls, model, positive, negative, latent, cfg, schedule, make_solver, settings, expected_calls, notes,
            sampling_model=None, verify=None, **step) -> inversion_run.InversionOutputs:
        return inversion_run.run_inversion(cls.DISPLAY_NAME, model, positive, negative, latent, cfg, schedule,
                                     make_solver, method=cls.method(settings), settings=settings,
                                     expected_calls=expected_calls, notes=notes, sampling_model=sampling_model,
                                     verify=verify, **step)


class DDIMInvert(InvertNode):
    NODE_ID = "ExactInvDDIMInvert"
    DISPLAY_NAME = "DDIM Invert"
    ADVANCED_INPUTS = ("convention",)
    SEARCH_ALIASES = ("ddim inversion", "FlipSigmas")
    METHOD = "ddim"
    DESCRIPTION = ("Plain DDIM (Euler) inversion: one model call per step, approximate (the classic 'unsampler'). "
                   "Fast, but sampling back drifts from the image at few steps or high cfg. Use Exact Invert to get "
                   "the image back exactly.")

    @classmethod
    def method_inputs(cls):
        return [io.Combo.Input("convention", options=["target", "current"], default="target",
                               tooltip="target: evaluate the model at the step's target noise level (diffusers "
                               "DDIMInverseScheduler, null-text inversion). current: at the latent's own level "
                               "(ComfyUI FlipSigmas + euler).")]

    @classmethod
    def solver(cls, model, params):
        convention = validation.choice(cls.DISPLAY_NAME, "convention", params["convention"], ("target", "current"))
        return (lambda: DDIMInversion(convention)), {"convention": convention}


VERIFY_DEFAULTS = {"target_psnr": 40.0, "refinements": 2, "candidates": True}


class ExactInvert(InvertNode):
    NODE_ID = "ExactInvExactInvert"
    DISPLAY_NAME = "Exact Invert"
    ADVANCED_INPUTS = ("tolerance", "max_calls", "memory", "fallback", "refinements", "candidates")
    SEARCH_ALIASES = ("exact inversion", "reconstruct", "FlipSigmas")
    METHOD = "adaptive"
    DESCRIPTION = ("The 'give me my image back through a stock sampler' node (its LATENT into KSamplerAdvanced, "
                   "its NOISE into SamplerCustomAdvanced); for edits use ODE Invert. Solves every inverse sampler "
                   "step to a tolerance (Anderson-accelerated fixed point), then checks the result end to end: it "
                   "samples the inverted latent back with euler over the same schedule, cfg and conditioning and "
                   "measures every image's reconstruction PSNR. Images below target_psnr get defect-correction "
                   "passes and DDIM and ReNoise candidates, unless the last step alone explains the shortfall "
                   "(those get a second budget on that step instead); each image keeps its best verified answer. "
                   "The node's output and log report the measured reconstruction (mean, worst image, images under "
                   "30 dB). ReNoise Invert keeps the paper's fixed-iteration behaviour instead.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Float.Input("tolerance", default=1e-4, min=1e-7, max=0.5, step=1e-4, round=False,
                           tooltip="Stop a step once sampling forward from the answer lands on the latent below "
                           "within this fraction of how far the step moves it (RMS). The sampler can amplify these "
                           "landing errors on some images; target_psnr controls what you get back."),
            io.Int.Input("max_calls", default=30, min=1, max=1000,
                         tooltip="Model-call budget per step. The final step, to sigma 0, gets twice this (it "
                         f"converges slowest and its error is not damped), stops once its own landing is "
                         f"{HEADROOM_DB:g} dB above target_psnr, and goes on for twice this again on images still "
                         "below target_psnr."),
            io.Int.Input("memory", default=3, min=0, max=20,
                         tooltip="Anderson memory (0 = plain fixed-point iteration)."),
            io.Boolean.Input("fallback", default=True,
                             tooltip="Redo samples that miss 10x the tolerance with ReNoise and keep the better."),
            io.Float.Input("target_psnr", default=VERIFY_DEFAULTS["target_psnr"], min=0.0, max=200.0, step=1.0,
                           optional=True,
                           tooltip="End-to-end target: the reconstruction PSNR (dB, latent range) that sampling "
                           "back must reach. Every run is checked by sampling back; images below it get the cheap "
                           "candidates and refinement passes until they reach it or the passes run out. 0 = only "
                           "measure."),
            io.Int.Input("refinements", default=VERIFY_DEFAULTS["refinements"], min=0, max=20, optional=True,
                         tooltip="Defect-correction passes for images still below target_psnr (each costs about "
                         "one inversion plus one sampling pass). Skipped where the last step alone explains the "
                         "shortfall: that step's second budget serves those images without re-solving the rest."),
            io.Boolean.Input("candidates", default=VERIFY_DEFAULTS["candidates"], optional=True,
                             tooltip="For images below target_psnr, also try DDIM and ReNoise inversion and keep, per "
                             "image, whichever samples back best (so no such image is worse than those). Skipped "
                             "where the last step's own landing error explains the shortfall: that step is the "
                             "same equation for every method, and they give it fewer calls."),
        ]

    @classmethod
    def verification(cls, params):
        # optional inputs (workflows saved before they existed still load): missing ones take their defaults
        values = {k: params.get(k, default) for k, default in VERIFY_DEFAULTS.items()}
        return {"target_psnr": float(values["target_psnr"]), "refinements": int(values["refinements"]),
                "candidates": ("ddim", "renoise") if values["candidates"] else ()}

    @classmethod
    def solver(cls, model, params):
        tol, max_calls, memory = float(params["tolerance"]), int(params["max_calls"]), int(params["memory"])
        fallback = "renoise" if params["fallback"] else None
        settings = {"tolerance": tol, "max_calls": max_calls, "memory": memory, "fallback": fallback}
        return (exact_solver(cls.verification(params)["target_psnr"], tolerance=tol, max_calls=max_calls,
                             memory=memory, fallback=fallback), settings)


def first_step_sigma(model) -> float:
    """The sigma of DDPM timestep 250 (ReNoise's "official" first-step threshold), from the model's sampling."""
    return float(model.get_model_object("model_sampling").percent_to_sigma(1.0 - 250.0 / 999.0))


class ReNoiseInvert(InvertNode):
    NODE_ID = "ExactInvReNoiseInvert"
    DISPLAY_NAME = "ReNoise Invert"
    ADVANCED_INPUTS = ("average", "average_start", "average_end", "first_step", "lambda_pair", "lambda_kl", "seed")
    SEARCH_ALIASES = ("renoise",)
    METHOD = "renoise"
    DESCRIPTION = ("ReNoise (Garibi et al., ECCV 2024): every inverse step re-noises a fixed number of times with "
                   "the model and averages the last estimates. Defaults are the official code's except the "
                   "first-step rule and the noise regularisation (off; turn it on to reproduce the paper). Inverted "
                   "Sampler reconstructs it exactly with the stored residuals.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Int.Input("iterations", default=9, min=0, max=100,
                         tooltip="Renoising iterations per step (iterations + 1 model calls)."),
            io.Boolean.Input("average", default=True, tooltip="Average the estimates of the averaging window."),
            io.Int.Input("average_start", default=8, min=0, max=101,
                         tooltip="First iterate of the averaging window (official 8)."),
            io.Int.Input("average_end", default=10, min=1, max=101,
                         tooltip="End (exclusive) of the averaging window (official 10: the last two of 9 "
                         "iterations)."),
            io.Combo.Input("first_step", options=list(FIRST_STEP_RULES), default="first",
                           tooltip="first: fewer iterations on the first inversion step only, without the DDIM "
                           "estimate in its average. official: the official code's rule (every step below "
                           "timestep 250). none: no special case."),
            io.Boolean.Input("regularize", default=False,
                             tooltip="The paper's noise regularisation (pair + patch-KL losses), meant to make the "
                             "noise more editable; one more model call per step. Off by default (the help page "
                             "gives the measurements); turn it on to reproduce the paper."),
            io.Float.Input("lambda_pair", default=20.0, min=0.0, max=1000.0, step=0.5,
                           tooltip="Weight of the auto-correlation (pair) loss: higher = more editable, less "
                           "faithful."),
            io.Float.Input("lambda_kl", default=0.065, min=0.0, max=10.0, step=0.005, round=False,
                           tooltip="Weight of the patch-KL loss."),
            io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFF,
                         tooltip="Seed of the regulariser's random shifts and reference noise."),
        ]

    @classmethod
    def solver(cls, model, params):
        node = cls.DISPLAY_NAME
        iterations = int(params["iterations"])
        window = (int(params["average_start"]), int(params["average_end"]))
        if window[0] >= window[1]:
            validation.fail(node, "average_end", f"({window[1]}) must be greater than average_start ({window[0]})")
        rule = validation.choice(node, "first_step", params["first_step"], FIRST_STEP_RULES)
        seed = int(params["seed"])
        sigma_250 = first_step_sigma(model) if rule == "official" else None
        regularize = bool(params["regularize"])
        lambda_pair, lambda_kl = float(params["lambda_pair"]), float(params["lambda_kl"])
        settings = {"iterations": iterations, "average": bool(params["average"]), "window": window,
                    "first_step": rule, "first_step_sigma": sigma_250, "regularize": regularize,
                    "lambda_pair": lambda_pair, "lambda_kl": lambda_kl, "seed": seed}

        def make():
            reg = NoiseRegularizer(lambda_pair=lambda_pair, lambda_kl=lambda_kl, seed=seed) if regularize else None
            return ReNoise(iterations=iterations, average=bool(params["average"]), window=window, first_step=rule,
                           first_step_sigma=sigma_250, regularizer=reg, reference_seed=seed)

        return make, settings


class EasyInvInvert(InvertNode):
    NODE_ID = "ExactInvEasyInvInvert"
    DISPLAY_NAME = "EasyInv Invert"
    ADVANCED_INPUTS = ("eta", "start", "length", "order")
    SEARCH_ALIASES = ("easyinv", "ddim inversion")
    METHOD = "easyinv"
    DESCRIPTION = ("EasyInv (Zhang et al., ICML 2025): DDIM inversion that blends each latent with the previous one "
                   "on a window of steps. One model call per step, like DDIM Invert, usually closer. Presets are the "
                   "official settings.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Combo.Input("preset", options=list(EASYINV_PRESETS) + ["custom"], default="sd1",
                           tooltip="sd1: eta 0.5, window 5%-25% of the steps; sdxl: eta 0.8, window 85%-95%; "
                           "custom: the values below."),
            io.Float.Input("eta", default=0.5, min=0.0, max=1.0, step=0.01,
                           tooltip="(custom) Weight of the current latent in the blend."),
            io.Float.Input("start", default=0.05, min=0.0, max=1.0, step=0.01,
                           tooltip="(custom) Start of the blending window, as a fraction of the steps."),
            io.Float.Input("length", default=0.2, min=0.0, max=1.0, step=0.01,
                           tooltip="(custom) Length of the blending window, as a fraction of the steps."),
            io.Combo.Input("order", options=["before", "after"], default="before",
                           tooltip="before: blend the step's input (the official code behind the paper's results); "
                           "after: blend its output (the official example)."),
        ]

    @classmethod
    def solver(cls, model, params):
        node = cls.DISPLAY_NAME
        preset = validation.choice(node, "preset", params["preset"], list(EASYINV_PRESETS) + ["custom"])
        values = dict(EASYINV_PRESETS[preset]) if preset != "custom" else \
            {"eta": float(params["eta"]), "start": float(params["start"]), "length": float(params["length"])}
        order = validation.choice(node, "order", params["order"], ("before", "after"))
        settings = dict(values, preset=preset, order=order)
        return (lambda: EasyInv(order=order, **values)), settings


class RNRIInvert(InvertNode):
    NODE_ID = "ExactInvRNRIInvert"
    DISPLAY_NAME = "RNRI Invert"
    ADVANCED_INPUTS = ("prior_weight",)
    SEARCH_ALIASES = ("rnri", "newton raphson inversion")
    METHOD = "rnri"
    DESCRIPTION = ("RNRI (Samuel et al., ICLR 2025): Newton-Raphson on each inverse step with a Gaussian prior that "
                   "keeps the latent in distribution. 'newton' differentiates the model (one backward pass per "
                   "iteration, on a private autograd-capable copy of the MODEL's weights; the input MODEL is not "
                   "changed); where the model has no backward (some attention kernels, fp8) it falls back to "
                   "'released', the official Jacobian-free update, and says so in the log and the INVERSION stats.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Combo.Input("variant", options=list(RNRI_VARIANTS), default="newton",
                           tooltip="newton: the paper's Newton-Raphson with the model Jacobian (autograd). "
                           "released: the official code's Jacobian-free update (no backward pass)."),
            io.Int.Input("iterations", default=2, min=1, max=100,
                         tooltip="Newton iterations per step (official 2)."),
            io.Float.Input("prior_weight", default=0.1, min=0.0, max=100.0, step=0.01, round=False,
                           tooltip="Weight of the Gaussian prior q(x_t | x_0) (official 0.1)."),
        ]

    @classmethod
    def solver(cls, model, params):
        variant = validation.choice(cls.DISPLAY_NAME, "variant", params["variant"], RNRI_VARIANTS)
        iterations, weight = int(params["iterations"]), float(params["prior_weight"])
        settings = {"variant": variant, "iterations": iterations, "prior_weight": weight}
        return (lambda: RNRI(variant, iterations, weight)), settings

    @classmethod
    def run(cls, model, positive, negative, latent, cfg, schedule, make_solver, settings, expected_calls, notes,
            sampling_model=None, verify=None):
        if settings["variant"] != "newton":
            return super().run(model, positive, negative, latent, cfg, schedule, make_solver, settings,
                               expected_calls, notes)
        clone, wrapped = autograd_clone.autograd_model(model)
        try:
            return super().run(model, positive, negative, latent, cfg, schedule, make_solver, settings,
                               expected_calls, notes + [f"newton: autograd through {wrapped} wrapped weights"],
                               sampling_model=clone)
        except GradientUnavailable as error:
            message = (f"RNRI Invert: the model cannot be differentiated here ({error}); fell back to the "
                       "'released' (Jacobian-free) variant")
            inversion_run.log.warning(message)
            iterations, weight = settings["iterations"], settings["prior_weight"]
            settings = dict(settings, variant="released", requested_variant="newton")
            return super().run(model, positive, negative, latent, cfg, schedule,
                               lambda: RNRI("released", iterations, weight), settings,
                               expected_calls, notes + [message])


class ODEInvert(InvertNode):
    NODE_ID = "ExactInvODEInvert"
    DISPLAY_NAME = "ODE Invert"
    ADVANCED_INPUTS = ("substeps", "bottom_floor", "mirror")
    SEARCH_ALIASES = ("probability flow inversion", "heun inversion", "edit", "ode inversion")
    METHOD = "ode"
    DESCRIPTION = ("Inverts along the continuous probability-flow ODE (Heun steps, with log-spaced substeps on the "
                   "last interval, where the flow is stiffest): the noise an ideal edit starts from, not the exact "
                   "preimage of one sampler. For edits: Inverted Sampler adds the stored residuals, so the source "
                   "prompt gives the image back exactly, and (where that interval is long) samples the last "
                   "interval the same way. Its LATENT "
                   "through a stock KSampler does not reproduce the image exactly: use Exact Invert for that path.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Int.Input("bottom_substeps", default=8, min=1, max=64,
                         tooltip="Substeps on the last interval (down to sigma 0), log-spaced; 1 = one DDIM step. "
                         "Costs 2 model calls per substep, here and again in Inverted Sampler."),
            io.Int.Input("substeps", default=1, min=1, max=16,
                         tooltip="Heun substeps on every other interval (2 model calls each)."),
            io.Float.Input("bottom_floor", default=0.05, min=0.001, max=0.5, step=0.001,
                           tooltip="The lowest substep level, as a fraction of the last interval's sigma."),
            io.Combo.Input("mirror", options=list(ODE_MIRROR), default="auto",
                           tooltip="Whether Inverted Sampler integrates the last interval down the same substeps "
                           "(costing the same calls again) instead of one Euler step. auto: where that interval "
                           "is long (few steps); on / off: always / never."),
        ]

    @classmethod
    def solver(cls, model, params):
        node = cls.DISPLAY_NAME
        values = {"substeps": int(params["substeps"]), "bottom_substeps": int(params["bottom_substeps"]),
                  "bottom_floor": float(params["bottom_floor"]),
                  "mirror": validation.choice(node, "mirror", params["mirror"], ODE_MIRROR)}
        try:
            ODEInversion(**values)
        except ValueError as error:
            validation.fail(node, "bottom_floor", str(error))
        return (lambda: ODEInversion(**values)), dict(values)


INVERT_NODES = [ExactInvert, ODEInvert, DDIMInvert, ReNoiseInvert, EasyInvInvert, RNRIInvert]
