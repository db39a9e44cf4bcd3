"""Reconstruction and inverted-noise metrics, per sample ([B, ...] -> [B]).

* ``mse``, ``rms``, ``psnr``: PSNR = 10 log10(range^2 / MSE) (the metric of ReNoise's ``src/metrics`` and of
  EasyInv's tables). The data range defaults to the per-sample max - min of the reference, so the number means
  the same for latents of any scale; pass ``data_range=2.0`` for images in [-1, 1] or 1.0 for [0, 1].
* ``noise_stats``: how Gaussian an inverted latent looks. The implied unit noise is eps_hat = (x - a x0) / b
  when the clean latent x0 is given (exact for the forward marginal x = a x0 + b eps, ``spaces``); without x0
  the proxy x / r with r = sqrt(a^2 + b^2) is used, which tends to eps where the signal is negligible (ve at
  large sigma; flow at sigma = 1, where it is exactly x). Reported per sample: mean, std, and the neighbour
  correlation (lag-1 Pearson correlation along H and along W, each field centred per channel; ``corr`` is their
  mean). White Gaussian noise gives mean 0, std 1, correlations 0.
"""
from __future__ import annotations

from typing import Optional

import torch

from .problem import batch_rms
from .spaces import per_sample, signal_noise

rms = batch_rms      # per-sample root mean square, [B, ...] -> [B] (one definition, in ``problem``)


def mse(reference: torch.Tensor, estimate: torch.Tensor) -> torch.Tensor:
    diff = (estimate.to(reference.dtype) - reference).flatten(1)
    return diff.pow(2).mean(dim=1)


def _data_range(reference: torch.Tensor) -> torch.Tensor:
    """Per-sample peak-to-peak of the reference [B] (the module's default data range), in at least float32."""
    flat = reference.to(torch.promote_types(reference.dtype, torch.float32)).flatten(1)
    return flat.max(dim=1).values - flat.min(dim=1).values


def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range=None) -> torch.Tensor:
    """Per-sample PSNR in dB (inf where the estimate is exact)."""
    reference = reference.to(torch.promote_types(reference.dtype, torch.float32))
    if data_range is None:
        data_range = _data_range(reference)
    data_range = torch.as_tensor(data_range, dtype=reference.dtype, device=reference.device)
    return 10.0 * torch.log10(data_range ** 2 / mse(reference, estimate))


def psnr_of_rms(reference: torch.Tensor, rms_error: torch.Tensor) -> torch.Tensor:
    """``psnr``'s figure for an error of known per-sample RMS [B] (same data-range convention)."""
    data_range = _data_range(reference)
    return 20.0 * torch.log10(data_range / rms_error.to(data_range.dtype))


def rms_of_psnr(reference: torch.Tensor, psnr_db: float) -> torch.Tensor:
    """The per-sample RMS error [B] at which ``psnr`` would read ``psnr_db`` (``psnr_of_rms``'s inverse)."""
    return _data_range(reference) * 10.0 ** (-float(psnr_db) / 20.0)


def implied_noise(latent: torch.Tensor, sigma, parametrization: str,
                  x0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(x - a x0) / b with x0 given, else the proxy x / sqrt(a^2 + b^2) (module docstring)."""
    latent = latent.to(torch.promote_types(latent.dtype, torch.float32))
    sigma = torch.as_tensor(sigma, dtype=latent.dtype, device=latent.device)
    a, b = signal_noise(sigma, parametrization)
    a, b = per_sample(a, latent), per_sample(b, latent)
    if x0 is not None:
        return (latent - a * x0.to(latent.dtype)) / b
    return latent / torch.sqrt(a * a + b * b)


def _lag1_correlation(x: torch.Tensor, dim: int) -> torch.Tensor:
    n = x.shape[dim]
    if n < 2:
        return torch.full((x.shape[0],), float("nan"), dtype=x.dtype, device=x.device)
    left, right = x.narrow(dim, 0, n - 1).flatten(1), x.narrow(dim, 1, n - 1).flatten(1)
    num = (left * right).sum(dim=1)
    den = (left.pow(2).sum(dim=1) * right.pow(2).sum(dim=1)).sqrt().clamp_min(1e-30)
    return num / den


def noise_stats(latent: torch.Tensor, sigma, parametrization: str, x0: Optional[torch.Tensor] = None) -> dict:
    """Per-sample statistics of the implied unit noise: {"mean", "std", "corr_h", "corr_w", "corr"} -> [B]."""
    eps = implied_noise(latent, sigma, parametrization, x0)
    flat = eps.flatten(1)
    spatial = tuple(range(2, eps.ndim))
    centred = eps - eps.mean(dim=spatial, keepdim=True)
    corr_h = _lag1_correlation(centred, eps.ndim - 2)
    corr_w = _lag1_correlation(centred, eps.ndim - 1)
    return {"mean": flat.mean(dim=1), "std": flat.std(dim=1), "corr_h": corr_h, "corr_w": corr_w,
            "corr": 0.5 * (corr_h + corr_w)}
