"""Demo-only ComfyUI node pack for the showcase (``scripts/showcase.sh``). Never shipped or registered in users'
ComfyUI: the showcase links this folder into the ``custom_nodes/`` of a temporary base directory.

It feeds the pack real photographs and the project's own small learned denoiser (``testbed/``), so the showcase
runs end to end through real ComfyUI prompts without downloading a model. V1 nodes, ids prefixed ``InvDemo``.

Nodes
* Learned Demo Model (``InvDemoLearnedModel``: sampling) -> MODEL: ``testbed.learned.LearnedDenoiser`` wrapped as
  a ComfyUI model (``tests/support_pack/analytic_models.make_denoiser_model``; identity latent format, 4 channels);
  ``sampling`` eps (SD1.5 discrete schedule, VE space), v_prediction, or flow (shift 3, rectified flow).
* Empty Conditioning (``InvDemoEmptyConditioning``) -> CONDITIONING: a placeholder; the demo model is unconditional.
* Photo Latent (``InvDemoPhotoLatent``: photos, size) -> LATENT: scikit-image sample photographs (comma-separated
  names from ``testbed.photos.PHOTOS``), center-cropped and resized to size x size, through the fixed lossless
  stand-in "VAE" (``photos_to_latents``: luma + 2x2 pixel unshuffle, [N, 4, size/2, size/2] in [-1, 1]).
* Latent To Photo (``InvDemoLatentToPhoto``: latent) -> IMAGE: the exact inverse map (``latents_to_images``),
  grayscale repeated to RGB, [-1, 1] -> [0, 1], for SaveImage / PreviewImage.
* Inversion Report (``InvDemoInversionReport``: model, inversion, original, reconstruction) [output]: ui
  ``{"report": [dict]}`` with the INVERSION's method, settings and stats (model calls, per-step solver residuals),
  the measured landing error of every inverse step (one forward step of the inverted sampler from each stored
  latent, with the demo model's denoiser, compared with the latent below it; one model call per step, not counted in
  the inversion's calls) and the reconstruction PSNR of the latents per sample.
"""
from __future__ import annotations

import importlib
import math
import os
import sys
import types

import torch

import comfy.model_management

HERE = os.path.dirname(os.path.realpath(__file__))
REPO_ROOT = os.path.dirname(HERE)
SUPPORT_PACK_DIR = os.path.join(REPO_ROOT, "tests", "support_pack")
_SUPPORT_ALIAS = "exact_inversion_demo_support"
CATEGORY = "demo/exact_inversion"


def _support_module(name: str):
    """A module of tests/support_pack imported without running its ``__init__`` (which registers test nodes and
    a test model config): a bare package object pointing at the folder is enough for its relative imports."""
    if _SUPPORT_ALIAS not in sys.modules:
        package = types.ModuleType(_SUPPORT_ALIAS)
        package.__path__ = [SUPPORT_PACK_DIR]
        sys.modules[_SUPPORT_ALIAS] = package
    return importlib.import_module(f"{_SUPPORT_ALIAS}.{name}")


def _repo_module(dotted: str):
    """``testbed.*`` / ``inversion_core.*`` from the repository root, without putting the root on sys.path."""
    repo_imports = _support_module("repo_imports")
    repo_imports.import_repo_package("inversion_core", REPO_ROOT)   # testbed imports it by its plain name
    return repo_imports.import_repo_module(dotted, REPO_ROOT)


_LEARNED = {}


def _learned_denoiser():
    if "model" not in _LEARNED:
        learned = _repo_module("testbed.learned")
        with torch.inference_mode(False):
            _LEARNED["model"] = learned.LearnedDenoiser.load()
    return _LEARNED["model"]


class InvDemoLearnedModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sampling": (["eps", "v_prediction", "flow"], {
                "default": "eps",
                "tooltip": "ComfyUI model_sampling of the MODEL: eps / v_prediction (SD1.5 discrete schedule, VE "
                           "space) or flow (rectified flow, shift 3). One network serves all of them."}),
        }}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = "The project's small learned denoiser (testbed/learned.py) as a ComfyUI MODEL (demo only)."

    def build(self, sampling):
        analytic_models = _support_module("analytic_models")
        provider = _learned_denoiser()
        return (analytic_models.make_denoiser_model(lambda shape: provider, 4, "identity", sampling),)


class InvDemoEmptyConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = "A placeholder CONDITIONING for the unconditional Learned Demo Model (it ignores it)."

    def build(self):
        return ([[torch.zeros(1, 1, 8), {}]],)


class InvDemoPhotoLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "photos": ("STRING", {"default": "camera,chelsea,coins,astronaut",
                                  "tooltip": "Comma-separated scikit-image photographs (testbed.photos.PHOTOS); "
                                             "camera, chelsea and coins were never trained on."}),
            "size": ("INT", {"default": 64, "min": 8, "max": 1024, "step": 8,
                             "tooltip": "Pixel size of the square crops (the latent is size/2)."}),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    def load(self, photos, size):
        module = _repo_module("testbed.photos")
        names = [n.strip() for n in str(photos).split(",") if n.strip()]
        unknown = [n for n in names if n not in module.PHOTOS]
        if not names or unknown:
            raise ValueError(f"Photo Latent: unknown photo(s) {unknown or photos!r}; choose from {module.PHOTOS}")
        if int(size) % 8:
            raise ValueError(f"Photo Latent: size must be a multiple of 8 (the learned model needs latent sides "
                             f"divisible by 4), got {size}")
        with torch.inference_mode(False):
            latents = module.photos_to_latents(module.load_photos(names, int(size)))
        return ({"samples": latents.to(torch.float32).contiguous()},)


