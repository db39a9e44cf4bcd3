"""Draw the decision guide ``docs/choosing_a_node.png``: which node to use, with its settings and measured figures.

The picture is a flow chart for the top of the README and the node help pages. Its questions: is the sampler
stochastic or distilled (euler_ancestral, lcm; SDXL-Turbo, LCM-LoRA), reconstruct or edit, how many model calls per
step the edit may cost, and whether the image is sampled back by the Inverted Sampler or by a stock sampler
(LATENT -> KSamplerAdvanced / SamplerCustom; NOISE -> SamplerCustomAdvanced for flow models). Every path ends in one
node with its settings.

Every figure in it is read from the edit front benchmark's JSON (``benchmarks/edit_front.py`` writes
``benchmarks/edit_front.json``): the rows at N = 10 steps, ground truth "hard", source "data", for the eps / v
("ve") and flow parametrizations; edits at cfg 1 with the stored residuals (key "1/all"). Nothing measured is typed
in here. A missing row or key stops the script with a message naming it. Needs Pillow (the provisioned host venv
has it):

    .cache/comfy-host/venv/bin/python scripts/make_decision_guide.py            # write docs/choosing_a_node.png
    .cache/comfy-host/venv/bin/python scripts/make_decision_guide.py --check    # exit 1 if the picture differs
    .cache/comfy-host/venv/bin/python scripts/make_decision_guide.py --front other.json --out /tmp/guide.png

``--check`` compares pixels (the committed PNG decoded against the one this script would write), not bytes.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parent.parent
FRONT = REPO_ROOT / "benchmarks" / "edit_front.json"
OUT = REPO_ROOT / "docs" / "choosing_a_node.png"
MAX_BYTES = 120_000

# Which rows of the edit front the picture quotes (the benchmark's own names).
STEPS, TRUTH, SOURCE, EDIT_KEY = 10, "hard", "data", "1/all"
PARAMS = (("ve", "eps / v"), ("flow", "flow"))
ODE, DDIM, EXACT = "ode8", "ddim", "exact"

# Layout (px) and colours.
WIDTH = 1000
SPINE = (16, 216)        # the question column
MID = (246, 386)         # the budget question (edit branch)
LEAF = (492, 985)        # the answers
PAD = 10
INK, GREY, NODE_INK = (20, 20, 20), (90, 90, 90), (0, 60, 140)
Q_FILL, Q_EDGE = (255, 246, 214), (190, 150, 40)
LEAF_FILL, LEAF_EDGE = (226, 242, 226), (60, 130, 60)
ALT_FILL, ALT_EDGE = (238, 238, 238), (140, 140, 140)


class MissingData(LookupError):
    """The benchmark JSON lacks a row or key the picture quotes."""


# ============================================================================================ figures
def find_row(rows: list[dict], method: str, parametrization: str) -> dict:
    for row in rows:
        if (row.get("method") == method and row.get("parametrization") == parametrization
                and row.get("steps") == STEPS and row.get("truth") == TRUTH and row.get("source") == SOURCE):
            return row
    raise MissingData(f"no row method={method!r} parametrization={parametrization!r} steps={STEPS} "
                      f"truth={TRUTH!r} source={SOURCE!r}")


def _get(row: dict, *keys):
    value = row
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            raise MissingData(f"row method={row.get('method')!r} parametrization={row.get('parametrization')!r} "
                              f"steps={row.get('steps')} has no {'/'.join(keys)!r} (missing {key!r})")
        value = value[key]
    return value


def calls_with_residuals(row: dict) -> float:
    """Model calls per step of invert + residual capture + what the sampler's mirrored last interval adds."""
    return (_get(row, "calls_per_step") + _get(row, "capture_calls_per_step")
            + _get(row, "sampler_extra_calls") / _get(row, "steps"))


def figures(rows: list[dict]) -> dict:
    """The numbers the picture quotes, per parametrization ("ve", "flow")."""
    out = {"edit": {}, "ddim_recon_res_worst": {}, "exact_recon": {}}
    for param, _ in PARAMS:
        for method in (ODE, DDIM, EXACT):
            row = find_row(rows, method, param)
            out["edit"][(method, param)] = (_get(row, "edits", EDIT_KEY, "ideal_db", "mean"), calls_with_residuals(row))
        ddim = find_row(rows, DDIM, param)
        out["ddim_recon_res_worst"][param] = _get(ddim, "reconstruction_res", "worst")
        exact = find_row(rows, EXACT, param)
        out["exact_recon"][param] = (_get(exact, "reconstruction", "mean"), _get(exact, "reconstruction", "worst"),
                                     _get(exact, "calls_per_step") + _get(exact, "sampler_extra_calls") / STEPS)
    return out


