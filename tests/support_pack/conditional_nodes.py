"""The support pack's nodes around the class-conditional analytic MODEL (``devkit.conditional_models``:
the model, its ground truth and the ideal edit).

Nodes (V1, test/benchmark only)
* InvTestConditionalModel(seed, classes, separation, channels, latent_format, sampling) -> MODEL.
* InvTestClassConditioning(class_index, classes) -> CONDITIONING [[one-hot [1, 1, classes], {}]]; class_index -1 =
  the empty prompt (zeros).
* InvTestConditionalLatent(seed, batch, source_class, latent_size, + the model's seed/classes/separation/channels/
  latent_format) -> LATENT: samples of that class, external space.
* InvTestEditScore(model, source, edited, sigmas, source_class, target_class[, mask]) [output]: ui per sample with
  ``success`` (target-class posterior of the edit), ``ideal_psnr`` (dB to the ideal edit: the exact transport of
  the source into the target class for the schedule's top sigma), ``euler_psnr`` (dB to what an exact inversion
  sampled back with euler over exactly these sigmas gives), ``source_psnr`` (dB to the source), ``ideal_success``
  (the target posterior of the ideal edit itself),
  ``realism`` (excess NLL under the target class,
  nats/dim), ``source_posterior`` (of the source class); with a ``mask`` LATENT (its noise_mask): ``outside_psnr``
  (edit vs source outside the mask), ``inside_success`` (target posterior from the dimensions inside the mask)
  and ``ideal_psnr`` / ``euler_psnr`` inside the mask only.
"""
from __future__ import annotations

import math

import torch

import comfy.utils

from devkit import analytic_models as am
from devkit.conditional_models import conditional_gaussian, conditional_model

CATEGORY = "testing/exact_inversion"


def _model_inputs():
    return {
        "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "tooltip": "seed of the class means and stds"}),
        "classes": ("INT", {"default": 4, "min": 2, "max": 64}),
        "separation": ("FLOAT", {"default": 5.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                 "tooltip": "distance between class means in class stds"}),
        "channels": ("INT", {"default": 4, "min": 1, "max": 64}),
        "latent_format": (list(am.LATENT_FORMATS), {"default": "sd15"}),
    }


class InvTestConditionalModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {**_model_inputs(), "sampling": (list(am.SAMPLINGS), {"default": "eps"})}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, seed, classes, separation, channels, latent_format, sampling):
        return (conditional_model(seed, classes, separation, channels, latent_format, sampling),)


class InvTestClassConditioning:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "class_index": ("INT", {"default": 0, "min": -1, "max": 63, "tooltip": "-1 = the empty prompt"}),
            "classes": ("INT", {"default": 4, "min": 2, "max": 64}),
        }}

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "build"
    CATEGORY = CATEGORY

    def build(self, class_index, classes):
        if class_index >= classes:
            raise ValueError(f"InvTestClassConditioning: class_index {class_index} >= classes {classes}")
        cond = torch.zeros(1, 1, int(classes))
        if class_index >= 0:
            cond[0, 0, int(class_index)] = 1.0
        return ([[cond, {}]],)


class InvTestConditionalLatent:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "sample_seed": ("INT", {"default": 1, "min": 0, "max": 2**31 - 1}),
            "batch": ("INT", {"default": 1, "min": 1, "max": 4096}),
            "source_class": ("INT", {"default": 0, "min": 0, "max": 63}),
            "latent_size": ("INT", {"default": 8, "min": 1, "max": 256}),
            **_model_inputs(),
        }}

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    CATEGORY = CATEGORY

    def sample(self, sample_seed, batch, source_class, latent_size, seed, classes, separation, channels,
               latent_format):
        with torch.inference_mode(False):
            provider = conditional_gaussian((channels, latent_size, latent_size), classes, seed, separation)
            labels = torch.full((int(batch),), int(source_class), dtype=torch.long)
            internal = provider.sample(labels, torch.Generator().manual_seed(int(sample_seed)))
        external = am.make_latent_format(latent_format, channels).process_out(internal)
        return ({"samples": external.to(torch.float32).contiguous()},)


