"""A ComfyUI server for the showcase and a websocket client that runs prompts with live progress.

The server is the development kit's ``ComfyServer`` (``devkit.harness``: main.py --cpu on a temporary base
directory). Its ``custom_nodes/`` holds links to the pack and to ``demo_pack/`` only, so a ComfyUI given by
COMFYUI_DIR is used without touching its own custom_nodes, models or outputs.
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "dev") not in sys.path:   # the development kit (see the devkit docstring)
    sys.path.insert(0, str(REPO_ROOT / "dev"))
from devkit import harness as ch  # noqa: E402  (needs neither torch nor ComfyUI)

PACK_LINK = ch.PACK_LINK_NAME
DEMO_LINK = "exact_inversion_demo"


def make_base_dir(base: Path) -> Path:
    base = Path(base)
    nodes = base / "custom_nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    for link, target in ((PACK_LINK, REPO_ROOT), (DEMO_LINK, REPO_ROOT / "demo_pack")):
        if not (nodes / link).exists():
            (nodes / link).symlink_to(target, target_is_directory=True)
    for sub in ("input", "output", "temp", "user", "models"):
        (base / sub).mkdir(exist_ok=True)
    return base


def start_server(base: Path, threads: int) -> "ch.ComfyServer":
    """Launch ComfyUI (``threads`` torch threads: the model is small, more threads only fight on 2 cores)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    return ch.ComfyServer(ch.comfyui_dir(), ch.comfyui_python(), make_base_dir(base)).launch()


@dataclass
class PromptRun:
    prompt_id: str
    outputs: dict = field(default_factory=dict)
    node_seconds: dict = field(default_factory=dict)   # node id -> seconds it executed
    seconds: float = 0.0


class ProgressPrinter:
    """One status line, redrawn in place on a terminal; in a log, printed at 50 % and 100 % of progress bars of at
    least ``min_total`` units (the model-call bars of the inversions), so a log stays short."""

    def __init__(self, stream=sys.stdout, min_total: int = 20):
        self.stream = stream
        self.tty = stream.isatty()
        self.min_total = min_total
        self.printed = {}

    def update(self, text: str, key=None, value: int | None = None, total: int | None = None) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif value is not None and total and total >= self.min_total:
            half = (2 * value) // total
            if half and self.printed.get(key, 0) < half:
                self.printed[key] = half
                print(text, file=self.stream, flush=True)

    def line(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
        print(text, file=self.stream, flush=True)


async def _run_prompt(url: str, prompt: dict, label: str, status, printer: ProgressPrinter,
                      names: dict, timeout: float) -> PromptRun:
    import aiohttp

    client_id = uuid.uuid4().hex
    ws_url = url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            async with session.post(url + "/prompt", json={"prompt": prompt, "client_id": client_id}) as resp:
                answer = await resp.json()
                if resp.status != 200 or answer.get("node_errors"):
                    raise ch.PromptValidationError(answer.get("error"), answer.get("node_errors", {}))
            run = PromptRun(answer["prompt_id"])
            t_start = time.monotonic()
            current, t_node = None, None
            while True:
                remaining = timeout - (time.monotonic() - t_start)
                if remaining <= 0:
                    raise TimeoutError(f"{label}: not finished after {timeout:.0f} s")
                msg = await ws.receive(timeout=remaining)
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        raise RuntimeError(f"{label}: the websocket closed")
                    continue                      # binary frames: latent previews
                event = json.loads(msg.data)
                kind, data = event.get("type"), event.get("data") or {}
                if data.get("prompt_id") not in (None, run.prompt_id):
                    continue
                now = time.monotonic()
                if kind == "executing":
                    if current is not None:
                        run.node_seconds[current] = run.node_seconds.get(current, 0.0) + now - t_node
                    current, t_node = data.get("node"), now
                    if current is None:
                        break
                    printer.update(status(names.get(current, current), None, None, now - t_start))
                elif kind == "progress":
                    value, total = data.get("value", 0), max(1, data.get("max", 1))
                    node = data.get("node") or current
                    printer.update(status(names.get(node, node), value, total, now - t_start),
                                   key=(run.prompt_id, node), value=value, total=total)
                elif kind == "execution_error":
                    raise ch.PromptExecutionError(data)
                elif kind == "execution_interrupted":
                    raise ch.PromptInterrupted(f"{label}: interrupted")
                elif kind == "execution_success":
                    if current is not None:
                        run.node_seconds[current] = run.node_seconds.get(current, 0.0) + now - t_node
                    break
            run.seconds = time.monotonic() - t_start
        # the history entry is written just after the last websocket message: poll for it
        for _ in range(600):
            async with session.get(url + f"/history/{run.prompt_id}") as resp:
                history = await resp.json()
            if run.prompt_id in history:
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError(f"{label}: finished, but no history entry appeared")
    entry = history[run.prompt_id]
    ch._raise_for_status_messages((entry.get("status") or {}).get("messages"))
    run.outputs = entry.get("outputs", {})
    return run


def run_prompt(server, prompt: dict, label: str, status, printer: ProgressPrinter, names: dict,
               timeout: float = 900) -> PromptRun:
    """Queue ``prompt`` and follow it over the websocket. ``status(node_name, value, total, elapsed)`` makes the
    progress line; ``names`` maps node ids to what the line calls them."""
    return asyncio.run(_run_prompt(server.url, prompt, label, status, printer, names, timeout))


def server_versions(server) -> dict:
    with urllib.request.urlopen(server.url + "/system_stats", timeout=30) as resp:
        stats = json.loads(resp.read())
    system = stats.get("system", {})
    return {"comfyui": system.get("comfyui_version"), "python": system.get("python_version", "").split()[0],
            "torch": system.get("pytorch_version")}
