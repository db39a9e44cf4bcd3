"""In-process ComfyUI plumbing for ``host_benchmark.py``.

* :class:`Host`: ComfyUI's own ``execution.PromptExecutor`` in this process (``devkit.harness``
  ``InProcessComfy``, CPU, the pack and the test-support pack loaded from ``custom_nodes``), plus
* :class:`NodeClock`: the executor's "server": it reads ComfyUI's own ``progress_state`` messages (sent by
  ``WebUIProgressHandler`` when a node starts and finishes) and records every executed node's wall time, and tells
  the call meter which node is running;
* the call meter (``InvTestCallMeter`` MODELs, ``tests/support_pack/learned_nodes.py``): model calls and seconds
  inside the network, per node;
* :func:`peak_rss_delta`: peak resident memory of a callable above the memory before it (Linux ``clear_refs``
  resets the process high-water mark VmHWM; torch's CPU allocations are invisible to tracemalloc).

Nothing here imports ComfyUI before :class:`Host` is created (``InProcessComfy`` must set ``args`` first).
"""
from __future__ import annotations

import atexit
import ctypes
import gc
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT / "dev") not in sys.path:   # the development kit (see the devkit docstring)
    sys.path.insert(0, str(REPO_ROOT / "dev"))

from devkit import harness as ch  # noqa: E402  (imports neither torch nor ComfyUI)

Graph = ch.Graph


class NodeClock:
    """What ``PromptExecutor`` needs of a server, recording node start/finish times from ``progress_state``."""

    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def __init__(self, meter=None):
        self.meter = meter
        self.start: dict[str, tuple] = {}   # node id -> (wall, process CPU time)
        self.end: dict[str, tuple] = {}

    def reset(self):
        self.start.clear()
        self.end.clear()

    def send_sync(self, event, data, sid=None):
        if event != "progress_state":
            return
        t = (time.perf_counter(), time.process_time())
        for node_id, state in (data.get("nodes") or {}).items():
            s = state.get("state")
            if s == "running" and node_id not in self.start:
                self.start[node_id] = t
                if self.meter is not None:
                    self.meter.owner = node_id
            elif s == "finished" and node_id in self.start and node_id not in self.end:
                self.end[node_id] = t
                if self.meter is not None and self.meter.owner == node_id:
                    self.meter.owner = None

    def queue_updated(self, *args, **kwargs):
        pass

    def walls(self) -> dict[str, float]:
        return {k: self.end[k][0] - self.start[k][0] for k in self.end if k in self.start}

    def cpu(self) -> dict[str, float]:
        """Process CPU seconds while each node ran (all threads; robust to other processes' load)."""
        return {k: self.end[k][1] - self.start[k][1] for k in self.end if k in self.start}


@dataclass
class RunResult:
    outputs: dict                                   # {node_id: ui dict}
    wall: dict = field(default_factory=dict)        # node_id -> seconds (nodes that executed)
    calls: dict = field(default_factory=dict)       # node_id -> metered model calls
    model_seconds: dict = field(default_factory=dict)
    seconds: float = 0.0                            # the whole prompt
    cpu: dict = field(default_factory=dict)         # node_id -> process CPU seconds

    def ui(self, node) -> dict:
        return self.outputs[node.id if hasattr(node, "id") else str(node)]

    def node_wall(self, node) -> float:
        return self.wall.get(node.id if hasattr(node, "id") else str(node), float("nan"))

    def node_calls(self, node) -> int:
        return self.calls.get(node.id if hasattr(node, "id") else str(node), 0)

    def node_cpu(self, node) -> float:
        return self.cpu.get(node.id if hasattr(node, "id") else str(node), float("nan"))

    def node_model_seconds(self, node) -> float:
        return self.model_seconds.get(node.id if hasattr(node, "id") else str(node), 0.0)


def _find_meter():
    """The CALL_METER of the support pack as ComfyUI imported it (module named after its custom_nodes path)."""
    target = os.path.realpath(REPO_ROOT / "tests" / "support_pack" / "learned_nodes.py")
    for mod in list(sys.modules.values()):
        f = getattr(mod, "__file__", None)
        if f and os.path.realpath(f) == target and hasattr(mod, "CALL_METER"):
            return mod.CALL_METER
    raise RuntimeError("the test-support pack's learned_nodes module is not loaded (InvTestCallMeter missing)")


