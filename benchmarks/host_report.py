"""The host benchmark's report writer: ``benchmarks/RESULTS.md`` (headline and tables), the PNG plot and
``benchmarks/host_results.json``, from the results dict that ``host_benchmark.py`` measures (or reads back with
``--report-only``). Nothing here measures; :class:`Bench` carries what the report needs to know of the benchmark's
definitions (its settings, model sets and targets).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import png_plot


@dataclass(frozen=True)
class Bench:
    """The benchmark's definitions the report names: ``host_benchmark.SETTINGS`` / ``MODEL_SETS`` and sizes."""

    settings: list                 # host_benchmark.Setting, in table order
    model_sets: list               # host_benchmark.ModelSet
    batch: int
    analytic_size: int
    small_ns: tuple
    target_overhead: float

    @property
    def setting(self) -> dict:
        return {st.key: st for st in self.settings}

    def model_sets_run(self, results: dict) -> list:
        keys = results.get("model_sets") or [m.key for m in self.model_sets]
        return [m for m in self.model_sets if m.key in keys]


def write_json(results: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(results, indent=1, default=str))


def fmt_db(v) -> str:
    if v is None:
        return "n/a"
    return "inf" if math.isinf(v) else f"{v:.1f}"


def _cell(row) -> str:
    if row is None:
        return "-"
    if "error" in row:
        return "error"
    if not row.get("finite", True):
        return f"**non-finite** ({row.get('calls')})"
    under = sum(1 for v in row.get("psnr") or [] if v is not None and v < 30)
    return f"{fmt_db(row['psnr_mean'])} / {fmt_db(row.get('psnr_min'))} / {under} ({row['calls']})"


def quality_tables(rows, model_sets, ns, settings) -> list[str]:
    out = []
    index = {(r["model"], r["n"], r["setting"]): r for r in rows}
    for ms in model_sets:
        out.append(f"#### {ms.label}\n")
        sched = ("sigmas: BasicScheduler(simple, N)" if not ms.flow else
                 "sigmas: the N-step tail of BasicScheduler(simple, N+1) (top sigma < 1), for every method")
        out.append(f"Latent PSNR over the batch in dB: mean / worst image / images under 30 dB (inversion model "
                   f"calls); {sched}.\n")
        out.append("| setting | " + " | ".join(f"N={n}" for n in ns) + " |")
        out.append("|---|" + "---|" * len(ns))
        for st in settings:
            cells = [_cell(index.get((ms.key, n, st.key))) for n in ns]
            if all(c == "-" for c in cells):
                continue
            out.append(f"| {st.label} | " + " | ".join(cells) + " |")
        out.append("")
    return out


def plot(rows, model_sets, path: Path, settings) -> None:
    """``benchmarks/psnr_vs_calls.png``: PSNR against model calls, one panel per model set."""

    setting = {st.key: st for st in settings}
    panels = []
    order = sorted(settings, key=lambda st: st.key != "inversion_sampler")   # drawn first: it repeats Exact's points
    for ms in model_sets:
        series = []
        for st in order:
            pts = sorted((r["calls"], r["psnr_mean"]) for r in rows
                         if r["model"] == ms.key and r["setting"] == st.key and r.get("finite")
                         and r.get("psnr_mean") is not None and r.get("calls"))
            if pts:
                series.append({"label": st.label, "points": pts, "color": st.color, "marker": st.marker,
                               "dash": st.dash, "width": 4 if st.key == "core" else 2})
        notes = [f"non-finite: {setting[r['setting']].label} N={r['n']}" for r in rows
                 if r["model"] == ms.key and not r.get("finite", True)]
        panels.append({"title": ms.label + (" (top sigma < 1)" if ms.flow else ""),
                       "xlabel": "inversion model calls (log scale); points are N = 4, 10, 25, 50",
                       "ylabel": "reconstruction PSNR, latent (dB)", "series": series, "notes": notes})
    png_plot.line_panels(path, panels, title="Exact Inversion nodes in ComfyUI: reconstruction PSNR vs model calls")


