"""``python -m showcase``: see the package docstring. Options: ``--help``."""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from . import client, edits, render
from .methods import METHODS
from .prompts import method_prompt, original_prompt

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = "camera,chelsea,coins,astronaut"


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m showcase", description=__doc__)
    p.add_argument("--photos", default=DEFAULT_PHOTOS,
                   help="comma-separated scikit-image photos (camera, chelsea and coins were never trained on)")
    p.add_argument("--size", type=int, default=64, help="pixel size of the square photos (multiple of 8)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps inverted (euler, 'simple' schedule)")
    p.add_argument("--scheduler", default="simple")
    p.add_argument("--threads", type=int, default=int(os.environ.get("SHOWCASE_THREADS", "1")),
                   help="torch threads of the ComfyUI server")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "out" / "showcase")
    p.add_argument("--docs", default=str(REPO_ROOT / "docs"),
                   help="where grid.png / convergence.png / table.md are copied for the README ('' to skip)")
    p.add_argument("--methods", default=",".join(m.key for m in METHODS),
                   help="subset of " + ",".join(m.key for m in METHODS))
    p.add_argument("--edit-methods", default=",".join(m.key for m in edits.EDIT_METHODS),
                   help="edit section: subset of " + ",".join(m.key for m in edits.EDIT_METHODS) + " ('' = none)")
    p.add_argument("--edit-steps", type=int, default=10, help="steps of the edit section (digits model)")
    p.add_argument("--edit-source", type=int, default=3, help="digit to edit")
    p.add_argument("--edit-target", type=int, default=8, help="digit to edit it into")
    p.add_argument("--edit-count", type=int, default=6, help="held-out digits edited per method")
    return p.parse_args(argv)


def _saved_images(server_output: Path, outputs: dict, node: str) -> list[Image.Image]:
    files = outputs[node]["images"]
    return [Image.open(server_output / f["subfolder"] / f["filename"]).convert("L") for f in files]


