"""Reconstruction benchmark: what the user gets back, per image, for Exact Invert's verified inversion.

    python -m benchmarks.reconstruction_benchmark [--models NAME ...] [--steps N ...] [--images 64]

Every method inverts the clean latents over N Euler steps and the forward sampler (``trajectory.sample``, the
arithmetic of ComfyUI's ``sample_euler``) samples them back; PSNR is ``inversion_core.metrics.psnr`` per image.
Ground truths (``--models``):

* ``mixture``: the 4-component Gaussian mixture of the core benchmark (exact posterior mean);
* ``hard-mixture``: ``GaussianMixture.hard`` -- 16 close components, rank-4 wide directions and per-element stds
  down to 0.01, far below the smallest sigma of a flow schedule (the case where per-step tolerances fail);
* ``learned_a``, ``learned_b``: the project's two small UNets (``testbed.learned``) on their 64 held-out crops.

Each in "ve" (SD1.5 discrete sigmas, "simple" scheduler) and "flow" (shift 3, "simple"). Methods:

* ``DDIM``: DDIM inversion (target convention);
* ``ReNoise``: ReNoise K=9, averaging (8, 10), no regulariser;
* ``adaptive, per-step only``: the adaptive solver as it was before the end-to-end check (tolerance 1e-3, a
  30-call budget on every step, the final one included, no stall stop, no over-relaxation) -- the cost baseline;
* ``Exact Invert``: ``verified.invert_verified`` with the node's defaults (tolerance 1e-4, target 40 dB, DDIM and
  ReNoise candidates, 2 refinement passes, sub-batches).

Cells: PSNR mean / worst image / images under 30 dB, then model calls per step (batched calls, the replay of the
verification included) and, for Exact Invert, single-image evaluations per image per step. ``vs cheap`` counts
the images where Exact Invert is more than 0.5 dB below the better of DDIM and ReNoise (all images / images below
the target). ``--ceiling K`` adds a column: what the final sampler step alone can give each image, x_0 ~ D(x_1,
sigma_1) optimised over x_1 by K Adam steps from Exact Invert's own x_1 (``last_step_ceiling``; a local optimum,
an estimate of what any inversion can reach, not a bound). Prints markdown; one torch thread.
"""
from __future__ import annotations

import argparse
import time

import torch

from inversion_core import GaussianMixture, invert, sample
from inversion_core.adaptive import AdaptiveInversion
from inversion_core.ddim import DDIMInversion
from inversion_core.metrics import psnr
from inversion_core.renoise import ReNoise
from inversion_core.verified import exact_solver, invert_verified

from .core_benchmark import schedule

STEPS = (4, 6, 8, 10, 15, 25, 50)
MODELS = ("mixture", "hard-mixture", "learned_a", "learned_b")


def ground_truth(name: str, images: int):
    """(denoiser factory parametrization -> fn, x0 [images, 4, 16, 16])."""
    if name in ("mixture", "hard-mixture"):
        gmm = GaussianMixture.random((4, 16, 16), components=4, seed=0) if name == "mixture" \
            else GaussianMixture.hard((4, 16, 16), seed=0)
        return gmm.denoiser, gmm.sample(images, torch.Generator().manual_seed(1)).float()
    from testbed.learned import LearnedDenoiser, eval_latents
    latents = eval_latents(name)
    if latents.shape[0] < images:
        raise SystemExit(f"{name} has {latents.shape[0]} eval latents, fewer than --images {images}")
    return LearnedDenoiser.load(name).denoiser, latents[:images]


def plain(denoise, x0, sigmas, parametrization, solver):
    inversion = invert(denoise, x0, sigmas, solver, parametrization=parametrization)
    reconstruction = sample(denoise, inversion.latent, sigmas, parametrization=parametrization)
    return psnr(x0, reconstruction).double(), inversion.model_calls


def verified(denoise, x0, sigmas, parametrization, target_psnr: float = 40.0):
    inversion = invert_verified(denoise, x0, sigmas, exact_solver(target_psnr, tolerance=1e-4),
                                parametrization=parametrization, independent=True, target_psnr=target_psnr)
    v = inversion.verification
    return (torch.tensor(v.psnr, dtype=torch.float64), v.model_calls, v.image_evaluations / x0.shape[0], v,
            inversion.latents[-2])


