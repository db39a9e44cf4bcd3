"""Edit benchmark: every invert node's edits measured inside the real ComfyUI host (issue #13).

Run it with ``bash scripts/edit_benchmark.sh`` (provisions the CPU host, runs this file with the host's python).
Everything goes through ComfyUI's own ``PromptExecutor`` in this process and the nodes themselves.

Ground truth: the class-conditional analytic MODEL (``InvTestConditionalModel``,
``inversion_core/analytic_conditional.py``): Gaussian classes sharing their covariance, the class selected by the
CONDITIONING (one-hot), the empty prompt = the marginal, so ComfyUI's cfg acts as on a real model. An edit turns
``BATCH`` samples of class A into class B: invert with prompt A (negative: the empty prompt), sample back with
prompt B. Its ideal edit is known in closed form (exact transport A -> B for the schedule's top sigma).

Per method, N in {4, 10, 25, 50} and sampling cfg in {1, 3, 7.5}:
* success: the target-class posterior of the edit (mean, worst image, images below 0.5);
* preservation: PSNR of the edit to the ideal edit (mean, worst, images under 30 dB);
* realism: excess negative log-likelihood under the target class (nats/dim; 0 = a typical sample of it);
* reconstruction PSNR (sample back with prompt A at the inversion cfg), the inversion's model calls and seconds.
Inversion at cfg 1, and separately at the sampling cfg ("source prompt's cfg").

Methods: the seven invert nodes (ReNoise with and without its regulariser), Noise Correct's edit-friendly
trajectory (euler_ancestral) sampled by Inverted Sampler, ComfyUI core's FlipSigmas + SamplerCustom inversion, and
img2img (no inversion: fresh noise at the same strength, SamplerCustom add_noise on). Invert nodes are sampled
back by Inverted Sampler. Extra tables: the edit strength (Inverted Sampler ``edit_strength`` against img2img at
the same start step), masked edits (the source's left half kept; Inverted Sampler with the LATENT's noise_mask
against ComfyUI's own inpainting: SetLatentNoiseMask + SamplerCustom with fresh noise) and the main grid in
ComfyUI's flow parametrization (N = 10, 25).

Stored residuals. Inverted Sampler samples each method's own trajectory here (``residuals`` "none",
``--residuals all`` adds them): on this affine truth the residuals make every inversion's edit the same (Euler's
error has the same form under every class), so the tables compare the methods themselves. The residuals' effect,
and edits against the continuous ideal on a nonlinear truth, are ``benchmarks/edit_front.py``'s.

Writes ``benchmarks/EDIT_RESULTS.md``, ``benchmarks/edit_results.json`` and ``benchmarks/edit_tradeoff.png``.
Run as a script, never with the repo root on sys.path (the pack's ``nodes/`` would shadow ComfyUI's).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT]
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import host_support as hs  # noqa: E402
from host_support import Graph  # noqa: E402
from png_plot import PALETTE  # noqa: E402

NS = (4, 10, 25, 50)
CFGS = (1.0, 3.0, 7.5)
BATCH = 64
MODEL = dict(seed=11, classes=4, separation=3.0, channels=4, latent_format="sd15")
SOURCE, TARGET = 0, 1
LATENT_SIZE = 8
STRENGTHS = (1.0, 0.8, 0.6, 0.4)
FLOW_NS = (10, 25)
DIGIT_OFFSET = 5
BAD_DB, BAD_SUCCESS = 30.0, 0.5
RESIDUALS = ["none"]      # Inverted Sampler's residuals input in these tables (module docstring; --residuals)


def log(msg: str) -> None:
    print(f"[edit {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Method:
    key: str
    label: str
    kind: str                   # "node" | "core" | "img2img"
    node: str = ""
    params: dict = field(default_factory=dict)
    color: tuple = (0, 0, 0)
    marker: str = "circle"


RENOISE = dict(iterations=9, average=True, average_start=8, average_end=10, first_step="first", regularize=True,
               lambda_pair=20.0, lambda_kl=0.065, seed=0)
METHODS = [
    Method("exact", "Exact Invert", "node", "ExactInvExactInvert",
           dict(tolerance=1e-3, max_calls=30, memory=3, fallback=True), PALETTE[4], "diamond"),
    Method("ode", "ODE Invert", "node", "ExactInvODEInvert",
           dict(bottom_substeps=8, substeps=1, bottom_floor=0.05, mirror="auto"), PALETTE[14], "diamond"),
    Method("edit_friendly", "Noise Correct (edit-friendly, euler_ancestral)", "node", "ExactInvNoiseCorrect",
           dict(sampler_name="euler_ancestral", eta=1.0, s_noise=1.0, noise_seed=0, correction="exact",
                solver="edit_friendly", iterations=9), PALETTE[12], "square"),
    Method("renoise_reg", "ReNoise Invert (regularize on)", "node", "ExactInvReNoiseInvert", RENOISE,
           PALETTE[2]),
    Method("renoise", "ReNoise Invert (regularize off)", "node", "ExactInvReNoiseInvert",
           dict(RENOISE, regularize=False), PALETTE[3]),
    Method("rnri", "RNRI Invert (newton)", "node", "ExactInvRNRIInvert",
           dict(variant="newton", iterations=2, prior_weight=0.1), PALETTE[5], "triangle"),
    Method("easyinv", "EasyInv Invert (sd1)", "node", "ExactInvEasyInvInvert",
           dict(preset="sd1", eta=0.5, start=0.05, length=0.2, order="before"), PALETTE[6]),
    Method("ddim", "DDIM Invert", "node", "ExactInvDDIMInvert", dict(convention="target"), PALETTE[8]),
    Method("core", "core FlipSigmas + SamplerCustom", "core", color=PALETTE[0], marker="square"),
    Method("img2img", "img2img (fresh noise, no inversion)", "img2img", color=PALETTE[1], marker="triangle"),
]
METHOD = {m.key: m for m in METHODS}


# =========================================================================================== graphs
class EditGraph:
    """One graph: the model, the source batch, the prompts, one inversion and its edits / reconstruction."""

    def __init__(self, sampling: str = "eps"):
        self.g = Graph()
        g = self.g
        base = g.node("InvTestConditionalModel", sampling=sampling, **MODEL)
        self.m = g.node("InvTestCallMeter", model=base)
        self.src = g.node("InvTestConditionalLatent", sample_seed=1, batch=BATCH, source_class=SOURCE,
                          latent_size=LATENT_SIZE, **MODEL)
        self.a = g.node("InvTestClassConditioning", class_index=SOURCE, classes=MODEL["classes"])
        self.b = g.node("InvTestClassConditioning", class_index=TARGET, classes=MODEL["classes"])
        self.empty = g.node("InvTestClassConditioning", class_index=-1, classes=MODEL["classes"])
        self.sched = {}

    def sigmas(self, n: int):
        if n not in self.sched:
            self.sched[n] = self.g.node("BasicScheduler", model=self.m, scheduler="simple", steps=n, denoise=1.0)
        return self.sched[n]

    def custom(self, cond, cfg, sigmas, latent, add_noise=False, seed=0, sampler="euler"):
        smp = self.g.node("KSamplerSelect", sampler_name=sampler)
        return self.g.node("SamplerCustom", model=self.m, add_noise=add_noise, noise_seed=seed, cfg=cfg,
                           positive=cond, negative=self.empty, sampler=smp, sigmas=sigmas, latent_image=latent)

    def invert(self, method: Method, n: int, cfg: float, latent=None):
        """(inverting node or None, a function (cond, cfg, strength, latent) -> the sampled LATENT output)."""
        g, latent = self.g, latent if latent is not None else self.src
        sig = self.sigmas(n)
        if method.kind == "node":
            inv = g.node(method.node, model=self.m, positive=self.a, negative=self.empty, latent=self.src, steps=n,
                         scheduler="simple", cfg=cfg, denoise=1.0, **method.params)

            def sample(cond, w, strength=1.0, lat=None):
                extra = {"latent": lat} if lat is not None else {}
                return g.node("ExactInvInvertedSampler", model=self.m, positive=cond, negative=self.empty, cfg=w,
                              inversion=inv.out(1), edit_strength=strength, residuals=RESIDUALS[0], **extra).out(0)
            return inv, sample
        if method.kind == "core":
            flip = g.node("FlipSigmas", sigmas=sig)
            inv = self.custom(self.a, cfg, flip, self.src)

            def sample(cond, w, strength=1.0, lat=None):
                return self.custom(cond, w, sig, inv.out(0)).out(0)
            return inv, sample

        def sample(cond, w, strength=1.0, lat=None):      # img2img: fresh noise at the same start step
            start = int(round((1.0 - strength) * n))
            s = sig if start == 0 else g.node("SplitSigmas", sigmas=sig, step=start).out(1)
            return self.custom(cond, w, s, lat if lat is not None else self.src, add_noise=True, seed=1).out(0)
        return None, sample

    def score(self, edited, n: int, mask=None):
        extra = {"mask": mask} if mask is not None else {}
        return self.g.node("InvTestEditScore", model=self.m, source=self.src, edited=edited, sigmas=self.sigmas(n),
                           source_class=SOURCE, target_class=TARGET, **extra)

    def compare(self, b):
        return self.g.node("InvTestCompare", a=self.src, b=b)


class DigitsGraph(EditGraph):
    """The learned counterpart: the conditional digits demo model (demo_pack/, ``testbed/digits.py``), all 100
    held-out digits, each edited from its own digit into (digit + DIGIT_OFFSET) mod 10 with per-image prompts."""

    def __init__(self, sampling: str = "eps"):
        self.g = Graph()
        g = self.g
        self.m = g.node("InvTestCallMeter", model=g.node("InvDemoDigitsModel", sampling=sampling))
        self.src = g.node("InvDemoDigitLatent", digit=-1, count=10)
        self.a = g.node("InvDemoDigitBatchPrompt", offset=0)
        self.b = g.node("InvDemoDigitBatchPrompt", offset=DIGIT_OFFSET)
        self.empty = g.node("InvDemoDigitPrompt", text="")
        self.sched = {}

    def report(self, edited, rec, label):
        return self.g.node("InvDemoEditReport", source=self.src, reconstruction=rec, edited=edited, source_digit=-1,
                           target_digit=DIGIT_OFFSET, label=label)


# =========================================================================================== statistics
def _stats(values, low_is_bad=True, bad=None) -> dict:
    """mean / worst / count beyond ``bad`` over the images; exact (inf dB) counts as 200 dB; a non-finite value
    (NaN: the method produced no usable latent) is counted in ``nonfinite`` and as bad, and left out of the mean."""
    vals = [float(v) if v is not None else math.nan for v in values]
    capped = [min(v, 200.0) if v == math.inf else v for v in vals]
    finite = [v for v in capped if math.isfinite(v)]
    nonfinite = len(vals) - len(finite)
    if not finite:
        return {"mean": None, "worst": None, "bad": len(vals) if bad is not None else None, "n": len(vals),
                "nonfinite": nonfinite}
    worst = min(finite) if low_is_bad else max(finite)
    out = {"mean": sum(finite) / len(finite), "worst": worst, "n": len(vals), "nonfinite": nonfinite}
    if bad is not None:
        out["bad"] = nonfinite + sum(1 for v in finite if (v < bad if low_is_bad else v > bad))
    return out


def edit_stats(ui: dict, mask: bool = False) -> dict:
    out = {
        "success": _stats(ui["inside_success" if mask else "success"], bad=BAD_SUCCESS),
        "ideal_db": _stats(ui["ideal_psnr"], bad=BAD_DB),
        "realism": _stats(ui["realism"], low_is_bad=False),
    }
    if mask:
        out["outside_db"] = _stats(ui["outside_psnr"], bad=BAD_DB)
    return out


def run_graph(host, eg: EditGraph, inv):
    fresh = [inv] if inv is not None else [eg.src]
    return host.run(eg.g, fresh=fresh)


def learned_stats(ui: dict) -> dict:
    return {"success": _stats(ui["success"], bad=BAD_SUCCESS),
            "source_db": _stats(ui["source_psnr"]),
            "centroid_shift": _stats(ui["centroid_shift"], low_is_bad=False),
            "ink_ratio": _stats(ui["ink_ratio"], low_is_bad=False)}


def compare_psnr(ui: dict) -> list:
    """InvTestCompare's per-image PSNR, NaN where the reconstruction is not finite (its PSNR would read inf)."""
    return [p if r is not None and math.isfinite(r) else math.nan for p, r in zip(ui["psnr"], ui["rms"], strict=True)]


