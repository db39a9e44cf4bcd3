"""Input validation for every node of the pack, in one place.

Each check raises :class:`NodeInputError` with a message that names the node (its display name) and the input,
says what is wrong and what to do, e.g.
``RNRI Invert: input 'latent' has 16 channels but the model expects 4 -- ...``. ComfyUI shows the exception
message in its error dialog. Core errors (``inversion_core.errors``) are translated by :func:`core_errors`.
"""
from __future__ import annotations

import contextlib
import math

import torch

from ..inversion_core.errors import InversionError, NonFiniteError
from .record import InversionRecord, model_fingerprint


class NodeInputError(ValueError):
    """Bad input to a node; the message names the node and the input."""


CONNECT_LATENT = " -- connect a LATENT output (VAE Encode, Empty Latent Image)"


def fail(node: str, name: str, problem: str):
    raise NodeInputError(f"{node}: input '{name}' {problem}")


def model(node: str, name: str, value):
    """A MODEL (ModelPatcher), not a literal typed into a hand-edited API JSON where a link belongs."""
    if not (hasattr(value, "get_model_object") and hasattr(value, "model")):
        fail(node, name, f"is a {type(value).__name__}, not a MODEL -- connect a model loader's MODEL output")
    return value


def finite(node: str, name: str, value) -> float:
    """A number ComfyUI's min/max check let through (JSON NaN passes it: NaN < min and NaN > max are false)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        fail(node, name, f"is {value!r}; it must be a finite number")
    if not math.isfinite(value):
        fail(node, name, f"is {value}; it must be a finite number")
    return value


def context_width(model):
    """The cross-attention width the model's conditioning must have, where its config states it (UNet models)."""
    config = getattr(getattr(model, "model", None), "model_config", None)
    unet_config = getattr(config, "unet_config", None) or {}
    width = unet_config.get("context_dim") if isinstance(unet_config, dict) else None
    return int(width) if isinstance(width, int) and width > 0 else None


def conditioning(node: str, name: str, value, model=None, batch=None):
    """A CONDITIONING ([[tensor, dict], ...]) whose width fits the model and whose batch is 1 or the latents'."""
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(c, (list, tuple)) and len(c) >= 2 and isinstance(c[0], torch.Tensor) and isinstance(c[1], dict)
            for c in value):
        fail(node, name, f"is a {type(value).__name__}, not a CONDITIONING -- connect a text encoder's output "
                         "(CLIP Text Encode)")
    width = context_width(model) if model is not None else None
    for tensor, _ in ((c[0], c[1]) for c in value):
        if width is not None and tensor.ndim == 3 and tensor.shape[-1] != width:
            fail(node, name, f"has width {tensor.shape[-1]} but the model's cross-attention expects {width} -- "
                             "encode the prompt with this model's text encoder (CLIP)")
        if batch is not None and tensor.ndim >= 1 and tensor.shape[0] not in (1, batch):
            fail(node, name, f"has a batch of {tensor.shape[0]} conditionings for a batch of {batch} latent(s) -- "
                             + ("use a single conditioning" if batch == 1 else
                                f"use 1 (shared by every latent) or {batch} (one per latent)")
                             + "; ComfyUI would silently repeat or cut them")
    return value


def latent_samples(node: str, name: str, latent) -> torch.Tensor:
    """The ``samples`` tensor of a LATENT dict, checked for type, rank, batch and finiteness."""
    if not isinstance(latent, dict) or "samples" not in latent:
        fail(node, name, "is not a LATENT (a dict with a 'samples' tensor)" + CONNECT_LATENT)
    samples = latent["samples"]
    not_nested(node, name, samples)
    if not isinstance(samples, torch.Tensor):
        fail(node, name, f"holds {type(samples).__name__}, not a tensor" + CONNECT_LATENT)
    if samples.ndim < 4:
        fail(node, name, f"has shape {tuple(samples.shape)}; expected [batch, channels, height, width] "
                         "(or [batch, channels, frames, height, width])" + CONNECT_LATENT)
    if samples.shape[0] == 0:
        fail(node, name, "is an empty batch (0 latents) -- give it at least one latent (check the batch, split "
                         "or filter node before it)")
    if not samples.is_floating_point():
        fail(node, name, f"has dtype {samples.dtype}; expected a floating point latent" + CONNECT_LATENT)
    if not torch.isfinite(samples).all():
        bad = int((~torch.isfinite(samples)).sum())
        fail(node, name, f"contains {bad} NaN/inf values; decode or regenerate it (a NaN latent usually "
                         "comes from an fp16 VAE overflow: try the VAE in fp32)")
    return samples


def not_nested(node: str, name: str, samples) -> None:
    """Refuse a nested latent: ComfyUI's ``comfy.nested_tensor.NestedTensor`` (0.3.75 and later; LTX-2 audio +
    video, several latents sampled jointly) or a torch nested tensor. Its parts are denoised together by one model,
    so they cannot be inverted one at a time, and the nodes' INVERSION and NOISE hold a single tensor. A SAMPLER
    never sees one: ComfyUI's guider packs the parts into one [batch, 1, n] tensor, so the Inversion Sampler in
    SamplerCustom inverts them jointly (tests/test_host_compat.py)."""
    if not getattr(samples, "is_nested", False):
        return
    parts = getattr(samples, "tensors", None)
    if parts is None:
        try:
            parts = samples.unbind()
        except Exception:  # noqa: BLE001 -- only for the message
            parts = []
    shapes = ", ".join(str(tuple(getattr(t, "shape", ()))) for t in parts) or "unknown"
    from . import host_features  # local: only needed here

    if host_features.samples_nested_latents_without_noise():
        how = ("Invert it with Inversion Sampler in SamplerCustom (add_noise off, sigmas through FlipSigmas; "
               "ComfyUI packs the parts for it) and sample back with SamplerCustom (euler, the unflipped sigmas)")
    else:
        how = ("This ComfyUI cannot sample a nested latent without added noise either (SamplerCustom with add_noise "
               "off); update ComfyUI to invert it with Inversion Sampler in SamplerCustom")
    fail(node, name, f"is a nested latent of {len(parts)} parts (shapes {shapes}), e.g. an LTX-2 audio + video "
                     f"latent, which this node cannot take (its INVERSION and NOISE hold one tensor). {how}")