def write_report(results: dict, path: Path, bench: "Bench") -> str:
    """Write ``benchmarks/RESULTS.md`` from the results; returns its text."""
    meta = results["meta"]
    lines = [
        "# Host benchmark: the nodes inside ComfyUI",
        "",
        f"- Date: {meta['date']}",
        f"- Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, {meta['machine']['memory']} RAM, "
        f"GPU: {meta['machine']['gpu'] or 'none'}; torch {meta['machine']['torch']} ({meta['threads']} threads), "
        f"Python {meta['machine']['python']}, ComfyUI {meta['comfyui']}",
        f"- Command: `{meta['command']}`",
        f"- Duration: {meta['duration_s'] / 60:.1f} min for the benchmark"
        + (f" ({meta['provision_s']:.0f} s provisioning before it)" if meta.get("provision_s") is not None else "")
        + (f", {meta['cpu_s'] / 60:.1f} CPU-min" if meta.get("cpu_s") else "")
        + f"; ComfyUI start-up in process {meta['startup_s']:.1f} s",
        f"- Load average at start / end: {meta.get('load_start')} / {meta.get('load_end')} (a shared machine: wall "
        "times carry that noise)",
        "",
        "Everything runs through ComfyUI's own PromptExecutor with the pack loaded from `custom_nodes` "
        "(`benchmarks/host_benchmark.py`, in-process like `dev/devkit/harness.py`). Model calls are the INVERSION "
        "stats of each node, cross-checked by a call meter (a stock `model_function_wrapper`) "
        f"({results.get('meter_mismatches', 0)} mismatches).",
        "",
    ]
    head = headline(results, bench)
    if head:
        lines += ["## Headline", ""] + head + [""]
    rows = results.get("quality")
    if rows:
        lines += ["## 1. Reconstruction quality per model call", "",
                  f"Batch of {bench.batch} latents: analytic = {bench.analytic_size}x{bench.analytic_size}x4 "
                  "samples of the Gaussian "
                  "mixture (exact posterior-mean denoiser, SD1.5 / Flux latent format); trained = the 8 held-out "
                  "16x16x4 photo crops of `testbed/data/eval_latents.safetensors` with the committed "
                  "`testbed/learned.py` denoiser (never trained on them). cfg 1. Reconstruction: stock "
                  "SamplerCustom (euler, add_noise off) over the node's SIGMAS from its LATENT; Noise Correct "
                  "through Inverted Sampler (it inverts euler_ancestral). The core peer is BasicScheduler -> "
                  "FlipSigmas -> SamplerCustom(euler, add_noise off) then SamplerCustom(euler, add_noise off, "
                  "the original sigmas). Settings marked in the code as small-N only are run at N = 4, 10. "
                  "RNRI newton also makes 2 backward passes per step (not counted as calls).", "",
                  "![PSNR vs model calls](psnr_vs_calls.png)", ""]
        lines += quality_tables(rows, bench.model_sets_run(results), results["ns"], bench.settings)
        tr = results.get("targets") or []
        if tr:
            lines += ["### Target: >= +15 dB over the core peer at N=4 with <= 40 model calls", "",
                      "Best euler inversion setting (Noise Correct, which inverts euler_ancestral, is left out) with "
                      "at most 40 inversion model calls.", "",
                      "| model | core peer PSNR | best setting with <= 40 calls | its PSNR (calls) | gain | met |",
                      "|---|---|---|---|---|---|"]
            for t in tr:
                gain = "n/a" if t["gain"] is None else f"{t['gain']:+.1f} dB"
                lines.append(f"| {t['model']} | {fmt_db(t['peer_psnr'])} dB | {bench.setting[t['best']].label} | "
                             f"{fmt_db(t['best_psnr'])} dB ({t['best_calls']}) | {gain} | "
                             f"{'yes' if t['met'] else 'NO'} |")
            lines.append("")
        fr = results.get("flow_full")
        if fr:
            lines += ["### Flow models inverted to sigma = 1 (the full schedule)", "",
                      "ComfyUI core's inversion cannot reach sigma = 1 on a flow model: its KSAMPLER returns "
                      "inverse_noise_scaling(sigma_last, x) = x / (1 - sigma_last), a division by zero, so the "
                      "inverted LATENT is inf/NaN. The nodes hand the sigma = 1 latent over through their INVERSION "
                      "/ NOISE outputs (here: Inverted Sampler).", "",
                      "| model | N | core peer | DDIM Invert (target) | Exact Invert (defaults) |",
                      "|---|---|---|---|---|"]
            idx = {(r["model"], r["n"], r["setting"]): r for r in fr}
            for mkey in sorted({r["model"] for r in fr}):
                for n in bench.small_ns:
                    lines.append(f"| {mkey} | {n} | " + " | ".join(_cell(idx.get((mkey, n, k)))
                                                                     for k in ("core", "ddim_target", "exact")) + " |")
            lines.append("")
    ov = results.get("overhead")
    if ov:
        stock_walls = ", ".join(f"{s['wall']:.2f} s" for s in ov["stock"])
        lines += ["## 2. Overhead", "",
                  f"{ov['size']}x{ov['size']} latent, batch 1, the generated one-level SD1.5-shaped UNet (320 "
                  "channels, context 768, fp16 file, run in float32 on CPU) through UNETLoader; 77-token "
                  "conditioning, cfg 1; model calls from the INVERSION stats (equal to the meter's count).", "",
                  "ratio = node wall time / (model calls x t_call), with t_call, the time of one model call, measured "
                  "in the same process in two ways:", "",
                  "- **in the run** (judged against the target): the seconds spent inside the network during the "
                  "node's own run, metered per call by a stock `model_function_wrapper` (`InvTestCallMeter`), divided "
                  "by the calls. The ratio is then node wall / network seconds: everything the node does besides the "
                  "model, measured under the very same machine load. For reference, ComfyUI's own SamplerCustom "
                  f"gives {ov['stock_ratio_in_run']:.3f} on the same measure (its guider and sampler loop).",
                  "- **bracketing stock runs**: the wall (and CPU) time of a one-step stock SamplerCustom (euler, "
                  "add_noise off: the same guider path) run right before and right after the node, averaged "
                  f"(all runs: {stock_walls}). On this shared machine one call drifts by up to 50 % within a minute, "
                  "so these columns scatter in both directions; they are given for completeness.", "",
                  "| node (setting) | N | model calls | wall (s) | in network (s) | **ratio, t_call in the run** | "
                  "t_call stock wall / CPU (s) | ratio, stock wall | ratio, stock CPU | target <= 1.05 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in ov["cases"]:
            rr = r.get("ratio_in_run")
            met = rr is not None and rr <= bench.target_overhead
            lines.append(f"| {r['label']} | {r['steps']} | {r['calls']} | {r['wall']:.2f} | "
                         f"{r['model_seconds']:.2f} | **{'n/a' if rr is None else f'{rr:.3f}'}** | "
                         f"{r['t_call']:.2f} / {r['t_call_cpu']:.2f} | {r['ratio']:.3f} | {r['ratio_cpu']:.3f} | "
                         f"{'yes' if met else 'NO'} |")
        lines.append("")
    mem = results.get("memory")
    if mem:
        lines += ["## 3. Memory of RNRI's gradient path", ""]
        if not mem.get("supported"):
            lines += ["Not measured: /proc/self/clear_refs is not available (needs Linux).", ""]
        else:
            lines += ["Same UNet and conditioning as above, batch 1, 1 inversion step, each node run alone. Peak = "
                      "the peak resident set size while the node runs (VmHWM, reset through /proc/self/clear_refs "
                      "after gc + malloc_trim) minus the resident size before it; retained = resident size after the "
                      "node minus before. torch's CPU tensors are invisible to tracemalloc; RSS sees them. For "
                      f"scale: the UNet's weights are {mem['weights_mib']:.0f} MiB in float32, so a second model copy "
                      "would show up as about that much on top of the plain forward at 8x8, where activations are "
                      "negligible.", "",
                      "| latent | case | forward calls | wall (s) | peak above baseline (MiB) | x plain forward | "
                      "retained (MiB) |", "|---|---|---|---|---|---|---|"]
            for r in mem["cases"]:
                vs = r.get("vs_forward")
                lines.append(f"| {r['size']}x{r['size']} | {r['label']} | {r['calls']} | {r['wall']:.2f} | "
                             f"{r['peak_mib']:.1f} | {'n/a' if vs is None else f'{vs:.2f}'} | "
                             f"{r['retained_mib']:+.1f} |")
            lines.append("")
            lines += [memory_verdict(mem), ""]
    gpu = results.get("gpu")
    if gpu:
        lines += ["## 4. GPU timing (full-size SD1.5 / SDXL UNets, random fp16 weights)", ""]
        if not gpu.get("measured"):
            lines += [f"**{gpu['reason']}.** The code path is in `benchmarks/host_benchmark.py` (`gpu_worker`, "
                      "`InvTestRandomUNet`); on a CUDA host run `python benchmarks/host_benchmark.py --parts gpu` "
                      "with that host's ComfyUI (COMFYUI_DIR / COMFYUI_PYTHON). Never required for CI.", "",
                      "| UNet | latent | ReNoise 4 steps (s) | RNRI newton 4 steps (s) | DDIM 50 steps (s) | "
                      "Exact 50 steps (s) |", "|---|---|---|---|---|---|",
                      "| SD1.5 | 64x64 | not measured | not measured | not measured | not measured |",
                      "| SDXL | 128x128 | not measured | not measured | not measured | not measured |", ""]
        else:
            lines += [f"Device: {gpu['device']}, {gpu['dtype']}.", "",
                      "| UNet | latent | t_call (s) | node | steps | seconds | model calls | peak VRAM (GiB) |",
                      "|---|---|---|---|---|---|---|---|"]
            for arch, a in gpu["archs"].items():
                for r in a["cases"]:
                    pv = r.get("peak_vram_gib")
                    lines.append(f"| {arch} | {a['latent']} | {a['t_call']:.4f} | {r['label']} | {r['steps']} | "
                                 f"{r['seconds']:.2f} | {r['calls']} | {'n/a' if pv is None else f'{pv:.1f}'} |")
            lines.append("")
    text = "\n".join(lines)
    path.write_text(text)
    return text


def memory_verdict(mem: dict) -> str:
    n = mem["small_size"]
    text = (f"Second model copy? Persistent: {'YES' if mem['persistent_copy'] else 'no'} -- at most "
            f"{mem['max_retained_mib']:+.1f} MiB stays resident after any node (RNRI's autograd MODEL is a "
            "ModelPatcher clone sharing the weights). Transient: ")
    if mem["transient_copy"]:
        text += (f"**yes** -- at {n}x{n}, where activations are negligible, the gradient path peaks "
                 f"{mem['newton_extra_small_mib']:.0f} MiB above the plain forward, "
                 f"{mem['newton_extra_small_mib'] / mem['weights_mib']:.1f}x the weights: the per-forward "
                 "`weight.clone()` wrappers of the autograd clone (nodes/autograd_clone.py `autograd_model`) are saved "
                 "for backward, so at least one full copy of the weights lives during every gradient evaluation "
                 "(it scales with the weights: on the 0.5 MiB tiny UNet the same extra is about 1 MiB; on SDXL in "
                 "fp16 it would be about 5 GB of VRAM).")
    else:
        text += (f"no -- at {n}x{n} the gradient path peaks only {mem['newton_extra_small_mib']:.0f} MiB above "
                 f"the plain forward (weights: {mem['weights_mib']:.0f} MiB).")
    return text


def headline(results: dict, bench: "Bench") -> list[str]:
    out = []
    tr = {t["model"]: t for t in results.get("targets") or []}
    for mkey, name in (("learned_eps", "eps"), ("learned_flow", "flow")):
        t = tr.get(mkey)
        if t:
            out.append(f"- Trained model, {name}, N=4: ComfyUI core's FlipSigmas inversion reconstructs at "
                       f"{fmt_db(t['peer_psnr'])} dB; {bench.setting[t['best']].label} at "
                       f"{fmt_db(t['best_psnr'])} dB "
                       f"with {t['best_calls']} model calls ({t['gain']:+.1f} dB; target >= +15 dB at <= 40 calls: "
                       f"{'met' if t['met'] else 'NOT met'}).")
    fr = [r for r in results.get("flow_full") or [] if r["setting"] == "core"]
    if fr:
        broken = all(not r.get("finite", True) for r in fr)
        out.append("- Flow models inverted to sigma = 1: the core peer's latent is " +
                   ("non-finite in every case (division by 1 - sigma = 0)" if broken else "finite in some cases")
                   + "; the nodes reconstruct through their INVERSION output (table in section 1).")
    ov = results.get("overhead")
    if ov:
        worst = max(ov["cases"], key=lambda r: r["ratio_in_run"] or 0)
        out.append(f"- Overhead at 64x64 on the SD1.5-shaped UNet: node wall / (calls x t_call) <= "
                   f"{worst['ratio_in_run']:.3f} for every node measured (worst: {worst['label']}; target <= 1.05: "
                   f"{'met' if worst['ratio_in_run'] <= bench.target_overhead else 'NOT met'}).")
    mem = results.get("memory")
    if mem and mem.get("supported"):
        big = max(mem["sizes"])
        r = next(c for c in mem["cases"] if c["size"] == big and c["key"] == "rnri_newton")
        out.append(f"- RNRI's gradient path peaks at {r['vs_forward']:.2f}x a plain forward's memory ({big}x{big}); "
                   f"no persistent model copy; "
                   + ("a transient copy of the weights during each gradient evaluation (section 3)."
                      if mem["transient_copy"] else "no transient weight copy."))
    gpu = results.get("gpu")
    if gpu and not gpu.get("measured"):
        out.append("- GPU timings: not measured (no GPU in this environment).")
    return out
