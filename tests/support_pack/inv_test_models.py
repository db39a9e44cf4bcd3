"""Test UNets built with ComfyUI's own classes (shared by build_models.py and the support pack's nodes).

* ``SD15_NARROW_UNET``: a one-level SD1.5 UNet at the real width (320 channels, context 768): stock detection
  (``UNETLoader``, ``CheckpointLoaderSimple``) recognises it as SD15. 13.6 M parameters.
* ``TINY_UNET``: the same layout at 32 channels / context 32 (137 k parameters). Stock detection knows no such
  config, so ``TinySD15`` is registered in ``comfy.supported_models.models`` by the support pack.

Weights are initialised here (comfy.ops layers skip init): N(0, 0.02) from a seeded generator, norm layers
weight 1 / bias 0. Needs ComfyUI importable with ``comfy.cli_args.args.cpu`` already set on CPU-only torch.
"""
from __future__ import annotations

import torch

import comfy.model_management
import comfy.model_patcher
import comfy.supported_models

_COMMON = {
    "use_checkpoint": False,
    "image_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "num_res_blocks": [1],
    "channel_mult": [1],
    "transformer_depth": [1],
    "transformer_depth_output": [0, 0],
    "transformer_depth_middle": -2,  # no middle block
    "use_linear_in_transformer": False,
    "use_temporal_resblock": False,
    "use_temporal_attention": False,
}
SD15_NARROW_UNET = dict(_COMMON, model_channels=320, context_dim=768)
TINY_UNET = dict(_COMMON, model_channels=32, context_dim=32)


class TinySD15(comfy.supported_models.SD15):
    """SD1.5 layout at 32 channels / context 32; registered so stock loaders detect ``tiny_unet`` files."""

    unet_config = {
        "context_dim": 32,
        "model_channels": 32,
        "use_linear_in_transformer": False,
        "adm_in_channels": None,
        "use_temporal_attention": False,
    }
    unet_extra_config = {"num_heads": 2, "num_head_channels": -1}


def register_tiny_config() -> None:
    """Append TinySD15 to ComfyUI's detection list once per process (matched by class name)."""
    if not any(getattr(m, "__name__", "") == "TinySD15" for m in comfy.supported_models.models):
        comfy.supported_models.models.append(TinySD15)


@torch.no_grad()
def init_weights_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    g = torch.Generator().manual_seed(int(seed))
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    for sub in module.modules():
        for name, p in sub.named_parameters(recurse=False):
            if isinstance(sub, norms):
                p.fill_(1.0 if name == "weight" else 0.0)
            else:
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype) * 0.02)
    return module


def build_base_model(config_cls, unet_config: dict, seed: int, dtype=torch.float32):
    """A ``comfy.model_base.BaseModel`` (with its UNet) of ``config_cls``, weights initialised from ``seed``."""
    cfg = config_cls(dict(unet_config))
    cfg.set_inference_dtype(dtype, None)
    model = cfg.get_model({})
    init_weights_(model.diffusion_model, seed)
    return model


def tiny_model_patcher(seed: int):
    """An in-memory MODEL (``ModelPatcher``) of the tiny config, as ``comfy.sd.load_diffusion_model`` builds one."""
    mm = comfy.model_management
    model = build_base_model(TinySD15, TINY_UNET, seed).to(mm.unet_offload_device())
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())
