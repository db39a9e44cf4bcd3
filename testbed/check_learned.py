"""Check the committed learned models on their own held-out eval sets (no scikit-image needed).

    python -m testbed.check_learned [--models learned_a,learned_b] [--steps 10] [--png DIR]

For each model of ``testbed.learned.MODELS``:

* held-out v-MSE (the training loss) over a grid of noise angles phi, against two trivial predictors fitted to the
  eval set itself: the best v_hat = c(phi) * u per phi (which includes v_hat = 0, "predict nothing", and every
  "x0_hat = k * x") and the per-pixel Gaussian (Wiener) posterior mean of the eval set's mean and variance;
* the DDIM round trip: ``DDIMInversion("target")`` over N Euler steps of ``benchmarks.core_benchmark.schedule``
  (SD1.5-like "normal" for "ve", shift-3 "simple" for "flow"), then ``sample`` back; PSNR per latent
  (``inversion_core.metrics.psnr``), mean and worst over the held-out crops;
* a few-step generation check: N Euler steps from pure noise, compared with the held-out crops by their spread,
  range and mean absolute pixel gradient (a model that only blurs gives smooth samples; noise gives rough ones).
  With ``--png`` it writes grids of the samples (needs scikit-image or imageio).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.core_benchmark import schedule  # noqa: E402
from inversion_core import DDIMInversion, invert, sample  # noqa: E402
from inversion_core.metrics import psnr  # noqa: E402
from testbed.learned import MODELS, LearnedDenoiser, eval_latents, velocity_target  # noqa: E402
from testbed.photos import latents_to_images  # noqa: E402

PHIS = torch.linspace(0.05, 1.5, 16)


def v_mse(model: LearnedDenoiser, x0: torch.Tensor, draws: int = 4, seed: int = 0) -> dict:
    """Held-out v-MSE over PHIS x draws noise samples, and the two trivial baselines on the same noisy inputs."""
    generator = torch.Generator().manual_seed(seed)
    learned = constant = wiener = 0.0
    mean, var = x0.mean(), x0.var()
    for phi_value in PHIS.tolist():
        phi = torch.full((x0.shape[0] * draws,), phi_value)
        clean = x0.repeat(draws, 1, 1, 1)
        eps = torch.randn(clean.shape, generator=generator)
        alpha, beta = math.cos(phi_value), math.sin(phi_value)
        u = alpha * clean + beta * eps
        target = velocity_target(clean, eps, phi)
        with torch.inference_mode():
            learned += (model.net(u, phi) - target).square().mean().item()
        c = (target * u).sum() / u.square().sum()                # least squares v ~ c * u
        constant += (c * u - target).square().mean().item()
        x0_gauss = mean + alpha * var / (alpha ** 2 * var + beta ** 2) * (u - alpha * mean)
        v_gauss = (alpha * u - x0_gauss) / beta                   # x0 = alpha u - beta v
        wiener += (v_gauss - target).square().mean().item()
    n = len(PHIS)
    return {"learned": learned / n, "best_c_times_u": constant / n, "wiener": wiener / n}


def round_trip(model: LearnedDenoiser, x0: torch.Tensor, parametrization: str, steps: int) -> torch.Tensor:
    sigmas = schedule(parametrization, steps)
    den = model.denoiser(parametrization)
    with torch.inference_mode():
        inv = invert(den, x0, sigmas, DDIMInversion("target"), parametrization=parametrization)
        rec = sample(den, inv.latent, sigmas, parametrization=parametrization)
    return psnr(x0, rec)


def roughness(latents: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels of the decoded (grayscale) images, per image."""
    images = latents_to_images(latents)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(dim=(1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(dim=(1, 2, 3))
    return (dx + dy) / 2


def describe(latents: torch.Tensor) -> dict:
    flat = latents.flatten(1)
    return {"std": round(flat.std(dim=1).mean().item(), 3), "mean": round(flat.mean().item(), 3),
            "outside_unit_range": round((flat.abs() > 1.05).float().mean().item(), 4),
            "roughness": round(roughness(latents).mean().item(), 4)}


def generate(model: LearnedDenoiser, parametrization: str, steps: int, count: int, seed: int = 0) -> torch.Tensor:
    sigmas = schedule(parametrization, steps)
    eps = torch.randn((count, 4, 16, 16), generator=torch.Generator().manual_seed(seed))
    start = eps * sigmas[0] if parametrization == "ve" else eps      # flow: sigma = 1 is pure noise
    with torch.inference_mode():
        return sample(model.denoiser(parametrization), start, sigmas, parametrization=parametrization).float()


def save_grid(latents: torch.Tensor, path: Path, columns: int = 8):
    import numpy as np

    images = (latents_to_images(latents).clamp(-1, 1) + 1) * 127.5            # [N, 1, 32, 32]
    rows = math.ceil(images.shape[0] / columns)
    grid = torch.full((rows * 34, columns * 34), 255.0)
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        grid[r * 34 + 1:r * 34 + 33, c * 34 + 1:c * 34 + 33] = image[0]
    array = np.kron(grid.round().to(torch.uint8).numpy(), np.ones((3, 3), dtype=np.uint8))
    try:
        from skimage.io import imsave
    except ImportError:
        from imageio.v3 import imwrite as imsave
    path.parent.mkdir(parents=True, exist_ok=True)
    imsave(str(path), array)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", type=Path, default=None, help="folder for sample grids")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {}
    for name in args.models.split(","):
        start = time.time()
        model = LearnedDenoiser.load(name)
        x0 = eval_latents(name)
        entry = {"parameters": int(model.metadata.get("parameters", 0)), "config": json.loads(model.metadata["config"]),
                 "eval": list(x0.shape), "v_mse": {k: round(v, 5) for k, v in v_mse(model, x0).items()},
                 "heldout_stats": describe(x0)}
        for parametrization in ("ve", "flow"):
            values = round_trip(model, x0, parametrization, args.steps)
            entry[f"ddim_psnr_{parametrization}_N{args.steps}"] = {"mean": round(values.mean().item(), 2),
                                                                   "min": round(values.min().item(), 2)}
            samples = generate(model, parametrization, args.steps, args.samples)
            entry[f"samples_{parametrization}_N{args.steps}"] = describe(samples)
            if args.png is not None:
                save_grid(samples, args.png / f"{name}_{parametrization}_samples.png")
        if args.png is not None:
            save_grid(x0[:args.samples], args.png / f"{name}_heldout.png")
        entry["seconds"] = round(time.time() - start, 1)
        report[name] = entry
        print(json.dumps({name: entry}), flush=True)
    return report


if __name__ == "__main__":
    main()
