"""The edit front: edit quality against the continuous ideal, per model call, for every inversion method.

    python -m benchmarks.edit_front [--truths hard shared] [--sources data generated] [--params ve flow]
                                    [--steps 4 10 25 50] [--cfgs 1 3 7.5] [--images 64] [--out DIR]

Pure math (``inversion_core`` only, no ComfyUI), float32 sampler state like ComfyUI, float64 references.

Ground truths (``--truths``), both class-conditional with ComfyUI's cfg (D_u + cfg (D_c - D_u), the empty prompt =
the marginal):
* ``hard``: ``conditional_mixture.ConditionalMixture.hard`` -- 3 classes of 2 low-rank-plus-thin components each,
  4x16x16: a nonlinear, stiff flow;
* ``shared``: ``analytic_conditional.ClassConditionalGaussian`` -- Gaussian classes sharing one covariance (the
  easy case: an affine flow).

Sources (``--sources``): ``data``, class-A draws from the data distribution; ``generated``, known noise sampled
under class A by the reference solve. The ideal edit is the continuous probability-flow transport:
the reference inverse (``conditional_mixture.probability_flow``, float64 RK4; for ``generated`` the known noise)
sampled down under class B at the edit's cfg by the same reference solve. Every method inverts at cfg 1 under
class A (the edit benchmark's finding: inverting at the edit's cfg is worse), then ComfyUI's euler sampler (or the
method's own stochastic sampler, replaying its noises) samples under class B at cfg 1, 3 and 7.5, with the stored
residuals added ("+res", ``residuals``) or not.

Per row: distance to the ideal edit (PSNR, data range 2: mean / worst image / images under 30 dB), success (the
target-class posterior, mean), realism (log-likelihood per dimension under the target class, mean; the ideal
edit's own beside it), the reconstruction through the same sampler with the source prompt (worst image), and
model calls per step (batched calls of the inversion, over N; "+res" rows add the residual capture's and the
calls the mirrored last interval costs the sampler beyond ComfyUI's one). Writes
``<out>/edit_front.json`` and ``<out>/EDIT_FRONT.md`` (default ``benchmarks/``); one torch thread.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from inversion_core import invert, trajectory
from inversion_core.analytic_conditional import ClassConditionalGaussian
from inversion_core.conditional_mixture import ConditionalMixture, probability_flow
from inversion_core.ddim import DDIMInversion
from inversion_core.easyinv import EasyInv
from inversion_core.edit_friendly import EditFriendly
from inversion_core.metrics import psnr
from inversion_core.ode_inversion import ODEInversion
from inversion_core.renoise import ReNoise
from inversion_core.residuals import capture_residuals
from inversion_core.rnri import RNRI
from inversion_core.verified import exact_solver, invert_verified

from .core_benchmark import schedule

HERE = Path(__file__).resolve().parent
SOURCE, TARGET = 0, 1
REFERENCE_STEPS = 200        # the reference solve's grid (tests/core/test_conditional_mixture.py: halving it moves
                             # the ideal edit by far less than 0.1 dB)
BAD_DB = 30.0
DATA_RANGE = 2.0


# ============================================================================================ ground truths
@dataclass
class Truth:
    """A class-conditional analytic model seen through the benchmark: guided fields, data and scores."""

    name: str
    field: Callable          # (parametrization, class, cfg) -> fn(x, sigma)
    sample: Callable         # (classes [B], generator) -> x0
    log_likelihood: Callable  # (x0, class) -> [B] nats/dim
    posterior: Callable      # (x0) -> [B, classes]


def hard_truth() -> Truth:
    cm = ConditionalMixture.hard()
    return Truth("hard", lambda p, k, w: cm.guided(p, k, w), cm.sample, cm.log_likelihood, cm.class_posterior)


def shared_truth() -> Truth:
    ccg = ClassConditionalGaussian.random((4, 16, 16), classes=3, seed=11, separation=3.0)

    def field(parametrization, k, cfg):
        den = ccg.denoiser(parametrization)

        def fn(x, sigma):
            ctx = torch.zeros((x.shape[0], 1, ccg.classes), dtype=torch.float64)
            ctx[:, :, k] = 1.0
            d_c = den(x, sigma, ctx)
            if cfg == 1.0:
                return d_c
            d_u = den(x, sigma, None)
            return d_u + cfg * (d_c - d_u)
        return fn

    def log_likelihood(x0, k):
        return ccg.class_log_likelihood(x0)[:, k] / float(x0[0].numel())

    return Truth("shared", field, lambda classes, g: ccg.sample(classes, g), log_likelihood, ccg.class_posterior)


TRUTHS = {"hard": hard_truth, "shared": shared_truth}


# ============================================================================================ methods
@dataclass
class Method:
    key: str
    label: str
    run: Callable            # (denoise, x0, sigmas, parametrization) -> Inversion


def _plain(solver_factory, step_kind="euler"):
    def run(denoise, x0, sigmas, parametrization):
        return invert(denoise, x0, sigmas, solver_factory(), step_kind=step_kind, parametrization=parametrization,
                      independent=True)
    return run


def _exact(denoise, x0, sigmas, parametrization):
    return invert_verified(denoise, x0, sigmas, exact_solver(40.0, tolerance=1e-4), parametrization=parametrization,
                           independent=True, target_psnr=40.0)


METHODS = [
    Method("ddim", "DDIM Invert", _plain(DDIMInversion)),
    Method("renoise", "ReNoise Invert (K 9, averaged)", _plain(lambda: ReNoise(regularizer=None))),
    Method("rnri", "RNRI Invert (newton, 2)", _plain(lambda: RNRI("newton", 2))),
    Method("easyinv", "EasyInv Invert (sd1)", _plain(EasyInv)),
    Method("exact", "Exact Invert (target 40 dB)", _exact),
    Method("ode4", "ODE Invert (4 bottom substeps, mirror auto)", _plain(lambda: ODEInversion(bottom_substeps=4))),
    Method("ode8_off", "ODE Invert (8 bottom substeps, mirror off)",
           _plain(lambda: ODEInversion(bottom_substeps=8, mirror="off"))),
    Method("ode8_on", "ODE Invert (8 bottom substeps, mirror on)",
           _plain(lambda: ODEInversion(bottom_substeps=8, mirror="on"))),
    Method("ode8", "ODE Invert (defaults: 8, mirror auto)", _plain(ODEInversion)),
    Method("edit_friendly", "Noise Correct (edit-friendly, euler_ancestral)",
           _plain(EditFriendly, step_kind="euler_ancestral")),
]
METHOD = {m.key: m for m in METHODS}


# ============================================================================================ measuring
def _stats(values: torch.Tensor) -> dict:
    v = values.double().clamp(max=400.0)
    return {"mean": float(v.mean()), "worst": float(v.min()), "bad": int((v < BAD_DB).sum())}


def reference_inverse(truth: Truth, x0, sigma_max, parametrization):
    return probability_flow(truth.field(parametrization, SOURCE, 1.0), x0.double(), 0.0, sigma_max, parametrization,
                            REFERENCE_STEPS)


def sources(truth: Truth, kind: str, images: int, parametrization: str, sigma_max: float):
    """(x0 float32, the continuous inverse x_T float64): data draws (x_T by the reference inverse) or generated
    from known noise."""
    g = torch.Generator().manual_seed(1)
    if kind == "data":
        x0 = truth.sample(torch.full((images,), SOURCE, dtype=torch.long), g).double()
        return x0.float(), reference_inverse(truth, x0, sigma_max, parametrization)
    shape = truth.sample(torch.zeros(1, dtype=torch.long), g).shape[1:]
    scale = sigma_max if parametrization == "ve" else 1.0
    x_top = scale * torch.randn((images, *shape), generator=g, dtype=torch.float64)
    x0 = probability_flow(truth.field(parametrization, SOURCE, 1.0), x_top, sigma_max, 0.0, parametrization,
                          REFERENCE_STEPS)
    return x0.float(), x_top


def edit_sampler(inversion):
    """fn(denoise, with residuals?) -> the sample from the inverted latent with the inversion's sampler (stored
    noises replayed, an ODE inversion's last interval mirrored)."""
    def run(denoise, residuals=False):
        return trajectory.sample(denoise, inversion.latent, inversion.sigmas, step_kind=inversion.step_kind,
                                 parametrization=inversion.parametrization, noises=inversion.noises,
                                 residuals=inversion.residuals if residuals else None, bottom=inversion.bottom)
    return run


