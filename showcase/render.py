"""The showcase's outputs, drawn with Pillow only: the PNG grid, the convergence plot, the markdown table."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

BACKGROUND = (255, 255, 255)
INK = (30, 30, 30)
FAINT = (215, 215, 215)


def font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:             # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def text_width(draw: ImageDraw.ImageDraw, text: str, fnt) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=fnt)
    return right - left


def psnr_8bit(reference: np.ndarray, estimate: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - estimate.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def fmt_psnr(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.1f}"


# ------------------------------------------------------------------------------------------------ grid
def grid(path: Path, photos: list[str], originals: list[Image.Image], columns: list[tuple[str, list, list]],
         footer: str) -> None:
    """columns = [(label, [image per photo], [psnr per photo])]; the first column shows the originals."""
    tile = originals[0].width
    scale = max(1, 128 // tile)
    cell = tile * scale
    pad, header, caption = 10, 30, 20
    f_head, f_cap = font(15), font(13)
    n_cols = 1 + len(columns)
    width = pad + n_cols * (cell + pad)
    height = header + len(photos) * (cell + caption + pad) + 28
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    labels = ["Original"] + [c[0] for c in columns]
    for j, label in enumerate(labels):
        x = pad + j * (cell + pad)
        draw.text((x + (cell - text_width(draw, label, f_head)) // 2, 8), label, fill=INK, font=f_head)
    for i, name in enumerate(photos):
        y = header + i * (cell + caption + pad)
        tiles = [(originals[i], name)] + [(images[i], f"{fmt_psnr(psnrs[i])} dB") for _, images, psnrs in columns]
        for j, (image, text) in enumerate(tiles):
            x = pad + j * (cell + pad)
            canvas.paste(image.convert("RGB").resize((cell, cell), Image.NEAREST), (x, y))
            draw.text((x + (cell - text_width(draw, text, f_cap)) // 2, y + cell + 3), text, fill=INK, font=f_cap)
    draw.text((pad, height - 22), footer, fill=(90, 90, 90), font=font(12))
    canvas.save(path)


# ------------------------------------------------------------------------------------------------ plot
def convergence(path: Path, series: list[tuple[str, tuple, list[float]]], title: str, xlabel: str) -> None:
    """series = [(label, rgb, y per inverse step)], drawn on a log10 y axis."""
    width, height = 920, 520
    left, right, top, bottom = 80, 200, 46, 64
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    values = [v for _, _, ys in series for v in ys if v is not None and v > 0 and math.isfinite(v)]
    lo = math.floor(math.log10(max(min(values), 1e-9))) if values else -6
    hi = math.ceil(math.log10(max(values))) if values else 0
    if hi <= lo:
        hi = lo + 1
    steps = max(len(ys) for _, _, ys in series)
    px0, px1, py0, py1 = left, width - right, top, height - bottom

    def xy(i: int, v: float) -> tuple[float, float]:
        x = px0 + (px1 - px0) * (i / max(1, steps - 1))
        y = py1 - (py1 - py0) * (math.log10(v) - lo) / (hi - lo)
        return x, y

    f_tick, f_label = font(13), font(15)
    for e in range(lo, hi + 1):
        _, y = xy(0, 10.0 ** e)
        draw.line([(px0, y), (px1, y)], fill=FAINT)
        label = f"1e{e}"
        draw.text((px0 - 8 - text_width(draw, label, f_tick), y - 8), label, fill=INK, font=f_tick)
    for i in range(steps):
        x, _ = xy(i, 10.0 ** lo)
        draw.line([(x, py1), (x, py1 + 5)], fill=INK)
        label = str(i + 1)
        draw.text((x - text_width(draw, label, f_tick) / 2, py1 + 8), label, fill=INK, font=f_tick)
    draw.rectangle([px0, py0, px1, py1], outline=INK)
    for _label, color, ys in series:
        points = [xy(i, v) for i, v in enumerate(ys) if v is not None and v > 0 and math.isfinite(v)]
        if len(points) > 1:
            draw.line(points, fill=color, width=3)
        for x, y in points:
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
    for k, (label, color, _) in enumerate(series):
        y = py0 + 10 + 26 * k
        draw.line([(px1 + 16, y + 8), (px1 + 46, y + 8)], fill=color, width=3)
        draw.ellipse([px1 + 27, y + 4, px1 + 35, y + 12], fill=color)
        draw.text((px1 + 54, y), label, fill=INK, font=f_label)
    draw.text((px0, 14), title, fill=INK, font=font(16))
    draw.text(((px0 + px1) / 2 - text_width(draw, xlabel, f_label) / 2, height - 30), xlabel, fill=INK,
              font=f_label)
    canvas.save(path)


# ------------------------------------------------------------------------------------------------ table
def quality(values: list[float]) -> str:
    """``mean / worst / images under 30 dB`` of per-image PSNRs."""
    return f"{fmt_psnr(sum(values) / len(values))} / {fmt_psnr(min(values))} / {sum(1 for v in values if v < 30)}"


def table(rows: list[dict], photos: list[str], header: str) -> str:
    lines = [header, "",
             "| Method | Latent PSNR (dB): mean / worst / under 30 | Pixel PSNR (dB): mean / worst / under 30 "
             "| Model calls | Inversion (s) | Sample back (s) | Worst step landing error |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {quality(r['latent_psnr'])} | {quality(r['pixel_psnr'])} | "
                     f"{r['model_calls']} | {r['invert_seconds']:.2f} | {r['sample_seconds']:.2f} | "
                     f"{r['worst_landing_error']:.1e} |")
    lines += ["", "Pixel PSNR per photo (dB, 8-bit):", "",
              "| Method | " + " | ".join(photos) + " |", "|---|" + "---:|" * len(photos)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt_psnr(v) for v in r["pixel_psnr"]) + " |")
    return "\n".join(lines) + "\n"
