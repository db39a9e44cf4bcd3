"""Write the small pictures of the node help pages (``web/docs/img/*.png``) from the committed showcase and
benchmark figures (``docs/showcase_grid.png``, ``docs/showcase_edits.png``, ``benchmarks/psnr_vs_calls.png``).

Each picture is a crop of one of those figures (the method's own column or rows), so it shows measured output of
the v0.2.0 showcase / benchmarks, nothing drawn for the docs. Re-run after the showcase or the host benchmark is
re-run. Needs Pillow (the provisioned host venv has it):

    .cache/comfy-host/venv/bin/python scripts/make_docs_images.py           # write web/docs/img/
    .cache/comfy-host/venv/bin/python scripts/make_docs_images.py --check   # exit 1 if a picture differs
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT_DIR = REPO_ROOT / "web" / "docs" / "img"
GRID = REPO_ROOT / "docs" / "showcase_grid.png"          # 6 columns of 128 px tiles: Original, DDIM, ReNoise, ...
EDITS = REPO_ROOT / "docs" / "showcase_edits.png"        # 13 rows of 88 px: source, then recon / edit per method
CALLS = REPO_ROOT / "benchmarks" / "psnr_vs_calls.png"   # 2 x 2 panels and a legend
FRONT = REPO_ROOT / "benchmarks" / "edit_front_n10.png"  # the edit front at N = 10 (benchmarks/edit_front.py)
GUIDE = REPO_ROOT / "docs" / "choosing_a_node.png"       # the decision guide (scripts/make_decision_guide.py)

GRID_COLUMNS = {"original": 0, "ddim": 1, "renoise": 2, "easyinv": 3, "rnri": 4, "exact": 5}
GRID_X0, GRID_STEP, GRID_TILE, GRID_HEIGHT = 10, 138, 128, 652
EDIT_ROWS = {"source": 0, "exact_recon": 7, "exact_edit": 8, "nc_recon": 9, "nc_edit": 10}
EDIT_ROW_HEIGHT, EDIT_WIDTH = 88, 762
MAX_BYTES = 60_000


def grid_pair(method: str) -> Image.Image:
    """The Original column beside the method's column of the showcase grid (titles and PSNR captions included)."""
    grid = Image.open(GRID).convert("L")
    cols = []
    for name in ("original", method):
        x = GRID_X0 + GRID_STEP * GRID_COLUMNS[name] - 5
        cols.append(grid.crop((x, 0, x + GRID_TILE + 10, GRID_HEIGHT)))
    out = Image.new("L", (sum(c.width for c in cols), GRID_HEIGHT), 255)
    for i, c in enumerate(cols):
        out.paste(c, (i * c.width, 0))
    return out


def edit_rows(*rows: str) -> Image.Image:
    """Rows of the showcase's edit figure (the label column included), stacked."""
    edits = Image.open(EDITS).convert("L")
    crops = [edits.crop((0, EDIT_ROW_HEIGHT * EDIT_ROWS[r], EDIT_WIDTH, EDIT_ROW_HEIGHT * (EDIT_ROWS[r] + 1)))
             for r in rows]
    out = Image.new("L", (EDIT_WIDTH, EDIT_ROW_HEIGHT * len(crops)), 255)
    for i, c in enumerate(crops):
        out.paste(c, (0, i * EDIT_ROW_HEIGHT))
    return out.resize((EDIT_WIDTH * 3 // 4, out.height * 3 // 4), Image.LANCZOS)


def calls_panel() -> Image.Image:
    """The trained-model (eps) panel of the host benchmark's PSNR-vs-calls figure, with the figure's legend."""
    fig = Image.open(CALLS).convert("RGB")
    w, h = fig.size
    panel = fig.crop((0, int(h * 0.465), w // 2, int(h * 0.862)))
    legend = fig.crop((0, int(h * 0.875), w, int(h * 0.99)))
    out = Image.new("RGB", (w, panel.height + legend.height), "white")
    out.paste(panel, ((w - panel.width) // 2, 0))
    out.paste(legend, (0, panel.height))
    scale = 1000 / w
    return out.resize((1000, round(out.height * scale)), Image.LANCZOS)


def front_panel() -> Image.Image:
    """The edit front at 10 steps (ve and flow panels with their legend), 1000 px wide."""
    fig = Image.open(FRONT).convert("RGB")
    return fig.resize((1000, round(fig.height * 1000 / fig.width)), Image.LANCZOS)


def pictures() -> dict[str, Image.Image]:
    return {
        "ode_invert.png": front_panel(),
        "choosing_a_node.png": Image.open(GUIDE).convert("RGB"),
        "exact_invert.png": grid_pair("exact"),
        "ddim_invert.png": grid_pair("ddim"),
        "renoise_invert.png": grid_pair("renoise"),
        "easyinv_invert.png": grid_pair("easyinv"),
        "rnri_invert.png": grid_pair("rnri"),
        "noise_correct.png": edit_rows("source", "nc_recon", "nc_edit"),
        "inverted_sampler.png": edit_rows("source", "exact_recon", "exact_edit"),
        "psnr_vs_calls.png": calls_panel(),
    }


def encode(image: Image.Image) -> bytes:
    if image.mode == "RGB":
        image = image.quantize(colors=128, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed pictures, write nothing")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    stale = []
    for name, image in pictures().items():
        data = encode(image)
        if len(data) > MAX_BYTES:
            print(f"{name}: {len(data)} bytes, over {MAX_BYTES}")
            return 1
        path = args.out / name
        if path.exists() and path.read_bytes() == data:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        print(("stale: " if args.check else "wrote ") + f"{path} ({len(data)} bytes, {image.width}x{image.height})")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
