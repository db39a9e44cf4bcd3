"""The edit benchmark's command keeps working and keeps the orderings the README quotes, on a small slice.

The full command (``bash scripts/edit_benchmark.sh``, about 6 minutes) is not a test; this runs it at N = 4 for
three methods (its own process, the real host) and checks the report: Exact Invert's edit is closer to the ideal edit
than DDIM's, and DDIM's than img2img's, at every sampling cfg; Exact reconstructs; the masked edit keeps the source
outside the mask; on the learned digits model (all 100 held-out digits) Exact reconstructs better than DDIM and
edits at cfg 3 succeed; the tables and the plot are written.

Host-independent (run on the default ComfyUI only): it checks the benchmark's code and report; the edit nodes in
each ComfyUI are covered by test_edit_workflows.py and test_nodes_edit.py on every host.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from devkit import harness as ch

pytestmark = pytest.mark.host_independent


def test_edit_benchmark_slice(tmp_path, comfy_dir, comfy_python):
    env = dict(os.environ, OMP_NUM_THREADS="1", COMFYUI_DIR=str(comfy_dir), COMFYUI_PYTHON=str(comfy_python))
    cmd = [comfy_python, str(ch.REPO_ROOT / "benchmarks" / "edit_benchmark.py"), "--ns", "4",
           "--methods", "exact,ddim,img2img", "--parts", "main,masked,learned", "--out", str(tmp_path)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "edit_results.json").read_text())
    rows = {r["method"]: r for r in results["main"]}
    assert set(rows) == {"exact", "ddim", "img2img"}
    for cfg in ("1.0", "3.0", "7.5"):
        ideal = {k: rows[k]["edits"][cfg]["ideal_db"]["mean"] for k in rows}
        assert ideal["exact"] > ideal["ddim"] > ideal["img2img"], (cfg, ideal)
        assert rows["exact"]["edits"][cfg]["success"]["n"] == 64
    assert rows["exact"]["reconstruction"]["worst"] >= 60.0
    masked = [r for r in results["masked"] if r["method"] == "exact"]
    assert masked and all(r["edit"]["outside_db"]["worst"] >= 100.0 for r in masked)
    learned = {r["method"]: r for r in results["learned"]}
    assert learned["exact"]["reconstruction"]["mean"] > learned["ddim"]["reconstruction"]["mean"] + 10.0
    assert all(learned[k]["edits"]["3.0"]["success"]["n"] == 100 for k in learned)
    assert learned["exact"]["edits"]["3.0"]["success"]["mean"] > 0.8
    report = (tmp_path / "EDIT_RESULTS.md").read_text()
    assert "**Sampling cfg 7.5, inversion cfg 1**" in report and "## Masked edits" in report
    assert (tmp_path / "edit_tradeoff.png").stat().st_size > 10_000