def _psnr(reference: torch.Tensor, estimate: torch.Tensor, weight: torch.Tensor | None = None) -> list:
    """metrics.psnr (range = the reference's max - min) per sample, optionally over the weighted dims only."""
    ref, est = reference.flatten(1), estimate.flatten(1)
    w = torch.ones_like(ref) if weight is None else weight.flatten(1)
    out = []
    for r, e, m in zip(ref, est, w, strict=True):
        sel = m > 0.5
        if not bool(sel.any()):
            out.append(None)
            continue
        mse = float((r[sel] - e[sel]).pow(2).mean())
        rng = float(r.max() - r.min())
        out.append(math.inf if mse == 0 else 10.0 * math.log10(rng * rng / mse))
    return out


class InvTestEditScore:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "source": ("LATENT",),
                "edited": ("LATENT",),
                "sigmas": ("SIGMAS", {"tooltip": "the schedule inverted (its top sigma sets the ideal edit)"}),
                "source_class": ("INT", {"default": 0, "min": 0, "max": 63}),
                "target_class": ("INT", {"default": 1, "min": 0, "max": 63}),
            },
            "optional": {"mask": ("LATENT", {"tooltip": "a LATENT with the noise_mask of a masked edit"})},
        }

    RETURN_TYPES = ()
    FUNCTION = "score"
    OUTPUT_NODE = True
    CATEGORY = CATEGORY

    def score(self, model, source, edited, sigmas, source_class, target_class, mask=None):
        base = model.model
        src = base.process_latent_in(source["samples"].to(torch.float64).cpu())
        out = base.process_latent_in(edited["samples"].to(torch.float64).cpu())
        if src.shape != out.shape:
            raise ValueError(f"InvTestEditScore: source {tuple(src.shape)} and edited {tuple(out.shape)} differ")
        provider = base.provider_for(src.shape[1:])
        param = am.parametrization_of(model.get_model_object("model_sampling"))
        sig = sigmas.to(torch.float64).flatten()
        top = float(sig.max())
        with torch.inference_mode(False):
            ideal = provider.transport(src, source_class, target_class, top, param)
            euler = provider.transport(src, source_class, target_class, top, param, sigmas=sig)
            post = provider.class_posterior(out)
            ideal_post = provider.class_posterior(ideal)
            ui = {
                "success": post[:, target_class].tolist(),
                "source_posterior": post[:, source_class].tolist(),
                "realism": provider.excess_nll(out, target_class).tolist(),
                "ideal_psnr": _psnr(ideal, out),
                "euler_psnr": _psnr(euler, out),
                "source_psnr": _psnr(src, out),
                "ideal_success": ideal_post[:, target_class].tolist(),
                "sigma_max": [top],
            }
            if mask is not None and mask.get("noise_mask") is not None:
                m = comfy.utils.reshape_mask(mask["noise_mask"].to(torch.float64).cpu(), out.shape)
                inside = (m > 0.5).to(torch.float64)
                ui["outside_psnr"] = _psnr(src, out, 1.0 - inside)
                ui["ideal_psnr"] = _psnr(ideal, out, inside)
                ui["euler_psnr"] = _psnr(euler, out, inside)
                ll = self._masked_log_likelihood(provider, out, inside)
                ui["inside_success"] = torch.softmax(ll, dim=1)[:, target_class].tolist()
                ui["inside_fraction"] = inside.flatten(1).mean(1).tolist()
        return {"ui": ui}

    @staticmethod
    def _masked_log_likelihood(provider, x0, inside):
        """Class log-likelihoods from the dimensions inside the mask only (independent dimensions), [B, K]."""
        means, s = provider.means.to(torch.float64), provider.std.to(torch.float64)
        z2 = ((x0.unsqueeze(1) - means) / s) ** 2                # [B, K, *shape]
        return provider.log_prior.to(torch.float64) - 0.5 * (z2 * inside.unsqueeze(1)).flatten(2).sum(dim=2)


NODE_CLASS_MAPPINGS = {
    "InvTestConditionalModel": InvTestConditionalModel,
    "InvTestClassConditioning": InvTestClassConditioning,
    "InvTestConditionalLatent": InvTestConditionalLatent,
    "InvTestEditScore": InvTestEditScore,
}
