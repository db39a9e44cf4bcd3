"""Forward sampler steps, each with the implicit form of its inverse and its exact noise.

Every step sigma_hi -> sigma_lo of the samplers we invert evaluates the model once at x_hi and is affine in
(x_hi, d, noise). Writing it as forward(x_hi, d, n) gives, for fixed n, the implicit inverse
x_hi = anchor(x_lo, n) + delta * d(x_hi, sigma_hi) (``problem``, eq. 1), and for fixed x_hi the noise that lands
exactly on x_lo (the edit-friendly DDPM noise of Huberman-Spiegelglas et al. 2024, eq. 6; ReNoise's noise
correction, Garibi et al. 2024, Sec. 4.3). The arithmetic mirrors ComfyUI's k-diffusion samplers
(``sample_euler``, ``sample_euler_ancestral`` with its rectified-flow variant, ``sample_lcm``) so that replaying
the stored noises through them reproduces the trajectory to float round-off.

In float32 (ComfyUI's sampling precision) a ve euler_ancestral step goes further and replays ``sample_euler_ancestral``
bit for bit: its coefficients are the float32 values ``get_ancestral_step`` computes from float32 sigmas and the
operations run in k-diffusion's order, and ``exact_noise`` picks, per element, the float32 noise whose float32 step
lands exactly on x_lo (``ForwardStep.kdiffusion``). This matters where the trajectory is ill-conditioned: the
paper's seeded-noise trajectory grows (|x| ~ 2800 at sigma 14.6) and its forward replay amplifies a perturbation
of the top latent up to ~1e6 through the denoiser's Jacobian, so landing within float32 round-off of each latent
(what the float64 formula gives) is not enough: replayed through ComfyUI it reconstructed at 7.2 dB, landing
exactly (with the replay started exactly at x_N, ``nodes.handoff.starting_at_inverted``) at 52.5 dB
(tests/test_nodes_replay.py).
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
    # (dt, s_noise, sigma_up): the float32 coefficients of k-diffusion's ``x + d * dt + n * s_noise * sigma_up``
    # (ve euler_ancestral); float32 states take this exact form, float64 ones the formula above
    kdiffusion: tuple | None = None

    @property
    def stochastic(self) -> bool:
        return self.noise_coeff != 0.0

    def forward(self, x_hi: torch.Tensor, d: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        if self._float32_replay(x_hi):
            dt, s_noise, sigma_up = self.kdiffusion
            x = x_hi + d * dt     # sample_euler_ancestral's own expression and rounding
            return x + noise * s_noise * sigma_up if self.stochastic else x
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
        noise = (x_lo - self.out_scale * (x_hi - self.delta * d)) / self.noise_coeff
        if not self._float32_replay(x_lo):
            return noise
        return self._landing_noise(x_lo, x_hi, d, noise)

    def _float32_replay(self, x: torch.Tensor) -> bool:
        return self.kdiffusion is not None and x.dtype == torch.float32

    def _landing_noise(self, x_lo, x_hi, d, noise, newton: int = 3, nudges: int = 8) -> torch.Tensor:
        """The float32 noise nearest ``noise`` whose float32 step lands exactly on x_lo, per element where one
        exists (else the closest landing found): Newton steps on the landing error (computed in float64), then
        one-ulp moves of the elements that still miss. Where the noise term outweighs x_lo (cancellation) the
        representable landings are spaced wider than x_lo's ulp and a few elements keep a sub-ulp(noise term)
        miss (about 1-9 % of the elements per step on the analytic test model)."""
        coeff = self.kdiffusion[1] * self.kdiffusion[2]
        for _ in range(newton):
            miss = (x_lo - self.forward(x_hi, d, noise)).to(torch.float64)
            noise = (noise.to(torch.float64) + miss / coeff).to(torch.float32)
        best, best_miss = noise, (self.forward(x_hi, d, noise) - x_lo).abs()
        up, down = torch.full_like(noise, math.inf), torch.full_like(noise, -math.inf)
        for _ in range(nudges):
            miss = x_lo - self.forward(x_hi, d, noise)
            if not bool((miss != 0).any()):
                break
            toward = torch.where((miss > 0) == (coeff > 0), up, down)
            noise = torch.where(miss != 0, torch.nextafter(noise, toward), noise)
            now = (self.forward(x_hi, d, noise) - x_lo).abs()
            better = now < best_miss
            best, best_miss = torch.where(better, noise, best), torch.where(better, now, best_miss)
        return best


def ancestral_sigmas(sigma_from: float, sigma_to: float, eta: float = 1.0):
    """(sigma_down, sigma_up) of an ancestral step (k-diffusion ``get_ancestral_step``)."""
    if not eta:
        return sigma_to, 0.0
    sigma_up = min(sigma_to, eta * (sigma_to ** 2 * (sigma_from ** 2 - sigma_to ** 2) / sigma_from ** 2) ** 0.5)
    sigma_down = (sigma_to ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


def _euler(i, s, s_lo):
    return ForwardStep(i, s, s_lo, delta=s - s_lo, noise_coeff=0.0, out_scale=1.0, kind="euler")


def kdiffusion_ancestral(sigma_from: float, sigma_to: float, eta: float = 1.0):
    """(dt, sigma_up) as ``sample_euler_ancestral`` computes them in float32: ``get_ancestral_step`` on the float32
    sigmas, dt = sigma_down - sigma (python floats holding the float32 values)."""
    if not eta:
        return float(torch.tensor(sigma_to, dtype=torch.float32) - torch.tensor(sigma_from, dtype=torch.float32)), 0.0
    s, s_lo = torch.tensor(sigma_from, dtype=torch.float32), torch.tensor(sigma_to, dtype=torch.float32)
    sigma_up = min(s_lo, eta * (s_lo ** 2 * (s ** 2 - s_lo ** 2) / s ** 2) ** 0.5)
    sigma_down = (s_lo ** 2 - sigma_up ** 2) ** 0.5
    return float(sigma_down - s), float(sigma_up)


def _euler_ancestral(i, s, s_lo, parametrization, eta, s_noise):
    if parametrization == "ve":
        sigma_down, sigma_up = ancestral_sigmas(s, s_lo, eta)
        if sigma_down == 0:
            return ForwardStep(i, s, s_lo, delta=s, noise_coeff=0.0, out_scale=1.0, kind="euler_ancestral")
        dt, kd_up = kdiffusion_ancestral(s, s_lo, eta)
        return ForwardStep(i, s, s_lo, delta=s - sigma_down, noise_coeff=s_noise * sigma_up, out_scale=1.0,
                           kind="euler_ancestral", kdiffusion=(dt, float(s_noise), kd_up))
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