def inversion_info(res, inv) -> dict:
    if inv is None:
        return {"calls": 0, "seconds": 0.0}
    summary = res.outputs.get(inv.id, {}).get("inversion")
    calls = int(summary[0]["model_calls"]) if summary else res.node_calls(inv)
    return {"calls": calls, "seconds": res.node_wall(inv), "metered_calls": res.node_calls(inv)}


# =========================================================================================== parts
def measure_main(host, method: Method, n: int, inv_cfg: float, cfgs, sampling="eps") -> dict:
    eg = EditGraph(sampling)
    inv, sample = eg.invert(method, n, inv_cfg)
    scores = {w: eg.score(sample(eg.b, w), n) for w in cfgs}
    rec = eg.compare(sample(eg.a, inv_cfg))
    row = {"method": method.key, "n": n, "inv_cfg": inv_cfg, "sampling": sampling}
    try:
        res = run_graph(host, eg, inv)
    except hs.ch.ComfyError as error:
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        return row
    row.update(inversion_info(res, inv))
    row["reconstruction"] = _stats(compare_psnr(res.ui(rec)), bad=BAD_DB)
    row["edits"] = {str(w): edit_stats(res.ui(s)) for w, s in scores.items()}
    row["ideal_success"] = _stats(res.ui(next(iter(scores.values())))["ideal_success"], bad=BAD_SUCCESS)
    return row


