"""Demo-only ComfyUI node pack for the showcase (``scripts/showcase.sh``). Never shipped or registered in users'
ComfyUI: the showcase links this folder into the ``custom_nodes/`` of a temporary base directory.

It feeds the pack real photographs and the project's own small learned denoiser (``testbed/``), so the showcase
runs end to end through real ComfyUI prompts without downloading a model. V1 nodes, ids prefixed ``InvDemo``.

Nodes
* Learned Demo Model (``InvDemoLearnedModel``: sampling) -> MODEL: ``testbed.learned.LearnedDenoiser`` wrapped as
  a ComfyUI model (``devkit.analytic_models.make_denoiser_model``; identity latent format, 4 channels);
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

Conditional digits (the edit section of the showcase, ``testbed/digits.py``)
* Digits Demo Model (``InvDemoDigitsModel``: sampling) -> MODEL: the conditional digits denoiser, its CONDITIONING
  passed to it as a text-to-image model's cross-attention (``devkit.conditional_models``).
* Digit Prompt (``InvDemoDigitPrompt``: text) -> CONDITIONING: the tiny prompt encoder (digit words / numerals to
  learned token embeddings; a prompt without one is the empty prompt, the unconditional branch).
* Digit Latent (``InvDemoDigitLatent``: digit, count) -> LATENT: held-out handwritten digits of one class (the
  committed ``testbed/data/digits_eval.safetensors``), [count, 4, 8, 8]; digit -1: all 100 held-out digits (10 of
  each, sorted by digit; count ignored); decode with Latent To Photo.
* Digit Batch Prompt (``InvDemoDigitBatchPrompt``: offset) -> CONDITIONING with one prompt per image of the digit -1
  batch: the digit (label + offset) mod 10 of each (offset 0 = each image's own digit).
* Edit Report (``InvDemoEditReport``: model, source, reconstruction, edited, target) [output]: ui ``{"edit":
  [dict]}`` per sample: ``success`` (the classifier's probability of the target digit), ``source_class``
  (probability of the source's own digit after the edit), ``reconstruction_psnr`` and ``source_psnr`` (pixels in
  [-1, 1], peak 2), ``ink_ratio`` (ink of the edit / ink of the source) and ``centroid_shift`` (pixels): what a
  digit edit should keep is the stroke's place and weight. source_digit -1: the digit -1 batch, each image's own
  digit as source and (digit + target_digit) mod 10 as target.
"""
from __future__ import annotations

import math
import os
import sys

import torch

import comfy.model_management

HERE = os.path.dirname(os.path.realpath(__file__))
REPO_ROOT = os.path.dirname(HERE)
# the development kit (devkit docstring): <repository>/dev on sys.path; this folder is reached through a symlink
_DEV_DIR = os.path.join(REPO_ROOT, "dev")
if _DEV_DIR not in sys.path:
    sys.path.insert(0, _DEV_DIR)

import devkit  # noqa: E402
from devkit import analytic_models, conditional_models  # noqa: E402

CATEGORY = "demo/exact_inversion"


def _repo_module(dotted: str):
    """``testbed.*`` / ``inversion_core.*`` from the repository root, without putting the root on sys.path."""
    devkit.import_repo_package("inversion_core")   # testbed imports it by its plain name
    return devkit.import_repo_module(dotted)


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
        provider = analytic_models.learned_denoiser()
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


_DIGITS = {}


def _digits():
    if "model" not in _DIGITS:
        module = _repo_module("testbed.digits")
        with torch.inference_mode(False):
            _DIGITS["model"] = module.DigitsModel.load()
        _DIGITS["module"] = module
    return _DIGITS["module"], _DIGITS["model"]


class InvDemoDigitsModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"sampling": (["eps", "v_prediction", "flow"], {"default": "eps"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY
    DESCRIPTION = "The conditional handwritten-digits denoiser (testbed/digits.py) as a ComfyUI MODEL (demo only)."

    def build(self, sampling):
        _, provider = _digits()
        return (conditional_models.make_conditional_model(lambda shape: provider, 4, "identity", sampling),)


class InvDemoDigitPrompt:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "a three", "multiline": False,
                                                 "tooltip": "digit words or numerals ('three', '3'); other words "
                                                            "are ignored; none = the empty prompt"})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY
    DESCRIPTION = "The digits model's tiny prompt encoder: words -> token embeddings [1, tokens, 32]."

    def encode(self, text):
        _, model = _digits()
        return ([[model.encoder.encode(text), {}]],)


class InvDemoDigitLatent:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "load"
    CATEGORY = CATEGORY

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "digit": ("INT", {"default": 3, "min": -1, "max": 9, "tooltip": "-1 = all held-out digits"}),
            "count": ("INT", {"default": 6, "min": 1, "max": 10, "tooltip": "held-out digits of that class"}),
        }}

    def load(self, digit, count):
        module, _ = _digits()
        latents, labels = _eval_sorted(module)
        chosen = latents if int(digit) < 0 else latents[labels == int(digit)][:int(count)]
        return ({"samples": chosen.to(torch.float32).contiguous()},)


