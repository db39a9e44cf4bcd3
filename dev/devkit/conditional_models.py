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
    def _apply_model(self, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        ms = self.model_sampling
        fn = self.provider_for(x.shape[1:]).denoiser(am.parametrization_of(ms))
        s64 = t.to(torch.float64).reshape(-1)
        if s64.numel() == 1 and x.shape[0] != 1:
            s64 = s64.expand(x.shape[0])
        x64 = x.to(torch.float64)
        context = None if c_crossattn is None else c_crossattn.to(torch.float64)
        if context is not None and context.shape[0] != x.shape[0]:
            context = context.repeat((x.shape[0] // context.shape[0],) + (1,) * (context.ndim - 1))
        d_true = fn(x64, s64, context).to(torch.float64)
        a = ms.calculate_denoised(s64, torch.zeros_like(x64), x64)
        b = ms.calculate_denoised(s64, torch.ones_like(x64), x64) - a
        safe = b != 0
        out = torch.where(safe, (d_true - a) / torch.where(safe, b, torch.ones_like(b)), torch.zeros_like(b))
        work = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        return ms.calculate_denoised(t, out.to(work), x.to(work))


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
