"""The INVERSION socket type: everything needed to sample an inversion back, checked on construction.

All tensors are in ComfyUI's *internal* sampling space (after ``latent_format.process_in``), on the intermediate
device (CPU), in float32 (float64 if the latent was float64):

* ``sigmas``   [N+1], sampling order (descending), as the sampler used them;
* ``latents``  N+1 tensors, ``latents[j]`` lies at ``sigmas[j]``: ``latents[0]`` is the inverted latent x_N,
  ``latents[-1]`` the latent that was inverted (the clean latent for a full or partial inversion);
* ``noises``   N entries, the noise replayed by forward step i (sigmas[i] -> sigmas[i+1]), ``None`` for
  deterministic steps (every step of an Euler/DDIM inversion);
* ``residuals`` None (none stored: a record made before they existed) or N entries, what forward step i from
  ``latents[i]`` misses of ``latents[i+1]`` (``None`` = zero; ``inversion_core.residuals``), added back by Inverted
  Sampler so that it samples back onto every stored latent.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from comfy_api.latest import io

from ..inversion_core.spaces import PARAMETRIZATIONS
from ..inversion_core.steps import STEP_KINDS, make_steps

INVERSION = io.Custom("INVERSION")


def model_fingerprint(model) -> tuple[str, str]:
    """(hash, description) of what an inversion depends on besides the weights' values.

    Covers the model class, the network class and parameter count, the latent format (class, channels), the
    active model_sampling (class hierarchy, sigma range and its sigma table) -- so a different architecture, latent
    space, prediction type or ModelSampling patch is caught. It deliberately does not hash weight values (patched
    weights change whenever another clone is loaded): a LoRA or another checkpoint of the same architecture passes.
    """
    base = model.model
    network = getattr(base, "diffusion_model", None)
    fmt = model.get_model_object("latent_format")
    ms = model.get_model_object("model_sampling")
    n_params = sum(p.numel() for p in network.parameters()) if network is not None else 0
    sampling = [c.__name__ for c in type(ms).__mro__ if c.__module__.startswith("comfy.")]
    parts = [
        type(base).__name__, type(network).__name__, str(n_params), type(fmt).__name__,
        str(getattr(fmt, "latent_channels", "")), ",".join(sampling),
        f"{float(ms.sigma_min):.6g}", f"{float(ms.sigma_max):.6g}",
    ]
    table = getattr(ms, "sigmas", None)
    if isinstance(table, torch.Tensor):
        parts.append(hashlib.sha1(table.detach().to(torch.float32).cpu().numpy().tobytes()).hexdigest()[:12])
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    kind = "+".join(b.__name__ for b in type(ms).__bases__ if b.__module__.startswith("comfy.")) or type(ms).__name__
    description = (f"{type(base).__name__} ({n_params / 1e6:.1f}M params, {type(fmt).__name__} latents, "
                   f"{kind} sampling, sigma {float(ms.sigma_min):.4g}..{float(ms.sigma_max):.4g})")
    return digest, description


def _check_per_step(name: str, tensors, shape: tuple) -> None:
    """Per-step entries are None or finite tensors of the latents' shape."""
    for i, t in enumerate(tensors):
        if t is None:
            continue
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
            raise ValueError(f"INVERSION: {name} {i} has shape {tuple(getattr(t, 'shape', ()))}, not {shape}")
        if not torch.isfinite(t).all():
            raise ValueError(f"INVERSION: {name} {i} is not finite")


