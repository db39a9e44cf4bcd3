"""Dev check (not part of CI): open the pack's node help pages in ComfyUI's real frontend, in headless Chromium.

The frontend (comfyui-frontend-package >= 1.2x, e.g. 1.49.6 pinned by ComfyUI 0.33.0) fetches a custom node's help
page from ``/extensions/<pack folder>/docs/<node id>/<locale>.md``, then ``/extensions/<pack folder>/docs/<node
id>.md`` (``NodeHelpService.fetchCustomNodeHelp``), and renders it with relative image links prefixed by
``/extensions/<pack folder>/docs/`` (``renderMarkdownToHtml``). This script

1. starts ComfyUI with the pack (``devkit.harness``) and the real frontend, opens it in headless Chromium;
2. for every node of the pack (read from the frontend's own node definitions, i.e. ``/object_info``) fetches the help
   page the way the frontend does and every image it links, from inside the page;
3. opens the node library sidebar, opens one node's help page in it (the frontend's ``nodeHelp`` store, what the
   library's help button calls), waits for the rendered page, checks that its heading and pictures are there and
   loaded, and saves a screenshot.

Needs Chromium (``apt-get install chromium``) and a ComfyUI whose venv has the frontend package (the 0.33.0 host):

    COMFYUI_DIR=.../comfy-host-0.33.0/ComfyUI COMFYUI_PYTHON=.../comfy-host-0.33.0/venv/bin/python \\
        python scripts/check_node_docs_frontend.py --screenshot out/node_docs_panel.png

``--frontend`` takes another frontend's ``static/`` folder (see scripts/check_workflows_frontend.py for how to
download one). Exit status 0 when every page and picture loads and the panel shows the page.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT / "dev"))   # the development kit (see the devkit docstring)
from devkit import harness as ch  # noqa: E402

APP = "(window.app ?? window.comfyAPI?.app?.app)"
PINIA = "document.getElementById('vue-app').__vue_app__.config.globalProperties.$pinia"

# every pack node, its help page and images, fetched as the frontend fetches them
FETCH_ALL = """
(async () => {
  const defs = %(pinia)s._s.get('nodeDef').nodeDefsByName;
  const out = {};
  for (const [name, def] of Object.entries(defs)) {
    const parts = (def.python_module || '').split('.');
    if (parts[0] !== 'custom_nodes' || parts[1] !== %(pack)s) continue;
    const base = `/extensions/${parts[1]}/docs/`;
    const r = await fetch(`${base}${name}.md`);
    const type = r.headers.get('content-type') || '';
    const text = r.ok && !type.includes('text/html') ? await r.text() : null;
    const images = {};
    for (const m of (text || '').matchAll(/!\\[[^\\]]*\\]\\(([^)\\s]+)\\)/g)) {
      const href = m[1];
      const url = /^(\\/|https?:)/.test(href) ? href : base + href;
      const ri = await fetch(url);
      images[href] = ri.ok ? (ri.headers.get('content-type') || '?') : `HTTP ${ri.status}`;
    }
    out[name] = {status: r.status, type, chars: text ? text.length : 0, images};
  }
  return JSON.stringify(out);
})()
"""

# the default UI path of frontend 1.3x-1.4x: put the node on the canvas, select it, open the right side panel's
# Info tab (it renders the node's help page); where that panel does not exist, the node library's help page
OPEN_HELP = """
(async () => {
  const app = %(app)s;
  const pinia = %(pinia)s;
  const def = pinia._s.get('nodeDef').nodeDefsByName[%(node)s];
  const node = window.LiteGraph.createNode(%(node)s);
  node.pos = [80, 120];
  app.graph.add(node);
  app.canvas.selectNode(node);
  app.graph.setDirtyCanvas(true, true);
  await new Promise(r => setTimeout(r, 500));
  let via = null;
  try {
    const panel = pinia._s.get('rightSidePanel');
    if (panel) { panel.openPanel('info'); via = 'right side panel, Info tab'; }
  } catch (e) {}
  if (!via) {
    await app.extensionManager.command.execute('Workspace.ToggleSidebarTab.node-library');
    await new Promise(r => setTimeout(r, 1500));
    pinia._s.get('nodeHelp').openHelp(def);
    via = 'node library help';
  }
  return JSON.stringify({via, display_name: def.display_name});
})()
"""

PANEL_STATE = """
(() => {
  const el = document.querySelector('.node-help-content');
  if (!el) return JSON.stringify({found: false});
  const imgs = [...el.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                          width: i.naturalWidth}));
  const h1 = el.querySelector('h1');
  return JSON.stringify({found: true, heading: h1 ? h1.textContent : null, chars: el.textContent.length, imgs});
})()
"""


class Page:
    """A minimal Chrome DevTools Protocol client for one page."""

    def __init__(self, ws):
        self.ws, self.msg_id = ws, 0

    async def call(self, method: str, params: dict | None = None, timeout: float = 60) -> dict:
        self.msg_id += 1
        await self.ws.send_json({"id": self.msg_id, "method": method, "params": params or {}})
        while True:
            answer = await self.ws.receive_json(timeout=timeout)
            if answer.get("id") == self.msg_id:
                return answer

    async def evaluate(self, expression: str):
        answer = await self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                      "returnByValue": True})
        result = answer.get("result", {})
        if "exceptionDetails" in result:
            raise RuntimeError(json.dumps(result["exceptionDetails"])[:2000])
        value = result.get("result", {}).get("value")
        return json.loads(value) if isinstance(value, str) else value


async def _check(ws_url: str, node: str, screenshot: Path | None, timeout: float = 120) -> dict:
    import aiohttp

    report: dict = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            page = Page(ws)
            # the graph exists before the node definitions are registered, and the node definition store is
            # filled after LiteGraph's registry: wait for the node in both
            ready = (f"Boolean({APP}?.graph && window.LiteGraph?.registered_node_types?.{node} && "
                     f"{PINIA}._s.get('nodeDef')?.nodeDefsByName?.{node})")
            t0 = time.monotonic()
            while not await page.evaluate(ready):
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError("the frontend did not start")
                await asyncio.sleep(0.5)
            await page.call("Emulation.setDeviceMetricsOverride",
                            {"width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
            subs = {"pinia": PINIA, "app": APP, "pack": json.dumps(ch.PACK_LINK_NAME), "node": json.dumps(node)}
            report["pages"] = await page.evaluate(FETCH_ALL % subs)
            report["open"] = await page.evaluate(OPEN_HELP % subs)
            state = {"found": False}
            t0 = time.monotonic()
            while time.monotonic() - t0 < 30:
                state = await page.evaluate(PANEL_STATE)
                if state["found"] and state["imgs"] and all(i["complete"] and i["width"] for i in state["imgs"]):
                    break
                await asyncio.sleep(0.5)
            report["panel"] = state
            if screenshot is not None:
                await asyncio.sleep(0.5)
                shot = await page.call("Page.captureScreenshot", {"format": "png"})
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                screenshot.write_bytes(base64.b64decode(shot["result"]["data"]))
    return report


def _default_frontend(python: str) -> Path | None:
    code = ("import os, comfyui_frontend_package as f; "
            "print(os.path.join(os.path.dirname(f.__file__), 'static'))")
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frontend", type=Path, help="the frontend's static/ folder (default: the frontend package "
                        "installed in COMFYUI_PYTHON's venv)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--node", default="ExactInvExactInvert", help="the node whose help page the panel opens")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the open help panel here")
    args = parser.parse_args(argv)
    frontend = args.frontend or _default_frontend(ch.comfyui_python())
    if frontend is None or not (frontend / "index.html").exists():
        print(f"no frontend: pass --frontend (looked in {frontend})")
        return 2
    docs = REPO_ROOT / "web" / "docs"
    with tempfile.TemporaryDirectory(prefix="docs_frontend_") as tmp:
        base = ch.make_base_dir(Path(tmp), support_pack=False)
        (base / "empty_web").symlink_to(frontend.resolve(), target_is_directory=True)
        # a first visit opens the templates browser over the graph; mark the tutorial done
        (base / "user" / "default").mkdir(parents=True)
        (base / "user" / "default" / "comfy.settings.json").write_text(json.dumps({"Comfy.TutorialCompleted": True}))
        server = ch.ComfyServer(ch.comfyui_dir(), ch.comfyui_python(), base).start()
        try:
            with ch.headless_chromium(args.chromium, base / "chrome", server.url) as ws_url:
                report = asyncio.run(_check(ws_url, args.node, args.screenshot))
        finally:
            server.stop()
    failures = []
    expected = sorted(p.stem for p in docs.glob("*.md"))
    served = report["pages"]
    if sorted(served) != expected:
        failures.append(f"pack nodes in the frontend {sorted(served)} != help pages {expected}")
    for name, page in sorted(served.items()):
        bad = {href: t for href, t in page["images"].items() if not t.startswith("image/")}
        ok = page["status"] == 200 and page["chars"] > 0 and page["images"] and not bad
        print(("ok   " if ok else "FAIL ") + f"{name}: HTTP {page['status']} {page['type']}, {page['chars']} chars, "
              f"images {page['images']}")
        if not ok:
            failures.append(name)
    panel = report["panel"]
    print(f"panel ({args.node}, {report['open']['display_name']}, via {report['open']['via']}): "
          f"{json.dumps(panel)}")
    if not (panel["found"] and panel["heading"] and panel["imgs"]
            and all(i["complete"] and i["width"] for i in panel["imgs"])):
        failures.append("the help panel did not show the page with its pictures")
    if args.screenshot:
        print(f"screenshot: {args.screenshot}")
    print(f"{len(served)} help pages served; " + ("FAILED: " + "; ".join(failures) if failures else "all ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
