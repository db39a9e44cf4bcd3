"""Host benchmark: the pack's nodes measured inside the real ComfyUI host.

Run it with the documented command ``bash scripts/benchmark.sh`` (provisions the CPU ComfyUI host, then runs this
file with the host's python). Everything goes through ComfyUI's own ``PromptExecutor`` in this process
(``dev/devkit/harness.py``), through the nodes themselves and stock ComfyUI nodes:

1. **Quality per model call.** Reconstruction PSNR (latent space, ``InvTestCompare``: per-sample peak |x| over the
   RMS error, averaged over the batch) against the number of model calls of the inversion, for every invert node
   and setting at N in {4, 10, 25, 50} (a subset of settings at 25 and 50), on the analytic Gaussian-mixture model
   and on the project's small trained model (``testbed/learned.py``), each in ComfyUI's eps (VE) and flow
   parametrization, side by side with ComfyUI core's own inversion, measured in the same run: BasicScheduler ->
   FlipSigmas -> SamplerCustom(euler, add_noise off, cfg 1) to invert, SamplerCustom(euler, add_noise off, the
   original sigmas) to sample back. Invert nodes are sampled back with the stock SamplerCustom (euler, add_noise
   off, the node's SIGMAS and LATENT outputs); Noise Correct with Inverted Sampler. Flow models: the main tables
   use the N-step tail of an (N+1)-step schedule (top sigma < 1) for every method, because the core peer cannot
   invert to sigma = 1 (its KSAMPLER divides by 1 - sigma); a separate table runs the full schedule to sigma = 1.
   Plot: ``benchmarks/psnr_vs_calls.png``.
2. **Overhead.** Node wall time / (model calls x the time of one model call), at a 64x64 latent on the generated
   one-level SD1.5-shaped UNet (320 channels, UNETLoader). The time of one call is metered inside the node's own
   run (seconds in the network per call, ``InvTestCallMeter``; judged against the target) and, for completeness,
   taken from one-step stock SamplerCustom runs (the same guider path) right before and after each node.
3. **Memory.** Peak resident memory above the memory before the node, of RNRI's gradient path (newton) against a
   plain forward (DDIM Invert) and RNRI's Jacobian-free variant, same model and latent.
4. **GPU** (only where torch sees CUDA): full-size SD1.5 and SDXL UNets from ComfyUI's classes with random fp16
   weights: seconds per 4-step ReNoise / RNRI inversion and per 50-step DDIM / Exact inversion.

Writes ``benchmarks/RESULTS.md`` (tables, date, machine, command), ``benchmarks/host_results.json`` and the PNG
(``host_report.py``, the report writer).
Model calls are the INVERSION stats of each node (``model_calls``), cross-checked with an independent meter
(``InvTestCallMeter``: a stock ``model_function_wrapper`` counting network calls per executing node).

Run as a script (``python benchmarks/host_benchmark.py``), never with the repo root on sys.path (the pack's
``nodes/`` would shadow ComfyUI's ``nodes`` module).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO_ROOT]   # never shadow ComfyUI's nodes
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import host_report  # noqa: E402
import host_support as hs  # noqa: E402
from host_report import fmt_db  # noqa: E402
from host_support import Graph  # noqa: E402
from png_plot import PALETTE  # noqa: E402

NS = (4, 10, 25, 50)
SMALL_NS = (4, 10)
COND = dict(tokens=1, dim=8, seed=0, zero=True, pooled_dim=8)   # the analytic / learned models ignore conditioning
ANALYTIC = dict(seed=7, components=3, channels=4)
BATCH = 8
ANALYTIC_SIZE = 16
TARGET_DB, TARGET_CALLS, TARGET_OVERHEAD = 15.0, 40, 1.05


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# =========================================================================================== settings
@dataclass
class Setting:
    key: str
    label: str
    kind: str                      # "peer" | "node" | "sampler" | "replay"
    node: str = ""
    params: dict = field(default_factory=dict)
    large: bool = True             # also run at N = 25, 50
    color: tuple = (0, 0, 0)
    marker: str = "circle"
    dash: tuple | None = None


RENOISE_OFFICIAL = dict(iterations=9, average=True, average_start=8, average_end=10, first_step="first",
                        regularize=True, lambda_pair=20.0, lambda_kl=0.065, seed=0)
EXACT_DEFAULT = dict(tolerance=1e-3, max_calls=30, memory=3, fallback=True)
_C = PALETTE

SETTINGS = [
    Setting("core", "ComfyUI core: FlipSigmas + SamplerCustom euler", "peer", color=_C[0], marker="square"),
    Setting("ddim_target", "DDIM Invert (target)", "node", "ExactInvDDIMInvert", dict(convention="target"),
            color=_C[8]),
    Setting("ddim_current", "DDIM Invert (current)", "node", "ExactInvDDIMInvert", dict(convention="current"),
            large=False, color=_C[9], dash=(6, 4)),
    Setting("easyinv", "EasyInv Invert (sd1 preset)", "node", "ExactInvEasyInvInvert",
            dict(preset="sd1", eta=0.5, start=0.05, length=0.2, order="before"), color=_C[6]),
    Setting("renoise", "ReNoise Invert (official: 9 it, avg 8-10, reg)", "node", "ExactInvReNoiseInvert",
            RENOISE_OFFICIAL, color=_C[2]),
    Setting("renoise_noreg", "ReNoise Invert (9 it, avg 8-10, no reg)", "node", "ExactInvReNoiseInvert",
            dict(RENOISE_OFFICIAL, regularize=False), large=False, color=_C[2], dash=(6, 4)),
    Setting("rnri_newton", "RNRI Invert (newton, 2 it)", "node", "ExactInvRNRIInvert",
            dict(variant="newton", iterations=2, prior_weight=0.1), color=_C[5], marker="triangle"),
    Setting("rnri_released", "RNRI Invert (released, 2 it)", "node", "ExactInvRNRIInvert",
            dict(variant="released", iterations=2, prior_weight=0.1), color=_C[7], marker="triangle"),
    Setting("exact", "Exact Invert (tol 1e-3, <=30 calls/step, 60 on the final)", "node", "ExactInvExactInvert",
            EXACT_DEFAULT,
            color=_C[4], marker="diamond"),
    Setting("exact_10", "Exact Invert (tol 1e-3, <=10 calls/step, 20 on the final, no fallback)", "node",
            "ExactInvExactInvert",
            dict(EXACT_DEFAULT, max_calls=10, fallback=False), color=_C[1], marker="diamond"),
    Setting("exact_tight", "Exact Invert (tol 1e-5, <=30 calls/step, 60 on the final)", "node",
            "ExactInvExactInvert",
            dict(EXACT_DEFAULT, tolerance=1e-5), large=False, color=_C[11], marker="diamond", dash=(6, 4)),
    Setting("inversion_sampler", "Inversion Sampler (exact) in the core graph", "sampler", "ExactInvInversionSampler",
            dict(method="exact", tolerance=1e-3, iterations=30), large=False, color=_C[3], dash=(2, 4)),
    Setting("noise_correct_ef", "Noise Correct (euler_ancestral, edit_friendly default) + Inverted Sampler",
            "replay", "ExactInvNoiseCorrect", dict(sampler_name="euler_ancestral", eta=1.0, s_noise=1.0,
                                                   noise_seed=0, correction="exact", solver="edit_friendly",
                                                   iterations=9),
            large=False, color=_C[12], dash=(2, 4), marker="square"),
    Setting("noise_correct", "Noise Correct (euler_ancestral, exact solver) + Inverted Sampler", "replay",
            "ExactInvNoiseCorrect", dict(sampler_name="euler_ancestral", eta=1.0, s_noise=1.0, noise_seed=0,
                                         correction="exact", solver="exact", iterations=9),
            large=False, color=_C[10], dash=(2, 4)),
]
SETTING = {s.key: s for s in SETTINGS}


@dataclass
class ModelSet:
    key: str
    label: str
    flow: bool
    learned: bool

    def model(self, g: Graph):
        sampling = "flow" if self.flow else "eps"
        if self.learned:
            base = g.node("InvTestLearnedModel", sampling=sampling, latent_format="identity")
        else:
            base = g.node("InvTestAnalyticModel", **ANALYTIC, latent_format=self.latent_format, sampling=sampling)
        return g.node("InvTestCallMeter", model=base)

    @property
    def latent_format(self) -> str:
        return "identity" if self.learned else ("flux" if self.flow else "sd15")

    def latent(self, g: Graph):
        if self.learned:
            return g.node("InvTestEvalLatents", split="held_out", count=BATCH, latent_format="identity")
        return g.node("InvTestAnalyticLatent", seed=1, batch=BATCH, latent_width=ANALYTIC_SIZE,
                      latent_height=ANALYTIC_SIZE, gmm_seed=ANALYTIC["seed"], components=ANALYTIC["components"],
                      channels=ANALYTIC["channels"], latent_format=self.latent_format)

    def schedule(self, g: Graph, model, steps: int, full: bool = False):
        """SIGMAS of the comparison: BasicScheduler(simple, N); flow: the N-step tail of an (N+1)-step schedule
        (top sigma < 1) unless ``full``."""
        if not self.flow or full:
            return g.node("BasicScheduler", model=model, scheduler="simple", steps=steps, denoise=1.0), False
        s = g.node("BasicScheduler", model=model, scheduler="simple", steps=steps + 1, denoise=1.0)
        return g.node("SplitSigmas", sigmas=s, step=1).out(1), True


MODEL_SETS = [
    ModelSet("analytic_eps", "analytic GMM, eps", flow=False, learned=False),
    ModelSet("analytic_flow", "analytic GMM, flow (shift 3)", flow=True, learned=False),
    ModelSet("learned_eps", "trained model, eps", flow=False, learned=True),
    ModelSet("learned_flow", "trained model, flow (shift 3)", flow=True, learned=True),
]


def euler_back(g, m, c, sigmas, latent):
    smp = g.node("KSamplerSelect", sampler_name="euler")
    return g.node("SamplerCustom", model=m, add_noise=False, noise_seed=0, cfg=1.0, positive=c, negative=c,
                  sampler=smp, sigmas=sigmas, latent_image=latent)


def quality_graph(ms: ModelSet, n: int, st: Setting, full_schedule: bool = False):
    """(graph, inverting node, compare node) for one model set, N and setting."""
    g = Graph()
    m = ms.model(g)
    c = g.node("InvTestConditioning", **COND)
    lat = ms.latent(g)
    sig, custom = ms.schedule(g, m, n, full=full_schedule)
    if st.kind in ("peer", "sampler"):
        flip = g.node("FlipSigmas", sigmas=sig)
        smp = g.node("KSamplerSelect", sampler_name="euler") if st.kind == "peer" else g.node(st.node, **st.params)
        inv = g.node("SamplerCustom", model=m, add_noise=False, noise_seed=0, cfg=1.0, positive=c, negative=c,
                     sampler=smp, sigmas=flip, latent_image=lat)
        back = euler_back(g, m, c, sig, inv.out(0))
    else:
        extra = {"sigmas": sig} if custom else {}
        inv = g.node(st.node, model=m, positive=c, negative=c, latent=lat, steps=n, scheduler="simple", cfg=1.0,
                     denoise=1.0, **st.params, **extra)
        if st.kind == "replay" or (ms.flow and full_schedule):
            back = g.node("ExactInvInvertedSampler", model=m, positive=c, negative=c, cfg=1.0, inversion=inv.out(1))
        else:
            back = euler_back(g, m, c, inv.out(3), inv.out(0))
    cmp = g.node("InvTestCompare", a=lat, b=back.out(0))
    return g, inv, cmp


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def measure_quality(host: hs.Host, ms: ModelSet, n: int, st: Setting, full_schedule: bool = False) -> dict:
    g, inv, cmp = quality_graph(ms, n, st, full_schedule)
    row = {"model": ms.key, "n": n, "setting": st.key, "full_schedule": full_schedule}
    try:
        res = host.run(g)
    except hs.ch.ComfyError as error:
        row.update(error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
        return row
    ui = res.ui(cmp)
    rms = ui["rms"]
    finite = all(_finite(r) for r in rms)
    psnrs = ui["psnr"]
    row.update(
        psnr=[p if finite else None for p in psnrs],
        psnr_mean=(sum(psnrs) / len(psnrs)) if finite else None,
        psnr_min=min(psnrs) if finite else None,
        rms_mean=(sum(rms) / len(rms)) if finite else None,
        finite=finite,
        metered_calls=res.node_calls(inv),
        wall=res.node_wall(inv),
        model_seconds=res.node_model_seconds(inv),
    )
    summary = res.outputs.get(inv.id, {}).get("inversion")
    if summary:
        s = summary[0]
        row.update(calls=int(s["model_calls"]), max_residual=s.get("max_residual"),
                   fallback_steps=s.get("fallback_steps"), notes=s.get("notes"),
                   latent_output_valid=s.get("latent_output_valid"))
    else:
        row["calls"] = res.node_calls(inv)
    return row


def run_quality(host: hs.Host, ns, model_sets, settings) -> tuple[list, list]:
    rows = []
    for ms in model_sets:
        for n in ns:
            for st in settings:
                if n not in SMALL_NS and not st.large:
                    continue
                t0 = time.perf_counter()
                row = measure_quality(host, ms, n, st)
                rows.append(row)
                log(f"quality {ms.key:13s} N={n:<3d} {st.key:17s} "
                    + (f"ERROR {row['error'][:120]}" if "error" in row else
                       f"psnr {fmt_db(row.get('psnr_mean'))} calls {row.get('calls')} (meter "
                       f"{row.get('metered_calls')}) {time.perf_counter() - t0:.1f}s"))
    flow_rows = []
    for ms in model_sets:
        if not ms.flow:
            continue
        for n in SMALL_NS:
            for key in ("core", "ddim_target", "exact"):
                row = measure_quality(host, ms, n, SETTING[key], full_schedule=True)
                flow_rows.append(row)
                log(f"flow sigma=1 {ms.key} N={n} {key}: "
                    + (row.get("error", "")[:100] or f"psnr {fmt_db(row.get('psnr_mean'))} calls {row.get('calls')}"))
    return rows, flow_rows


# =========================================================================================== overhead + memory
OVERHEAD_SIZE = 64
OVERHEAD_CASES = [
    # (key, label, node, params, steps)
    ("ddim", "DDIM Invert (target)", "ExactInvDDIMInvert", dict(convention="target"), 4),
    # a random-weight UNet is no denoiser: the adaptive solver would spend its whole budget, so cap it
    ("exact", "Exact Invert (tol 1e-3, <=4 calls/step, 8 on the final, no fallback)", "ExactInvExactInvert",
     dict(EXACT_DEFAULT, max_calls=4, fallback=False), 2),
    ("renoise", "ReNoise Invert (3 it, avg 2-4, reg on)", "ExactInvReNoiseInvert",
     dict(RENOISE_OFFICIAL, iterations=3, average_start=2, average_end=4, first_step="none"), 2),
]
MEMORY_CASES = [
    ("forward", "plain forward: DDIM Invert, 1 step", "ExactInvDDIMInvert", dict(convention="target"), 1),
    ("rnri_released", "RNRI Invert released (Jacobian-free), 1 step", "ExactInvRNRIInvert",
     dict(variant="released", iterations=2, prior_weight=0.1), 1),
    ("rnri_newton", "RNRI Invert newton (gradient path), 1 step", "ExactInvRNRIInvert",
     dict(variant="newton", iterations=2, prior_weight=0.1), 1),
]


def sd15_graph(size: int):
    g = Graph()
    base = g.node("UNETLoader", unet_name=hs.ch.NARROW_UNET, weight_dtype="default")
    m = g.node("InvTestCallMeter", model=base)
    c = g.node("InvTestConditioning", tokens=77, dim=768, seed=0, zero=False, pooled_dim=768)
    lat = g.node("InvTestAnalyticLatent", seed=1, batch=1, latent_width=size, latent_height=size,
                 gmm_seed=ANALYTIC["seed"], components=ANALYTIC["components"], channels=4, latent_format="sd15")
    return g, m, c, lat


def stock_sampler_graph(size: int, steps: int):
    g, m, c, lat = sd15_graph(size)
    sig = g.node("BasicScheduler", model=m, scheduler="simple", steps=steps, denoise=1.0)
    out = euler_back(g, m, c, sig, lat)
    g.node("InvTestCompare", a=lat, b=out.out(0))
    return g, out


def invert_graph(size: int, node: str, params: dict, steps: int):
    g, m, c, lat = sd15_graph(size)
    inv = g.node(node, model=m, positive=c, negative=c, latent=lat, steps=steps, scheduler="simple", cfg=1.0,
                 denoise=1.0, **params)
    g.node("InvTestCompare", a=lat, b=inv.out(0))
    return g, inv


def time_stock(host, size: int, steps: int) -> dict:
    g, node = stock_sampler_graph(size, steps)
    res = host.run(g, fresh=[node])
    return {"steps": steps, "wall": res.node_wall(node), "cpu": res.node_cpu(node), "calls": res.node_calls(node),
            "model_seconds": res.node_model_seconds(node)}


def time_node(host, size: int, node: str, params: dict, steps: int) -> dict:
    g, inv = invert_graph(size, node, params, steps)
    res = host.run(g, fresh=[inv])
    s = res.ui(inv)["inversion"][0]
    return {"steps": steps, "wall": res.node_wall(inv), "cpu": res.node_cpu(inv), "calls": int(s["model_calls"]),
            "metered_calls": res.node_calls(inv), "model_seconds": res.node_model_seconds(inv),
            "notes": s.get("notes"), "settings": s.get("settings")}


def narrow_unet_weights_mib() -> float:
    """Bytes of the narrow UNet's weights as ComfyUI holds them on CPU (float32), in MiB."""
    from safetensors import safe_open

    models = Path(hs.ch.build_models(hs.ch.comfyui_python(), hs.ch.comfyui_dir()))
    path = models / "diffusion_models" / hs.ch.NARROW_UNET
    n = 0
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            numel = 1
            for d in f.get_slice(k).get_shape():
                numel *= d
            n += numel
    return n * 4 / 2**20