def latent_for_model(node: str, name: str, samples: torch.Tensor, model) -> None:
    """The latent's channel count (and rank) must be the model's latent format's."""
    fmt = model.get_model_object("latent_format")
    channels = getattr(fmt, "latent_channels", None)
    if channels is not None and samples.shape[1] != channels:
        fail(node, name, f"has {samples.shape[1]} channels but the model expects {channels} -- encode the image "
                         f"with this model's VAE (a {channels}-channel latent) or use a model that matches the "
                         "latent")
    dims = getattr(fmt, "latent_dimensions", 2)
    if samples.ndim != dims + 2:
        fail(node, name, f"has shape {tuple(samples.shape)} but the model expects a {dims}-D latent "
                         f"({dims + 2} dimensions with batch and channels) -- use a latent made for this model "
                         "(its VAE Encode); a video latent needs a video model")


def denoise(node: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        fail(node, "denoise", f"is {value}; it must be in (0, 1]: 1 inverts the whole schedule, 0.5 only up to "
                              "the noise level a KSampler with denoise 0.5 starts from")
    return value


def steps(node: str, value: int) -> int:
    value = int(value)
    if value < 1:
        fail(node, "steps", f"is {value}; it must be at least 1")
    return value


def sigmas(node: str, name: str, values) -> torch.Tensor:
    """A SIGMAS tensor: 1-D, at least two finite non-negative values, strictly monotone (either direction)."""
    if not isinstance(values, torch.Tensor):
        fail(node, name, f"holds {type(values).__name__}, not a SIGMAS tensor -- connect a scheduler's SIGMAS "
                         "output (BasicScheduler) or leave it unconnected")
    values = values.detach().flatten().to(torch.float64).cpu()
    if values.numel() < 2:
        fail(node, name, f"has {values.numel()} value(s); a schedule needs at least 2 (one step). A denoise of 0 "
                         "or a SplitSigmas at the last step gives an empty schedule")
    if not torch.isfinite(values).all() or (values < 0).any():
        fail(node, name, f"must be finite and >= 0, got {_short(values.tolist())}")
    diffs = values[1:] - values[:-1]
    if not ((diffs <= 0).all() or (diffs >= 0).all()) or (diffs == 0).all():
        fail(node, name, f"must be decreasing (sampling order) or increasing (FlipSigmas order), got "
                         f"{_short(values.tolist())}")
    return values


def _short(values, keep: int = 6) -> str:
    text = [f"{v:.5g}" for v in values]
    if len(text) > 2 * keep:
        text = text[:keep] + [f"... ({len(text) - 2 * keep} more)"] + text[-keep:]
    return "[" + ", ".join(text) + "]"


def choice(node: str, name: str, value: str, options) -> str:
    if value not in options:
        fail(node, name, f"is {value!r}; expected one of {list(options)}")
    return value


def inversion_for_model(node: str, name: str, record, model) -> None:
    """An INVERSION must come from a model with the same latent space and noise schedule."""
    fingerprint, description = model_fingerprint(model)
    if fingerprint != record.fingerprint:
        fail(node, name, f"was made with another model ({record.model_description}); this model is "
                         f"{description}. Sample back with the model the inversion was made with (same "
                         "checkpoint, same ModelSampling patch)")


def inversion(node: str, name: str, value):
    """An INVERSION made by this pack's nodes and still consistent (re-checked: a record is a mutable Python object
    that another custom node may have changed on its way here)."""
    if not isinstance(value, InversionRecord):
        fail(node, name, f"is a {type(value).__name__}, not an INVERSION -- connect the inversion output of an "
                         "invert node")
    try:
        value.validate()
    except ValueError as error:
        fail(node, name, f"is inconsistent ({error}); it was changed after the invert node made it -- connect "
                         "the invert node's inversion output directly")
    return value


def batch_matches(node: str, name: str, samples: torch.Tensor, record, what: str = "latent") -> None:
    if tuple(samples.shape) != tuple(record.shape):
        fail(node, name, f"has shape {tuple(samples.shape)} but the inversion's {what} has shape "
                         f"{tuple(record.shape)} (batch {record.batch}); use the latent that was inverted")


@contextlib.contextmanager
def core_errors(node: str, latent_name: str = "latent"):
    """Translate inversion_core's exceptions into node-named messages."""
    try:
        yield
    except NonFiniteError as e:
        where = f" at sigma {e.sigma:.4g}" if e.sigma is not None else ""
        hint = "" if "Exact Invert" in node else ", or the Exact Invert node"
        raise NodeInputError(f"{node}: the inversion produced NaN/inf{where} ({e}). Try more steps, a lower "
                             f"cfg, fp32 weights{hint}") from e
    except InversionError as e:
        raise NodeInputError(f"{node}: input '{latent_name}' or the settings are invalid: {e}") from e
