"""Name the node and the input when the model itself rejects what the node hands it.

A model whose forward cannot take a latent (a 1x1 latent into a UNet, a latent of another model family that slipped
past the channel check, a packed multi-part latent) fails deep inside its own code, e.g.
``RuntimeError: shape '[2, 1, 1024]' is invalid for input of size 8``. On the *first* model call of an inversion
such an error is almost always about the input, so it is re-raised as a :class:`validation.NodeInputError` that
says which node, which input and its shape, with the model's own message kept (and chained). Later calls, interrupts,
out-of-memory errors, autograd failures (RNRI falls back on those) and the pack's own errors pass through unchanged.
"""
from __future__ import annotations

import comfy.model_management

from ..inversion_core.errors import InversionError, NonFiniteError
from . import validation
from .autograd_clone import is_autograd_failure


def _passes_through(error: BaseException) -> bool:
    if isinstance(error, (validation.NodeInputError, comfy.model_management.InterruptProcessingException)):
        return True
    oom = getattr(comfy.model_management, "OOM_EXCEPTION", None)
    if oom is not None and isinstance(error, oom):
        return True
    if isinstance(error, (InversionError, NonFiniteError)):   # the core's own (non-finite output, settings)
        return True
    return is_autograd_failure(error)


def first_call(node: str, input_name: str, latent, error: BaseException) -> None:
    """Raise a NodeInputError for ``error`` from the first model call on ``latent``; return (so that the caller
    re-raises the original) if the error is not one to translate."""
    if _passes_through(error):
        return
    shape = tuple(getattr(latent, "shape", ()))
    dtype = str(getattr(latent, "dtype", "")).replace("torch.", "")
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    raise validation.NodeInputError(
        f"{node}: the model cannot take input '{input_name}' of shape {shape} ({dtype}): its first call failed "
        f"with {type(error).__name__}: {message} -- use a latent made for this model (its VAE Encode or empty "
        "latent node, at a size the model supports)") from error
