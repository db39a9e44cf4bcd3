"""Edit-friendliness regularisers of the inverted noise (pix2pix-zero; ReNoise Sec. 4.2).

ReNoise (Garibi et al. 2024, Sec. 4.2, built on pix2pix-zero, Parmar et al. 2023, Sec. 3.1) nudges each noise
estimate eps towards the statistics of Gaussian noise before it is used in an inverse step, by a few gradient
steps on two losses that involve eps only (never the model):

* the pair (auto-correlation) loss over a pyramid eps^(0) = eps, eps^(s+1) = avgpool_2x2(eps^(s)), stopping at
  the first scale whose smaller spatial side is <= 8:

      L_pair = sum_s [ mean(eps^(s) * roll_H(eps^(s), r_s))^2 + mean(eps^(s) * roll_W(eps^(s), r'_s))^2 ]

  with random shifts r_s in [1, H_s/2), r'_s in [1, W_s/2) (one per channel and scale);
* the patch-KL loss against a reference eps_opt (the prediction at the forward-noised clean latent): for every
  4x4 spatial patch p and channel c, with (m0, v0) and (m1, v1) the mean and (unbiased) variance of eps and
  eps_opt over the patch,

      L_KL = sum_{p,c} | log(v1 / v0) + (v0 + (m0 - m1)^2) / v1 - 1 |   (2x the Gaussian KL, as the official code).

Optimiser (official ``noise_regularization``): ``rounds`` times { one KL step eps -= lambda_kl * clip(grad L_KL,
+-100); ``pair_steps`` pair steps eps -= lambda_pair * grad L_pair / pair_steps }.

Differences from the official code (garibida/ReNoise-Inversion ``src/renoise_inversion.py``), all deliberate:

* Per sample and per channel for any batch size and channel count (the official asserts B = 1 and hard-codes 4
  channels). The batch loss is the sum of per-sample losses, so each sample's gradient involves only that sample.
  A 5-D latent [B, C, T, H, W] is treated as C*T independent 2-D fields (per channel and frame), which keeps the
  per-element step size independent of T.
* Separate shifts for H and W, each drawn from its own axis' range and never 0. The official draws one shift per
  channel from [0, H_s/2) for both axes; a zero shift turns a term into (mean eps^2)^2, which only shrinks the
  noise (a quirk inherited from pix2pix-zero). ``official_rolls=True`` restores the official draw exactly.
* The pyramid stops on the smaller spatial side (the official looks at H only, so a tall latent gets one extra
  scale there and a very wide one fails); a side of size 1 contributes no term.
* Shifts are drawn from a seeded ``torch.Generator``, shared by the batch (so a batch equals single runs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .monitor import SILENT, Monitor

KL_EPSILON = 1e-6      # the official ``latents_kl_divergence`` stabiliser
PYRAMID_MIN_SIZE = 8   # stop pooling once a spatial side is <= 8


def as_fields(eps: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] or [B, C, T, H, W] -> [B, G, H, W] (G = C or C*T independent 2-D fields)."""
    if eps.ndim < 4:
        raise ValueError(f"expected a latent [B, C, ..., H, W] with two spatial dims, got {tuple(eps.shape)}")
    return eps.reshape(eps.shape[0], -1, eps.shape[-2], eps.shape[-1])


