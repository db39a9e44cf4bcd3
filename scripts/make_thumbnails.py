"""Write the template-browser thumbnails ``example_workflows/<name>.jpg`` (ComfyUI's convention for a pack's
``example_workflows/<name>.json``: Workflow -> Browse Templates shows ``/api/workflow_templates/<pack>/<name>.jpg``).

Each thumbnail is the workflow's graph as ComfyUI's real frontend draws it: the workflows are loaded into the frontend
in headless Chromium by ``scripts/check_workflows_frontend.py --screenshots`` (which also checks that each queues its
API twin), and every screenshot is cropped to the graph and scaled to 640 x 480 (JPEG, at most ``MAX_BYTES``).
No model runs: the thumbnails show the wiring and notes, not a result (the loaders are outlined red: the host that
draws them has no model files).

Needs Chromium, Pillow and a frontend (by default the frontend package of COMFYUI_PYTHON's venv, e.g. the 0.33.0 host):

    COMFYUI_DIR=.../comfy-host-0.33.0/ComfyUI COMFYUI_PYTHON=.../comfy-host-0.33.0/venv/bin/python \\
        $COMFYUI_PYTHON scripts/make_thumbnails.py
    $COMFYUI_PYTHON scripts/make_thumbnails.py --from-screenshots out/wf_shots   # only crop existing screenshots
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO_ROOT = Path(__file__).resolve().parent.parent
WF_DIR = REPO_ROOT / "example_workflows"
SIZE = (640, 480)
MAX_BYTES = 100_000
# the frontend's chrome around the canvas in check_workflows_frontend's 3000 x 1400 screenshots (tabs and menu bar
# on top, sidebar on the left, toolbars at the bottom, the error toast at the top right): not part of the graph
CANVAS = (24, 24, 24)   # the empty canvas of the default dark palette
CHROME = {"top": 130, "left": 160, "bottom": 110, "right": 60, "toast": (2500, 300)}


def _frontend_check():
    spec = importlib.util.spec_from_file_location("check_workflows_frontend",
                                                  REPO_ROOT / "scripts" / "check_workflows_frontend.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def graph_box(shot: Image.Image) -> tuple[int, int, int, int]:
    """Bounding box of the drawn graph: the rows and columns of the canvas area where more than a few pixels are
    brighter than the empty canvas (a uniform dark grey)."""
    gray = np.asarray(shot.convert("L")).astype(np.int16)
    h, w = gray.shape
    bright = gray > 45
    bright[:CHROME["top"]], bright[h - CHROME["bottom"]:] = False, False
    bright[:, :CHROME["left"]], bright[:, w - CHROME["right"]:] = False, False
    bright[:CHROME["toast"][1], CHROME["toast"][0]:] = False
    cols = np.flatnonzero(bright.sum(0) > 3)
    rows = np.flatnonzero(bright.sum(1) > 3)
    if not len(cols) or not len(rows):
        return (0, 0, w, h)
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def thumbnail(shot: Image.Image) -> Image.Image:
    x0, y0, x1, y1 = graph_box(shot)
    margin = 30
    x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
    # widen or heighten the box to the thumbnail's aspect, around its centre
    aspect = SIZE[0] / SIZE[1]
    if (x1 - x0) / (y1 - y0) > aspect:
        grow = (x1 - x0) / aspect - (y1 - y0)
        y0, y1 = y0 - grow / 2, y1 + grow / 2
    else:
        grow = (y1 - y0) * aspect - (x1 - x0)
        x0, x1 = x0 - grow / 2, x1 + grow / 2
    # the chrome (menus, toolbars, the missing-models toast) painted over with the empty canvas's colour
    rgb = shot.convert("RGB")
    w, h = rgb.size
    draw = ImageDraw.Draw(rgb)
    for box in [(0, 0, w, CHROME["top"]), (0, h - CHROME["bottom"], w, h), (0, 0, CHROME["left"], h),
                (w - CHROME["right"], 0, w, h), (CHROME["toast"][0], 0, w, CHROME["toast"][1])]:
        draw.rectangle(box, fill=CANVAS)
    crop = Image.new("RGB", (round(x1 - x0), round(y1 - y0)), CANVAS)
    crop.paste(rgb.crop((max(0, round(x0)), max(0, round(y0)), min(w, round(x1)), min(h, round(y1)))),
               (max(0, -round(x0)), max(0, -round(y0))))
    return crop.resize(SIZE, Image.LANCZOS)


def encode(image: Image.Image) -> bytes:
    for quality in (85, 75, 65, 55):
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=quality, optimize=True, progressive=True)
        if buf.tell() <= MAX_BYTES:
            break
    return buf.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-screenshots", type=Path, help="crop these <name>.png screenshots, start nothing")
    parser.add_argument("--frontend", type=Path, help="the frontend's static/ folder (default: COMFYUI_PYTHON's "
                        "comfyui_frontend_package)")
    parser.add_argument("--out", type=Path, default=WF_DIR)
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in WF_DIR.glob("*.json"))
    with tempfile.TemporaryDirectory(prefix="thumbnails_") as tmp:
        shots = args.from_screenshots
        if shots is None:
            check = _frontend_check()
            frontend = args.frontend
            if frontend is None:
                code = ("import os, comfyui_frontend_package as f; "
                        "print(os.path.join(os.path.dirname(f.__file__), 'static'))")
                frontend = Path(subprocess.run([check.ch.comfyui_python(), "-c", code], capture_output=True,
                                               text=True, check=True).stdout.strip())
            shots = Path(tmp)
            status = check.main(["--frontend", str(frontend), "--screenshots", str(shots)])
            if status:
                print("note: the frontend check above reported differences; the screenshots are still written")
        for name in names:
            data = encode(thumbnail(Image.open(shots / f"{name}.png")))
            (args.out / f"{name}.jpg").write_bytes(data)
            print(f"wrote {args.out / (name + '.jpg')} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