class Host:
    """One in-process ComfyUI (CPU) with the pack and the test-support pack; see the module docstring."""

    def __init__(self, threads: int | None = None, quiet: bool = True, gpu: bool = False, extra_nodes=()):
        """``extra_nodes``: (link name, folder) node packs linked into custom_nodes/ as well (e.g. demo_pack/)."""
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        self.comfy_dir = ch.comfyui_dir()
        python = ch.comfyui_python()
        if not (self.comfy_dir / "main.py").is_file():
            raise SystemExit(f"no ComfyUI at {self.comfy_dir}: run scripts/provision_host.sh first")
        t0 = time.perf_counter()
        models = ch.build_models(python, self.comfy_dir)
        tmp = tempfile.mkdtemp(prefix="exact_inversion_bench_")
        atexit.register(shutil.rmtree, tmp, True)   # links into the repo are unlinked, not followed
        base = ch.make_base_dir(Path(tmp), models)
        for link, folder in extra_nodes:
            (base / "custom_nodes" / link).symlink_to(Path(folder).resolve(), target_is_directory=True)
        if gpu:
            # InProcessComfy forces args.cpu = True before comfy.model_management is imported; model_management
            # fixes its device at import, so importing it first with args.cpu = False keeps the GPU.
            if str(self.comfy_dir) not in sys.path:
                sys.path.insert(0, str(self.comfy_dir))
            from comfy.cli_args import args as comfy_args

            comfy_args.cpu = False
            import comfy.model_management  # noqa: F401
        self.runner = ch.InProcessComfy.get(self.comfy_dir, base)
        if gpu:
            comfy_args.cpu = False
        self.startup_seconds = time.perf_counter() - t0
        if self.runner.pack_module() is None:
            raise SystemExit("the Exact Inversion pack did not import into ComfyUI (see the log above)")
        import comfy.utils

        if quiet:
            comfy.utils.PROGRESS_BAR_ENABLED = False   # no tqdm bars on stderr (same for the stock samplers)
        self.meter = _find_meter()
        self.clock = NodeClock(self.meter)
        self.runner.executor.server = self.clock
        self.models_dir = models

    def version(self) -> str:
        try:
            text = (self.comfy_dir / "comfyui_version.py").read_text()
            return re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text).group(1)
        except (OSError, AttributeError):
            return "?"

    def run(self, graph, fresh=()) -> RunResult:
        """Run a graph; nodes in ``fresh`` (NodeRefs or ids) get a unique dummy input, so they (and everything
        downstream of them) execute again instead of coming from ComfyUI's cache."""
        prompt = ch.as_prompt(graph)
        nonce = uuid.uuid4().hex
        for node in fresh:
            nid = node.id if hasattr(node, "id") else str(node)
            prompt[nid]["inputs"][ch.FRESH_INPUT] = nonce
        self.clock.reset()
        self.meter.reset()
        t0 = time.perf_counter()
        outputs = self.runner.run(prompt)
        seconds = time.perf_counter() - t0
        return RunResult(outputs, self.clock.walls(), dict(self.meter.calls), dict(self.meter.seconds), seconds,
                         self.clock.cpu())


# --------------------------------------------------------------------------------------------------- memory
def _status_kib(field_name: str) -> int:
    with open("/proc/self/status") as f:
        m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) if m else -1


def _trim():
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)   # give freed heap pages back, so reuse shows up as new RSS
    except (OSError, AttributeError):
        pass


def peak_rss_supported() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_kib("VmHWM") > 0
    except OSError:
        return False


def peak_rss_delta(fn):
    """(result, peak RSS above the RSS before, RSS retained after (after gc + malloc_trim)), MiB; resets VmHWM
    with /proc/self/clear_refs ("5")."""
    _trim()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    result = fn()
    peak = _status_kib("VmHWM")
    _trim()
    after = _status_kib("VmRSS")
    return result, (peak - before) / 1024.0, (after - before) / 1024.0


def machine_description() -> dict:
    import platform

    import torch

    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else platform.processor()
    except OSError:
        cpu = platform.processor() or "?"
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
            mem = f"{kib / 2**20:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory": mem, "python": platform.python_version(),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