def measure_learned(host, method: Method, n: int, cfgs) -> dict:
    eg = DigitsGraph()
    inv, sample = eg.invert(method, n, 1.0)
    rec = sample(eg.a, 1.0)
    reports = {w: eg.report(sample(eg.b, w), rec, method.key) for w in cfgs}
    row = {"method": method.key, "n": n, "inv_cfg": 1.0, "model": "digits"}
    try:
        res = run_graph(host, eg, inv)
    except hs.ch.ComfyError as error:
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        return row
    row.update(inversion_info(res, inv))
    first = res.ui(next(iter(reports.values())))["edit"][0]
    row["reconstruction"] = _stats(first["reconstruction_psnr"], bad=BAD_DB)
    row["edits"] = {str(w): learned_stats(res.ui(r)["edit"][0]) for w, r in reports.items()}
    return row


def measure_strength(host, method: Method, n: int, cfg: float) -> dict:
    eg = EditGraph()
    inv, sample = eg.invert(method, n, 1.0)
    scores = {s: eg.score(sample(eg.b, cfg, s), n) for s in STRENGTHS}
    res = run_graph(host, eg, inv)
    return {"method": method.key, "n": n, "cfg": cfg,
            "edits": {str(s): dict(edit_stats(res.ui(node)),
                                   source_db=_stats(res.ui(node)["source_psnr"], bad=BAD_DB))
                      for s, node in scores.items()}}


