"""The class-conditional analytic MODEL (``inversion_core.analytic_conditional``) for ComfyUI.

:class:`ConditionalDenoiserModel` is ``analytic_models.DenoiserBaseModel`` whose denoiser also receives the
conditioning: ComfyUI hands a BaseModel the CONDITIONING tensors as ``c_crossattn`` (batched with the
unconditional branch when cfg != 1, exactly as for a UNet's cross-attention), and the provider's
``denoiser(parametrization)(x, sigma, context)`` reads the class weights from it. So cfg, negative prompts and
conditioning nodes act on it as on a real model: the empty prompt (zeros) is the unconditional branch, the marginal.
Used by the test support pack's nodes (``tests/support_pack/conditional_nodes.py``) and by the demo pack's digits
model.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher

from . import analytic_models as am, import_repo_module


class ConditionalDenoiserModel(am.DenoiserBaseModel):
    def true_denoised(self, fn, x64, s64, c_crossattn):
        """``fn(x, sigma, context)``: the CONDITIONING tensors (``c_crossattn``, float64), repeated to the batch of
        ``x`` where ComfyUI batches several images with one conditioning."""
        context = None if c_crossattn is None else c_crossattn.to(torch.float64)
        if context is not None and context.shape[0] != x64.shape[0]:
            context = context.repeat((x64.shape[0] // context.shape[0],) + (1,) * (context.ndim - 1))
        return fn(x64, s64, context)


def conditional_gaussian(shape, classes: int = 4, seed: int = 0, separation: float = 5.0):
    module = import_repo_module("inversion_core.analytic_conditional")
    return module.ClassConditionalGaussian.random(tuple(int(s) for s in shape), int(classes), int(seed),
                                                  float(separation))


def make_conditional_model(provider_factory, channels: int = 4, latent_format: str = "sd15", sampling: str = "eps"):
    """A MODEL whose denoiser is ``provider_factory(shape).denoiser(parametrization)(x, sigma, context)``: as
    ``analytic_models.make_denoiser_model``, with the CONDITIONING passed on (also used by demo_pack's digits)."""
    model_type, settings = am._model_type(sampling)
    config = am.DenoiserModelConfig(int(channels), latent_format, settings)
    mm = comfy.model_management
    model = ConditionalDenoiserModel(config, model_type, provider_factory).to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())


def conditional_model(seed=0, classes=4, separation=5.0, channels=4, latent_format="sd15", sampling="eps"):
    return make_conditional_model(lambda shape: conditional_gaussian(shape, classes, seed, separation), channels,
                                  latent_format, sampling)
