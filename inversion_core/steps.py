"""Forward sampler steps, each with the implicit form of its inverse and its exact noise.

Every step sigma_hi -> sigma_lo of the samplers we invert evaluates the model once at x_hi and is affine in
(x_hi, d, noise). Writing it as forward(x_hi, d, n) gives, for fixed n, the implicit inverse
x_hi = anchor(x_lo, n) + delta * d(x_hi, sigma_hi) (``problem``, eq. 1), and for fixed x_hi the noise that lands
exactly on x_lo (the edit-friendly DDPM noise of Huberman-Spiegelglas et al. 2024, eq. 6; ReNoise's noise
correction, Garibi et al. 2024, Sec. 4.3). The arithmetic mirrors ComfyUI's k-diffusion samplers
(``sample_euler``, ``sample_euler_ancestral`` with its rectified-flow variant, ``sample_lcm``) so that replaying
the stored noises through them reproduces the trajectory to float round-off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .spaces import check_parametrization

STEP_KINDS = ("euler", "euler_ancestral", "lcm")


@dataclass
class ForwardStep:
    """One step of a sampler from sigma_hi to sigma_lo (sampling order index ``index``)."""

    index: int
    sigma_hi: float
    sigma_lo: float
    delta: float          # the step length in the implicit form
    noise_coeff: float    # the factor of the injected noise (0: deterministic step)
    out_scale: float      # x_lo = out_scale * (x_hi - delta * d) + noise_coeff * n
    kind: str

    @property
    def stochastic(self) -> bool:
        return self.noise_coeff != 0.0

    def forward(self, x_hi: torch.Tensor, d: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        x = x_hi - self.delta * d
        if self.out_scale != 1.0:
            x = self.out_scale * x
        if self.stochastic:
            x = x + self.noise_coeff * noise
        return x

    def anchor(self, x_lo: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        a = x_lo - self.noise_coeff * noise if self.stochastic else x_lo
        return a / self.out_scale if self.out_scale != 1.0 else a

    def exact_noise(self, x_lo: torch.Tensor, x_hi: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """The noise n with forward(x_hi, d, n) == x_lo exactly (only for stochastic steps)."""
        if not self.stochastic:
            raise ValueError("a deterministic step has no noise")
        return (x_lo - self.out_scale * (x_hi - self.delta * d)) / self.noise_coeff


def ancestral_sigmas(sigma_from: float, sigma_to: float, eta: float = 1.0):
    """(sigma_down, sigma_up) of an ancestral step (k-diffusion ``get_ancestral_step``)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _euler(i, s, s_lo):
    return ForwardStep(i, s, s_lo, delta=s - s_lo, noise_coeff=0.0, out_scale=1.0, kind="euler")


def _euler_ancestral(i, s, s_lo, parametrization, eta, s_noise):
    if parametrization == "ve":
        sigma_down, sigma_up = ancestral_sigmas(s, s_lo, eta)
        if sigma_down == 0:
            return ForwardStep(i, s, s_lo, delta=s, noise_coeff=0.0, out_scale=1.0, kind="euler_ancestral")
        return ForwardStep(i, s, s_lo, delta=s - sigma_down, noise_coeff=s_noise * sigma_up, out_scale=1.0,
                           kind="euler_ancestral")
    # rectified-flow variant (k-diffusion ``sample_euler_ancestral_RF``):
    # x' = (sd/s) x + (1 - sd/s) D = x - (s - sd) d;  x_lo = (a_lo/a_down) x' + s_noise * c * n
    if s_lo == 0:
        return ForwardStep(i, s, s_lo, delta=s, noise_coeff=0.0, out_scale=1.0, kind="euler_ancestral")
    sigma_down = s_lo * (1 + (s_lo / s - 1) * eta)
    alpha_lo, alpha_down = 1 - s_lo, 1 - sigma_down
    renoise = (s_lo ** 2 - sigma_down ** 2 * alpha_lo ** 2 / alpha_down ** 2) ** 0.5 if eta > 0 else 0.0
    scale = alpha_lo / alpha_down if eta > 0 else 1.0
    return ForwardStep(i, s, s_lo, delta=s - sigma_down, noise_coeff=s_noise * renoise, out_scale=scale,
                       kind="euler_ancestral")


def _lcm(i, s, s_lo, parametrization):
    # x_lo = noise_scaling(s_lo, n, D) with D = x - s d:  ve: D + s_lo n;  flow: (1 - s_lo) D + s_lo n
    scale = 1.0 if parametrization == "ve" else 1.0 - s_lo
    return ForwardStep(i, s, s_lo, delta=s, noise_coeff=s_lo, out_scale=scale, kind="lcm")


def make_steps(kind: str, sigmas, parametrization: str = "ve", eta: float = 1.0, s_noise: float = 1.0):
    """The forward steps of sampler ``kind`` over ``sigmas`` (sampling order, descending)."""
    check_parametrization(parametrization)
    if kind not in STEP_KINDS:
        raise ValueError(f"step kind must be one of {STEP_KINDS}, got {kind!r}")
    values = [float(v) for v in sigmas]
    steps = []
    for i in range(len(values) - 1):
        s, s_lo = values[i], values[i + 1]
        if not (s > s_lo >= 0) or not math.isfinite(s):
            raise ValueError(f"sigmas must be finite and strictly decreasing to >= 0; got {values}")
        if kind == "euler":
            steps.append(_euler(i, s, s_lo))
        elif kind == "euler_ancestral":
            steps.append(_euler_ancestral(i, s, s_lo, parametrization, eta, s_noise))
        else:
            steps.append(_lcm(i, s, s_lo, parametrization))
    return steps
