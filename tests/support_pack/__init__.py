"""Test-only ComfyUI node pack (never shipped or registered in production).

The test fixtures symlink this folder into ``<base>/custom_nodes/inversion_test_support``. V1 nodes, ids prefixed
``InvTest``. Importing it registers the ``TinySD15`` model config with ComfyUI's detection. Its own modules are
imported relatively (ComfyUI's ``comfy/`` directory is first on ``sys.path`` and shadows names such as ``utils`` or
``samplers``); the model wrappers come from the development kit ``devkit`` (``<repository>/dev`` is put on
``sys.path``, see the devkit docstring).

Nodes
* InvTestTinyModel(seed) -> MODEL: in-memory 32-channel SD1.5-layout UNet (TinySD15), seeded random weights.
* InvTestConditioning(tokens, dim, seed, zero, pooled_dim) -> CONDITIONING [[cond[1,tokens,dim], {"pooled_output"}]].
* InvTestAnalyticModel(seed, components, channels, latent_format, sampling) -> MODEL whose denoiser is the exact
  posterior mean of ``GaussianMixture.random((C, H, W), components, seed)`` (see devkit/analytic_models.py).
* InvTestAnalyticLatent(seed, batch, latent_width, latent_height, channels, gmm_seed, components, latent_format)
  -> LATENT: samples of that mixture (internal space), returned in *external* space (``latent_format.process_out``).
* InvTestLoadTensor(filename, key) -> LATENT: a safetensors file from the input directory.
* InvTestProbeDenoiser(model, latent, sigma, mode[, positive, negative, cfg]) -> LATENT: the model's denoiser output
  D(x, sigma) for x = the latent, in external space; mode "sampler" goes through comfy.samplers (CFGGuider, cfg
  (default 1; negative default = positive), a one-call KSAMPLER), mode "apply_model" calls
  ``model.model.apply_model`` after ``load_models_gpu``. Its ui reports the
  model_sampling in force: {"model_sampling": [class names in its MRO, torch/builtins left out],
  "parametrization": ["ve"|"flow"]}.
* InvTestCompare(a, b) [output]: ui {"psnr", "rms", "rel_rms", "max_abs"} per sample (float64; psnr uses the
  per-sample max |a| as peak, inf when identical), plus "shape".
* InvTestConditionalModel / InvTestClassConditioning / InvTestConditionalLatent / InvTestEditScore: the
  class-conditional analytic model with a known ideal edit (conditional_nodes.py).
* InvTestWithoutResiduals(inversion) -> INVERSION: a copy of the record with no stored residuals (what an INVERSION
  made before residuals existed looks like), to check that residuals "none" samples as before.
* InvTestSaveTensor(latent, name) [output]: writes ``<output>/<name>.safetensors`` (keys "samples" and, if
  present, "noise_mask"; exact dtype), ui {"tensors": [{"filename", "subfolder", "type", "shape", "dtype"}]}.
"""
from __future__ import annotations

import hashlib
import math
import os
import re
import sys

import safetensors.torch
import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import folder_paths

# the development kit (devkit docstring): <repository>/dev on sys.path; this folder is reached through a symlink
_DEV_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "dev")
if _DEV_DIR not in sys.path:
    sys.path.insert(0, _DEV_DIR)

from devkit import analytic_models as am  # noqa: E402

from . import inv_test_models as itm  # noqa: E402

itm.register_tiny_config()

CATEGORY = "testing/exact_inversion"


class InvTestTinyModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, seed):
        return (itm.tiny_model_patcher(seed),)


class InvTestConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "tokens": ("INT", {"default": 77, "min": 1, "max": 1024}),
            "dim": ("INT", {"default": 768, "min": 1, "max": 8192}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1}),
            "zero": ("BOOLEAN", {"default": True}),
            "pooled_dim": ("INT", {"default": 768, "min": 1, "max": 8192}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, tokens, dim, seed, zero, pooled_dim):
        if zero:
            cond, pooled = torch.zeros(1, tokens, dim), torch.zeros(1, pooled_dim)
        else:
            g = torch.Generator().manual_seed(int(seed))
            cond, pooled = torch.randn(1, tokens, dim, generator=g), torch.randn(1, pooled_dim, generator=g)
        return ([[cond, {"pooled_output": pooled}]],)


