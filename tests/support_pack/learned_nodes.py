"""Benchmark/test nodes around the project's learned denoiser and full-size random UNets (test support pack only).

* InvTestLearnedModel(sampling, latent_format) -> MODEL: the trained toy denoiser of ``testbed/learned.py``
  (``LearnedDenoiser.load()``) behind ``devkit.analytic_models.make_denoiser_model``: ComfyUI runs it like any loaded
  diffusion model, with the parametrization of the model_sampling in force ("eps" / "v_prediction": ComfyUI's VE
  space with the SD1.5 discrete schedule; "flow": ModelSamplingDiscreteFlow, shift 3). Its internal latent space is
  the photo latent itself, so use latent_format "identity" (the default) unless a test wants a scaled format.
  Differentiable (weights loaded outside inference mode), so RNRI's newton path runs on it.
* InvTestEvalLatents(split, count, latent_format) -> LATENT: the committed eval latents
  (``testbed/data/eval_latents.safetensors``): "held_out" / "train" = the [8, 4, 16, 16] crops (the first 3 held-out
  crops are the whole photos), "held_out_whole64" = [3, 4, 32, 32]. Returned in *external* space
  (``latent_format.process_out`` of the internal latent; identity for "identity").
* InvTestRandomUNet(architecture, dtype, seed) -> MODEL: a FULL-SIZE SD1.5 or SDXL UNet built from ComfyUI's own
  ``comfy.supported_models`` classes with seeded random weights (timing does not depend on weights), for the GPU
  timing part of ``benchmarks/host_benchmark.py``. Weights are initialised on the load device; on CPU SDXL needs
  ~10 GiB (fp32) -- it is meant for a GPU host.
* InvTestCallMeter(model) -> MODEL: a clone whose network calls are counted and timed (``CALL_METER``, read
  in-process by the benchmark), through ComfyUI's stock ``model_function_wrapper``.
"""
from __future__ import annotations

import functools
import os
import time

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models

from devkit import REPO_ROOT, analytic_models as am
from devkit.analytic_models import learned_denoiser

CATEGORY = "testing/exact_inversion"
EVAL_LATENTS = os.path.join(REPO_ROOT, "testbed", "data", "eval_latents.safetensors")
SPLITS = {"held_out": "heldout_crops", "train": "train_crops", "held_out_whole64": "heldout_whole64"}


class InvTestLearnedModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sampling": (list(am.SAMPLINGS), {"default": "eps"}),
            "latent_format": (list(am.LATENT_FORMATS), {"default": "identity"}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, sampling, latent_format):
        provider = learned_denoiser()
        return (am.make_denoiser_model(lambda shape: provider, 4, latent_format, sampling),)


@functools.lru_cache(maxsize=4)
def _eval_tensor(key: str) -> torch.Tensor:
    import safetensors.torch

    with torch.inference_mode(False):
        return safetensors.torch.load_file(EVAL_LATENTS)[key].to(torch.float32)


class InvTestEvalLatents:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "split": (list(SPLITS), {"default": "held_out"}),
            "count": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "first `count` latents of the split"}),
            "latent_format": (list(am.LATENT_FORMATS), {"default": "identity"}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, split, count, latent_format):
        internal = _eval_tensor(SPLITS[split])
        if count > internal.shape[0]:
            raise ValueError(f"InvTestEvalLatents: split {split!r} has {internal.shape[0]} latents, asked {count}")
        internal = internal[:count].clone()
        external = am.make_latent_format(latent_format, internal.shape[1]).process_out(internal)
        return ({"samples": external.to(torch.float32).contiguous()},)


# Full-size UNet configs as ComfyUI's model detection produces them for the real checkpoints
# (comfy/model_detection.py, unet_config_from_diffusers_unet "SD15" / "SDXL").
FULL_UNETS = {
    "sd15": (comfy.supported_models.SD15, {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
        "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "channel_mult": [1, 2, 4, 4],
        "transformer_depth_middle": 1, "use_linear_in_transformer": False, "context_dim": 768, "num_heads": 8,
        "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
        "use_temporal_attention": False, "use_temporal_resblock": False}),
    "sdxl": (comfy.supported_models.SDXL, {
        "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
        "legacy": False, "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4,
        "model_channels": 320, "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10],
        "channel_mult": [1, 2, 4], "transformer_depth_middle": 10, "use_linear_in_transformer": True,
        "context_dim": 2048, "num_head_channels": 64, "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10],
        "use_temporal_attention": False, "use_temporal_resblock": False}),
}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def full_unet_patcher(architecture: str, dtype: str = "fp16", seed: int = 0):
    """A MODEL with a full-size SD1.5 / SDXL UNet of ComfyUI's own classes, random N(0, 0.02) weights."""
    config_cls, unet_config = FULL_UNETS[architecture]
    mm = comfy.model_management
    device = mm.get_torch_device()
    cfg = config_cls(dict(unet_config))
    cfg.set_inference_dtype(DTYPES[dtype], None)
    with torch.inference_mode(False):
        model = cfg.get_model({})
        model.to(device)
        g = torch.Generator(device=device).manual_seed(int(seed))
        with torch.no_grad():
            for sub in model.diffusion_model.modules():
                for name, p in sub.named_parameters(recurse=False):
                    if isinstance(sub, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                        p.fill_(1.0 if name == "weight" else 0.0)
                    else:
                        noise = torch.randn(p.shape, generator=g, device=device, dtype=torch.float32)
                        p.copy_(noise.to(p.dtype) * 0.02)
        model.to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(model, load_device=device, offload_device=mm.unet_offload_device())


class InvTestRandomUNet:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "architecture": (list(FULL_UNETS), {"default": "sd15"}),
            "dtype": (list(DTYPES), {"default": "fp16"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, architecture, dtype, seed):
        return (full_unet_patcher(architecture, dtype, seed),)


class CallMeter:
    """Process-wide record of model calls made through ``InvTestCallMeter`` MODELs: per owner (the node id the
    benchmark's timing server says is running), the number of ``apply_model`` calls and the seconds spent in them.
    ``owner`` is set by whoever drives the executor; calls made while it is None go to "?"."""

    def __init__(self):
        self.owner = None
        self.calls = {}
        self.seconds = {}

    def reset(self):
        self.owner = None
        self.calls.clear()
        self.seconds.clear()

    def __deepcopy__(self, memo):   # ModelPatcher.clone deep-copies model_options: keep ONE process-wide meter
        return self

    def __call__(self, apply_model, args):
        t0 = time.perf_counter()
        out = apply_model(args["input"], args["timestep"], **args["c"])
        key = self.owner if self.owner is not None else "?"
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
        self.calls[key] = self.calls.get(key, 0) + 1
        return out


CALL_METER = CallMeter()


class InvTestCallMeter:
    """MODEL -> the same MODEL (a clone) whose every network call is counted and timed in ``CALL_METER`` (a stock
    ``model_function_wrapper``: one call per batched cond chunk, i.e. one per model evaluation at cfg 1)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "wrap"
    CATEGORY = CATEGORY

    def wrap(self, model):
        clone = model.clone()
        clone.set_model_unet_function_wrapper(CALL_METER)
        return (clone,)


NODE_CLASS_MAPPINGS = {
    "InvTestCallMeter": InvTestCallMeter,
    "InvTestLearnedModel": InvTestLearnedModel,
    "InvTestEvalLatents": InvTestEvalLatents,
    "InvTestRandomUNet": InvTestRandomUNet,
}

__all__ = ["NODE_CLASS_MAPPINGS", "CALL_METER", "learned_denoiser", "full_unet_patcher", "FULL_UNETS"]