def measure_masked(host, method: Method, n: int, cfg: float) -> dict:
    eg = EditGraph()
    g = eg.g
    blank = g.node("SolidMask", value=0.0, width=8 * LATENT_SIZE, height=8 * LATENT_SIZE)
    ones = g.node("SolidMask", value=1.0, width=4 * LATENT_SIZE, height=8 * LATENT_SIZE)
    mask = g.node("MaskComposite", destination=blank, source=ones, x=0, y=0, operation="add")
    masked = g.node("SetLatentNoiseMask", samples=eg.src, mask=mask)
    inv, sample = eg.invert(method, n, 1.0)
    s = eg.score(sample(eg.b, cfg, 1.0, masked), n, mask=masked)
    res = run_graph(host, eg, inv)
    return {"method": method.key, "n": n, "cfg": cfg, "edit": edit_stats(res.ui(s), mask=True),
            **inversion_info(res, inv)}


# =========================================================================================== report
def _f(v, fmt="{:.1f}"):
    return "—" if v is None else ("inf" if isinstance(v, float) and math.isinf(v) else fmt.format(v))


def _mw(st, fmt="{:.1f}", bad=True):
    if not st or st.get("mean") is None:
        return f"NaN ({st.get('n', 0)} images)" if st and st.get("nonfinite") else "—"
    text = f"{_f(st['mean'], fmt)} / {_f(st['worst'], fmt)}"
    text += f" ({st['bad']})" if bad and st.get("bad") is not None else ""
    return text + (f", {st['nonfinite']} NaN" if st.get("nonfinite") else "")