def _hard_input():
    return {"hard": ("BOOLEAN", {"default": False, "tooltip": "GaussianMixture.hard: close components, thin "
                                 "directions below the smallest sigma"})}


def _analytic_common():
    return {
        "components": ("INT", {"default": 3, "min": 1, "max": 64}),
        "channels": ("INT", {"default": 4, "min": 1, "max": 64}),
        "latent_format": (list(am.LATENT_FORMATS), {"default": "sd15"}),
    }


class InvTestAnalyticModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "seed of the Gaussian mixture"}),
            **_analytic_common(),
            "sampling": (list(am.SAMPLINGS), {"default": "eps"}),
        }, "optional": _hard_input()}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, seed, components, channels, latent_format, sampling, hard=False):
        return (am.gmm_model(seed, components, channels, latent_format, sampling, hard),)


class InvTestAnalyticLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "sampling seed"}),
            "batch": ("INT", {"default": 1, "min": 1, "max": 64}),
            "latent_width": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip": "in latent pixels"}),
            "latent_height": ("INT", {"default": 8, "min": 1, "max": 256, "tooltip": "in latent pixels"}),
            "gmm_seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "= the model's seed"}),
            **_analytic_common(),
        }, "optional": _hard_input()}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, seed, batch, latent_width, latent_height, gmm_seed, components, channels, latent_format,
               hard=False):
        with torch.inference_mode(False):
            gmm = am.gaussian_mixture((channels, latent_height, latent_width), components, gmm_seed, hard)
            internal = gmm.sample(batch, generator=torch.Generator().manual_seed(int(seed)))
        external = am.make_latent_format(latent_format, channels).process_out(internal)
        return ({"samples": external.to(torch.float32).contiguous()},)


def _input_file(filename):
    path = folder_paths.get_annotated_filepath(filename)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such input file: {filename}")
    return path


class InvTestLoadTensor:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "filename": ("STRING", {"default": "tensor.safetensors"}),
            "key": ("STRING", {"default": "samples"}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def IS_CHANGED(cls, filename, key):
        try:
            with open(_input_file(filename), "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except OSError:
            return float("nan")

    def load(self, filename, key):
        tensors = safetensors.torch.load_file(_input_file(filename))
        if key not in tensors:
            raise KeyError(f"{filename} has no tensor {key!r} (has {sorted(tensors)})")
        return ({"samples": tensors[key]},)


def _probe_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """KSAMPLER function that makes one model call at sigmas[0] on the clean (processed-in) latent."""
    x = model.latent_image
    return model(x, sigmas[0] * x.new_ones([x.shape[0]]), **(extra_args or {}))


class InvTestProbeDenoiser:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "latent": ("LATENT",),
                "sigma": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10000.0, "step": 0.001}),
                "mode": (["sampler", "apply_model"], {"default": "sampler"}),
            },
            "optional": {"positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                         "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1})},
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "probe"
    CATEGORY = CATEGORY

    def probe(self, model, latent, sigma, mode, positive=None, negative=None, cfg=1.0):
        samples = latent["samples"]
        if positive is None:
            positive = [[torch.zeros(1, 1, 768), {}]]
        if mode == "sampler":
            samples = comfy.sample.fix_empty_latent_channels(model, samples)
            sigmas = torch.tensor([float(sigma), 0.0], dtype=torch.float32)
            sampler = comfy.samplers.KSAMPLER(_probe_sampler)
            out = comfy.sample.sample_custom(model, torch.zeros_like(samples), float(cfg), sampler, sigmas, positive,
                                             positive if negative is None else negative, samples, disable_pbar=True,
                                             seed=0)
        else:
            comfy.model_management.load_models_gpu([model])
            bm = model.model
            dev = model.load_device
            x = bm.process_latent_in(samples).to(dev)
            s = torch.full((x.shape[0],), float(sigma), dtype=torch.float32, device=dev)
            cond = positive[0][0].to(dev).expand(x.shape[0], *positive[0][0].shape[1:])
            out = bm.process_latent_out(bm.apply_model(x, s, c_crossattn=cond).float())
        ms = model.get_model_object("model_sampling")
        ui = {"model_sampling": [c.__name__ for c in type(ms).__mro__
                                 if c.__module__.split(".")[0] not in ("torch", "builtins")],
              "parametrization": [am.parametrization_of(ms)]}
        return {"ui": ui, "result": ({"samples": out.to(comfy.model_management.intermediate_device())},)}


