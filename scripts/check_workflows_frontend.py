"""Dev check (not part of CI): load every example workflow into ComfyUI's real frontend in headless Chromium and
compare what the frontend would queue (``app.graphToPrompt()``) with the workflow's API twin.

This is the check the UI-format tests cannot make on their own: that the real frontend maps ``widgets_values`` to
the widgets exactly as scripts/make_workflows.py assumes (seed control slots, upload widgets, optional widgets).

Needs Chromium (``apt-get install chromium``) and the frontend package ComfyUI pins (its requirements.txt), unpacked:

    python -m pip download --no-deps comfyui-frontend-package==1.32.9 -d /tmp/fe
    python -c "import zipfile,glob; zipfile.ZipFile(glob.glob('/tmp/fe/*.whl')[0]).extractall('/tmp/fe/x')"
    python scripts/check_workflows_frontend.py --frontend /tmp/fe/x/comfyui_frontend_package/static

Exit status 0 when every workflow round-trips; prints the differences otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "dev"))   # the development kit (see the devkit docstring)
from devkit import harness as ch  # noqa: E402

WF_DIR = REPO_ROOT / "example_workflows"
SCREENSHOT = "__screenshot__"
FIT_VIEW = """
(async () => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  try { await app.extensionManager.command.execute('Comfy.Canvas.FitView'); } catch (e) {}
  app.graph.setDirtyCanvas(true, true);
})()
"""

LOAD_AND_CONVERT = """
(async () => {
  const app = window.app ?? window.comfyAPI?.app?.app;
  const wf = %s;
  await app.loadGraphData(wf, true, true, %s, {showMissingNodesDialog: false, showMissingModelsDialog: false});
  const prompt = await app.graphToPrompt();
  const nodes = app.graph._nodes.map(n => ({id: n.id, type: n.type,
      widgets: (n.widgets || []).map(w => [w.name, w.value])}));
  return JSON.stringify({output: prompt.output, nodes});
})()
"""


async def _cdp(ws_url: str, expressions: list, timeout: float = 60) -> list:
    import aiohttp

    results = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            msg_id = 0

            async def call(method: str, params: dict):
                nonlocal msg_id
                msg_id += 1
                await ws.send_json({"id": msg_id, "method": method, "params": params})
                while True:
                    answer = await ws.receive_json(timeout=timeout)
                    if answer.get("id") == msg_id:
                        return answer

            # the graph exists before the node definitions are registered: wait for one of the pack's nodes
            ready = ("Boolean((window.app ?? window.comfyAPI?.app?.app)?.graph && "
                     "window.LiteGraph?.registered_node_types?.ExactInvExactInvert)")
            t0 = time.monotonic()
            while True:
                answer = await call("Runtime.evaluate", {"expression": ready, "returnByValue": True})
                if answer.get("result", {}).get("result", {}).get("value"):
                    break
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError("the frontend did not start")
                await asyncio.sleep(0.5)
            # a fresh frontend then loads its default graph, which could replace the first workflow loaded before
            # it (seen with frontend 1.49.6): wait for it, up to 15 s
            loaded = "((window.app ?? window.comfyAPI?.app?.app).graph._nodes.length > 0)"
            t0 = time.monotonic()
            while time.monotonic() - t0 < 15:
                answer = await call("Runtime.evaluate", {"expression": loaded, "returnByValue": True})
                if answer.get("result", {}).get("result", {}).get("value"):
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            await call("Emulation.setDeviceMetricsOverride",
                       {"width": 3000, "height": 1400, "deviceScaleFactor": 1, "mobile": False})
            for expression in expressions:
                if isinstance(expression, tuple) and expression[0] == SCREENSHOT:
                    await call("Runtime.evaluate", {"expression": FIT_VIEW, "awaitPromise": True})
                    await asyncio.sleep(1.0)
                    answer = await call("Page.captureScreenshot", {"format": "png"})
                    import base64

                    Path(expression[1]).write_bytes(base64.b64decode(answer["result"]["data"]))
                    continue
                answer = await call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                         "returnByValue": True})
                result = answer.get("result", {})
                if "exceptionDetails" in result:
                    results.append({"error": json.dumps(result["exceptionDetails"])[:2000]})
                else:
                    results.append(json.loads(result["result"]["value"]))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", type=Path, required=True, help="the frontend's static/ folder")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--dir", type=Path, default=WF_DIR, help="workflow folder (UI files + api/ twins)")
    parser.add_argument("--screenshots", type=Path, help="also save a PNG of every loaded workflow here")
    args = parser.parse_args(argv)
    wf_dir = args.dir
    names = sorted(p.stem for p in wf_dir.glob("*.json"))
    with tempfile.TemporaryDirectory(prefix="wf_frontend_") as tmp:
        base = ch.make_base_dir(Path(tmp), support_pack=False)
        (base / "empty_web").symlink_to(args.frontend.resolve(), target_is_directory=True)
        # a first visit opens the templates browser over the graph; mark the tutorial done
        (base / "user" / "default").mkdir(parents=True)
        (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        server = ch.ComfyServer(ch.comfyui_dir(), ch.comfyui_python(), base).start()
        try:
            with ch.headless_chromium(args.chromium, base / "chrome", server.url, attempts=100) as ws_url:
                expressions = []
                for n in names:
                    expressions.append(LOAD_AND_CONVERT % ((wf_dir / f"{n}.json").read_text(), json.dumps(n)))
                    if args.screenshots:
                        args.screenshots.mkdir(parents=True, exist_ok=True)
                        expressions.append((SCREENSHOT, str(args.screenshots / f"{n}.png")))
                results = asyncio.run(_cdp(ws_url, expressions))
        finally:
            server.stop()
    failures = 0
    for name, result in zip(names, results, strict=True):
        twin = json.loads((wf_dir / "api" / f"{name}.json").read_text())
        if "error" in result:
            print(f"FAIL {name}: {result['error']}")
            failures += 1
            continue
        queued = result["output"]
        if not all(isinstance(v, dict) and "class_type" in v for v in queued.values()):
            print(f"FAIL {name}: unexpected graphToPrompt output {json.dumps(queued)[:1500]}")
            failures += 1
            continue
        diffs = []
        for node_id in sorted(set(twin) | set(queued), key=int):
            a, b = twin.get(node_id), queued.get(node_id)
            if a is None or b is None:
                diffs.append(f"node {node_id}: only in {'the frontend' if a is None else 'the twin'}")
            elif a["class_type"] != b["class_type"] or a["inputs"] != b["inputs"]:
                diffs.append(f"node {node_id} ({a['class_type']}): twin {a['inputs']} != frontend {b['inputs']}")
        ui_nodes = len(json.loads((wf_dir / f"{name}.json").read_text())["nodes"])
        if len(result["nodes"]) != ui_nodes:
            diffs.append(f"{len(result['nodes'])} nodes in the frontend, {ui_nodes} in the file")
        print(("FAIL " if diffs else "ok   ") + name)
        for d in diffs:
            print("     " + d)
        failures += bool(diffs)
    print(f"{len(names) - failures}/{len(names)} workflows queue exactly their API twin in the real frontend")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