def _n(value: float) -> str:
    """A count of calls to one decimal, without a trailing .0."""
    return f"{round(value, 1):g}"


def _db(value: float) -> str:
    return f"{value:.1f} dB"


def _span(values) -> str:
    values = list(values)
    lo, hi = _n(min(values)), _n(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


# ============================================================================================ drawing
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


F_TITLE, F_NODE, F_Q, F_BODY, F_SMALL = _font(26), _font(18), _font(15), _font(14), _font(13)


class Canvas:
    """An ImageDraw that remembers every string it drew (``labels``), for the tests."""

    def __init__(self, width: int, height: int):
        self.image = Image.new("RGB", (width, height), "white")
        self.draw = ImageDraw.Draw(self.image)
        self.labels: list[str] = []

    def text(self, xy, text, font, fill=INK, anchor="la", bold=False):
        self.labels.append(text)
        self.draw.text(xy, text, font=font, fill=fill, anchor=anchor)
        if bold:
            self.draw.text((xy[0] + 1, xy[1]), text, font=font, fill=fill, anchor=anchor)
        return font.getlength(text) + (1 if bold else 0)

    def arrow(self, points, label="", label_side="above", fill=GREY):
        self.draw.line(points, fill=fill, width=2, joint="curve")
        (x0, y0), (x1, y1) = points[-2], points[-1]
        if x1 != x0:
            d = 1 if x1 > x0 else -1
            head = [(x1, y1), (x1 - 10 * d, y1 - 6), (x1 - 10 * d, y1 + 6)]
        else:
            d = 1 if y1 > y0 else -1
            head = [(x1, y1), (x1 - 6, y1 - 10 * d), (x1 + 6, y1 - 10 * d)]
        self.draw.polygon(head, fill=fill)
        if label:
            lines = label.split("\n")
            if label_side == "above":  # a horizontal segment: centred above its first segment
                (ax, ay), (bx, _) = points[0], points[1]
                for i, line in enumerate(reversed(lines)):
                    self.text(((ax + bx) / 2, ay - 5 - 16 * i), line, F_SMALL, GREY, anchor="md")
            else:  # beside a vertical segment: to its right, from its middle
                (ax, ay), (_, by) = points[0], points[1]
                top = (ay + by) / 2 - 8 * len(lines)
                for i, line in enumerate(lines):
                    self.text((ax + 8, top + 16 * i), line, F_SMALL, GREY)


def _wrap(text: str, font, width: float) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        trial = f"{line} {word}".strip()
        if line and font.getlength(trial) > width:
            lines.append(line)
            line = word
        else:
            line = trial
    return lines + [line] if line else lines


class Box:
    """A box of lines: ("node", node_name, settings) | ("text", str) | ("table", [cells], first_cell_is_node)."""

    TABLE_COLUMNS = (0, 190, 335)   # cell x offsets inside the box

    def __init__(self, x0, x1, lines, fill=LEAF_FILL, edge=LEAF_EDGE, font=F_BODY, centred=False):
        self.x0, self.x1, self.lines, self.fill, self.edge, self.font, self.centred = \
            x0, x1, lines, fill, edge, font, centred
        self.rows = []   # (kind, payload, height)
        inner = x1 - x0 - 2 * PAD
        for line in lines:
            if line[0] == "node":
                self.rows.append(("node", line[1:], 26))
            elif line[0] == "text":
                for part in _wrap(line[1], font, inner):
                    self.rows.append(("text", part, font.size + 5))
            else:
                self.rows.append(("table", line[1:], F_SMALL.size + 5))
        self.height = sum(h for *_, h in self.rows) + 2 * PAD
        self.y0 = 0

    @property
    def cy(self):
        return self.y0 + self.height / 2

    def place(self, y0):
        self.y0 = y0
        return self

    def draw(self, c: Canvas):
        c.draw.rounded_rectangle([self.x0, self.y0, self.x1, self.y0 + self.height], radius=9, fill=self.fill,
                                 outline=self.edge, width=2)
        y = self.y0 + PAD
        for kind, payload, h in self.rows:
            if kind == "node":
                name, settings = payload
                x = self.x0 + PAD
                x += c.text((x, y), name, F_NODE, NODE_INK, bold=True)
                if settings:
                    c.text((x + 10, y + 3), settings, F_BODY, INK)
            elif kind == "text":
                if self.centred:
                    c.text(((self.x0 + self.x1) / 2, y), payload, self.font, INK, anchor="ma")
                else:
                    c.text((self.x0 + PAD, y), payload, self.font, INK)
            else:
                cells, strong = payload
                for i, (cell, dx) in enumerate(zip(cells, self.TABLE_COLUMNS, strict=False)):
                    c.text((self.x0 + PAD + dx, y), cell, F_SMALL, NODE_INK if strong and i == 0 else INK)
            y += h


def _question(x0, x1, text) -> Box:
    return Box(x0, x1, [("text", text)], fill=Q_FILL, edge=Q_EDGE, font=F_Q, centred=True)


def boxes(fig: dict) -> dict[str, Box]:
    """The chart's boxes (not yet placed), with their text built from the figures."""
    e = fig["edit"]
    ode_calls = _span(e[(ODE, p)][1] for p, _ in PARAMS)
    ddim_calls = _span(e[(DDIM, p)][1] for p, _ in PARAMS)

    def per_param(fmt) -> str:
        return ", ".join(f"{fmt(p)} ({name})" for p, name in PARAMS)

    head = [("table", ["", *(f"{name}: dB, calls/step" for _, name in PARAMS)], False)]
    table = head + [
        ("table", [label, *(f"{_db(e[(m, p)][0])}, {_n(e[(m, p)][1])} calls" for p, _ in PARAMS)], m == ODE)
        for m, label in ((ODE, "ODE Invert"), (DDIM, "DDIM Invert + residuals"), (EXACT, "Exact Invert + residuals"))]
    ex = fig["exact_recon"]
    return {
        "q_sampler": _question(*SPINE, "Which sampler makes your images?"),
        "stochastic": Box(*LEAF, [
            ("node", "Noise Correct", "sampler_name = your sampler"),
            ("text", "euler_ancestral, or lcm for LCM models, LCM-LoRA and SDXL-Turbo. Then Inverted Sampler: it "
                     "replays the stored per-step noises, so the source prompt gives the image back exactly and a "
                     "new prompt edits it."),
        ]),
        "q_goal": _question(*SPINE, "Reconstruct the image, or edit it with a new prompt?"),
        "q_budget": _question(*MID, "Model calls per step you can spend?"),
        "edit": Box(*LEAF, [
            ("node", "ODE Invert", "bottom_substeps 8, mirror auto (defaults), cfg 1"),
            ("text", "Then Inverted Sampler with the edited prompt, residuals all; raise cfg only there. Mean PSNR "
                     f"to the continuous ideal edit at N = {STEPS}, cfg 1 (higher = closer):"),
            *table,
        ]),
        "edit_cheap": Box(*LEAF, [
            ("node", "DDIM Invert", "then Inverted Sampler, residuals all"),
            ("text", f"The {ddim_calls}-call option (inversion + residual capture): "
                     + per_param(lambda p: _db(e[(DDIM, p)][0])) + " to the ideal edit. ODE Invert is still "
                     "recommended: " + per_param(lambda p: _db(e[(ODE, p)][0]))
                     + f" for {ode_calls} calls/step."),
        ], fill=ALT_FILL, edge=ALT_EDGE),
        "q_back": _question(*SPINE, "Which node samples it back?"),
        "recon_inverted": Box(*LEAF, [
            ("node", "DDIM Invert", "then Inverted Sampler, residuals all"),
            ("text", "Every invert node reconstructs exactly with its residuals; DDIM Invert is the cheapest, "
                     f"{ddim_calls} calls/step with the residual capture. Worst image: "
                     + per_param(lambda p: _db(fig['ddim_recon_res_worst'][p])) + "."),
        ]),
        "recon_stock": Box(*LEAF, [
            ("node", "Exact Invert", "target_psnr 40"),
            ("text", "Its LATENT into KSamplerAdvanced (add_noise disable) or SamplerCustom, same steps and cfg; "
                     "flow models: its NOISE output into SamplerCustomAdvanced. Shareable stock workflows, no "
                     "residuals. Reconstruction mean / worst: "
                     + per_param(lambda p: f"{ex[p][0]:.1f} / {_db(ex[p][1])}") + "; calls/step "
                     + per_param(lambda p: _n(ex[p][2])) + "."),
        ]),
    }


def draw(rows: list[dict]) -> tuple[Image.Image, list[str]]:
    """The decision guide from the edit front's rows: (picture, every string drawn on it)."""
    fig = figures(rows)
    b = boxes(fig)
    gap, small_gap = 34, 14
    y = 78
    b["stochastic"].place(y)
    b["q_sampler"].place(b["stochastic"].cy - b["q_sampler"].height / 2)
    y = b["stochastic"].y0 + b["stochastic"].height + gap + 12
    b["edit"].place(y)
    b["edit_cheap"].place(y + b["edit"].height + small_gap)
    mid = (b["edit"].y0 + b["edit_cheap"].y0 + b["edit_cheap"].height) / 2
    b["q_budget"].place(mid - b["q_budget"].height / 2)
    b["q_goal"].place(mid - b["q_goal"].height / 2)
    y = b["edit_cheap"].y0 + b["edit_cheap"].height + gap + 12
    b["recon_inverted"].place(y)
    b["q_back"].place(b["recon_inverted"].cy - b["q_back"].height / 2)
    b["recon_stock"].place(b["recon_inverted"].y0 + b["recon_inverted"].height + gap)
    footer_y = b["recon_stock"].y0 + b["recon_stock"].height + 16
    height = int(footer_y + 42)

    c = Canvas(WIDTH, height)
    c.text((WIDTH / 2, 14), "Choosing a node", F_TITLE, anchor="ma", bold=True)
    c.text((WIDTH / 2, 48), "Follow the questions on the left; every path ends in one node and its settings.",
           F_BODY, GREY, anchor="ma")
    spine_x = (SPINE[0] + SPINE[1]) / 2

    def right(src: Box, dst: Box, label: str, y=None):
        yy = dst.cy if y is None else y
        c.arrow([(src.x1, yy), (dst.x0, yy)], label)

    def down(src: Box, dst: Box, label: str):
        c.arrow([(spine_x, src.y0 + src.height), (spine_x, dst.y0)], label, label_side="beside")

    right(b["q_sampler"], b["stochastic"], "stochastic or distilled")
    down(b["q_sampler"], b["q_goal"], "deterministic: euler, DDIM\neps / v (SD1.x, SDXL)\nor flow (SD3, Flux)")
    right(b["q_goal"], b["q_budget"], "edit")
    bx = b["q_budget"].x1
    ode_calls = _span(fig["edit"][(ODE, p)][1] for p, _ in PARAMS)
    for dst, above, below in ((b["edit"], f"~{ode_calls} calls", "recommended"),
                              (b["edit_cheap"], "about 1 call", "")):
        elbow = bx + 14
        c.arrow([(bx, b["q_budget"].cy), (elbow, b["q_budget"].cy), (elbow, dst.cy), (dst.x0, dst.cy)])
        c.text(((elbow + dst.x0) / 2, dst.cy - 5), above, F_SMALL, GREY, anchor="md")
        if below:
            c.text(((elbow + dst.x0) / 2, dst.cy + 5), below, F_SMALL, GREY, anchor="ma")
    down(b["q_goal"], b["q_back"], "reconstruct")
    right(b["q_back"], b["recon_inverted"], "Inverted Sampler")
    c.arrow([(spine_x, b["q_back"].y0 + b["q_back"].height), (spine_x, b["recon_stock"].cy),
             (b["recon_stock"].x0, b["recon_stock"].cy)])
    c.text(((spine_x + b["recon_stock"].x0) / 2, b["recon_stock"].cy - 5), "a stock sampler (shared workflows)",
           F_SMALL, GREY, anchor="md")
    for box in b.values():
        box.draw(c)
    c.text((WIDTH / 2, footer_y),
           f"Figures: benchmarks/edit_front.json (analytic class-conditional model \"{TRUTH}\", {SOURCE} images, "
           f"N = {STEPS} steps; eps / v = the \"ve\" rows).", F_SMALL, GREY, anchor="ma")
    c.text((WIDTH / 2, footer_y + 18),
           "calls/step: model calls per step; with residuals, their capture and the sampler's extra calls included. "
           "Drawn by scripts/make_decision_guide.py.", F_SMALL, GREY, anchor="ma")
    return c.image, c.labels


# ============================================================================================ command
def encode(image: Image.Image) -> bytes:
    image = image.quantize(colors=64, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def same_pixels(a: bytes, path: Path) -> bool:
    new = Image.open(io.BytesIO(a)).convert("RGB")
    old = Image.open(path).convert("RGB")
    return new.size == old.size and ImageChops.difference(new, old).getbbox() is None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--front", type=Path, default=FRONT, help="the edit front JSON (default %(default)s)")
    parser.add_argument("--out", type=Path, default=OUT, help="the picture (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare with the committed picture, write nothing")
    args = parser.parse_args(argv)
    if not args.front.is_file():
        print(f"{args.front}: no such file (run python -m benchmarks.edit_front)", file=sys.stderr)
        return 1
    rows = json.loads(args.front.read_text())
    try:
        image, _ = draw(rows)
    except MissingData as error:
        print(f"{args.front}: {error}", file=sys.stderr)
        return 1
    data = encode(image)
    if len(data) > MAX_BYTES:
        print(f"{args.out.name}: {len(data)} bytes, over {MAX_BYTES}", file=sys.stderr)
        return 1
    if args.check:
        if not args.out.is_file():
            print(f"missing: {args.out} (run scripts/make_decision_guide.py)")
            return 1
        if not same_pixels(data, args.out):
            print(f"stale: {args.out} differs from what {args.front} draws (run scripts/make_decision_guide.py)")
            return 1
        print(f"up to date: {args.out}")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote {args.out} ({len(data)} bytes, {image.width}x{image.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