class InvTestCompare:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("LATENT",), "b": ("LATENT",)}}

    RETURN_TYPES = ()
    FUNCTION = "compare"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def compare(self, a, b):
        x, y = a["samples"].to(torch.float64).cpu(), b["samples"].to(torch.float64).cpu()
        if x.shape != y.shape:
            raise ValueError(f"InvTestCompare: shapes differ {tuple(x.shape)} vs {tuple(y.shape)}")
        diff = (x - y).reshape(x.shape[0], -1)
        rms = diff.square().mean(dim=1).sqrt()
        ref_rms = x.reshape(x.shape[0], -1).square().mean(dim=1).sqrt()
        peak = x.reshape(x.shape[0], -1).abs().amax(dim=1)
        psnr = [20.0 * math.log10(p / r) if r > 0 else math.inf
                for p, r in zip(peak.tolist(), rms.tolist(), strict=True)]
        flat = x.reshape(x.shape[0], -1)
        spread = (flat.amax(dim=1) - flat.amin(dim=1)).tolist()
        ui = {
            "psnr": psnr,
            # inversion_core.metrics.psnr's convention (data range = the reference's max - min), as the nodes report
            "range_psnr": [(20.0 * math.log10(d / r) if d > 0 else -math.inf) if r > 0 else math.inf
                           for d, r in zip(spread, rms.tolist(), strict=True)],
            "rms": rms.tolist(),
            "rel_rms": [r / q if q > 0 else math.inf for r, q in zip(rms.tolist(), ref_rms.tolist(), strict=True)],
            "max_abs": diff.abs().amax(dim=1).tolist(),
            "shape": list(x.shape),
        }
        return {"ui": ui}


class InvTestSaveTensor:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",), "name": ("STRING", {"default": "tensor"})}}

    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def save(self, latent, name):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise ValueError(f"InvTestSaveTensor: bad name {name!r}")
        tensors = {"samples": latent["samples"]}
        if latent.get("noise_mask") is not None:
            tensors["noise_mask"] = latent["noise_mask"]
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        filename = f"{name}.safetensors"
        out_dir = folder_paths.get_output_directory()
        os.makedirs(out_dir, exist_ok=True)
        safetensors.torch.save_file(tensors, os.path.join(out_dir, filename))
        s = tensors["samples"]
        return {"ui": {"tensors": [{"filename": filename, "subfolder": "", "type": "output",
                                    "shape": list(s.shape), "dtype": str(s.dtype)}]}}


class InvTestWithoutResiduals:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"inversion": ("INVERSION",)}}

    RETURN_TYPES = ("INVERSION",)
    FUNCTION = "strip"
    CATEGORY = CATEGORY

    def strip(self, inversion):
        import dataclasses
        return (dataclasses.replace(inversion, residuals=None),)


NODE_CLASS_MAPPINGS = {
    "InvTestWithoutResiduals": InvTestWithoutResiduals,
    "InvTestTinyModel": InvTestTinyModel,
    "InvTestConditioning": InvTestConditioning,
    "InvTestAnalyticModel": InvTestAnalyticModel,
    "InvTestAnalyticLatent": InvTestAnalyticLatent,
    "InvTestLoadTensor": InvTestLoadTensor,
    "InvTestProbeDenoiser": InvTestProbeDenoiser,
    "InvTestCompare": InvTestCompare,
    "InvTestSaveTensor": InvTestSaveTensor,
}
from .learned_nodes import NODE_CLASS_MAPPINGS as _LEARNED_NODES  # noqa: E402  (learned model, eval latents, full UNets)

NODE_CLASS_MAPPINGS.update(_LEARNED_NODES)
from .conditional_nodes import NODE_CLASS_MAPPINGS as _CONDITIONAL_NODES  # noqa: E402  (class-conditional analytic)

NODE_CLASS_MAPPINGS.update(_CONDITIONAL_NODES)
NODE_DISPLAY_NAME_MAPPINGS = {k: k.replace("InvTest", "InvTest ") for k in NODE_CLASS_MAPPINGS}