def measure(truth: Truth, method: Method, x0, ideals, sigmas, parametrization) -> dict:
    source = truth.field(parametrization, SOURCE, 1.0)
    t0 = time.perf_counter()
    inversion = capture_residuals(source, method.run(source, x0, sigmas, parametrization))
    calls = inversion.model_calls if inversion.verification is None else inversion.verification.model_calls
    capture_calls = inversion.residual_calls
    calls -= capture_calls
    seconds = time.perf_counter() - t0
    steps = len(sigmas) - 1
    run = edit_sampler(inversion)
    bottom = inversion.bottom
    sampler_calls = 2 * (len(bottom) - 2) if bottom is not None else 0   # the mirrored step's calls beyond 1
    row = {"method": method.key, "label": method.label, "calls_per_step": calls / steps,
           "capture_calls_per_step": capture_calls / steps, "sampler_extra_calls": sampler_calls, "seconds": seconds,
           "reconstruction": _stats(psnr(x0, run(source), DATA_RANGE)),
           "reconstruction_res": _stats(psnr(x0, run(source, True), DATA_RANGE)), "edits": {}}
    for cfg, ideal in ideals.items():
        target = truth.field(parametrization, TARGET, cfg)
        for label, res in (("none", False), ("all", True)):
            edit = run(target, res).double()
            row["edits"][f"{cfg:g}/{label}"] = {
                "ideal_db": _stats(psnr(ideal, edit, DATA_RANGE)),
                "success": float(truth.posterior(edit)[:, TARGET].mean()),
                "realism": float(truth.log_likelihood(edit, TARGET).mean()),
            }
    return row


