"""RNRI's autograd-capable MODEL clone, and the errors that mean backward is unavailable.

RNRI's "newton" variant differentiates the model. :func:`autograd_model` gives it a MODEL clone whose weights
autograd can save; :func:`is_autograd_failure` names the errors on which RNRI falls back to "released" (so
``model_errors`` lets them through untranslated).
"""
from __future__ import annotations

import torch


def _private_weight(weight: torch.Tensor) -> torch.Tensor:
    """Weight wrapper: a fresh (non-inference, autograd-savable) copy per forward."""
    return weight.clone()


def autograd_model(model):
    """(clone, n_wrapped): a MODEL clone whose comfy.ops weights and biases go through :func:`_private_weight`.

    Inside ComfyUI's ``torch.inference_mode()`` the loaded weights are inference tensors that autograd cannot save
    for backward; the wrappers make every layer use a private copy, made per forward where ``comfy.ops`` casts the
    layer's weight.
    Weight wrappers live on the clone only (``ModelPatcher.clone`` copies the patch dicts), so the caller's MODEL is
    untouched. Newer ComfyUI: a dynamic-VRAM patcher is first swapped for its non-dynamic delegate.
    """
    base = model
    if getattr(base, "is_dynamic", None) is not None and base.is_dynamic():
        base = base.get_non_dynamic_delegate()
    clone = base.clone()
    wrapped = 0
    for name, module in clone.model.named_modules():
        if not hasattr(module, "comfy_cast_weights"):
            continue
        for kind in ("weight", "bias"):
            if getattr(module, kind, None) is not None:
                clone.add_weight_wrapper(f"{name}.{kind}", _private_weight)
                wrapped += 1
    return clone, wrapped


def is_autograd_failure(error: BaseException) -> bool:
    """Errors that mean "backward is unavailable here" (inference tensors, kernels without backward): RNRI falls
    back on them, so ``model_errors`` lets them through untranslated."""
    text = str(error).lower()
    keys = ("inference tensor", "does not require grad", "does not have a grad_fn", "derivative for",
            "not implemented for", "backward", "autograd")
    return isinstance(error, (RuntimeError, NotImplementedError)) and any(k in text for k in keys)