def last_step_ceiling(denoise, x0: torch.Tensor, x1: torch.Tensor, sigma1: float, iterations: int) -> torch.Tensor:
    """Per image, the best PSNR of D(x_1, sigma_1) against x_0 over ``iterations`` Adam steps on x_1 (the forward
    sampler's last Euler step to sigma 0 returns D(x_1, sigma_1) itself), started at ``x1``."""
    sigma = torch.full((x0.shape[0],), float(sigma1))
    y = x1.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([y], lr=1e-3 * float(x1.abs().mean()))
    schedule_ = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
    with torch.no_grad():
        best = psnr(x0, denoise(y, sigma)).double()
    for k in range(iterations):
        optimizer.zero_grad()
        with torch.enable_grad():
            ((denoise(y, sigma) - x0) ** 2).flatten(1).sum(1).sum().backward()
        optimizer.step()
        schedule_.step()
        if k % 25 == 24 or k == iterations - 1:
            with torch.no_grad():
                best = torch.maximum(best, psnr(x0, denoise(y, sigma)).double())
    return best


def ceiling_cells(denoise, x0, x1, sigma1: float, exact: torch.Tensor, iterations: int) -> str:
    if not iterations:
        return ""
    ceiling = torch.maximum(last_step_ceiling(denoise, x0, x1, sigma1, iterations), exact)
    short = int((exact < ceiling - 1).sum())
    return f"{ceiling.mean():.1f} / {ceiling.min():.1f} / {int((ceiling < 30).sum())} | {short} | "


def cell(p: torch.Tensor, calls: float, steps: int, extra: str = "") -> str:
    return (f"{p.mean():.1f} / {p.min():.1f} / {int((p < 30).sum())} ({calls / steps:.1f}{extra})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--parametrizations", nargs="+", choices=("ve", "flow"), default=["ve", "flow"])
    parser.add_argument("--steps", nargs="+", type=int, default=list(STEPS))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--target-psnr", type=float, default=40.0, help="Exact Invert's target (the node's: 40)")
    parser.add_argument("--ceiling", type=int, default=0, metavar="K",
                        help="add the last-step ceiling column (K Adam steps per setting; 0: off)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("PSNR mean / worst / images < 30 dB (inversion model calls per step, the user's own reconstruction not "
          "counted; Exact Invert: batched calls including its verification, then single-image evaluations per "
          "image). vs cheap: images > 0.5 dB below max(DDIM, ReNoise), all / below the target. cost: Exact "
          "Invert's evaluations per image over the per-step-only solver's calls.\n")
    for name in args.models:
        make, x0 = ground_truth(name, args.images)
        for param in args.parametrizations:
            denoise = make(param)
            print(f"### {name}, {param}, {x0.shape[0]} images\n")
            ceiling_head = " last-step ceiling | Exact below it by > 1 dB |" if args.ceiling else ""
            print("| N | DDIM | ReNoise | adaptive, per-step only | Exact Invert | vs cheap | cost vs per-step |"
                  f"{ceiling_head} s |")
            print("|---|---|---|---|---|---|---|" + "---|" * (2 if args.ceiling else 0) + "---|")
            for n in args.steps:
                sigmas = schedule(param, n, "simple")
                started = time.perf_counter()
                ddim, ddim_calls = plain(denoise, x0, sigmas, param, DDIMInversion())
                renoise, renoise_calls = plain(denoise, x0, sigmas, param, ReNoise(regularizer=None))
                today, today_calls = plain(denoise, x0, sigmas, param,
                                           AdaptiveInversion(final_max_calls=30, stall_window=0, final_relaxation=1.0))
                exact, calls, evaluations, v, x1 = verified(denoise, x0, sigmas, param, args.target_psnr)
                cheap = torch.maximum(ddim, renoise)
                worse = exact < cheap - 0.5
                below = exact < v.target_psnr
                print(f"| {n} | {cell(ddim, ddim_calls, n)} | {cell(renoise, renoise_calls, n)} | "
                      f"{cell(today, today_calls, n)} | {cell(exact, calls, n, f'; {evaluations / n:.1f}')} | "
                      f"{int(worse.sum())} / {int((worse & below).sum())} | {evaluations / today_calls:.2f} | "
                      f"{ceiling_cells(denoise, x0, x1, float(sigmas[-2]), exact, args.ceiling)}"
                      f"{time.perf_counter() - started:.0f} |", flush=True)
            print()


if __name__ == "__main__":
    main()
