"""Noise Correct: inversion of a *stochastic* sampler (euler_ancestral, lcm) with stored per-step noises.

Each inverse step fixes the step's noise (seeded), solves the implicit step equation for the latent above with a
ReNoise-style fixed point or the adaptive exact solver, then replaces the noise by the one that makes the forward
step land on the latent below exactly ("exact", edit-friendly DDPM, Huberman-Spiegelglas et al. 2024, eq. 6) or
moves it there by ReNoise's damped rule ("damped", Garibi et al. 2024, Sec. 4.3). Replaying the stored noises
(Inverted Sampler, or Replay Sampler + the NOISE output) reproduces the input.
"""
from __future__ import annotations

from comfy_api.latest import io

from ..inversion_core.adaptive import AdaptiveInversion
from ..inversion_core.edit_friendly import EditFriendly
from ..inversion_core.renoise import ReNoise
from . import validation
from .invert_nodes import InvertNode

SAMPLERS = ("euler_ancestral", "lcm")
CORRECTIONS = ("exact", "damped")
SOLVERS = ("exact", "renoise", "edit_friendly")


def exact_steps(iterations: int) -> AdaptiveInversion:
    """The adaptive exact solver held to ``iterations + 1`` model calls on every step, the final one included (the
    node's ``iterations`` is a per-step budget)."""
    return AdaptiveInversion(max_calls=iterations + 1, final_max_calls=iterations + 1)


class NoiseCorrect(InvertNode):
    """Runs through :meth:`InvertNode.execute` like the method nodes; its hooks build the solver, count the
    noise-corrected calls and hand the run the stochastic step (sampler_name, eta, s_noise, seed, correction)."""

    NODE_ID = "ExactInvNoiseCorrect"
    DISPLAY_NAME = "Noise Correct"
    ADVANCED_INPUTS = ("s_noise", "correction", "solver", "iterations")
    SEARCH_ALIASES = ("edit friendly inversion", "ddpm inversion", "euler ancestral inversion", "lcm inversion")
    DESCRIPTION = ("Inverts a stochastic sampler (euler_ancestral or lcm) and stores the noise of every step, "
                   "corrected so that replaying it lands exactly on the image: Inverted Sampler (or Replay "
                   "Sampler + NOISE in SamplerCustomAdvanced) then reproduces the input, and an edited "
                   "conditioning gives an edit-friendly result. For deterministic samplers (euler) use ODE Invert "
                   "to edit.")

    @classmethod
    def method_inputs(cls):
        return [
            io.Combo.Input("sampler_name", options=list(SAMPLERS), default="euler_ancestral",
                           tooltip="The stochastic sampler to invert (ComfyUI's own; lcm for LCM/turbo models)."),
            io.Float.Input("eta", default=1.0, min=0.0, max=100.0, step=0.01, round=False,
                           tooltip="(euler_ancestral) ancestral eta, as SamplerEulerAncestral."),
            io.Float.Input("s_noise", default=1.0, min=0.0, max=100.0, step=0.01, round=False,
                           tooltip="(euler_ancestral) noise scale, as SamplerEulerAncestral."),
            io.Int.Input("noise_seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                         tooltip="Seed of the initial per-step noises before correction."),
            io.Combo.Input("correction", options=list(CORRECTIONS), default="exact",
                           tooltip="exact: the noise that lands exactly on the latent below (exact "
                           "reconstruction). damped: ReNoise's correction (10 steps of 1.8 towards it), which "
                           "keeps the noise closer to Gaussian."),
            io.Combo.Input("solver", options=list(SOLVERS), default="edit_friendly",
                           tooltip="edit_friendly (default): every noise level drawn from the forward process "
                           "(LEDITS++), noises solved exactly, one model call per step, latents keep Gaussian "
                           "statistics. exact / renoise: solve each step for the seeded noise (the paper's way) "
                           "with the adaptive solver or ReNoise; solving the ancestral step exactly divides by "
                           "its contraction, so the inverted latent grows with the number of steps."),
            io.Int.Input("iterations", default=9, min=0, max=1000,
                         tooltip="renoise: renoising iterations per step; exact: model-call budget per step "
                         "minus one."),
        ]

    @classmethod
    def solver(cls, model, params):
        node = cls.DISPLAY_NAME
        validation.choice(node, "sampler_name", params["sampler_name"], SAMPLERS)
        eta = validation.finite(node, "eta", params["eta"])
        s_noise = validation.finite(node, "s_noise", params["s_noise"])
        correction = validation.choice(node, "correction", params["correction"], CORRECTIONS)
        solver = validation.choice(node, "solver", params["solver"], SOLVERS)
        noise_seed, iterations = int(params["noise_seed"]), int(params["iterations"])
        if solver == "edit_friendly":
            def make():
                return EditFriendly(seed=noise_seed, exact_solver=exact_steps(iterations))
        elif solver == "exact":
            def make():
                return exact_steps(iterations)
        else:
            if iterations < 1:
                validation.fail(node, "iterations", "must be at least 1 for the renoise solver")
            window = (max(iterations - 1, 0), iterations + 1)

            def make():
                return ReNoise(iterations=iterations, window=window)
        settings = {"sampler_name": params["sampler_name"], "eta": eta, "s_noise": s_noise, "noise_seed": noise_seed,
                    "correction": correction, "solver": solver, "iterations": iterations}
        return make, settings

    @classmethod
    def calls_per_step(cls, make_solver):
        return make_solver().expected_calls(corrected=True)     # exact and damped both correct the noise

    @classmethod
    def schedule_settings(cls, steps, scheduler, denoise, sigmas):
        # Noise Correct has always recorded the scheduler and denoise widgets, SIGMAS override or not
        return {"steps": steps, "scheduler": scheduler, "denoise": float(denoise)}

    @classmethod
    def method(cls, settings):
        return f"noise_correct/{settings['solver']}"

    @classmethod
    def step_arguments(cls, params):
        return {"step_kind": params["sampler_name"], "eta": params["eta"], "s_noise": params["s_noise"],
                "noise_seed": params["noise_seed"], "correction": params["correction"]}
