"""Core benchmark: reconstruction PSNR against model calls for every inversion method.

    python -m benchmarks.core_benchmark [--quick] [--scheduler normal|simple]

For each model (the exact Gaussian-mixture denoiser and the project's small learned denoiser on its eval latents)
and each of ComfyUI's parametrizations ("ve": SD1.5-like discrete sigmas with the "normal" or "simple" scheduler;
"flow": ModelSamplingDiscreteFlow shift=3, "simple" scheduler), every method inverts the clean latents over N
Euler steps (``trajectory.invert``) and the deterministic sampler reconstructs them (``trajectory.sample``).
PSNR is ``inversion_core.metrics.psnr`` on latents (per sample, data range = the reference's max - min).
Model calls are counted per batch call (every call evaluates the whole batch, so they are also calls per image);
inversion calls and the N reconstruction calls are reported separately, backward passes (RNRI newton) too. Every
cell gives the mean, the worst image and the number of images under 30 dB. Exact Invert's end-to-end verified
inversion, on harder ground truths and 64 images per setting, is ``benchmarks.reconstruction_benchmark``.

Prints markdown tables: the grid (N in {4, 10, 25, 50}), an equal-budget table (100 model calls including the
reconstruction) and the acceptance table (learned model, N=4: DDIM vs ReNoise K=9 with averaging vs the adaptive
solver at 10 calls per step and with its residual stop, per-image minima over the eval set). Every row also prints
its wall time; the whole run takes about 3 minutes on 2 CPU cores (one torch thread: faster than two for these
small models and steady on a busy machine). The last full run is kept in ``benchmarks/CORE_RESULTS.md``.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from inversion_core import GaussianMixture, invert, sample
from inversion_core.adaptive import AdaptiveInversion
from inversion_core.ddim import DDIMInversion
from inversion_core.easyinv import EasyInv
from inversion_core.metrics import psnr
from inversion_core.problem import StepSolver
from inversion_core.renoise import ReNoise
from inversion_core.rnri import RNRI

ROOT = Path(__file__).resolve().parent.parent
EVAL_LATENTS = ROOT / "testbed" / "data" / "eval_latents.safetensors"


# -- ComfyUI's sigma schedules, reproduced in pure torch -------------------------------------------------------------

def discrete_sigmas(linear_start: float = 0.00085, linear_end: float = 0.012, timesteps: int = 1000):
    """``ModelSamplingDiscrete`` ("linear" betas = linspace of square roots, squared): sigma = sqrt((1-acp)/acp)."""
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, timesteps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def flow_sigmas(shift: float = 3.0, timesteps: int = 1000):
    """``ModelSamplingDiscreteFlow``: time_snr_shift(shift, t) at t = 1/T .. 1."""
    t = torch.arange(1, timesteps + 1, 1) / timesteps
    return shift * t / (1 + (shift - 1) * t)


def _interpolated_sigma(sigmas, t):
    log_sigmas = sigmas.log()
    t = torch.clamp(t.float(), 0, len(sigmas) - 1)
    low, high, w = t.floor().long(), t.ceil().long(), t.frac()
    return ((1 - w) * log_sigmas[low] + w * log_sigmas[high]).exp()


def normal_scheduler(sigmas, steps: int):
    """ComfyUI ``normal_scheduler`` for a discrete model (timesteps linspace(999, 0, steps), then 0)."""
    start, end = len(sigmas) - 1, 0
    timesteps = torch.linspace(start, end, steps)
    return torch.tensor([float(_interpolated_sigma(sigmas, t)) for t in timesteps] + [0.0])


def simple_scheduler(sigmas, steps: int):
    """ComfyUI ``simple_scheduler``: every len/steps-th table sigma from the top, then 0."""
    stride = len(sigmas) / steps
    return torch.tensor([float(sigmas[-(1 + int(x * stride))]) for x in range(steps)] + [0.0])


def schedule(parametrization: str, steps: int, scheduler: str = "normal"):
    if parametrization == "flow":
        return simple_scheduler(flow_sigmas(), steps)
    table = discrete_sigmas()
    return normal_scheduler(table, steps) if scheduler == "normal" else simple_scheduler(table, steps)


# -- models ------------------------------------------------------------------------------------------------------------

@dataclass
class Model:
    name: str
    denoiser: object      # parametrization -> fn(x, sigma)
    x0: torch.Tensor


def gaussian_mixture(images: int) -> Model:
    gmm = GaussianMixture.random((4, 16, 16), components=4, seed=0, dtype=torch.float32)
    x0 = gmm.sample(images, torch.Generator().manual_seed(1)).float()
    return Model("gaussian mixture (exact, float32)", gmm.denoiser, x0)


def learned(images: int) -> Model | None:
    try:
        from safetensors.torch import load_file

        from testbed.learned import LearnedDenoiser
        model = LearnedDenoiser.load()
        latents = load_file(str(EVAL_LATENTS))
    except (ImportError, OSError, FileNotFoundError) as error:   # weights not trained yet / no safetensors
        print(f"> learned model unavailable ({error}); its tables are skipped\n")
        return None
    x0 = torch.cat([latents["heldout_crops"], latents["train_crops"]])[:images]
    return Model("learned UNet (eval latents)", model.denoiser, x0)


# -- methods -----------------------------------------------------------------------------------------------------------

class Counting(StepSolver):
    """Wraps a solver to add up what its ``StepSolution.info`` reports (backward passes, fallbacks)."""

    def __init__(self, solver: StepSolver):
        self.solver = solver
        self.name = solver.name
        self.backward = 0
        self.fallback_steps = 0

    def reset(self):
        self.backward = 0
        self.fallback_steps = 0
        self.solver.reset()

    def solve(self, problem):
        solution = self.solver.solve(problem)
        self.backward += int(solution.info.get("backward_passes", 0))
        self.fallback_steps += int(bool(solution.fallback is not None and solution.fallback.any()))
        return solution


def renoise(k: int) -> ReNoise:
    """ReNoise with K renoising iterations, averaging the last two iterates (K = 9: the official (8, 10))."""
    return ReNoise(iterations=k, window=(max(k - 1, 0), k + 1))


METHODS = {
    "DDIM (target)": lambda: DDIMInversion("target"),
    "DDIM (current)": lambda: DDIMInversion("current"),
    "ReNoise K=1 avg": lambda: renoise(1),
    "ReNoise K=3 avg": lambda: renoise(3),
    "ReNoise K=9 avg": lambda: renoise(9),
    "EasyInv sd1": lambda: EasyInv.preset("sd1"),
    "EasyInv sdxl": lambda: EasyInv.preset("sdxl"),
    "RNRI released": lambda: RNRI("released"),
    "RNRI newton": lambda: RNRI("newton"),
    "Adaptive (tol 1e-3, cap 30)": lambda: AdaptiveInversion(),
}


@dataclass
class Result:
    psnr: torch.Tensor
    calls: int             # inversion model calls (batch calls)
    backward: int
    reconstruction: int    # reconstruction model calls
    seconds: float
    fallback_steps: int
    steps: int


def run(model: Model, parametrization: str, steps: int, solver: StepSolver, scheduler: str = "normal") -> Result:
    sigmas = schedule(parametrization, steps, scheduler)
    den = model.denoiser(parametrization)
    counting = Counting(solver)
    start = time.perf_counter()
    with torch.inference_mode(), torch.enable_grad():   # as in the host; RNRI newton leaves inference mode itself
        inv = invert(den, model.x0, sigmas, counting, parametrization=parametrization)
        with torch.no_grad():
            rec = sample(den, inv.latent, sigmas, parametrization=parametrization)
    seconds = time.perf_counter() - start
    return Result(psnr(model.x0, rec), inv.model_calls, counting.backward, steps, seconds,
                  counting.fallback_steps, steps)


# -- tables ------------------------------------------------------------------------------------------------------------

def fmt_db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.1f}"


def quality(p: torch.Tensor) -> str:
    """mean / worst image / images under 30 dB."""
    return f"{fmt_db(p.mean().item())} / {fmt_db(p.min().item())} / {int((p < 30).sum())}"


def cell(r: Result) -> str:
    extra = f"+{r.backward / r.steps:.0f}b" if r.backward else ""
    return f"{quality(r.psnr)} ({r.calls / r.steps:.1f}{extra})"


def grid(models, parametrizations, step_counts, scheduler):
    total = 0.0
    for model in models:
        for param in parametrizations:
            sched = f'"{scheduler}"' if param == "ve" else '"simple", shift 3'
            print(f"### {model.name}, {param} ({sched}), {model.x0.shape[0]} latents {tuple(model.x0.shape[1:])}\n")
            print("PSNR mean / worst image / images under 30 dB over the latents (inversion model calls per step, +b "
                  "backward passes per step); reconstruction costs N more calls.\n")
            print("| method | " + " | ".join(f"N={n}" for n in step_counts) + " | s |")
            print("|---|" + "---|" * (len(step_counts) + 1))
            for label, make in METHODS.items():
                row, seconds = [], 0.0
                for n in step_counts:
                    r = run(model, param, n, make(), scheduler)
                    seconds += r.seconds
                    row.append(cell(r))
                total += seconds
                print(f"| {label} | " + " | ".join(row) + f" | {seconds:.1f} |", flush=True)
            print()
    return total


def capped(calls: int, **options):
    """The adaptive solver held to exactly ``calls`` model calls on every step, the final one included."""
    return lambda: AdaptiveInversion(tolerance=0.0, max_calls=calls, final_max_calls=calls, **options)


EQUAL_BUDGET = [   # (label, steps N, solver factory): inversion calls + N reconstruction calls <= 100
    ("DDIM (target), N=50", 50, lambda: DDIMInversion("target")),
    ("EasyInv sd1, N=50", 50, lambda: EasyInv.preset("sd1")),
    ("ReNoise K=1 avg, N=33", 33, lambda: renoise(1)),
    ("ReNoise K=3 avg, N=20", 20, lambda: renoise(3)),
    ("ReNoise K=9 avg, N=9", 9, lambda: renoise(9)),
    ("RNRI released, N=33", 33, lambda: RNRI("released")),
    ("RNRI newton, N=20 (+2 backward/step)", 20, lambda: RNRI("newton")),
    ("Adaptive cap 24, N=4", 4, capped(24, fallback=None)),
    ("Adaptive cap 9, N=10", 10, capped(9, fallback=None)),
    ("Adaptive cap 4, N=20", 20, capped(4, fallback=None)),
]


def equal_budget(models, parametrizations, scheduler):
    total = 0.0
    print("### Equal budget: 100 model calls per image including the reconstruction\n")
    header = [f"{m.name.split(' (')[0]}, {p}" for m in models for p in parametrizations]
    print("PSNR mean / worst image / images under 30 dB (total calls = inversion + reconstruction).\n")
    print("| method | " + " | ".join(header) + " | s |")
    print("|---|" + "---|" * (len(header) + 1))
    for label, n, make in EQUAL_BUDGET:
        row, started = [], time.perf_counter()
        for model in models:
            for param in parametrizations:
                r = run(model, param, n, make(), scheduler)
                total += r.seconds
                row.append(f"{quality(r.psnr)} ({r.calls + r.reconstruction})")
        print(f"| {label} | " + " | ".join(row) + f" | {time.perf_counter() - started:.1f} |", flush=True)
    print()
    return total


ACCEPTANCE = [
    ("DDIM (target)", lambda: DDIMInversion("target")),
    ("ReNoise K=9 avg (official)", lambda: renoise(9)),
    ("Adaptive, 10 calls/step, no fallback", capped(10, fallback=None)),
    ("Adaptive, 10 calls/step (+ fallback)", capped(10)),
    ("Adaptive, stop 1e-3, cap 30 (default)", lambda: AdaptiveInversion()),
    ("Adaptive, stop 1e-3, cap 40", lambda: AdaptiveInversion(max_calls=40)),
]


def acceptance(model: Model, parametrizations, scheduler, steps=4):
    total = 0.0
    for param in parametrizations:
        print(f"### Acceptance: {model.name}, {param}, N={steps}, {model.x0.shape[0]} latents\n")
        print("Per-step calls as used (fallback calls included); 'vs ReNoise' = per-image PSNR difference to "
              "ReNoise K=9: mean and minimum over the images, and how many images are worse.\n")
        print("| method | PSNR mean | PSNR min | calls/step | per-step calls | vs ReNoise mean | vs ReNoise min "
              "| worse images | under 30 dB | s |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        reference = None
        for label, make in ACCEPTANCE:
            solver = make()
            sigmas = schedule(param, steps, scheduler)
            den = model.denoiser(param)
            start = time.perf_counter()
            with torch.inference_mode():
                inv = invert(den, model.x0, sigmas, solver, parametrization=param)
                rec = sample(den, inv.latent, sigmas, parametrization=param)
            seconds = time.perf_counter() - start
            total += seconds
            p = psnr(model.x0, rec)
            if label.startswith("ReNoise"):
                reference = p
            per_step = ", ".join(str(s.model_calls) for s in inv.stats)
            if reference is not None and not label.startswith(("ReNoise", "DDIM")):
                diff = p - reference
                vs = f"{diff.mean():+.1f} | {diff.min():+.1f} | {int((diff < 0).sum())}/{len(diff)}"
            else:
                vs = "- | - | -"
            print(f"| {label} | {p.mean():.1f} | {p.min():.1f} | {inv.model_calls / steps:.1f} | {per_step} | {vs} "
                  f"| {int((p < 30).sum())}/{len(p)} | {seconds:.1f} |", flush=True)
        print()
    return total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="N in {4, 10}, 8 acceptance latents, no equal-budget table")
    parser.add_argument("--scheduler", choices=("normal", "simple"), default="normal", help="ve scheduler")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: fastest for these small models, and robust on a busy machine)")
    parser.add_argument("--grid-latents", type=int, default=4,
                        help="learned-model latents in the grid and equal-budget tables (the CPU-time knob)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    print("# inversion_core benchmark\n")
    print(f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"- machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"Python {platform.python_version()}")
    print(f"- command: python -m benchmarks.core_benchmark {' '.join(sys.argv[1:] if argv is None else argv)}\n",
          flush=True)

    started = time.perf_counter()
    step_counts = [4, 10] if args.quick else [4, 10, 25, 50]
    gmm = gaussian_mixture(8)
    net_grid = learned(args.grid_latents)         # the grid and the equal-budget table (CPU time)
    net_eval = learned(8 if args.quick else 16)   # acceptance: held-out crops (+ training crops in the full run)
    params = ["ve", "flow"]

    print("## Reconstruction PSNR vs model calls\n")
    grid([m for m in (gmm, net_grid) if m is not None], params, step_counts, args.scheduler)
    if net_eval is not None:
        print("## Acceptance (learned model)\n")
        acceptance(net_eval, params, args.scheduler)
    if not args.quick:
        print("## Equal budget\n")
        equal_budget([m for m in (gmm, net_grid) if m is not None], params, args.scheduler)
    print(f"_total wall time {time.perf_counter() - started:.0f} s_")


if __name__ == "__main__":
    main()