def main_table(rows, cfg: float, inv_cfg_rule: str) -> str:
    head = (f"| method | N | success mean / worst (# < {BAD_SUCCESS}) | dB to ideal edit mean / worst (# < 30) | "
            "realism mean / worst | reconstruction dB mean / worst (# < 30) | inversion calls | inversion s |")
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "error" in r:
            lines.append(f"| {METHOD[r['method']].label} | {r['n']} | error: {r['error'][:80]} |||||")
            continue
        e = r["edits"].get(str(cfg))
        if e is None:
            continue
        lines.append(f"| {METHOD[r['method']].label} | {r['n']} | {_mw(e['success'], '{:.2f}')} | "
                     f"{_mw(e['ideal_db'])} | {_mw(e['realism'], '{:.3f}', False)} | {_mw(r['reconstruction'])} | "
                     f"{r['calls']} | {_f(r['seconds'], '{:.2f}')} |")
    return f"**Sampling cfg {cfg:g}, inversion cfg {inv_cfg_rule}**\n\n" + "\n".join(lines)


def learned_table(rows, cfg: float) -> str:
    lines = [f"**Sampling cfg {cfg:g}, inversion cfg 1**", "",
             f"| method | N | success mean / worst (# < {BAD_SUCCESS}) | pixel PSNR to the source mean / worst | "
             "centroid shift px mean / worst | ink ratio mean | reconstruction dB mean / worst (# < 30) | "
             "inversion calls | inversion s |", "|" + "---|" * 9]
    for r in rows:
        if "error" in r:
            lines.append(f"| {METHOD[r['method']].label} | {r['n']} | error: {r['error'][:80]} |||||||")
            continue
        e = r["edits"][str(cfg)]
        lines.append(f"| {METHOD[r['method']].label} | {r['n']} | {_mw(e['success'], '{:.2f}')} | "
                     f"{_mw(e['source_db'], bad=False)} | {_mw(e['centroid_shift'], '{:.2f}', False)} | "
                     f"{_f(e['ink_ratio']['mean'], '{:.2f}')} | {_mw(r['reconstruction'])} | {r['calls']} | "
                     f"{_f(r['seconds'], '{:.2f}')} |")
    return "\n".join(lines)


def strength_table(rows) -> str:
    lines = ["| method | edit strength | success mean / worst (# < 0.5) | dB to ideal mean / worst | "
             "dB to the source mean / worst |", "|---|---|---|---|---|"]
    for r in rows:
        for s, e in r["edits"].items():
            lines.append(f"| {METHOD[r['method']].label} | {s} | {_mw(e['success'], '{:.2f}')} | "
                         f"{_mw(e['ideal_db'], bad=False)} | {_mw(e['source_db'], bad=False)} |")
    return "\n".join(lines)


def masked_table(rows) -> str:
    lines = ["| method | cfg | outside: dB to the source mean / worst (# < 30) | inside: success mean / worst "
             "(# < 0.5) | inside: dB to ideal mean / worst | inversion calls |", "|---|---|---|---|---|---|"]
    for r in rows:
        e = r["edit"]
        lines.append(f"| {METHOD[r['method']].label} | {r['cfg']:g} | {_mw(e['outside_db'])} | "
                     f"{_mw(e['success'], '{:.2f}')} | {_mw(e['ideal_db'], bad=False)} | {r['calls']} |")
    return "\n".join(lines)


def plot(rows, path: Path, learned=()) -> None:
    import png_plot

    panels = []
    for cfg in CFGS:
        series = []
        for m in METHODS:
            pts = []
            for r in rows:
                if r["method"] == m.key and r["inv_cfg"] == 1.0 and "edits" in r and str(cfg) in r["edits"]:
                    e = r["edits"][str(cfg)]
                    if e["success"]["mean"] is not None and e["ideal_db"]["mean"] is not None:
                        pts.append((e["success"]["mean"], e["ideal_db"]["mean"]))
            if pts:
                series.append({"label": m.label, "points": pts, "color": m.color, "marker": m.marker})
        panels.append({"title": f"sampling cfg {cfg:g} (points: N = {', '.join(map(str, NS))})",
                       "xlabel": "edit success (target-class posterior, mean)",
                       "ylabel": "preservation: dB to the ideal edit (mean)", "series": series, "logx": False})
    for cfg in CFGS if learned else ():
        series = []
        for m in METHODS:
            pts = [(r["edits"][str(cfg)]["success"]["mean"], r["edits"][str(cfg)]["source_db"]["mean"])
                   for r in learned if r["method"] == m.key and "edits" in r]
            if pts:
                series.append({"label": m.label, "points": pts, "color": m.color, "marker": m.marker})
        panels.append({"title": f"learned digits model, sampling cfg {cfg:g} (N = {', '.join(map(str, NS))})",
                       "xlabel": "edit success (classifier: p(target digit), mean)",
                       "ylabel": "preservation: pixel PSNR to the source (mean)", "series": series, "logx": False})
    png_plot.line_panels(path, panels, title="Edits: preservation vs success (top: class-conditional analytic "
                                             "model; bottom: learned digits model; inversion cfg 1)", columns=3,
                         panel_size=(620, 480))