def run_overhead(host, size: int = OVERHEAD_SIZE) -> dict:
    """Each node run is bracketed by one-step stock SamplerCustom runs: its t_call is their mean, so slow drifts of
    a shared machine's load between runs mostly cancel."""
    log(f"overhead: warm-up at {size}x{size}")
    time_stock(host, size, 1)                       # loads the UNet, first-call initialisation
    for _, _, node, params, _ in OVERHEAD_CASES + MEMORY_CASES:
        time_node(host, 8, node, params, 1)         # code paths warm (tiny latent)
    stock = [time_stock(host, size, 1)]
    cases = []
    for key, label, node, params, steps in OVERHEAD_CASES:
        r = time_node(host, size, node, params, steps)
        stock.append(time_stock(host, size, 1))
        before, after = stock[-2], stock[-1]
        r.update(key=key, label=label, t_call=(before["wall"] + after["wall"]) / 2)
        r["t_call_cpu"] = (before["cpu"] + after["cpu"]) / 2
        r["ratio"] = r["wall"] / (r["calls"] * r["t_call"])
        r["ratio_cpu"] = r["cpu"] / (r["calls"] * r["t_call_cpu"])
        # t_call metered inside the node's own run: wall / (calls x network seconds per call)
        r["ratio_in_run"] = r["wall"] / r["model_seconds"] if r["model_seconds"] else None
        cases.append(r)
        log(f"overhead: {key} N={steps} {r['wall']:.2f}s, {r['calls']} calls, t_call {r['t_call']:.2f}s, "
            f"ratio {r['ratio']:.3f} (CPU time {r['ratio_cpu']:.3f}, in-run {r['ratio_in_run']:.3f})")
    t_call = sum(s["wall"] for s in stock) / sum(s["steps"] for s in stock)
    stock_ratio_in_run = sum(s["wall"] for s in stock) / sum(s["model_seconds"] for s in stock)
    return {"size": size, "t_call": t_call, "stock": stock, "stock_ratio_in_run": stock_ratio_in_run,
            "cases": cases}


