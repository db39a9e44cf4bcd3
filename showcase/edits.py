"""The showcase's edit section: held-out handwritten digits inverted with their prompt on the conditional digits
demo model (``testbed/digits.py``) and sampled back with another prompt, through real ComfyUI prompts.

Per method: one prompt that inverts ``count`` digits of ``source`` (prompt e.g. "three", negative the empty
prompt, cfg 1), samples them back with the source prompt (reconstruction) and with the target prompt at cfg 1, 3
and 7.5 (edits, Inverted Sampler), and reports with Edit Report (demo_pack): the classifier's probability of the
target digit (success) and the pixel PSNR to the source (what the edit keeps). img2img is the no-inversion
baseline: SamplerCustom with fresh noise over the same schedule.
"""
from __future__ import annotations

import importlib.util
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw

from . import render

REPO_ROOT = Path(__file__).resolve().parent.parent
CFGS = (1.0, 3.0, 7.5)
SHOWN_CFG = 3.0


@dataclass(frozen=True)
class EditMethod:
    key: str
    label: str
    node: str                   # "" = img2img (no inversion)
    params: dict = field(default_factory=dict)
    color: tuple = (0, 0, 0)
    marker: str = "circle"


EDIT_METHODS = (
    EditMethod("ddim", "DDIM", "ExactInvDDIMInvert", {"convention": "target"}, (214, 39, 40)),
    EditMethod("renoise_paper", "ReNoise (regularised, paper)", "ExactInvReNoiseInvert",
               {"iterations": 9, "average": True, "average_start": 8, "average_end": 10, "first_step": "first",
                "regularize": True, "lambda_pair": 20.0, "lambda_kl": 0.065, "seed": 0}, (255, 127, 14)),
    EditMethod("renoise", "ReNoise (default)", "ExactInvReNoiseInvert",
               {"iterations": 9, "average": True, "average_start": 8, "average_end": 10, "first_step": "first",
                "regularize": False, "lambda_pair": 20.0, "lambda_kl": 0.065, "seed": 0}, (188, 189, 34)),
    EditMethod("exact", "Exact Invert", "ExactInvExactInvert",
               {"tolerance": 1e-3, "max_calls": 30, "memory": 3, "fallback": True}, (44, 160, 44), "diamond"),
    EditMethod("edit_friendly", "Noise Correct (edit-friendly)", "ExactInvNoiseCorrect",
               {"sampler_name": "euler_ancestral", "eta": 1.0, "s_noise": 1.0, "noise_seed": 0,
                "correction": "exact", "solver": "edit_friendly", "iterations": 9}, (120, 0, 120), "square"),
    EditMethod("img2img", "img2img (fresh noise)", "", {}, (31, 119, 180), "triangle"),
    EditMethod("ode", "ODE Invert (recommended for edits)", "ExactInvODEInvert",
               {"bottom_substeps": 8, "substeps": 1, "bottom_floor": 0.05, "mirror": "auto"}, (0, 90, 50), "diamond"),
)


