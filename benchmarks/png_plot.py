"""A small line-plot writer on Pillow (the ComfyUI host ships Pillow, not matplotlib).

``line_panels(path, panels, title)``: a grid of panels, each ``{"title", "xlabel", "ylabel", "series": [{"label",
"points": [(x, y), ...], "color", "width", "marker", "dash"}], "logx": True}``; points with a non-finite y are
skipped (and listed under the panel). Log-2 x axis by default, linear y. One shared legend at the bottom.
"""
from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

PALETTE = [
    (0, 0, 0), (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
    (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 90, 50), (120, 0, 120), (200, 160, 0),
    (0, 0, 140), (255, 80, 160),
]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    start = math.ceil(lo / step) * step
    ticks, t = [], start
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _dashed_line(draw, p, q, fill, width, dash):
    if not dash:
        draw.line([p, q], fill=fill, width=width)
        return
    length = math.hypot(q[0] - p[0], q[1] - p[1])
    if length == 0:
        return
    on, off = dash
    ux, uy = (q[0] - p[0]) / length, (q[1] - p[1]) / length
    s = 0.0
    while s < length:
        e = min(s + on, length)
        draw.line([(p[0] + ux * s, p[1] + uy * s), (p[0] + ux * e, p[1] + uy * e)], fill=fill, width=width)
        s = e + off


def _marker(draw, x, y, kind, color, r=5):
    if kind == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=color)
    elif kind == "triangle":
        draw.polygon([(x, y - r - 1), (x - r, y + r), (x + r, y + r)], fill=color)
    elif kind == "diamond":
        draw.polygon([(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], fill=color)
    else:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color)


def line_panels(path, panels: list[dict], title: str = "", columns: int = 2, panel_size=(760, 520)) -> None:
    rows = math.ceil(len(panels) / columns)
    pw, ph = panel_size
    labels = []
    for panel in panels:
        for s in panel["series"]:
            if s["label"] not in [lab for lab, _ in labels]:
                labels.append((s["label"], s))
    legend_cols = 3
    legend_rows = math.ceil(len(labels) / legend_cols)
    top = 50 if title else 10
    width, height = columns * pw, top + rows * ph + 30 + legend_rows * 24
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    f_title, f_axis, f_small = _font(22), _font(15), _font(13)
    if title:
        draw.text((width / 2, 14), title, fill="black", font=f_title, anchor="ma")

    for k, panel in enumerate(panels):
        ox, oy = (k % columns) * pw, top + (k // columns) * ph
        left, right, ptop, bottom = ox + 70, ox + pw - 20, oy + 34, oy + ph - 70
        pts = [(x, y) for s in panel["series"] for x, y in s["points"] if y is not None and math.isfinite(y) and x > 0]
        logx = panel.get("logx", True)
        fx = (lambda v: math.log2(v)) if logx else (lambda v: v)
        if pts:
            xs, ys = [fx(x) for x, _ in pts], [y for _, y in pts]
            x0, x1 = min(xs), max(xs)
            y0, y1 = min(ys), max(ys)
        else:
            x0, x1, y0, y1 = 0.0, 1.0, 0.0, 1.0
        if x1 - x0 < 1e-9:
            x0, x1 = x0 - 1, x1 + 1
        if y1 - y0 < 1e-9:
            y0, y1 = y0 - 1, y1 + 1
        padx, pady = 0.04 * (x1 - x0), 0.06 * (y1 - y0)
        x0, x1, y0, y1 = x0 - padx, x1 + padx, y0 - pady, y1 + pady

        def px(v):
            return left + (fx(v) - x0) / (x1 - x0) * (right - left)

        def py(v):
            return bottom - (v - y0) / (y1 - y0) * (bottom - ptop)

        draw.text(((left + right) / 2, oy + 8), panel.get("title", ""), fill="black", font=f_axis, anchor="ma")
        for yt in _nice_ticks(y0, y1):
            yy = py(yt)
            draw.line([(left, yy), (right, yy)], fill=(225, 225, 225))
            draw.text((left - 6, yy), f"{yt:g}", fill="black", font=f_small, anchor="rm")
        if logx:
            e0, e1 = math.ceil(x0), math.floor(x1)
            xticks = [2.0 ** e for e in range(e0, e1 + 1)]
        else:
            xticks = _nice_ticks(x0, x1)
        for xt in xticks:
            xx = px(xt)
            draw.line([(xx, ptop), (xx, bottom)], fill=(225, 225, 225))
            draw.text((xx, bottom + 6), f"{xt:g}", fill="black", font=f_small, anchor="ma")
        draw.rectangle([left, ptop, right, bottom], outline="black")
        draw.text(((left + right) / 2, bottom + 26), panel.get("xlabel", ""), fill="black", font=f_axis, anchor="ma")
        ylabel = panel.get("ylabel", "")
        if ylabel:
            tmp = Image.new("RGBA", (int(bottom - ptop), 22), (255, 255, 255, 0))
            ImageDraw.Draw(tmp).text((tmp.width / 2, 2), ylabel, fill="black", font=f_axis, anchor="ma")
            tmp = tmp.rotate(90, expand=True)
            img.paste(tmp, (ox + 4, int(ptop)), tmp)
        for s in panel["series"]:
            color, w = s.get("color", (0, 0, 0)), s.get("width", 2)
            good = [(x, y) for x, y in s["points"] if y is not None and math.isfinite(y) and x > 0]
            for (xa, ya), (xb, yb) in zip(good, good[1:], strict=False):
                _dashed_line(draw, (px(xa), py(ya)), (px(xb), py(yb)), color, w, s.get("dash"))
            for x, y in good:
                _marker(draw, px(x), py(y), s.get("marker", "circle"), color)
        notes = panel.get("notes", [])
        for i, note in enumerate(notes[:3]):
            draw.text((left + 6, ptop + 6 + 16 * i), note, fill=(170, 0, 0), font=f_small)

    ly = top + rows * ph + 20
    cw = width / legend_cols
    for i, (label, s) in enumerate(labels):
        cx, cy = 20 + (i % legend_cols) * cw, ly + (i // legend_cols) * 24
        color = s.get("color", (0, 0, 0))
        _dashed_line(draw, (cx, cy + 8), (cx + 36, cy + 8), color, s.get("width", 2), s.get("dash"))
        _marker(draw, cx + 18, cy + 8, s.get("marker", "circle"), color)
        draw.text((cx + 44, cy + 1), label, fill="black", font=f_small)
    img.save(path, optimize=True)