def run_memory(host, sizes=(8, OVERHEAD_SIZE)) -> dict:
    if not hs.peak_rss_supported():
        return {"supported": False, "sizes": list(sizes)}
    cases = []
    for size in sizes:
        for key, label, node, params, steps in MEMORY_CASES:
            if size <= 16:
                time_node(host, size, node, params, steps)   # warm the exact case first (cheap at small sizes)
            r, peak, retained = hs.peak_rss_delta(lambda: time_node(host, size, node, params, steps))
            r.update(key=key, label=label, size=size, peak_mib=peak, retained_mib=retained)
            cases.append(r)
            log(f"memory: {size}x{size} {key} peak +{peak:.1f} MiB (retained {retained:+.1f}), {r['wall']:.1f}s, "
                f"{r['calls']} calls")
    return summarize_memory({"supported": True, "sizes": list(sizes), "cases": cases,
                             "weights_mib": narrow_unet_weights_mib()})


def summarize_memory(mem: dict) -> dict:
    """Derived numbers: x plain forward per size; the gradient path's extra peak at the smallest latent (where
    activations are negligible) against the weights; what stays resident."""
    cases, weights = mem["cases"], mem["weights_mib"]
    for r in cases:
        base = next(c["peak_mib"] for c in cases if c["size"] == r["size"] and c["key"] == "forward")
        r["vs_forward"] = r["peak_mib"] / base if base > 0 else None
    small = min(mem["sizes"])
    peak = {c["key"]: c["peak_mib"] for c in cases if c["size"] == small}
    extra = peak["rnri_newton"] - peak["forward"]
    retained = max(c["retained_mib"] for c in cases)
    return dict(mem, newton_extra_small_mib=extra, small_size=small, max_retained_mib=retained,
                persistent_copy=retained > 0.5 * weights, transient_copy=extra > 0.5 * weights)