@dataclass
class InversionRecord:
    sigmas: torch.Tensor
    latents: tuple
    noises: tuple
    parametrization: str
    step_kind: str
    eta: float
    s_noise: float
    fingerprint: str
    model_description: str
    method: str
    settings: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    noise_seed: int = 0
    noise_scale: float = 1.0     # flow models' model_sampling.noise_scale (newer ComfyUI), applied by its samplers
    residuals: Optional[tuple] = None
    bottom: Optional[tuple] = None   # levels the sampler integrates the last interval down (ODE Invert), or None

    def __post_init__(self):
        self.sigmas = torch.as_tensor(self.sigmas).detach().flatten().cpu()
        self.latents = tuple(self.latents)
        self.noises = tuple(self.noises)
        if self.residuals is not None:
            self.residuals = tuple(self.residuals)
        if self.bottom is not None:
            self.bottom = tuple(float(v) for v in self.bottom)
        self.validate()

    def validate(self) -> "InversionRecord":
        """Raise ValueError("INVERSION: ...") unless the fields are consistent. Run on construction and again by
        every node that consumes an INVERSION (another custom node may have handed over a changed record)."""
        if not isinstance(self.sigmas, torch.Tensor) or self.sigmas.ndim != 1:
            raise ValueError("INVERSION: sigmas must be a 1-D tensor")
        if not isinstance(self.latents, (tuple, list)) or not isinstance(self.noises, (tuple, list)):
            raise ValueError("INVERSION: latents and noises must be sequences")
        n = self.sigmas.numel()
        if n < 2:
            raise ValueError("INVERSION: needs at least one step (two sigmas)")
        if not torch.isfinite(self.sigmas).all() or not (self.sigmas[1:] < self.sigmas[:-1]).all():
            raise ValueError("INVERSION: sigmas must be finite and strictly decreasing (sampling order)")
        if len(self.latents) != n:
            raise ValueError(f"INVERSION: {len(self.latents)} latents for {n} sigmas")
        if len(self.noises) != n - 1:
            raise ValueError(f"INVERSION: {len(self.noises)} noises for {n - 1} steps")
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"INVERSION: parametrization {self.parametrization!r} not in {PARAMETRIZATIONS}")
        if self.step_kind not in STEP_KINDS:
            raise ValueError(f"INVERSION: step kind {self.step_kind!r} not in {STEP_KINDS}")
        if not isinstance(self.latents[0], torch.Tensor):
            raise ValueError(f"INVERSION: latent 0 is a {type(self.latents[0]).__name__}, not a tensor")
        shape = tuple(self.latents[0].shape)
        for j, t in enumerate(self.latents):
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                raise ValueError(f"INVERSION: latent {j} has shape {tuple(getattr(t, 'shape', ()))}, not {shape}")
            if not torch.isfinite(t).all():
                raise ValueError(f"INVERSION: latent {j} (sigma {float(self.sigmas[j]):.4g}) is not finite")
        _check_per_step("noise", self.noises, shape)
        if self.residuals is not None:
            if not isinstance(self.residuals, (tuple, list)) or len(self.residuals) != n - 1:
                raise ValueError(f"INVERSION: residuals must be None or {n - 1} entries (one per step)")
            _check_per_step("residual", self.residuals, shape)
        if self.bottom is not None:
            levels = list(self.bottom)
            increasing = all(b > a for a, b in zip(levels[:-1], levels[1:], strict=True))
            ends = len(levels) >= 3 and levels[0] == 0.0 and float(self.sigmas[-1]) == 0.0 \
                and abs(levels[-1] - float(self.sigmas[-2])) <= 1e-5 * max(1.0, abs(levels[-1]))
            if not (increasing and ends and all(math.isfinite(v) for v in levels)):
                raise ValueError("INVERSION: bottom must be None or increasing levels from 0 to the last sigma above 0")
        if not (math.isfinite(self.eta) and math.isfinite(self.s_noise) and math.isfinite(self.noise_scale)
                and self.noise_scale > 0):
            raise ValueError("INVERSION: eta, s_noise and noise_scale must be finite (noise_scale > 0)")
        for step in make_steps(self.step_kind, self.sigmas, self.parametrization, self.eta, self.s_noise):
            if step.stochastic and self.noises[step.index] is None:
                raise ValueError(f"INVERSION: step {step.index} of a {self.step_kind} inversion has no stored noise")
        return self

    # -- convenience
    @property
    def shape(self) -> tuple:
        return tuple(self.latents[0].shape)

    @property
    def batch(self) -> int:
        return self.shape[0]

    @property
    def steps(self) -> int:
        return self.sigmas.numel() - 1

    @property
    def has_residuals(self) -> bool:
        """True if some step stores a nonzero residual."""
        return self.residuals is not None and any(t is not None for t in self.residuals)

    @property
    def inverted(self) -> torch.Tensor:
        """x_N at sigmas[0] (internal space)."""
        return self.latents[0]

    @property
    def source(self) -> torch.Tensor:
        """The latent that was inverted, at sigmas[-1] (internal space)."""
        return self.latents[-1]

    def noise_index(self, sigma: float, sigma_next: Optional[float] = None) -> int:
        """The forward step i whose sigmas[i] is ``sigma`` (and sigmas[i+1] is ``sigma_next`` if given)."""
        values = self.sigmas[:-1].to(torch.float64)
        gaps = (values - float(sigma)).abs()
        i = int(torch.argmin(gaps))
        if gaps[i] > 1e-5 * max(1.0, abs(float(sigma))):
            raise KeyError(sigma)
        if sigma_next is not None:
            want = float(self.sigmas[i + 1])
            if abs(want - float(sigma_next)) > 1e-5 * max(1.0, abs(want)):
                raise KeyError(sigma_next)
        return i

    def __repr__(self) -> str:  # shown in ComfyUI's debug output
        return (f"InversionRecord(method={self.method}, steps={self.steps}, shape={self.shape}, "
                f"step_kind={self.step_kind}, parametrization={self.parametrization}, "
                f"sigma {float(self.sigmas[0]):.4g}->{float(self.sigmas[-1]):.4g})")