def _eval_sorted(module):
    """The held-out digits sorted by label (stable): (latents [100, 4, 8, 8], labels [100])."""
    with torch.inference_mode(False):
        data = module.load_eval()
    order = torch.argsort(data["labels"], stable=True)
    return data["latents"][order], data["labels"][order]


class InvDemoDigitBatchPrompt:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"offset": ("INT", {"default": 0, "min": 0, "max": 9,
                                                "tooltip": "prompt digit = (the image's digit + offset) mod 10"})}}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = CATEGORY

    def encode(self, offset):
        module, model = _digits()
        _, labels = _eval_sorted(module)
        cond = torch.cat([model.encoder.encode(str(int((k + offset) % 10))) for k in labels.tolist()])
        return ([[cond, {}]],)


def _ink(images: torch.Tensor):
    """(ink mass, centroid [N, 2]) of grayscale digits in [-1, 1] (ink = the part above -1)."""
    ink = ((images[:, 0].double() + 1.0) * 0.5).clamp_min(0.0)
    total = ink.flatten(1).sum(1).clamp_min(1e-8)
    h, w = ink.shape[-2:]
    ys = torch.arange(h, dtype=torch.float64).reshape(1, h, 1)
    xs = torch.arange(w, dtype=torch.float64).reshape(1, 1, w)
    centroid = torch.stack([(ink * ys).flatten(1).sum(1) / total, (ink * xs).flatten(1).sum(1) / total], 1)
    return total, centroid


class InvDemoEditReport:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "source": ("LATENT",), "reconstruction": ("LATENT",), "edited": ("LATENT",),
            "source_digit": ("INT", {"default": 3, "min": -1, "max": 9, "tooltip": "-1: the digit -1 batch"}),
            "target_digit": ("INT", {"default": 8, "min": 0, "max": 9}),
            "label": ("STRING", {"default": "method"}),
        }}

    RETURN_TYPES = ()
    FUNCTION = "report"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def report(self, source, reconstruction, edited, source_digit, target_digit, label):
        module, model = _digits()
        if int(source_digit) < 0:
            _, labels = _eval_sorted(module)
            source_digit, target_digit = labels, (labels + int(target_digit)) % 10
        else:
            source_digit, target_digit = torch.tensor(int(source_digit)), torch.tensor(int(target_digit))
        src, rec, out = (x["samples"].to(torch.float32).cpu() for x in (source, reconstruction, edited))
        if not (src.shape == rec.shape == out.shape):
            raise ValueError(f"Edit Report: shapes differ {tuple(src.shape)} {tuple(rec.shape)} {tuple(out.shape)}")
        with torch.inference_mode(False):
            probs = model.classify(out)
            ink_src, c_src = _ink(module.latents_to_digits(src))
            ink_out, c_out = _ink(module.latents_to_digits(out))
        rows = torch.arange(probs.shape[0])
        result = {
            "label": label,
            "success": probs[rows, target_digit.expand(probs.shape[0])].tolist(),
            "source_class": probs[rows, source_digit.expand(probs.shape[0])].tolist(),
            "reconstruction_psnr": _psnr(src, rec, peak=2.0),
            "source_psnr": _psnr(src, out, peak=2.0),
            "ink_ratio": (ink_out / ink_src).tolist(),
            "centroid_shift": (c_out - c_src).norm(dim=1).tolist(),
        }
        return {"ui": {"edit": [result]}}


NODE_CLASS_MAPPINGS = {
    "InvDemoDigitsModel": InvDemoDigitsModel,
    "InvDemoDigitPrompt": InvDemoDigitPrompt,
    "InvDemoDigitLatent": InvDemoDigitLatent,
    "InvDemoDigitBatchPrompt": InvDemoDigitBatchPrompt,
    "InvDemoEditReport": InvDemoEditReport,
    "InvDemoLearnedModel": InvDemoLearnedModel,
    "InvDemoEmptyConditioning": InvDemoEmptyConditioning,
    "InvDemoPhotoLatent": InvDemoPhotoLatent,
    "InvDemoLatentToPhoto": InvDemoLatentToPhoto,
    "InvDemoInversionReport": InvDemoInversionReport,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "InvDemoDigitsModel": "Digits Demo Model",
    "InvDemoDigitPrompt": "Digit Prompt",
    "InvDemoDigitLatent": "Digit Latent",
    "InvDemoDigitBatchPrompt": "Digit Batch Prompt",
    "InvDemoEditReport": "Edit Report",
    "InvDemoLearnedModel": "Learned Demo Model",
    "InvDemoEmptyConditioning": "Empty Conditioning",
    "InvDemoPhotoLatent": "Photo Latent",
    "InvDemoLatentToPhoto": "Latent To Photo",
    "InvDemoInversionReport": "Inversion Report",
}