def run_setting(truth_name, source_kind, parametrization, steps, cfgs, images, methods) -> list:
    truth = TRUTHS[truth_name]()
    sigma_max = float(schedule(parametrization, steps[0], "simple")[0])
    x0, x_top = sources(truth, source_kind, images, parametrization, sigma_max)
    ideals, ideal_rows = {}, {}
    for cfg in cfgs:
        ideal = probability_flow(truth.field(parametrization, TARGET, cfg), x_top, sigma_max, 0.0, parametrization,
                                 REFERENCE_STEPS)
        ideals[cfg] = ideal
        ideal_rows[f"{cfg:g}"] = {"realism": float(truth.log_likelihood(ideal, TARGET).mean()),
                                  "success": float(truth.posterior(ideal)[:, TARGET].mean()),
                                  "source_db": _stats(psnr(x0.double(), ideal, DATA_RANGE))["mean"]}
    out = []
    for n in steps:
        sigmas = schedule(parametrization, n, "simple")
        for key in methods:
            t0 = time.perf_counter()
            row = measure(truth, METHOD[key], x0, ideals, sigmas, parametrization)
            row.update(truth=truth_name, source=source_kind, parametrization=parametrization, steps=n, ideal=ideal_rows)
            out.append(row)
            e = row["edits"]
            print(f"[front] {truth_name}/{source_kind}/{parametrization} N={n} {key}: calls/step "
                  f"{row['calls_per_step'] + row['capture_calls_per_step']:.1f}, edit cfg1 "
                  f"{e['1/none']['ideal_db']['mean']:.1f}/{e['1/none']['ideal_db']['worst']:.1f} +res "
                  f"{e['1/all']['ideal_db']['mean']:.1f}/{e['1/all']['ideal_db']['worst']:.1f} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


# ============================================================================================ report
def _cell(s: dict) -> str:
    return f"{s['mean']:.1f} / {s['worst']:.1f} / {s['bad']}"


SUMMARY_METHODS = ("ode8", "ddim", "exact", "renoise", "rnri", "edit_friendly")


def _calls(row: dict, residuals: str) -> float:
    """Model calls per step of a row's edit path: inversion, plus with residuals their capture and the mirrored last
    interval's calls in the sampler beyond ComfyUI's one."""
    extra = row["capture_calls_per_step"] + row["sampler_extra_calls"] / row["steps"] if residuals == "all" else 0.0
    return row["calls_per_step"] + extra


def summary(rows: list, truth: str = "hard", source: str = "data", cfg: str = "1") -> str:
    """The README's table: per family and N, each summary method with residuals, mean / worst / under 30 dB from
    the ideal edit, realism minus the ideal's, calls per step."""
    names = {m: METHOD[m].label.split(" (")[0] + (" + residuals" if m != "ode8" else " (defaults) + residuals")
             for m in SUMMARY_METHODS}
    lines = ["| family | N | " + " | ".join(names[m] for m in SUMMARY_METHODS) + " |",
             "|---|---|" + "---|" * len(SUMMARY_METHODS)]
    for param in ("ve", "flow"):
        for n in sorted({r["steps"] for r in rows}):
            found = {r["method"]: r for r in rows if (r["truth"], r["source"], r["parametrization"], r["steps"])
                     == (truth, source, param, n)}
            if not all(m in found for m in SUMMARY_METHODS):
                continue
            cells = []
            for m in SUMMARY_METHODS:
                r, e = found[m], found[m]["edits"][f"{cfg}/all"]
                cells.append(f"{_cell(e['ideal_db'])}, {e['realism'] - r['ideal'][cfg]['realism']:+.2f}, "
                             f"{_calls(r, 'all'):.1f}")
            lines.append(f"| {param} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(rows: list, images: int) -> str:
    lines = [
        "# The edit front: edits against the continuous ideal, per model call",
        "",
        f"`python -m benchmarks.edit_front` ({images} images per setting; pure math, float32 sampler state). "
        "Ideal = the continuous probability-flow transport (float64 RK4 reference). Cells: distance to the ideal "
        "edit in dB, mean / worst image / images under 30 dB; realism = log-likelihood per dimension under the "
        "target class (ideal's in the header); calls = model calls per step of the inversion, residual capture "
        "included; rec = worst reconstruction through the sampler without / with residuals.",
        "",
        "## Summary: hard truth, data sources, cfg 1, with residuals",
        "",
        "Cells: mean / worst / images under 30 dB from the ideal edit, realism minus the ideal edit's (nats/dim), "
        "calls per step.",
        "",
        summary(rows),
    ]
    groups = {}
    for r in rows:
        groups.setdefault((r["truth"], r["source"], r["parametrization"], r["steps"]), []).append(r)
    for (truth, source, param, n), group in groups.items():
        ideal = group[0]["ideal"]
        cfgs = list(ideal)
        header = " | ".join(f"cfg {c} (ideal realism {ideal[c]['realism']:.2f})" for c in cfgs)
        lines += ["", f"## {truth} truth, {source} sources, {param}, N = {n}", "",
                  f"| method | calls/step | rec worst (none / res) | residuals | {header} |",
                  "|---|---|---|---|" + "---|" * len(cfgs)]
        for r in group:
            for res in ("none", "all"):
                cells = []
                for c in cfgs:
                    e = r["edits"][f"{c}/{res}"]
                    cells.append(f"{_cell(e['ideal_db'])}, real {e['realism']:.2f}, succ {e['success']:.2f}")
                calls = _calls(r, res)
                rec = f"{r['reconstruction']['worst']:.1f} / {r['reconstruction_res']['worst']:.1f}"
                lines.append(f"| {r['label']} | {calls:.1f} | {rec} | {res} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


COLORS = {"ddim": 8, "renoise": 3, "rnri": 5, "easyinv": 6, "exact": 4, "ode4": 9, "ode8_off": 10, "ode8_on": 1,
          "ode8": 14, "edit_friendly": 12}


def plot(rows: list, path: Path, cfg: str = "1", truth: str = "hard", source: str = "data", steps=None,
         columns: int = 4) -> None:
    """Edit fidelity (mean dB to the ideal) against model calls per step (inversion + capture), one panel per
    parametrization and N; each method twice: without residuals (hollow line start) and with them."""
    from .png_plot import PALETTE, line_panels
    panels = []
    for param in ("ve", "flow"):
        for n in sorted({r["steps"] for r in rows} if steps is None else steps):
            group = [r for r in rows if (r["truth"], r["source"], r["parametrization"], r["steps"]) ==
                     (truth, source, param, n)]
            if not group:
                continue
            series = []
            for r in group:
                calls = r["calls_per_step"] + r["sampler_extra_calls"] / r["steps"]
                points = [(calls, r["edits"][f"{cfg}/none"]["ideal_db"]["mean"]),
                          (calls + r["capture_calls_per_step"], r["edits"][f"{cfg}/all"]["ideal_db"]["mean"])]
                series.append({"label": r["label"], "points": points, "color": PALETTE[COLORS.get(r["method"], 0)],
                               "width": 2, "marker": "circle"})
            panels.append({"title": f"{param}, N = {n}", "xlabel": "model calls per step (log2)",
                           "ylabel": f"dB to the ideal edit (cfg {cfg})", "series": series})
    if panels:
        line_panels(path, panels, f"Edit front, {truth} truth, {source} sources: each method without -> with "
                    "residuals", columns=columns, panel_size=(520, 380))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--truths", nargs="+", default=["hard", "shared"], choices=list(TRUTHS))
    parser.add_argument("--sources", nargs="+", default=["data", "generated"], choices=["data", "generated"])
    parser.add_argument("--params", nargs="+", default=["ve", "flow"], choices=["ve", "flow"])
    parser.add_argument("--steps", nargs="+", type=int, default=[4, 10, 25, 50])
    parser.add_argument("--cfgs", nargs="+", type=float, default=[1.0, 3.0, 7.5])
    parser.add_argument("--methods", nargs="+", default=[m.key for m in METHODS], choices=list(METHOD))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--tag", default="", help="suffix of the output files (for runs in parallel)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                        help="write the report of these runs' edit_front*.json together (nothing is run)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    if args.merge:
        rows = [dict(row, label=METHOD[row["method"]].label if row["method"] in METHOD else row["label"])
                for path in args.merge for row in json.loads(Path(path).read_text())]
        args.truths = []
        args.images = max((r.get("images", args.images) for r in rows), default=args.images)
    for truth in args.truths:
        for source in args.sources:
            for param in args.params:
                rows += run_setting(truth, source, param, args.steps, args.cfgs, args.images, args.methods)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_{args.tag}" if args.tag else ""
    (args.out / f"edit_front{suffix}.json").write_text(json.dumps(rows, indent=1, allow_nan=True))
    (args.out / f"EDIT_FRONT{suffix}.md").write_text(markdown(rows, args.images))
    plot(rows, args.out / f"edit_front{suffix}.png")
    plot(rows, args.out / f"edit_front_n10{suffix}.png", steps=[10], columns=2)
    print(f"[front] wrote {args.out}/EDIT_FRONT{suffix}.md", flush=True)


if __name__ == "__main__":
    main()