def main(argv=None) -> int:
    args = parse_args(argv)
    t_command = float(os.environ.get("SHOWCASE_T0", time.time()))
    t0 = time.time()
    photos = [p.strip() for p in args.photos.split(",") if p.strip()]
    chosen = [m for key in args.methods.split(",") for m in METHODS if m.key == key.strip()]
    if not chosen:
        sys.exit(f"no method in {args.methods!r}")
    chosen_edits = [m for key in args.edit_methods.split(",") for m in edits.EDIT_METHODS if m.key == key.strip()]
    photos_arg = ",".join(photos)
    printer = client.ProgressPrinter()
    out = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)

    base = Path(tempfile.mkdtemp(prefix="exact_inversion_showcase_"))
    server = client.start_server(base, args.threads)
    printer.line(f"showcase: {len(photos)} photos at {args.size}x{args.size} px ({args.size // 2}x{args.size // 2} "
                 f"latents), {args.steps} steps, {len(chosen)} methods; ComfyUI at {client.ch.comfyui_dir()} "
                 f"({args.threads} torch thread{'s' if args.threads > 1 else ''})")
    try:
        t = time.time()
        server.wait_ready()
        versions = client.server_versions(server)
        printer.line(f"[server] ComfyUI {versions['comfyui']} ready in {time.time() - t:.1f} s "
                     f"(torch {versions['torch']})")
        for line in server.import_failures():
            if client.PACK_LINK in line or client.DEMO_LINK in line:
                raise RuntimeError(f"{line}\n{server.log_tail()}")

        total_weight = sum(m.calls_per_step for m in chosen) + 2.0 * len(chosen)   # + sample back + report
        done_weight, t_methods = 0.0, None

        def eta() -> str:
            if not done_weight or t_methods is None:
                return ""
            rate = (time.time() - t_methods) / done_weight
            return f", ETA {rate * (total_weight - done_weight):.0f} s"

        n = len(chosen) + 1

        def status_for(step: int, label: str):
            def status(node, value, total, elapsed):
                bar = ""
                if value is not None:
                    filled = int(20 * value / total)
                    bar = f" [{'#' * filled}{'.' * (20 - filled)}] {value}/{total}"
                return f"[{step}/{n}] {label}: {node}{bar} {elapsed:.1f} s{eta()}"
            return status

        names = {"model": "loading the learned model", "photos": "loading photos", "decode": "decoding",
                 "save": "saving", "invert": "inverting (model calls)", "sample_back": "sampling back (steps)",
                 "report": "measuring the landing error per step"}
        run = client.run_prompt(server, original_prompt(photos_arg, args.size), "original",
                                status_for(1, "original"), printer, names)
        server_out = base / "output"
        originals = _saved_images(server_out, run.outputs, "save")
        for name, image in zip(photos, originals, strict=True):
            image.save(out / "images" / f"{name}_original.png")
        printer.line(f"[1/{n}] original: {len(originals)} photos loaded in {run.seconds:.1f} s")

        rows, columns, series = [], [], []
        t_methods = time.time()
        for k, method in enumerate(chosen, start=2):
            prompt = method_prompt(method, photos_arg, args.size, args.steps, args.scheduler)
            run = client.run_prompt(server, prompt, method.label, status_for(k, method.label), printer, names)
            report = run.outputs["report"]["report"][0]
            summary = (run.outputs.get("invert", {}).get("inversion") or [{}])[0]   # the invert node's own ui
            images = _saved_images(server_out, run.outputs, "save")
            pixel = [render.psnr_8bit(np.asarray(a), np.asarray(b)) for a, b in zip(originals, images, strict=True)]
            for name, image in zip(photos, images, strict=True):
                image.save(out / "images" / f"{name}_{method.key}.png")
            landing = report["landing_error"]
            per_step = [statistics.fmean(step["error"]) for step in landing]
            row = {
                "key": method.key, "label": method.label, "node": method.node, "params": method.params,
                "model_calls": summary.get("model_calls", report["model_calls"]),
                "node_summary": summary,
                "invert_seconds": run.node_seconds.get("invert", float("nan")),
                "sample_seconds": run.node_seconds.get("sample_back", float("nan")),
                "prompt_seconds": run.seconds,
                "latent_psnr": report["latent_psnr"], "latent_psnr_mean": statistics.fmean(report["latent_psnr"]),
                "pixel_psnr": pixel, "pixel_psnr_mean": statistics.fmean(pixel),
                "landing_error_per_step": per_step, "worst_landing_error": max(max(s["error"]) for s in landing),
                "solver_steps": report["solver_steps"], "notes": report["notes"], "settings": report["settings"],
            }
            rows.append(row)
            columns.append((method.label, images, pixel))
            series.append((method.label, method.color, per_step))
            done_weight += method.calls_per_step + 2.0
            printer.line(f"[{k}/{n}] {method.label}: PSNR {row['pixel_psnr_mean']:.1f} dB, "
                         f"{row['model_calls']} model calls, inversion {row['invert_seconds']:.1f} s, "
                         f"sampling back {row['sample_seconds']:.1f} s{eta()}")
        edit_rows, edit_images = [], []
        edit_names = {"model": "loading the digits model", "digits": "loading digits", "invert": "inverting",
                      "reconstruction": "reconstructing", "edit_1": "editing (cfg 1)", "edit_3": "editing (cfg 3)",
                      "edit_7.5": "editing (cfg 7.5)"}
        for k, method in enumerate(chosen_edits, start=1):
            label = f"edit {method.label}"
            prompt = edits.edit_prompt(method, args.edit_source, args.edit_target, args.edit_count, args.edit_steps,
                                       args.scheduler)
            run = client.run_prompt(server, prompt, label, status_for(k, label), printer, edit_names)
            row = edits.summarise(run.outputs, method)
            row["prompt_seconds"] = run.seconds
            edit_rows.append(row)
            imgs = {name: _saved_images(server_out, run.outputs, f"save_{name}") for name in ("source", "rec", "edit")}
            edit_images.append(imgs)
            shown = row["edits"][f"{edits.SHOWN_CFG:g}"]
            printer.line(f"[edit {k}/{len(chosen_edits)}] {method.label}: cfg {edits.SHOWN_CFG:g} success "
                         f"{shown['success_mean']:.2f}, PSNR to source {shown['source_psnr_mean']:.1f} dB, "
                         f"reconstruction {statistics.fmean(row['reconstruction_psnr']):.1f} dB, "
                         f"{row['model_calls']} model calls, {run.seconds:.1f} s")
    except BaseException:
        printer.line(f"showcase failed; ComfyUI log tail:\n{server.log_tail(40)}")
        raise
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)

    total = time.time() - t_command
    header = (f"Showcase: {len(photos)} scikit-image photographs ({', '.join(photos)}) at {args.size}x{args.size} px, "
              f"inverted with the project's learned demo model ({args.steps} euler steps, '{args.scheduler}' "
              f"schedule, eps sampling, cfg 1) through real ComfyUI {versions['comfyui']} prompts and sampled back "
              f"with Inverted Sampler; CPU, {args.threads} torch thread(s). Model calls: the inversion's. Seconds: "
              f"node execution. Landing error: relative RMS error of one forward step from each inverted latent to "
              f"the latent below it (0 = exact). Whole command: {total:.0f} s.")
    table_md = render.table(rows, photos, header)
    if edit_rows:
        edit_header = (f"Edits: {args.edit_count} held-out handwritten {args.edit_source}s (scikit-learn's digits, "
                       f"16x16 px) inverted with the prompt '{args.edit_source}' (negative: the empty prompt, cfg 1) "
                       f"on the conditional digits demo model ({args.edit_steps} steps, '{args.scheduler}', eps) and "
                       f"sampled back by Inverted Sampler with the prompt '{args.edit_target}'; img2img: SamplerCustom "
                       "with fresh noise. Success: the demo classifier's probability of the target digit; PSNR to "
                       "source: pixels (what the edit keeps of the stroke's place and weight). Model calls: the "
                       "inversion's.")
        table_md += "\n\n" + edits.table(edit_rows, edit_header)
        sources = edit_images[0]["source"]
        edits.grid(out / "edits.png", sources,
                   [(r["label"], im["rec"], r["reconstruction_psnr"], im["edit"],
                     r["edits"][f"{edits.SHOWN_CFG:g}"]["success"])
                    for r, im in zip(edit_rows, edit_images, strict=True)],
                   f"{args.edit_source} -> {args.edit_target}, {args.edit_steps} steps, edit cfg "
                   f"{edits.SHOWN_CFG:g}; captions: reconstruction PSNR, classifier p(target); ComfyUI "
                   f"{versions['comfyui']}")
        edits.tradeoff_plot(out / "edit_tradeoff.png", edit_rows, chosen_edits,
                            f"Edits {args.edit_source} -> {args.edit_target} on the digits demo model: preservation "
                            "vs success")
    (out / "table.md").write_text(table_md)
    footer = (f"{args.steps} euler steps; PSNR on 8-bit pixels vs the original; "
              f"learned demo model, ComfyUI {versions['comfyui']}")
    render.grid(out / "grid.png", photos, originals, columns, footer)
    render.convergence(out / "convergence.png", series,
                       "Landing error of each inverse step (relative RMS, mean over photos; lower = more exact)",
                       "inverse step (1 = lowest noise level)")
    results = {"photos": photos, "size": args.size, "steps": args.steps, "scheduler": args.scheduler,
               "threads": args.threads, "versions": versions, "seconds_total": total,
               "seconds_showcase": time.time() - t0, "methods": rows, "edits": edit_rows}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=lambda v: None if (
        isinstance(v, float) and not math.isfinite(v)) else str(v)) + "\n")
    docs = Path(args.docs) if args.docs else None
    if docs is not None:
        docs.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "grid.png", docs / "showcase_grid.png")
        shutil.copyfile(out / "convergence.png", docs / "showcase_convergence.png")
        shutil.copyfile(out / "table.md", docs / "showcase_table.md")
        if edit_rows:
            shutil.copyfile(out / "edits.png", docs / "showcase_edits.png")
            shutil.copyfile(out / "edit_tradeoff.png", docs / "showcase_edit_tradeoff.png")
    print()
    print(table_md)
    print(f"wrote {out}/grid.png, table.md, convergence.png, results.json"
          + (", edits.png, edit_tradeoff.png" if edit_rows else "")
          + (f"; copied to {docs}/showcase_*" if docs is not None else ""))
    print(f"showcase finished in {total:.0f} s (this command), {time.time() - t0:.0f} s after provisioning")
    return 0
