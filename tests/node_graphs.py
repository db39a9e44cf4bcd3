"""Graph-building helpers shared by the node tests (tests/test_nodes_*.py); no tests here.

Models: "analytic" (InvTestAnalyticModel: the exact posterior mean of a Gaussian mixture, SD1.5 latent format,
4 channels) or "sd15" (the generated narrow SD1.5 UNet through the stock UNETLoader), each optionally patched
with a stock ModelSampling node (``PATCHES``). Latents are 8x8 samples of the analytic mixture (external space).
"""
from __future__ import annotations

import math
import uuid

from devkit import harness as ch

ANALYTIC_SEED = 7
COMPONENTS = 3

PATCHES = {
    "eps": None,
    "v_prediction": ("ModelSamplingDiscrete", {"sampling": "v_prediction", "zsnr": False}),
    "lcm": ("ModelSamplingDiscrete", {"sampling": "lcm", "zsnr": False}),
    "sd3": ("ModelSamplingSD3", {"shift": 3.0}),
    "flux": ("ModelSamplingFlux", {"max_shift": 1.15, "base_shift": 0.5, "width": 64, "height": 64}),
}
FLOW = {"sd3", "flux"}

# every method node with its parameters (the node defaults unless a test needs cheaper settings)
NODE_PARAMS = {
    "ExactInvExactInvert": dict(tolerance=1e-3, max_calls=30, memory=3, fallback=True),
    "ExactInvDDIMInvert": dict(convention="target"),
    "ExactInvODEInvert": dict(bottom_substeps=8, substeps=1, bottom_floor=0.05, mirror="auto"),
    "ExactInvReNoiseInvert": dict(iterations=9, average=True, average_start=8, average_end=10, first_step="first",
                                  regularize=True, lambda_pair=20.0, lambda_kl=0.065, seed=0),
    "ExactInvEasyInvInvert": dict(preset="sd1", eta=0.5, start=0.05, length=0.2, order="before"),
    "ExactInvRNRIInvert": dict(variant="newton", iterations=2, prior_weight=0.1),
    "ExactInvNoiseCorrect": dict(sampler_name="euler_ancestral", eta=1.0, s_noise=1.0, noise_seed=0,
                                 correction="exact", solver="edit_friendly", iterations=9),
}


def model(g: ch.Graph, kind: str = "analytic", patch: str = "eps"):
    if kind == "analytic":
        m = g.node("InvTestAnalyticModel", seed=ANALYTIC_SEED, components=COMPONENTS, channels=4,
                   latent_format="sd15", sampling="eps")
    elif kind == "sd15":
        m = g.node("UNETLoader", unet_name=ch.NARROW_UNET, weight_dtype="default")
    else:
        raise ValueError(kind)
    if PATCHES[patch] is not None:
        name, inputs = PATCHES[patch]
        m = g.node(name, model=m, **inputs)
    return m


def cond(g: ch.Graph, kind: str = "analytic", seed: int = 1, zero: bool = False):
    if kind == "analytic":  # the analytic model ignores conditioning
        return g.node("InvTestConditioning", tokens=1, dim=8, seed=seed, zero=zero, pooled_dim=8)
    return g.node("InvTestConditioning", tokens=4, dim=768, seed=seed, zero=zero, pooled_dim=768)


def latent(g: ch.Graph, seed: int = 1, batch: int = 1, size: int = 8, channels: int = 4):
    return g.node("InvTestAnalyticLatent", seed=seed, batch=batch, latent_width=size, latent_height=size,
                  gmm_seed=ANALYTIC_SEED, components=COMPONENTS, channels=channels, latent_format="sd15")


def invert(g: ch.Graph, node_id: str, m, pos, neg, lat, steps: int, scheduler: str = "simple", cfg: float = 1.0,
           denoise: float = 1.0, sigmas=None, **params):
    inputs = dict(NODE_PARAMS[node_id], **params)
    if sigmas is not None:
        inputs["sigmas"] = sigmas
    return g.node(node_id, model=m, positive=pos, negative=neg, latent=lat, steps=steps, scheduler=scheduler,
                  cfg=cfg, denoise=denoise, **inputs)


# outputs of the invert nodes
LATENT, INVERSION, NOISE, SIGMAS = 0, 1, 2, 3


def ksampler_advanced(g, m, pos, neg, latent_image, steps, cfg=1.0, scheduler="simple", sampler="euler"):
    """Path A: the stock KSamplerAdvanced with add_noise disabled, start 0, end 10000."""
    return g.node("KSamplerAdvanced", model=m, add_noise="disable", noise_seed=0, steps=steps, cfg=cfg,
                  sampler_name=sampler, scheduler=scheduler, positive=pos, negative=neg, latent_image=latent_image,
                  start_at_step=0, end_at_step=10000, return_with_leftover_noise="disable")