def write_report(results: dict, path: Path) -> str:
    parts = [
        "# Edit benchmark (`bash scripts/edit_benchmark.sh`)",
        "",
        f"Generated {results['date']} on {results['machine']}, ComfyUI {results['comfyui']}, "
        f"{results['threads']} torch thread(s); whole run {results['seconds']:.0f} s. "
        f"Model: class-conditional analytic (`InvTestConditionalModel` {MODEL}, eps), {BATCH} images of class "
        f"{SOURCE} edited into class {TARGET}, `simple` schedule, negative = the empty prompt. Success: the "
        "target-class posterior of the edit; dB to ideal edit: PSNR to the exact transport of the source into the "
        "target class (closed form); realism: excess NLL under the target class (nats/dim, 0 = typical, < 0 = "
        "pulled towards the class mean, i.e. over-smoothed; > 0 = off the class); "
        "reconstruction: sampled back with the source prompt at the inversion cfg. Worst = the worst image.",
        "",
        "## Inversion at cfg 1",
        "",
    ]
    main = [r for r in results["main"] if r["inv_cfg"] == 1.0]
    ideal = next((r["ideal_success"] for r in main if r.get("ideal_success")), None)
    if ideal:
        parts += [f"Reference: the ideal edit itself (closed form) has success {_mw(ideal, '{:.2f}')} (mean / worst "
                  "(# < 0.5)): the classes overlap, so a faithful edit of a source image near the class boundary "
                  "is ambiguous; cfg > 1 buys success beyond it by moving away from the ideal edit.", ""]
    for cfg in CFGS:
        parts += [main_table(main, cfg, "1"), ""]
    src = [r for r in results["main"] if r["inv_cfg"] != 1.0]
    if src:
        parts += ["## Inversion at the sampling cfg (the source prompt's cfg)", ""]
        for cfg in CFGS[1:]:
            parts += [main_table([r for r in src if r["inv_cfg"] == cfg], cfg, f"{cfg:g}"), ""]
    if results.get("flow"):
        parts += ["## Flow sampling (rectified flow, shift 3, full schedule to sigma 1; inversion cfg 1)", "",
                  "The same model and edit in ComfyUI's flow parametrization (`InvTestConditionalModel` sampling "
                  "flow). ComfyUI core's FlipSigmas inversion cannot reach sigma 1 (its latent is NaN there).", ""]
        for cfg in CFGS:
            parts += [main_table(results["flow"], cfg, "1"), ""]
    if results.get("learned"):
        parts += ["## Learned model: conditional digits (demo model, `testbed/digits.py`)", "",
                  f"All 100 held-out handwritten digits, each inverted with its own digit as prompt and edited into "
                  f"(digit + {DIGIT_OFFSET}) mod 10 (per-image prompts; negative: the empty prompt). No ideal edit is "
                  "known here: success is the demo classifier's probability of the target digit (96% accurate on "
                  "these digits), preservation what a digit edit should keep of the source: pixel PSNR to it, the "
                  "shift of the ink's centroid (pixels of 16) and the ink ratio (edit / source).", ""]
        for cfg in CFGS:
            parts += [learned_table(results["learned"], cfg), ""]
    if results.get("strength"):
        r0 = results["strength"][0]
        parts += [f"## Edit strength (N = {r0['n']}, cfg {r0['cfg']:g}; img2img starts at the same step)", "",
                  strength_table(results["strength"]), ""]
    if results.get("masked"):
        parts += ["## Masked edits (left half of the latent edited, right half kept; N = "
                  f"{results['masked'][0]['n']})", "",
                  "Inverted Sampler with the LATENT's noise_mask; img2img = ComfyUI's own inpainting "
                  "(SetLatentNoiseMask + SamplerCustom with fresh noise). Inside success: the target posterior "
                  "from the edited dimensions only.", "", masked_table(results["masked"]), ""]
    parts += ["![preservation vs success](edit_tradeoff.png)", ""]
    text = "\n".join(parts)
    path.write_text(text)
    return text