class InvDemoLatentToPhoto:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"latent": ("LATENT",)}}

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"
    CATEGORY = CATEGORY

    def decode(self, latent):
        module = _repo_module("testbed.photos")
        gray = module.latents_to_images(latent["samples"].to(torch.float32).cpu())      # [N, 1, H, W] in [-1, 1]
        image = ((gray + 1.0) * 0.5).clamp(0.0, 1.0)
        return (image.permute(0, 2, 3, 1).expand(-1, -1, -1, 3).contiguous(),)


def _psnr(reference: torch.Tensor, estimate: torch.Tensor, peak: float) -> list:
    mse = (reference.double() - estimate.double()).flatten(1).pow(2).mean(dim=1)
    return [10.0 * math.log10(peak * peak / m) if m > 0 else math.inf for m in mse.tolist()]


def _finite(values):
    return [None if (v is None or not math.isfinite(v)) else float(v) for v in values]


class InvDemoInversionReport:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The Learned Demo Model the inversion was made with."}),
            "inversion": ("INVERSION",),
            "original": ("LATENT", {"tooltip": "The latent that was inverted."}),
            "reconstruction": ("LATENT", {"tooltip": "The inversion sampled back."}),
            "label": ("STRING", {"default": "method"}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def report(self, model, inversion, original, reconstruction, label):
        steps_mod = _repo_module("inversion_core.steps")
        spaces = _repo_module("inversion_core.spaces")
        record = inversion
        base = model.model
        comfy.model_management.load_models_gpu([model])
        fn = base.provider_for(record.shape[1:]).denoiser(record.parametrization)
        landing = []   # per inverse step (inversion order: lowest sigma first), per sample
        with torch.inference_mode():
            steps = steps_mod.make_steps(record.step_kind, record.sigmas, record.parametrization, record.eta,
                                         record.s_noise)
            for step in reversed(steps):
                x_hi = record.latents[step.index].to(torch.float32)
                x_lo = record.latents[step.index + 1].to(torch.float32)
                sigma = torch.full((x_hi.shape[0],), step.sigma_hi, dtype=torch.float32)
                d = spaces.derivative(x_hi, fn(x_hi, sigma).to(torch.float32), step.sigma_hi)
                noise = record.noises[step.index]
                landed = step.forward(x_hi, d, None if noise is None else noise.to(torch.float32))
                err = (landed - x_lo).flatten(1).pow(2).mean(1).sqrt() / \
                    x_lo.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-8)
                landing.append({"sigma_lo": step.sigma_lo, "sigma_hi": step.sigma_hi, "error": err.tolist()})
        stats = dict(record.stats)
        solver_steps = [{"iterations": s.get("iterations"), "residual": _finite(s.get("residual") or []),
                         "model_calls": s.get("model_calls"), "fallback": s.get("fallback")}
                        for s in stats.get("steps", [])]
        a = original["samples"].to(torch.float32).cpu()
        b = reconstruction["samples"].to(torch.float32).cpu()
        if a.shape != b.shape:
            raise ValueError(f"Inversion Report: original {tuple(a.shape)} and reconstruction {tuple(b.shape)} differ")
        result = {
            "label": label,
            "method": record.method,
            "step_kind": record.step_kind,
            "parametrization": record.parametrization,
            "steps": record.steps,
            "shape": list(record.shape),
            "settings": {k: v for k, v in record.settings.items()
                         if isinstance(v, (int, float, str, bool, type(None)))},
            "model_calls": int(stats.get("model_calls", 0)),
            "notes": list(stats.get("notes", [])),
            "solver_steps": solver_steps,
            "landing_error": landing,
            "latent_psnr": _psnr(a, b, peak=2.0),          # latents live in [-1, 1]
            "latent_max_abs": (a - b).abs().flatten(1).amax(1).tolist(),
        }
        return {"ui": {"report": [result]}}


NODE_CLASS_MAPPINGS = {
    "InvDemoLearnedModel": InvDemoLearnedModel,
    "InvDemoEmptyConditioning": InvDemoEmptyConditioning,
    "InvDemoPhotoLatent": InvDemoPhotoLatent,
    "InvDemoLatentToPhoto": InvDemoLatentToPhoto,
    "InvDemoInversionReport": InvDemoInversionReport,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InvDemoLearnedModel": "Learned Demo Model",
    "InvDemoEmptyConditioning": "Empty Conditioning",
    "InvDemoPhotoLatent": "Photo Latent",
    "InvDemoLatentToPhoto": "Latent To Photo",
    "InvDemoInversionReport": "Inversion Report",
}
