"""The project's own small learned denoiser: an imperfect model for testing inversion on real photographs.

The analytic Gaussian-mixture denoiser (``inversion_core.analytic``) is exact; real models are not. This one is a
small conv UNet trained on CPU (``testbed/train_learned.py``) on the "latents" of real photographs
(``testbed/photos.py``), so inversion claims can be checked on a learned, imperfect model without downloading one.

It works in the variance-preserving view of ``inversion_core.spaces``: a state x at noise level sigma is
x = r * u with u = alpha * x0 + beta * eps, alpha^2 + beta^2 = 1. Writing alpha = cos(phi), beta = sin(phi), the
network sees u and the angle phi = atan2(beta, alpha) in [0, pi/2] and predicts the velocity

    v = alpha * eps - beta * x0                        (Salimans & Ho 2022, "Progressive Distillation", sec. 4)

from which x0_hat = alpha * u - beta * v_hat (exact identity for the true v). This v-prediction is stable at both
ends (phi = 0 gives x0_hat = u; phi = pi/2 gives x0_hat = -v_hat) and makes ONE network serve both of ComfyUI's
parametrizations: VE sigma in [0.03, 14.6] is phi = atan(sigma) in [0.03, 1.50], flow sigma in [0, 1] is
phi = atan(sigma / (1 - sigma)) in [0, pi/2].
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from inversion_core.spaces import check_parametrization, per_sample, unit_signal_noise

HERE = Path(__file__).resolve().parent
DEFAULT_WEIGHTS = HERE / "weights" / "learned_denoiser.safetensors"

# The committed learned models: name -> weights and the eval set of 64 crops (4x16x16 latents) of photos the model
# never trained on (plus 64 of its training photos). Each was made by ``testbed.train_learned`` with the command
# recorded in its metadata ("command"; testbed/README.md lists them).
MODELS = {
    "learned_a": {"weights": DEFAULT_WEIGHTS, "eval": HERE / "data" / "eval_learned_a.safetensors"},
    "learned_b": {"weights": HERE / "weights" / "learned_b.safetensors",
                  "eval": HERE / "data" / "eval_learned_b.safetensors"},
}
DEFAULT_MODEL = "learned_a"

DEFAULT_CONFIG = {
    "in_channels": 4,
    "channels": [24, 48, 96],       # widths at full, 1/2 and 1/4 resolution
    "blocks_per_level": 1,
    "embedding_dim": 128,
    "fourier_features": 16,
    "groups": 8,
}


def phi_features(phi: torch.Tensor, count: int) -> torch.Tensor:
    """Fourier features of the noise angle phi [B] -> [B, 2 * count], frequencies 1 .. 2^(count/2) (geometric)."""
    freqs = torch.exp(torch.linspace(0.0, math.log(2.0) * count / 2, count, device=phi.device, dtype=phi.dtype))
    args = phi[:, None] * freqs[None, :]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, twice, with the noise embedding as a per-channel scale and shift (FiLM)."""

    def __init__(self, cin: int, cout: int, emb: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return self.skip(x) + h


class UNet(nn.Module):
    """A small UNet over [B, C, H, W] (H, W divisible by 2^(levels-1)) conditioned on the noise angle phi [B]."""

    def __init__(self, in_channels=4, channels=(24, 48, 96), blocks_per_level=1, embedding_dim=128,
                 fourier_features=16, groups=8):
        super().__init__()
        self.config = dict(in_channels=in_channels, channels=list(channels), blocks_per_level=blocks_per_level,
                           embedding_dim=embedding_dim, fourier_features=fourier_features, groups=groups)
        self.fourier_features = fourier_features
        self.embed = nn.Sequential(nn.Linear(2 * fourier_features, embedding_dim), nn.SiLU(),
                                   nn.Linear(embedding_dim, embedding_dim), nn.SiLU())
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down_blocks, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in enumerate(channels):
            prev = channels[max(i - 1, 0)]
            self.down_blocks.append(nn.ModuleList(
                [ResBlock(prev if j == 0 else ch, ch, embedding_dim, groups) for j in range(blocks_per_level)]))
            if i < len(channels) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(channels[-1], channels[-1], embedding_dim, groups)
        self.up_blocks, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(channels))):
            ch = channels[i]                   # the upsampled state and the skip both have ch channels
            self.up_blocks.append(nn.ModuleList(
                [ResBlock(2 * ch if j == 0 else ch, ch, embedding_dim, groups) for j in range(blocks_per_level)]))
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, channels[i - 1], 3, padding=1))
        self.norm_out = nn.GroupNorm(groups, channels[0])
        self.conv_out = nn.Conv2d(channels[0], in_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, u: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        return self.run(u, self.embed(phi_features(phi, self.fourier_features)))

    def run(self, u: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """The network given the noise embedding ``emb`` [B, embedding_dim] (a conditional subclass adds to it)."""
        h = self.conv_in(u)
        skips = []
        for i, blocks in enumerate(self.down_blocks):
            for block in blocks:
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid(h, emb)
        for k, blocks in enumerate(self.up_blocks):
            h = torch.cat([h, skips.pop()], dim=1)
            for block in blocks:
                h = block(h, emb)
            if k < len(self.upsample):
                h = self.upsample[k](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def velocity_target(x0: torch.Tensor, eps: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """v = alpha * eps - beta * x0 with alpha = cos(phi), beta = sin(phi) (Salimans & Ho 2022, sec. 4)."""
    alpha, beta = per_sample(torch.cos(phi), x0), per_sample(torch.sin(phi), x0)
    return alpha * eps - beta * x0


class LearnedDenoiser:
    """The trained UNet behind the same contract as ``GaussianMixture.denoiser``.

    ``LearnedDenoiser.load()`` reads the committed weights; ``.denoiser("ve" | "flow")`` gives
    fn(x [B, 4, H, W] with H, W divisible by 4, sigma [B] or scalar) -> x0_hat (float32 math, output in x's dtype).
    It runs under ``torch.inference_mode`` and, when grad is enabled, is differentiable w.r.t. x.
    """

    def __init__(self, net: UNet, metadata: dict | None = None):
        self.net = net.eval()
        self.net.requires_grad_(False)
        self.metadata = dict(metadata or {})
        self.shape_hint = (net.config["in_channels"], 16, 16)   # the training latent shape (32x32 pixel crops)
        self.multiple = 2 ** (len(net.config["channels"]) - 1)

    @classmethod
    def load(cls, path: str | Path | None = None, device="cpu") -> "LearnedDenoiser":
        """``path``: a name of ``MODELS`` ("learned_a", "learned_b"; None = "learned_a") or a weights file (a
        ``Path``, or a string ending in ".safetensors")."""
        from safetensors import safe_open
        from safetensors.torch import load_file

        named = path is None or (isinstance(path, str) and not path.endswith(".safetensors"))
        path = model_entry(path)["weights"] if named else Path(path)
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
        config = json.loads(metadata["config"]) if "config" in metadata else DEFAULT_CONFIG
        net = UNet(**config)
        state = {k: v.float() for k, v in load_file(str(path)).items()}
        net.load_state_dict(state)
        return cls(net.to(device), metadata)

    def predict_x0(self, u: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
        """x0_hat = alpha * u - beta * v_hat(u, phi) in the unit (variance-preserving) view."""
        v = self.net(u, phi)
        return per_sample(torch.cos(phi), u) * u - per_sample(torch.sin(phi), u) * v

    def denoiser(self, parametrization: str):
        """fn(x [B, C, H, W], sigma [B]) -> D(x, sigma), the x0 estimate in the given parametrization."""
        check_parametrization(parametrization)

        def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            if x.ndim != 4 or x.shape[-1] % self.multiple or x.shape[-2] % self.multiple:
                raise ValueError(f"expected [B, C, H, W] with H, W divisible by {self.multiple}, got {tuple(x.shape)}")
            param = next(self.net.parameters())
            work = x.to(param.device, torch.float32)
            sigma = torch.as_tensor(sigma, dtype=torch.float32, device=work.device)
            if sigma.ndim == 0:
                sigma = sigma.expand(work.shape[0])
            alpha, beta, r = unit_signal_noise(sigma, parametrization)
            phi = torch.atan2(beta, alpha)
            x0 = self.predict_x0(work / per_sample(r, work), phi)
            return x0.to(x.device, x.dtype)

        return denoise


def model_entry(name: str | None = None) -> dict:
    name = DEFAULT_MODEL if name is None else str(name)
    if name not in MODELS:
        raise ValueError(f"unknown learned model {name!r}; choose from {sorted(MODELS)}")
    return MODELS[name]


def eval_latents(name: str | None = None, split: str = "heldout_crops") -> torch.Tensor:
    """A committed eval set of model ``name`` as float32: "heldout_crops" (default) / "train_crops" [64, 4, 16, 16]
    or "heldout_whole64" [n, 4, 32, 32] (the held-out photos' center squares). No scikit-image needed."""
    from safetensors.torch import load_file

    sets = load_file(str(model_entry(name)["eval"]))
    if split not in sets:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(sets)}")
    return sets[split].float()


def eval_sources(name: str | None = None) -> dict:
    """Where each eval latent comes from: split -> [{"photo", "level", "top", "left"} or {"photo", ...}, ...]."""
    from safetensors import safe_open

    with safe_open(str(model_entry(name)["eval"]), framework="pt") as f:
        return json.loads(f.metadata()["sources"])


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