# =========================================================================================== GPU
GPU_ARCHS = {"sd15": dict(tokens=77, dim=768, pooled_dim=768, size=64),
             "sdxl": dict(tokens=77, dim=2048, pooled_dim=1280, size=128)}
GPU_CASES = [
    ("renoise4", "ReNoise Invert (official defaults)", "ExactInvReNoiseInvert", RENOISE_OFFICIAL, 4),
    ("rnri4", "RNRI Invert (newton, 2 it)", "ExactInvRNRIInvert",
     dict(variant="newton", iterations=2, prior_weight=0.1), 4),
    ("ddim50", "DDIM Invert (target)", "ExactInvDDIMInvert", dict(convention="target"), 50),
    ("exact50", "Exact Invert (defaults)", "ExactInvExactInvert", EXACT_DEFAULT, 50),
]


def gpu_worker(archs, size_override=None, steps_override=None, dtype="fp16") -> dict:
    """Runs in its own process (ComfyUI must be imported in GPU mode): full-size UNets, random weights."""
    import torch

    host = hs.Host(threads=None, gpu=torch.cuda.is_available())   # CPU only for the --gpu-smoke check
    out = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu (smoke test)",
           "dtype": dtype, "archs": {}}
    for arch in archs:
        spec = GPU_ARCHS[arch]
        size = size_override or spec["size"]

        def graph():
            g = Graph()
            base = g.node("InvTestRandomUNet", architecture=arch, dtype=dtype, seed=0)
            m = g.node("InvTestCallMeter", model=base)
            c = g.node("InvTestConditioning", tokens=spec["tokens"], dim=spec["dim"], seed=0, zero=False,
                       pooled_dim=spec["pooled_dim"])
            lat = g.node("InvTestAnalyticLatent", seed=1, batch=1, latent_width=size, latent_height=size,
                         gmm_seed=ANALYTIC["seed"], components=ANALYTIC["components"], channels=4,
                         latent_format="sd15")
            return g, m, c, lat

        def stock(steps):
            g, m, c, lat = graph()
            sig = g.node("BasicScheduler", model=m, scheduler="simple", steps=steps, denoise=1.0)
            node = euler_back(g, m, c, sig, lat)
            g.node("InvTestCompare", a=lat, b=node.out(0))
            r = host.run(g, fresh=[node])
            return r.node_wall(node)

        t0 = time.perf_counter()
        stock(1)                                           # builds the UNet, loads it, warms kernels
        build = time.perf_counter() - t0
        k = steps_override or 10
        t_call = stock(k) / k
        rows = []
        for key, label, node, params, steps in GPU_CASES:
            steps = min(steps, steps_override) if steps_override else steps
            g, m, c, lat = graph()
            inv = g.node(node, model=m, positive=c, negative=c, latent=lat, steps=steps, scheduler="simple",
                         cfg=1.0, denoise=1.0, **params)
            g.node("InvTestCompare", a=lat, b=inv.out(0))
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            r = host.run(g, fresh=[inv])
            s = r.ui(inv)["inversion"][0]
            rows.append({"key": key, "label": label, "steps": steps, "seconds": r.node_wall(inv),
                         "calls": int(s["model_calls"]), "notes": s.get("notes"),
                         "peak_vram_gib": (torch.cuda.max_memory_allocated() / 2**30)
                         if torch.cuda.is_available() else None})
        out["archs"][arch] = {"latent": f"{size}x{size}", "t_call": t_call, "build_and_first_call": build,
                              "cases": rows}
    return out