def sampler_custom(g, m, pos, neg, latent_image, sigmas, cfg=1.0, sampler="euler"):
    """Path A: the stock SamplerCustom with add_noise off."""
    smp = g.node("KSamplerSelect", sampler_name=sampler) if isinstance(sampler, str) else sampler
    return g.node("SamplerCustom", model=m, add_noise=False, noise_seed=0, cfg=cfg, positive=pos, negative=neg,
                  sampler=smp, sigmas=sigmas, latent_image=latent_image)


def sampler_custom_advanced(g, m, pos, neg, noise, sigmas, latent_image, cfg=1.0, sampler="euler"):
    """Path B: the stock SamplerCustomAdvanced with the inversion's NOISE and a stock CFGGuider."""
    guider = g.node("CFGGuider", model=m, positive=pos, negative=neg, cfg=cfg)
    smp = g.node("KSamplerSelect", sampler_name=sampler) if isinstance(sampler, str) else sampler
    return g.node("SamplerCustomAdvanced", noise=noise, guider=guider, sampler=smp, sigmas=sigmas,
                  latent_image=latent_image)


def inverted_sampler(g, m, pos, neg, inversion, cfg=1.0, **more):
    return g.node("ExactInvInvertedSampler", model=m, positive=pos, negative=neg, cfg=cfg, inversion=inversion, **more)


def replay_over_other_sigmas(g, steps: int, other_scheduler: str, other_steps: int):
    """Noise Correct over ``steps``, then its Replay Sampler run by SamplerCustomAdvanced over another schedule
    (BasicScheduler ``other_scheduler`` x ``other_steps``): a misuse the replay sampler must refuse. Returns the
    SamplerCustomAdvanced node."""
    m, pos, lat = model(g), cond(g), latent(g)
    inv = invert(g, "ExactInvNoiseCorrect", m, pos, pos, lat, steps, iterations=3)
    other = g.node("BasicScheduler", model=m, scheduler=other_scheduler, steps=other_steps, denoise=1.0)
    replay = g.node("ExactInvReplaySampler", inversion=inv.out(INVERSION))
    return sampler_custom_advanced(g, m, pos, pos, inv.out(NOISE), other, lat, sampler=replay)


class ModelWrapperNode:
    """Base of the test-only V1 nodes that wrap a MODEL (in-process only: a test registers one with
    ``monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, ...)``): MODEL (+ ``EXTRA_INPUTS``) -> a clone whose
    network calls go through :meth:`unet_wrapper` (``set_model_unet_function_wrapper``)."""

    EXTRA_INPUTS: dict = {}
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "wrap"
    CATEGORY = "testing/exact_inversion"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), **cls.EXTRA_INPUTS}}

    def unet_wrapper(self, **params):
        """The ``wrapper(apply_model, args)`` for the clone, from the node's extra inputs."""
        raise NotImplementedError

    def wrap(self, model, **params):
        clone = model.clone()
        clone.set_model_unet_function_wrapper(self.unet_wrapper(**params))
        return (clone,)


# Nodes whose outputs may come from ComfyUI's cache across tests (models, conditioning, inputs): re-running them
# would only reload the same model. Everything else runs afresh in every test.
CACHEABLE = {"UNETLoader", "CheckpointLoaderSimple", "InvTestAnalyticModel", "InvTestConditioning",
             "InvTestAnalyticLatent", "InvTestLoadTensor", "ModelSamplingDiscrete", "ModelSamplingSD3",
             "ModelSamplingFlux", "EmptyLatentImage"}


def run(runner, g, **kwargs) -> dict:
    """Run a graph with every node but the CACHEABLE ones executed afresh: in-process, a node served from the cache
    reports no ui, and a test must not depend on what earlier tests left in ComfyUI's cache."""
    prompt = ch.as_prompt(g)
    nonce = uuid.uuid4().hex
    for node in prompt.values():
        if node["class_type"] not in CACHEABLE:
            node["inputs"][ch.FRESH_INPUT] = nonce
    return runner.run(prompt, **kwargs)


def compare(g, a, b):
    return g.node("InvTestCompare", a=a, b=b)


def psnr(outputs, node) -> list:
    return outputs[node.id]["psnr"]


def max_abs(outputs, node) -> list:
    return outputs[node.id]["max_abs"]


def peak(outputs, node) -> float:
    """max |a| of the first sample of an InvTestCompare(a, b) (from its psnr and rms)."""
    r = outputs[node.id]
    return r["rms"][0] * 10 ** (r["psnr"][0] / 20) if math.isfinite(r["psnr"][0]) else float("nan")


def summary(outputs, node) -> dict:
    """The ui digest an invert node reports (inversion_run.summary)."""
    return outputs[node.id]["inversion"][0]


def fmt(values) -> str:
    return "[" + ", ".join("inf" if math.isinf(v) else f"{v:.2f}" for v in values) + "]"