# =========================================================================================== main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default=",".join(map(str, NS)))
    ap.add_argument("--methods", default=",".join(m.key for m in METHODS))
    ap.add_argument("--parts", default="main,source_cfg,strength,masked,flow,learned")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--residuals", choices=["none", "all"], default="none",
                    help="Inverted Sampler's residuals input (module docstring)")
    ap.add_argument("--out", default=str(HERE))
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.ns.split(",") if x]
    methods = [METHOD[k] for k in args.methods.split(",") if k]
    parts = set(args.parts.split(","))
    RESIDUALS[0] = args.residuals
    t_start = time.perf_counter()
    host = hs.Host(threads=args.threads, extra_nodes=[("exact_inversion_demo", REPO_ROOT / "demo_pack")])
    log(f"ComfyUI {host.version()} up in {host.startup_seconds:.1f} s")
    results = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "comfyui": host.version(),
               "machine": f"{os.cpu_count()} CPUs", "threads": args.threads, "model": MODEL, "batch": BATCH,
               "main": [], "strength": [], "masked": [], "flow": [], "learned": []}
    for method in methods:
        for n in ns:
            plan = [(1.0, CFGS)] if "main" in parts else []
            if "source_cfg" in parts and method.kind != "img2img":
                plan += [(w, (w,)) for w in CFGS[1:]]
            for inv_cfg, cfgs in plan:
                t0 = time.perf_counter()
                row = measure_main(host, method, n, inv_cfg, cfgs)
                results["main"].append(row)
                if "error" in row:
                    log(f"{method.key:14s} N={n:<3d} inv cfg {inv_cfg:g}: ERROR {row['error'][:150]}")
                    continue
                e = row["edits"]
                log(f"{method.key:14s} N={n:<3d} inv cfg {inv_cfg:g}: rec {_mw(row['reconstruction'])} | "
                    + " | ".join(f"cfg {w}: succ {_mw(v['success'], '{:.2f}')} ideal {_mw(v['ideal_db'])}"
                                 for w, v in e.items())
                    + f" | calls {row['calls']} {time.perf_counter() - t0:.1f}s")
    if "flow" in parts:
        for method in methods:
            for n in FLOW_NS:
                row = measure_main(host, method, n, 1.0, CFGS, sampling="flow")
                results["flow"].append(row)
                log(f"flow {method.key:14s} N={n:<3d}: " + (f"ERROR {row['error'][:150]}" if "error" in row else
                    " | ".join(f"cfg {w}: succ {_mw(v['success'], '{:.2f}')} ideal {_mw(v['ideal_db'])}"
                               for w, v in row["edits"].items())))
    if "learned" in parts:
        for method in methods:
            for n in ns:
                t0 = time.perf_counter()
                row = measure_learned(host, method, n, CFGS)
                results["learned"].append(row)
                log(f"digits {method.key:14s} N={n:<3d}: " + (f"ERROR {row['error'][:150]}" if "error" in row else
                    f"rec {_mw(row['reconstruction'])} | " + " | ".join(
                        f"cfg {w}: succ {_mw(v['success'], '{:.2f}')} src {_mw(v['source_db'], bad=False)}"
                        for w, v in row["edits"].items()) + f" | calls {row['calls']} {time.perf_counter() - t0:.1f}s"))
    if "strength" in parts:
        for key in ("exact", "edit_friendly", "ddim", "img2img"):
            if key in METHOD:
                row = measure_strength(host, METHOD[key], 10, 3.0)
                results["strength"].append(row)
                log(f"strength {key}: " + "; ".join(f"{s}: succ {v['success']['mean']:.2f} src "
                                                   f"{v['source_db']['mean']:.1f} dB" for s, v in row["edits"].items()))
    if "masked" in parts:
        for key in ("exact", "edit_friendly", "renoise", "renoise_reg", "ddim", "img2img"):
            for cfg in (1.0, 3.0):
                row = measure_masked(host, METHOD[key], 10, cfg)
                results["masked"].append(row)
                e = row["edit"]
                log(f"masked {key} cfg {cfg:g}: outside {_mw(e['outside_db'])} inside succ "
                    f"{_mw(e['success'], '{:.2f}')}")
    results["seconds"] = time.perf_counter() - t_start
    out = Path(args.out)
    (out / "edit_results.json").write_text(json.dumps(results, indent=1, default=str))
    if results["main"]:
        plot(results["main"], out / "edit_tradeoff.png", results.get("learned", ()))
    print(write_report(results, out / "EDIT_RESULTS.md"))
    log(f"done in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