def _draw_shifts(size: int, fields: int, generator: torch.Generator, zero_allowed: bool) -> torch.Tensor:
    low = 0 if zero_allowed else 1
    high = max(size // 2, low + 1)
    return torch.randint(low, high, (fields,), generator=generator)


def _roll_fields(x: torch.Tensor, shifts: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.roll of each field g of x [B, G, H, W] by shifts[g] along ``dim`` (2 or 3), one gather."""
    n = x.shape[dim]
    positions = torch.arange(n, device=x.device)
    index = (positions[None, :] - shifts.to(x.device)[:, None]) % n           # [G, n]
    if dim == 2:
        index = index[None, :, :, None].expand_as(x)
    else:
        index = index[None, :, None, :].expand_as(x)
    return torch.gather(x, dim, index)


def pair_loss(eps: torch.Tensor, generator: torch.Generator, official_rolls: bool = False) -> torch.Tensor:
    """Per-sample auto-correlation loss L_pair over the pooled pyramid: [B, ...] -> [B]."""
    x = as_fields(eps)
    loss = 0.0 * x.sum(dim=(1, 2, 3))          # [B] zeros that stay in the autograd graph
    while True:
        fields, h, w = x.shape[1], x.shape[2], x.shape[3]
        if official_rolls:
            shift_h = _draw_shifts(h, fields, generator, zero_allowed=True)
            shift_w = shift_h
        else:
            shift_h = _draw_shifts(h, fields, generator, zero_allowed=False)
            shift_w = _draw_shifts(w, fields, generator, zero_allowed=False)
        if h > 1:
            loss = loss + (x * _roll_fields(x, shift_h, 2)).mean(dim=(2, 3)).pow(2).sum(dim=1)
        if w > 1:
            loss = loss + (x * _roll_fields(x, shift_w, 3)).mean(dim=(2, 3)).pow(2).sum(dim=1)
        if min(h, w) <= PYRAMID_MIN_SIZE:
            return loss
        x = F.avg_pool2d(x, kernel_size=2)


def patch_kl_loss(eps: torch.Tensor, reference: torch.Tensor, patch_size: int = 4) -> torch.Tensor:
    """Per-sample patch-KL loss L_KL of eps against ``reference`` (same shape): [B, ...] -> [B].

    Trailing rows/columns that do not fill a patch are ignored (as ``unfold`` in the official code).
    """
    x0, x1 = as_fields(eps), as_fields(reference.to(eps.dtype))
    b, g, h, w = x0.shape
    hp, wp = h // patch_size, w // patch_size
    if hp == 0 or wp == 0:
        return 0.0 * x0.sum(dim=(1, 2, 3))

    def stats(x):
        x = x[:, :, : hp * patch_size, : wp * patch_size]
        x = x.reshape(b, g, hp, patch_size, wp, patch_size).permute(0, 1, 2, 4, 3, 5).reshape(b, g, hp, wp, -1)
        return x.mean(dim=-1), x.var(dim=-1)

    m0, v0 = stats(x0)
    m1, v1 = stats(x1)
    kl = torch.log((v1 + KL_EPSILON) / (v0 + KL_EPSILON)) + (v0 + (m0 - m1) ** 2) / (v1 + KL_EPSILON) - 1.0
    return kl.abs().flatten(1).sum(dim=1)


class NoiseRegularizer:
    """ReNoise's noise regularisation Reg(eps) (Garibi et al. 2024, Sec. 4.2; defaults from ``src/config.py``).

    ``__call__(eps, eps_opt)`` returns the regularised eps (same shape and dtype). It computes gradients with
    autograd on a private copy of eps only, so it works inside ``torch.inference_mode()`` (ComfyUI) and never
    runs a model.

    The losses are not scale-free (L_pair is quartic in eps), so the official step sizes assume eps of unit
    scale, which a model's noise prediction has. ``scale_invariant=True`` (off by default) runs the descent on
    eps / s and returns s * Reg(eps / s), s the per-sample RMS of eps: identical at s = 1, and it cannot blow up
    on an off-scale eps. Either way a sample whose result is not finite keeps its input.
    """

    def __init__(
        self,
        lambda_pair: float = 20.0,
        lambda_kl: float = 0.065,
        rounds: int = 4,
        pair_steps: int = 5,
        patch_size: int = 4,
        grad_clip: float = 100.0,
        seed: int = 0,
        official_rolls: bool = False,
        scale_invariant: bool = False,
    ):
        if rounds < 0 or pair_steps < 0 or patch_size < 1:
            raise ValueError("rounds and pair_steps must be >= 0 and patch_size >= 1")
        self.lambda_pair = float(lambda_pair)
        self.lambda_kl = float(lambda_kl)
        self.rounds = int(rounds)
        self.pair_steps = int(pair_steps)
        self.patch_size = int(patch_size)
        self.grad_clip = float(grad_clip)
        self.seed = int(seed)
        self.official_rolls = bool(official_rolls)
        self.scale_invariant = bool(scale_invariant)
        self.generator = torch.Generator(device="cpu")
        self.reset()

    def reset(self) -> None:
        """Re-seed the shift generator (called at the start of every inversion run)."""
        self.generator.manual_seed(self.seed)

    @property
    def enabled(self) -> bool:
        return self.rounds > 0 and (self.uses_pair or self.uses_kl)

    @property
    def uses_pair(self) -> bool:
        return self.lambda_pair != 0 and self.pair_steps > 0

    @property
    def uses_kl(self) -> bool:
        return self.lambda_kl != 0

    @property
    def needs_reference(self) -> bool:
        """Whether ``__call__`` needs eps_opt (the patch-KL term is on)."""
        return self.rounds > 0 and self.uses_kl

    def __call__(self, eps: torch.Tensor, eps_opt: torch.Tensor | None = None,
                 monitor: Monitor = SILENT) -> torch.Tensor:
        if not self.enabled:
            return eps
        if self.needs_reference and eps_opt is None:
            raise ValueError("the patch-KL regulariser (lambda_kl != 0) needs the reference eps_opt")
        dtype = eps.dtype
        with torch.inference_mode(False), torch.enable_grad():
            work = eps.detach().clone()                 # a normal tensor, even if eps is an inference tensor
            reference = eps_opt.detach().clone().to(dtype) if self.needs_reference else None
            scale = None
            if self.scale_invariant:
                scale = work.flatten(1).pow(2).mean(dim=1).sqrt().clamp_min(1e-8)
                scale = scale.reshape(-1, *([1] * (work.ndim - 1)))
                work = work / scale
                reference = reference / scale if reference is not None else None
            for _ in range(self.rounds):
                if self.uses_kl:
                    monitor.check()
                    grad = self._grad(lambda v: patch_kl_loss(v, reference, self.patch_size), work)
                    work = work - self.lambda_kl * grad.clamp(-self.grad_clip, self.grad_clip)
                if self.uses_pair:
                    for _ in range(self.pair_steps):
                        monitor.check()
                        grad = self._grad(lambda v: pair_loss(v, self.generator, self.official_rolls), work)
                        work = work - (self.lambda_pair / self.pair_steps) * grad
            work = work.detach()
            work = (work * scale if scale is not None else work).to(dtype)
        # a sample whose descent blew up (the pair loss is quartic in eps) keeps its input
        finite = torch.isfinite(work).flatten(1).all(dim=1)
        if not bool(finite.all()):
            work = torch.where(finite.reshape(-1, *([1] * (work.ndim - 1))), work, eps)
        return work

    @staticmethod
    def _grad(loss_fn, value: torch.Tensor) -> torch.Tensor:
        variable = value.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(variable).sum(), variable)
        return grad
