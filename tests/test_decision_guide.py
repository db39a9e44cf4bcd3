"""scripts/make_decision_guide.py: the "Choosing a node" picture draws from edit-front rows and names every node.

(a) The drawing function on a small list of rows shaped like ``benchmarks/edit_front.json`` (built here; numbers
are made up for the test): the PNG decodes, every node of every path is drawn, the figures come from the rows, and a
missing row stops it with a message naming the row. (b) Where ``benchmarks/edit_front.json`` is committed, the
committed ``docs/choosing_a_node.png`` matches what the script draws from it (``--check``).

No ComfyUI: Pillow only (host-independent).
"""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import pytest

pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

pytestmark = pytest.mark.host_independent

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_decision_guide.py"


def _load():
    spec = importlib.util.spec_from_file_location("make_decision_guide", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


guide = _load()


def _stats(mean, worst):
    return {"mean": mean, "worst": worst, "bad": 0}


def _row(method, param, ideal_db, calls, capture, extra, recon, recon_res, steps=10, truth="hard", source="data"):
    edits = {key: {"ideal_db": _stats(ideal_db - i, ideal_db - 2 - i), "success": 1.0, "realism": 0.5}
             for i, key in enumerate(("1/all", "1/none", "3/all", "3/none"))}
    return {"method": method, "label": method, "calls_per_step": calls, "capture_calls_per_step": capture,
            "sampler_extra_calls": extra, "reconstruction": _stats(*recon), "reconstruction_res": _stats(*recon_res),
            "edits": edits, "truth": truth, "source": source, "parametrization": param, "steps": steps,
            "ideal": {"1": {"realism": 0.6, "success": 1.0, "source_db": 8.0}}}


def _rows():
    rows = []
    for param, shift in (("ve", 0.0), ("flow", -3.0)):
        rows += [
            _row("ddim", param, 11.23 + shift, 1.0, 1.0, 0, (20.0, 19.0), (189.0, 187.77 + shift)),
            _row("exact", param, 23.52 + shift, 30.8 - shift, 0.0, 0, (34.24, 33.46 + shift), (199.0, 196.0)),
            _row("ode8", param, 29.74 + shift, 3.3, 1.6, 14, (29.0, 25.0), (364.0, 258.0)),
            # decoys the guide must not quote: other steps, truth, source
            _row("ode8", param, 99.0, 99.0, 0.0, 0, (1.0, 1.0), (1.0, 1.0), steps=25),
            _row("ddim", param, 98.0, 98.0, 0.0, 0, (1.0, 1.0), (1.0, 1.0), truth="shared"),
            _row("exact", param, 97.0, 97.0, 0.0, 0, (1.0, 1.0), (1.0, 1.0), source="generated"),
        ]
    return rows


def test_draws_every_node_with_figures_from_the_rows():
    image, labels = guide.draw(_rows())
    data = guide.encode(image)
    assert len(data) <= guide.MAX_BYTES
    decoded = Image.open(io.BytesIO(data))
    decoded.load()
    assert 900 <= decoded.width <= 1100 and decoded.height > 400
    text = " ".join(labels)   # wrapped lines are drawn separately; joined with a space they read as written
    for node in ("Noise Correct", "ODE Invert", "DDIM Invert", "Exact Invert", "Inverted Sampler",
                 "KSamplerAdvanced", "SamplerCustomAdvanced"):
        assert node in text, f"{node!r} not drawn"
    # the settings each path ends in
    for setting in ("sampler_name", "bottom_substeps 8", "mirror auto", "residuals all", "target_psnr 40",
                    "euler_ancestral", "lcm"):
        assert setting in text, f"{setting!r} not drawn"
    # figures: N = 10 / hard / data rows, edits "1/all", calls = invert + capture + sampler extras / steps
    assert "29.7 dB, 6.3 calls" in text        # ODE Invert, ve: 3.3 + 1.6 + 14 / 10
    assert "26.7 dB, 6.3 calls" in text        # ODE Invert, flow
    assert "~6.3 calls" in text                # the budget branch
    assert "11.2 dB, 2 calls" in text          # DDIM Invert + residuals, ve
    assert "23.5 dB, 30.8 calls" in text       # Exact Invert + residuals, ve
    assert "187.8 dB (eps / v)" in text        # DDIM reconstruction_res worst
    assert "34.2 / 33.5 dB (eps / v)" in text  # Exact reconstruction (no residuals) mean / worst
    assert "33.8 (flow)" in text               # Exact's calls per step, flow
    for decoy in ("99", "98", "97"):
        assert f"{decoy}.0 dB" not in text


def test_missing_row_names_it(tmp_path):
    rows = [r for r in _rows() if not (r["method"] == "ode8" and r["parametrization"] == "flow" and r["steps"] == 10)]
    with pytest.raises(guide.MissingData, match=r"method='ode8' parametrization='flow' steps=10"):
        guide.draw(rows)
    rows = _rows()
    del rows[0]["edits"]["1/all"]
    with pytest.raises(guide.MissingData, match=r"edits/1/all"):
        guide.draw(rows)


def test_check_mode_compares_pixels(tmp_path):
    import json

    front, out = tmp_path / "front.json", tmp_path / "guide.png"
    front.write_text(json.dumps(_rows()))
    assert guide.main(["--front", str(front), "--out", str(out), "--check"]) == 1   # nothing committed yet
    assert guide.main(["--front", str(front), "--out", str(out)]) == 0
    assert guide.main(["--front", str(front), "--out", str(out), "--check"]) == 0
    rows = _rows()
    rows[0]["reconstruction_res"]["worst"] = 150.0
    front.write_text(json.dumps(rows))
    assert guide.main(["--front", str(front), "--out", str(out), "--check"]) == 1


@pytest.mark.skipif(not guide.FRONT.is_file(),
                    reason="benchmarks/edit_front.json is not committed (python -m benchmarks.edit_front writes it)")
def test_committed_picture_is_current():
    assert guide.main(["--check"]) == 0, "run scripts/make_decision_guide.py and commit docs/choosing_a_node.png"