def edit_prompt(method: EditMethod, source: int, target: int, count: int, steps: int,
                scheduler: str = "simple") -> dict:
    """Invert ``count`` digits of class ``source`` with ``method``, reconstruct, edit into ``target`` at CFGS."""
    p = {
        "model": {"class_type": "InvDemoDigitsModel", "inputs": {"sampling": "eps"}},
        "digits": {"class_type": "InvDemoDigitLatent", "inputs": {"digit": source, "count": count}},
        "src_prompt": {"class_type": "InvDemoDigitPrompt", "inputs": {"text": f"a {source}"}},
        "tgt_prompt": {"class_type": "InvDemoDigitPrompt", "inputs": {"text": f"a {target}"}},
        "empty": {"class_type": "InvDemoDigitPrompt", "inputs": {"text": ""}},
    }

    def sampler(name, prompt, cfg):
        if method.node:
            p[name] = {"class_type": "ExactInvInvertedSampler", "inputs": {
                "model": ["model", 0], "positive": [prompt, 0], "negative": ["empty", 0], "cfg": cfg,
                "inversion": ["invert", 1], "edit_strength": 1.0}}
        else:
            p[name] = {"class_type": "SamplerCustom", "inputs": {
                "model": ["model", 0], "add_noise": True, "noise_seed": 1, "cfg": cfg, "positive": [prompt, 0],
                "negative": ["empty", 0], "sampler": ["euler", 0], "sigmas": ["sigmas", 0],
                "latent_image": ["digits", 0]}}
        return [name, 0]

    if method.node:
        p["invert"] = {"class_type": method.node, "inputs": {
            "model": ["model", 0], "positive": ["src_prompt", 0], "negative": ["empty", 0], "latent": ["digits", 0],
            "steps": steps, "scheduler": scheduler, "cfg": 1.0, "denoise": 1.0, **method.params}}
    else:
        p["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": ["model", 0], "scheduler": scheduler,
                                                                   "steps": steps, "denoise": 1.0}}
        p["euler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    rec = sampler("reconstruction", "src_prompt", 1.0)
    for cfg in CFGS:
        edit = sampler(f"edit_{cfg:g}", "tgt_prompt", cfg)
        p[f"report_{cfg:g}"] = {"class_type": "InvDemoEditReport", "inputs": {
            "source": ["digits", 0], "reconstruction": rec, "edited": edit, "source_digit": source,
            "target_digit": target, "label": method.label}}
    for name, link in (("source", ["digits", 0]), ("rec", rec), ("edit", [f"edit_{SHOWN_CFG:g}", 0])):
        p[f"decode_{name}"] = {"class_type": "InvDemoLatentToPhoto", "inputs": {"latent": link}}
        p[f"save_{name}"] = {"class_type": "SaveImage", "inputs": {
            "images": [f"decode_{name}", 0], "filename_prefix": f"showcase/edit_{method.key}_{name}"}}
    return p


def summarise(outputs: dict, method: EditMethod) -> dict:
    row = {"key": method.key, "label": method.label, "node": method.node or "SamplerCustom (add_noise)",
           "model_calls": (outputs.get("invert", {}).get("inversion") or [{}])[0].get("model_calls", 0),
           "edits": {}}
    for cfg in CFGS:
        r = outputs[f"report_{cfg:g}"]["edit"][0]
        row["reconstruction_psnr"] = r["reconstruction_psnr"]
        row["edits"][f"{cfg:g}"] = {
            "success_mean": statistics.fmean(r["success"]), "success_worst": min(r["success"]),
            "source_psnr_mean": statistics.fmean(r["source_psnr"]), "source_psnr_worst": min(r["source_psnr"]),
            "centroid_shift_mean": statistics.fmean(r["centroid_shift"]),
            "ink_ratio_mean": statistics.fmean(r["ink_ratio"]), "success": r["success"],
            "source_psnr": r["source_psnr"]}
    return row


def table(rows: list[dict], header: str) -> str:
    lines = [header, "", "| Method | Model calls | Reconstruction PSNR mean / worst (dB) | "
             + " | ".join(f"cfg {c:g}: success mean / worst, PSNR to source (dB)" for c in CFGS) + " |",
             "|---|---:|---:|" + "---:|" * len(CFGS)]
    for r in rows:
        rec = r["reconstruction_psnr"]
        cells = [f"{e['success_mean']:.2f} / {e['success_worst']:.2f}, {e['source_psnr_mean']:.1f}"
                 for e in (r["edits"][f"{c:g}"] for c in CFGS)]
        lines.append(f"| {r['label']} | {r['model_calls']} | {statistics.fmean(rec):.1f} / {min(rec):.1f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def grid(path: Path, sources: list[Image.Image], results: list[tuple[str, list, list, list, list]],
         footer: str) -> None:
    """Rows: the sources, then per method its reconstructions and its edits (cfg SHOWN_CFG), with captions."""
    scale = max(1, 64 // sources[0].width)
    cell = sources[0].width * scale
    pad, label_w, caption = 8, 330, 16
    f_lab, f_cap = render.font(14), render.font(11)
    n_rows = 1 + 2 * len(results)
    width = label_w + len(sources) * (cell + pad) + pad
    height = pad + n_rows * (cell + caption + pad) + 26
    canvas = Image.new("RGB", (width, height), render.BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    rows = [("source", sources, [""] * len(sources))]
    for label, recs, rec_psnr, edits, success in results:
        rows.append((f"{label}: reconstruction", recs, [f"{render.fmt_psnr(v)} dB" for v in rec_psnr]))
        rows.append((f"{label}: edit", edits, [f"p={v:.2f}" for v in success]))
    for i, (label, images, captions) in enumerate(rows):
        y = pad + i * (cell + caption + pad)
        draw.text((pad, y + cell // 2 - 8), label, fill=render.INK, font=f_lab)
        for j, (image, text) in enumerate(zip(images, captions, strict=True)):
            x = label_w + j * (cell + pad)
            canvas.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
            draw.text((x + (cell - render.text_width(draw, text, f_cap)) // 2, y + cell + 2), text,
                      fill=render.INK, font=f_cap)
    draw.text((pad, height - 20), footer, fill=(90, 90, 90), font=render.font(12))
    canvas.save(path)


def tradeoff_plot(path: Path, rows: list[dict], methods: list[EditMethod], title: str) -> None:
    spec = importlib.util.spec_from_file_location("exact_inversion_png_plot", REPO_ROOT / "benchmarks" / "png_plot.py")
    png_plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(png_plot)
    by_key = {m.key: m for m in methods}
    series = []
    for r in rows:
        m = by_key[r["key"]]
        pts = [(r["edits"][f"{c:g}"]["success_mean"], r["edits"][f"{c:g}"]["source_psnr_mean"]) for c in CFGS]
        series.append({"label": r["label"], "points": pts, "color": m.color, "marker": m.marker})
    png_plot.line_panels(path, [{"title": f"points: cfg {', '.join(f'{c:g}' for c in CFGS)}",
                                 "xlabel": "edit success (classifier: probability of the target digit, mean)",
                                 "ylabel": "preservation: pixel PSNR to the source (dB, mean)", "series": series,
                                 "logx": False}], title=title, columns=1, panel_size=(900, 560))