def run_gpu(smoke: bool = False) -> dict:
    import torch

    if not torch.cuda.is_available() and not smoke:
        return {"measured": False, "reason": "not measured: no GPU in this environment (torch.cuda.is_available() "
                "is False for the host's torch " + torch.__version__ + ")"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--gpu-worker"]
    if smoke:
        cmd += ["--gpu-smoke"]
    log("gpu: " + " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("GPU_RESULT="):
            return dict(json.loads(line[len("GPU_RESULT="):]), measured=True)
    return {"measured": False, "reason": f"GPU worker failed ({proc.returncode}): {proc.stderr[-2000:]}"}


# =========================================================================================== report
def target_rows(rows) -> list[dict]:
    """At N=4 on the trained model: the best node setting with <= 40 calls against the core peer."""
    result = []
    for mkey in ("learned_eps", "learned_flow", "analytic_eps", "analytic_flow"):
        peer = next((r for r in rows if r["model"] == mkey and r["n"] == 4 and r["setting"] == "core"), None)
        cands = [r for r in rows if r["model"] == mkey and r["n"] == 4 and SETTING[r["setting"]].kind in
                 ("node", "sampler")                     # euler inversions only, like the peer (no Noise Correct)
                 and r.get("finite") and r.get("calls") is not None and r["calls"] <= TARGET_CALLS
                 and r.get("psnr_mean") is not None]
        if peer is None or not cands:
            continue
        best = max(cands, key=lambda r: r["psnr_mean"])
        gain = best["psnr_mean"] - peer["psnr_mean"] if peer.get("psnr_mean") is not None else None
        result.append({"model": mkey, "peer_psnr": peer.get("psnr_mean"), "best": best["setting"],
                       "best_psnr": best["psnr_mean"], "best_calls": best["calls"], "gain": gain,
                       "met": gain is not None and gain >= TARGET_DB})
    return result


# what the report writer (host_report.py) names of the definitions above
REPORT = host_report.Bench(SETTINGS, MODEL_SETS, BATCH, ANALYTIC_SIZE, SMALL_NS, TARGET_OVERHEAD)


def _loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


# =========================================================================================== main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parts", default="quality,overhead,memory,gpu",
                    help="comma list of quality, overhead, memory, gpu")
    ap.add_argument("--ns", default=",".join(map(str, NS)), help="N values of the quality sweep")
    ap.add_argument("--models", default=",".join(m.key for m in MODEL_SETS))
    ap.add_argument("--settings", default="", help="comma list of setting keys (default: all)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared 2-core machine a second thread waits on the "
                    "other load and makes timings erratic)")
    ap.add_argument("--overhead-size", type=int, default=OVERHEAD_SIZE)
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--json", default=str(HERE / "host_results.json"))
    ap.add_argument("--png", default=str(HERE / "psnr_vs_calls.png"))
    ap.add_argument("--command", default="bash scripts/benchmark.sh", help="the command recorded in the report")
    ap.add_argument("--provision-seconds", type=float, default=None)
    ap.add_argument("--gpu-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--gpu-smoke", action="store_true",
                    help="with --parts gpu: run the GPU code path on CPU with tiny sizes (checks the code only)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the markdown and the PNG from the --json results without measuring")
    args = ap.parse_args(argv)

    if args.report_only:
        results = json.loads(Path(args.json).read_text())
        if results.get("memory", {}).get("supported"):
            results["memory"] = summarize_memory(results["memory"])
        if results.get("quality"):
            results["targets"] = target_rows(results["quality"])
            host_report.plot(results["quality"], REPORT.model_sets_run(results), Path(args.png), SETTINGS)
        host_report.write_report(results, Path(args.out), REPORT)
        host_report.write_json(results, Path(args.json))
        return 0

    if args.gpu_worker:
        if args.gpu_smoke:
            res = gpu_worker(["sd15"], size_override=8, steps_override=1, dtype="fp32")
        else:
            res = gpu_worker(list(GPU_ARCHS))
        print("GPU_RESULT=" + json.dumps(res), flush=True)
        return 0

    t_start = time.perf_counter()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    ns = tuple(int(v) for v in args.ns.split(","))
    model_sets = [m for m in MODEL_SETS if m.key in args.models.split(",")]
    settings = [s for s in SETTINGS if not args.settings or s.key in args.settings.split(",")]
    load_start = _loadavg()
    host = hs.Host(threads=args.threads)
    log(f"ComfyUI {host.version()} in process, start-up {host.startup_seconds:.1f}s, torch threads {args.threads}")
    results = {"ns": list(ns), "model_sets": [m.key for m in model_sets]}

    if "quality" in parts:
        rows, flow_rows = run_quality(host, ns, model_sets, settings)
        results["quality"], results["flow_full"] = rows, flow_rows
        results["targets"] = target_rows(rows)
        results["meter_mismatches"] = sum(1 for r in rows + flow_rows
                                          if r.get("calls") is not None and r.get("metered_calls") is not None
                                          and r["setting"] not in ("core", "inversion_sampler")
                                          and r["calls"] != r["metered_calls"])
        host_report.plot(rows, model_sets, Path(args.png), SETTINGS)
    if "overhead" in parts:
        results["overhead"] = run_overhead(host, args.overhead_size)
    if "memory" in parts:
        results["memory"] = run_memory(host, (8, args.overhead_size))
    if "gpu" in parts:
        results["gpu"] = run_gpu(smoke=args.gpu_smoke)

    results["meta"] = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": hs.machine_description(), "threads": args.threads, "comfyui": host.version(),
        "command": args.command, "duration_s": time.perf_counter() - t_start,
        "cpu_s": sum(os.times()[:4]),
        "provision_s": args.provision_seconds, "startup_s": host.startup_seconds,
        "load_start": load_start, "load_end": _loadavg(),
    }
    text = host_report.write_report(results, Path(args.out), REPORT)
    host_report.write_json(results, Path(args.json))
    print(text)
    log(f"wrote {args.out}, {args.json}" + (f", {args.png}" if "quality" in parts else "")
        + f" in {results['meta']['duration_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
