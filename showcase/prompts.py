"""The showcase's API prompts (plain dicts, what POST /prompt takes)."""
from __future__ import annotations

from .methods import Method


def _common(photos: str, size: int, sampling: str) -> dict:
    return {
        "model": {"class_type": "InvDemoLearnedModel", "inputs": {"sampling": sampling}},
        "cond": {"class_type": "InvDemoEmptyConditioning", "inputs": {}},
        "photos": {"class_type": "InvDemoPhotoLatent", "inputs": {"photos": photos, "size": size}},
    }


def original_prompt(photos: str, size: int, sampling: str = "eps") -> dict:
    """Photo latents -> images (the grid's first column); also loads the model and the photos once (cached)."""
    prompt = _common(photos, size, sampling)
    prompt["decode"] = {"class_type": "InvDemoLatentToPhoto", "inputs": {"latent": ["photos", 0]}}
    prompt["save"] = {"class_type": "SaveImage",
                      "inputs": {"images": ["decode", 0], "filename_prefix": "showcase/original"}}
    return prompt


def method_prompt(method: Method, photos: str, size: int, steps: int, scheduler: str = "simple",
                  sampling: str = "eps") -> dict:
    """Invert the photo latents with ``method``, sample back with Inverted Sampler, save the images, report. The
    grid compares the methods themselves, so Inverted Sampler runs without the stored residuals (with them, its
    default, every method gives the photos back exactly)."""
    prompt = _common(photos, size, sampling)
    prompt["invert"] = {"class_type": method.node, "inputs": {
        "model": ["model", 0], "positive": ["cond", 0], "negative": ["cond", 0], "latent": ["photos", 0],
        "steps": steps, "scheduler": scheduler, "cfg": 1.0, "denoise": 1.0, **method.params}}
    prompt["sample_back"] = {"class_type": "ExactInvInvertedSampler", "inputs": {
        "model": ["model", 0], "positive": ["cond", 0], "negative": ["cond", 0], "cfg": 1.0,
        "inversion": ["invert", 1], "residuals": "none"}}
    prompt["decode"] = {"class_type": "InvDemoLatentToPhoto", "inputs": {"latent": ["sample_back", 0]}}
    prompt["save"] = {"class_type": "SaveImage",
                      "inputs": {"images": ["decode", 0], "filename_prefix": f"showcase/{method.key}"}}
    prompt["report"] = {"class_type": "InvDemoInversionReport", "inputs": {
        "model": ["model", 0], "inversion": ["invert", 1], "original": ["photos", 0],
        "reconstruction": ["sample_back", 0], "label": method.label}}
    return prompt
