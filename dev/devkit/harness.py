"""Helpers to run the pack inside a real ComfyUI: a server subprocess and an in-process PromptExecutor.

Both runners have the same interface::

    outputs = runner.run(graph, timeout=300, fresh=False)   # {node_id: ui dict} of the output nodes
    runner.load_tensor(outputs, node_id)                    # tensor saved by an InvTestSaveTensor node
    runner.put_tensor("x.safetensors", tensor)              # into the input dir, for InvTestLoadTensor
    runner.output_dir, runner.input_dir, runner.models_dir, runner.base_dir

Errors: a prompt that fails validation raises ``PromptValidationError`` (``.error``, ``.node_errors``; over HTTP
this is the 400 answer of POST /prompt); a node that raises during execution gives ``PromptExecutionError``
(``.node_id``, ``.node_type``, ``.exception_type``, ``.exception_message``, ``.traceback``; its message contains
node type, exception type and message); an interrupted prompt gives ``PromptInterrupted``.

Caching: both runners keep ComfyUI's default output cache across prompts, like a real ComfyUI, so loaded models
stay loaded between tests (CLASSIC; 0.33.0's server defaults to a RAM-pressure cache, which keeps everything at the
tests' sizes, and the in-process executor is CLASSIC on every version). A re-posted identical graph executes nothing
and returns the cached ui outputs.
``run(graph, fresh=True)`` adds a unique dummy input to every node: each node's cache signature changes and all of
them execute again (ComfyUI passes only declared inputs to a node, so the dummy is never seen by node code).

Importing this module needs neither torch nor ComfyUI.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Mapping

from . import REPO_ROOT

TESTS_DIR = REPO_ROOT / "tests"
SUPPORT_PACK_DIR = TESTS_DIR / "support_pack"
PACK_LINK_NAME = "exact_inversion"
SUPPORT_LINK_NAME = "inversion_test_support"
SUPPORT_NODE_IDS = (
    "InvTestTinyModel", "InvTestConditioning", "InvTestAnalyticModel", "InvTestAnalyticLatent",
    "InvTestLoadTensor", "InvTestProbeDenoiser", "InvTestCompare", "InvTestSaveTensor",
)
# Files written by tests/support_pack/build_models.py (relative to models/)
NARROW_UNET = "sd15narrow_unet_fp16.safetensors"      # diffusion_models/, detected as SD15 (320 ch, ctx 768)
NARROW_CKPT = "sd15narrow_ckpt_fp16.safetensors"      # checkpoints/
TINY_UNET = "tiny_unet_fp16.safetensors"              # diffusion_models/, TinySD15 (32 ch, ctx 32)
FRESH_INPUT = "_harness_fresh"


# ----------------------------------------------------------------------------------------------- locations
def comfyui_dir() -> Path:
    return Path(os.environ.get("COMFYUI_DIR") or REPO_ROOT / ".cache" / "comfy-host" / "ComfyUI").resolve()


def comfyui_python() -> str:
    env = os.environ.get("COMFYUI_PYTHON")
    if env:
        return env
    venv_py = REPO_ROOT / ".cache" / "comfy-host" / "venv" / "bin" / "python"
    return str(venv_py) if venv_py.exists() else sys.executable


def interpreter_prefix(python: str) -> str:
    out = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True)
    return os.path.realpath(out.stdout.strip())


def running_in(python: str) -> bool:
    """True if this process runs under ``python`` (compared by sys.prefix: venv pythons are symlinks)."""
    try:
        return interpreter_prefix(python) == os.path.realpath(sys.prefix)
    except (OSError, subprocess.CalledProcessError):
        return False


# ----------------------------------------------------------------------------------------------- errors
class ComfyError(Exception):
    pass


class PromptValidationError(ComfyError):
    def __init__(self, error: Any, node_errors: Mapping):
        self.error = error
        self.node_errors = dict(node_errors or {})
        msg = error.get("message", error) if isinstance(error, dict) else error
        details = "; ".join(
            f"node {nid} ({ne.get('class_type')}): " + ", ".join(
                f"{e.get('type')}: {e.get('message')} {e.get('details', '')}".strip() for e in ne.get("errors", []))
            for nid, ne in self.node_errors.items())
        super().__init__(f"prompt validation failed: {msg}" + (f" -- {details}" if details else ""))


class PromptExecutionError(ComfyError):
    def __init__(self, data: Mapping, messages=None):
        self.data = dict(data)
        self.messages = messages
        self.node_id = data.get("node_id")
        self.node_type = data.get("node_type")
        self.exception_type = data.get("exception_type")
        self.exception_message = data.get("exception_message")
        tb = data.get("traceback") or []
        self.traceback = "".join(tb) if isinstance(tb, list) else str(tb)
        super().__init__(f"node {self.node_id} ({self.node_type}) raised {self.exception_type}: "
                         f"{self.exception_message}\n{self.traceback}")


class PromptInterrupted(ComfyError):
    pass


def _raise_for_status_messages(messages):
    for event, data in messages or []:
        if event == "execution_error":
            raise PromptExecutionError(data, messages)
        if event == "execution_interrupted":
            raise PromptInterrupted(f"prompt interrupted at node {data.get('node_id')} ({data.get('node_type')})")


# ----------------------------------------------------------------------------------------------- graphs
class NodeRef:
    def __init__(self, graph: "Graph", node_id: str):
        self.graph, self.id = graph, node_id

    def out(self, index: int = 0) -> list:
        return [self.id, index]

    def __getitem__(self, index: int) -> list:
        return self.out(index)

    def set_input(self, name: str, value) -> "NodeRef":
        self.graph.nodes[self.id]["inputs"][name] = _link(value)
        return self


def _link(value):
    return value.out(0) if isinstance(value, NodeRef) else value


class Graph:
    """A tiny API-format graph builder.

    ``g = Graph(); m = g.node("UNETLoader", unet_name=..., weight_dtype="default")``;
    ``g.node("KSampler", model=m, ...)`` (a NodeRef means its output 0; ``m.out(1)`` / ``m[1]`` another output).
    ``g.prompt`` (or ``dict(g)``-like ``to_api()``) is the API-format dict. Node ids are "1", "2", ... unless given.
    """

    def __init__(self):
        self.nodes: dict[str, dict] = {}
        self._next = 1

    def node(self, class_type: str, node_id: str | None = None, **inputs) -> NodeRef:
        if node_id is None:
            while str(self._next) in self.nodes:
                self._next += 1
            node_id = str(self._next)
        node_id = str(node_id)
        if node_id in self.nodes:
            raise ValueError(f"duplicate node id {node_id}")
        self.nodes[node_id] = {"class_type": class_type, "inputs": {k: _link(v) for k, v in inputs.items()}}
        return NodeRef(self, node_id)

    def to_api(self) -> dict:
        return copy.deepcopy(self.nodes)

    @property
    def prompt(self) -> dict:
        return self.to_api()


def as_prompt(graph) -> dict:
    return graph.to_api() if isinstance(graph, Graph) else copy.deepcopy(dict(graph))


def freshen(prompt: dict) -> dict:
    nonce = uuid.uuid4().hex
    for node in prompt.values():
        node.setdefault("inputs", {})[FRESH_INPUT] = nonce
    return prompt


# ----------------------------------------------------------------------------------------------- base dirs
def make_base_dir(base: Path, models_dir: Path | None = None, support_pack: bool = True) -> Path:
    """A ComfyUI --base-directory: custom_nodes/ links to the pack and (``support_pack``) the support pack,
    input/output/temp/user, and models/ (a symlink to ``models_dir`` when given)."""
    base = Path(base)
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    links = [(PACK_LINK_NAME, REPO_ROOT)] + ([(SUPPORT_LINK_NAME, SUPPORT_PACK_DIR)] if support_pack else [])
    for link, target in links:
        p = base / "custom_nodes" / link
        if not p.exists():
            p.symlink_to(target, target_is_directory=True)
    for sub in ("input", "output", "temp", "user"):
        (base / sub).mkdir(exist_ok=True)
    if models_dir is not None and not (base / "models").exists():
        (base / "models").symlink_to(Path(models_dir).resolve(), target_is_directory=True)
    else:
        (base / "models").mkdir(exist_ok=True)
    return base


def _tree_hash(paths) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def build_models(python: str, comfy_dir: Path, cache_root: Path | None = None, timeout: float = 600) -> Path:
    """Run support_pack/build_models.py (with the ComfyUI interpreter) once; returns a models dir.

    Results are cached under ``<repo>/.cache/test-models/<hash>`` (hash of the build scripts and ComfyUI's
    version file), so later sessions skip the ~5 s build.
    """
    cache_root = Path(cache_root or REPO_ROOT / ".cache" / "test-models")
    sources = [SUPPORT_PACK_DIR / "build_models.py", SUPPORT_PACK_DIR / "inv_test_models.py"]
    version_file = Path(comfy_dir) / "comfyui_version.py"
    key = _tree_hash(sources + ([version_file] if version_file.exists() else []))
    final = cache_root / key
    if (final / ".complete").exists():
        return final
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".tmp-{key}-{os.getpid()}"
    proc = subprocess.run([python, str(SUPPORT_PACK_DIR / "build_models.py"), str(comfy_dir), str(tmp)],
                          cwd=str(comfy_dir), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"build_models.py failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    (tmp / ".complete").write_text(proc.stdout)
    try:
        tmp.rename(final)
    except OSError:  # a concurrent session won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return final


_PACK_NODES_SCRIPT = r"""
import asyncio, importlib.util, json, sys
comfy_dir, pack_dir = sys.argv[1], sys.argv[2]
sys.path.insert(0, comfy_dir)
from comfy.cli_args import args
args.cpu = True
import utils.extra_config  # noqa: F401  (as main.py: before anything puts comfy/ first on sys.path)
from comfy_api.latest import ComfyExtension, io
name = "exact_inversion_pack_probe"
spec = importlib.util.spec_from_file_location(name, pack_dir + "/__init__.py", submodule_search_locations=[pack_dir])
mod = importlib.util.module_from_spec(spec)
sys.modules[name] = mod
spec.loader.exec_module(mod)
assert not hasattr(mod, "NODE_CLASS_MAPPINGS"), "V1 NODE_CLASS_MAPPINGS would hide the V3 entrypoint"
ext = asyncio.run(mod.comfy_entrypoint())
assert isinstance(ext, ComfyExtension), type(ext)
node_list = asyncio.run(ext.get_node_list())
assert node_list == list(mod.nodes.NODE_LIST)
out = [{"class": c.__qualname__, "node_id": c.GET_SCHEMA().node_id, "v3": issubclass(c, io.ComfyNode)}
       for c in node_list]
print("PACK_NODES=" + json.dumps(out))
"""


def pack_node_list(python: str, comfy_dir: Path, timeout: float = 300) -> list[dict]:
    """Import the pack in a fresh ComfyUI interpreter the way ``nodes.load_custom_node`` does and return
    ``[{"class", "node_id", "v3"}]`` for every class of ``nodes.NODE_LIST`` (via ``comfy_entrypoint``)."""
    proc = subprocess.run([python, "-c", _PACK_NODES_SCRIPT, str(comfy_dir), str(REPO_ROOT)], cwd=str(comfy_dir),
                          capture_output=True, text=True, timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("PACK_NODES="):
            return json.loads(line[len("PACK_NODES="):])
    raise RuntimeError(f"importing the pack failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


# ----------------------------------------------------------------------------------------------- shared bits
class _RunnerBase:
    base_dir: Path

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def models_dir(self) -> Path:
        return self.base_dir / "models"

    def put_tensor(self, filename: str, tensor, key: str = "samples", **more) -> str:
        """Write ``tensor`` (and ``more`` tensors) to the input dir as safetensors, for InvTestLoadTensor."""
        import safetensors.torch

        tensors = {key: tensor, **more}
        safetensors.torch.save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                                    str(self.input_dir / filename))
        return filename

    def load_tensor(self, outputs: Mapping, node_id, key: str = "samples"):
        """The tensor an InvTestSaveTensor node (``node_id``, or a NodeRef) wrote in this run."""
        import safetensors.torch

        node_id = node_id.id if isinstance(node_id, NodeRef) else str(node_id)
        info = outputs[node_id]["tensors"][0]
        path = self.output_dir / info.get("subfolder", "") / info["filename"]
        return safetensors.torch.load_file(str(path))[key]

    @staticmethod
    def ui(outputs: Mapping, node_id) -> dict:
        node_id = node_id.id if isinstance(node_id, NodeRef) else str(node_id)
        return outputs[node_id]


# ----------------------------------------------------------------------------------------------- server
def _die_with_parent() -> None:
    """preexec_fn: on Linux, SIGTERM the server when the pytest process dies (even by SIGKILL), so no orphan
    servers survive an aborted run. Elsewhere a no-op (teardown still stops the server)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def headless_chromium(chromium: str, user_dir: Path, url: str, attempts: int = 150):
    """Headless Chromium on ``url`` with a DevTools port: yields the page's DevTools websocket URL (None if no page
    came up in ``attempts`` x 0.2 s), and ends the browser on exit. Used by the frontend check scripts."""
    port = free_port()
    browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
                                f"--remote-debugging-port={port}", f"--user-data-dir={user_dir}", url],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        pages = []
        for _ in range(attempts):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as resp:
                    pages = [p for p in json.loads(resp.read()) if p.get("type") == "page"]
                if pages:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        yield pages[0]["webSocketDebuggerUrl"] if pages else None
    finally:
        browser.terminate()
        browser.wait(timeout=20)


class ComfyServer(_RunnerBase):
    """``main.py`` in a subprocess (CPU, tmp base dir, no frontend, in-memory DB, no API nodes)."""

    def __init__(self, comfy_dir: Path, python: str, base_dir: Path, port: int | None = None,
                 extra_args: tuple = ()):
        self.comfy_dir, self.python, self.base_dir = Path(comfy_dir), python, Path(base_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = tuple(extra_args)
        self.log_path = self.base_dir / "comfyui.log"
        self.proc: subprocess.Popen | None = None
        self._log = None
        self.startup_seconds: float | None = None

    # -- lifecycle
    def launch(self) -> "ComfyServer":
        """Popen main.py and return at once (see ``wait_ready``)."""
        if self.proc is not None:
            return self
        web = self.base_dir / "empty_web"
        web.mkdir(exist_ok=True)
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--disable-auto-launch", "--base-directory", str(self.base_dir), "--front-end-root", str(web),
               "--database-url", "sqlite:///:memory:", "--disable-api-nodes", *self.extra_args]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")
        self._t_launch = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=str(self.comfy_dir), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env, start_new_session=True,
                                     preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        return self

    def wait_ready(self, timeout: float = 240.0) -> "ComfyServer":
        """Poll /object_info until it answers; fail with the log tail if the process exits or times out."""
        if self.startup_seconds is not None:
            return self
        self.launch()
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode} during start-up:\n{self.log_tail()}")
            try:
                self._request("GET", "/object_info", timeout=10)
                break
            except (urllib.error.URLError, ConnectionError, OSError, TimeoutError):
                pass
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise TimeoutError(f"ComfyUI did not answer within {timeout} s:\n{self.log_tail()}")
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - self._t_launch
        return self

    def start(self, timeout: float = 240.0) -> "ComfyServer":
        return self.launch().wait_ready(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGINT)
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def import_failures(self) -> list[str]:
        return [ln for ln in self.log_text().splitlines() if "IMPORT FAILED" in ln]

    def log_about(self, needle: str, before: int = 25) -> str:
        """Log lines mentioning ``needle`` (e.g. a custom node folder), each with the lines before it."""
        lines = self.log_text().splitlines()
        keep = set()
        for i, ln in enumerate(lines):
            if needle in ln:
                keep.update(range(max(0, i - before), i + 1))
        return "\n".join(lines[i] for i in sorted(keep))

    # -- HTTP
    def _request(self, method: str, path: str, body=None, timeout: float = 30):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def object_info(self, node_class: str | None = None) -> dict:
        return self._request("GET", "/object_info" + (f"/{node_class}" if node_class else ""))

    def queue(self) -> dict:
        return self._request("GET", "/queue")

    def interrupt(self, prompt_id: str | None = None) -> None:
        self._request("POST", "/interrupt", {"prompt_id": prompt_id} if prompt_id else {})

    def free(self, unload_models: bool = True, free_memory: bool = True) -> None:
        """POST /free. Note: ComfyUI applies it after the *next* prompt finishes (queue worker loop)."""
        self._request("POST", "/free", {"unload_models": unload_models, "free_memory": free_memory})

    def history(self, prompt_id: str) -> dict:
        return self._request("GET", f"/history/{prompt_id}")

    def submit(self, graph, fresh: bool = False) -> str:
        prompt = as_prompt(graph)
        if fresh:
            freshen(prompt)
        body = {"prompt": prompt, "client_id": uuid.uuid4().hex}
        try:
            answer = self._request("POST", "/prompt", body)
        except urllib.error.HTTPError as e:
            payload = e.read()
            if e.code == 400:
                try:
                    err = json.loads(payload)
                except ValueError:
                    raise PromptValidationError(payload.decode(errors="replace"), {}) from None
                raise PromptValidationError(err.get("error"), err.get("node_errors", {})) from None
            raise
        if answer.get("node_errors"):
            raise PromptValidationError("node errors", answer["node_errors"])
        return answer["prompt_id"]

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        t0 = time.monotonic()
        while True:
            hist = self.history(prompt_id)
            if hist and prompt_id in hist:
                entry = hist[prompt_id]
                status = entry.get("status") or {}
                _raise_for_status_messages(status.get("messages"))
                if status.get("status_str") == "error":
                    raise PromptExecutionError({"node_type": "?", "exception_type": "?",
                                                "exception_message": json.dumps(status)})
                return entry.get("outputs", {})
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died while running {prompt_id}:\n{self.log_tail()}")
            if time.monotonic() - t0 > timeout:
                self.interrupt(prompt_id)
                raise TimeoutError(f"prompt {prompt_id} not finished after {timeout} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def run(self, graph, timeout: float = 300, fresh: bool = False) -> dict:
        return self.wait(self.submit(graph, fresh=fresh), timeout=timeout)


# ----------------------------------------------------------------------------------------------- in-process
class _NullServer:
    """What PromptExecutor needs of PromptServer when nobody listens."""

    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def send_sync(self, *args, **kwargs):
        pass

    def queue_updated(self, *args, **kwargs):
        pass


class InProcessComfy(_RunnerBase):
    """ComfyUI imported into this process; prompts run through ``execution.PromptExecutor``.

    One per process (ComfyUI is module-global state): ``InProcessComfy.get(comfy_dir, base_dir)``.
    Requires this interpreter to be ComfyUI's (see ``running_in``). Nodes run under ComfyUI's
    ``torch.inference_mode()`` exactly as in the server. Direct node calls outside ``run`` do not.
    """

    _instance: "InProcessComfy | None" = None

    @classmethod
    def get(cls, comfy_dir: Path, base_dir: Path) -> "InProcessComfy":
        if cls._instance is None:
            cls._instance = cls(comfy_dir, base_dir)
        elif Path(base_dir) != cls._instance.base_dir:
            raise RuntimeError("ComfyUI is already imported in this process with another base directory")
        return cls._instance

    def __init__(self, comfy_dir: Path, base_dir: Path):
        import asyncio

        self.comfy_dir, self.base_dir = Path(comfy_dir), Path(base_dir)
        t0 = time.monotonic()
        if "nodes" in sys.modules and not hasattr(sys.modules["nodes"], "NODE_CLASS_MAPPINGS"):
            raise RuntimeError(f"a foreign 'nodes' module is imported: {sys.modules['nodes']!r}")
        if str(self.comfy_dir) not in sys.path:
            sys.path.insert(0, str(self.comfy_dir))
        from comfy.cli_args import args

        args.cpu = True                          # before comfy.model_management is imported
        args.base_directory = str(self.base_dir)  # before folder_paths is imported
        args.disable_api_nodes = True
        if "folder_paths" in sys.modules:
            raise RuntimeError("folder_paths was imported before the in-process fixture set base_directory")
        # the order matters: folder_paths and ComfyUI's utils package before nodes shadows `utils`
        # isort: off
        import folder_paths  # noqa: F401
        import utils.extra_config  # noqa: F401  (ComfyUI's utils package, before nodes shadows `utils`)
        import execution
        import nodes
        # isort: on

        self.execution, self.nodes = execution, nodes
        self.import_failed = asyncio.run(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        self.server = _NullServer()
        # cache_args (lru/ram sizes) appeared after 0.3.52; older executors take cache_size (LRU only). 0.3.75
        # reads "ram" only for a RAM-pressure cache; newer ones (0.33.0) read "ram" and "ram_inactive" (GB of
        # headroom) at the start of every prompt, whatever the cache type. main.py's --cache-classic passes 0 for
        # both, which is what a CLASSIC cache means; keys an executor does not read are ignored.
        cache_kw = ({"cache_args": {"lru": 0, "ram": 0, "ram_inactive": 0}}
                    if "cache_args" in inspect.signature(execution.PromptExecutor).parameters else {})
        self.executor = execution.PromptExecutor(self.server, cache_type=execution.CacheType.CLASSIC, **cache_kw)
        self.startup_seconds = time.monotonic() - t0

    def object_info(self) -> dict:
        """Registered node ids (values are None: in-process there is no /object_info JSON)."""
        return {name: None for name in self.nodes.NODE_CLASS_MAPPINGS}

    def pack_module(self):
        """The pack's module as ComfyUI loaded it (``load_custom_node`` names it after its path), or None."""
        path = os.path.join(os.path.abspath(self.base_dir), "custom_nodes", PACK_LINK_NAME)
        return sys.modules.get(path.replace(".", "_x_"))

    def pack_node_list(self) -> list[dict]:
        """Like ``pack_node_list(python, comfy_dir)`` but from the pack ComfyUI loaded in this process."""
        import asyncio

        from comfy_api.latest import ComfyExtension, io

        mod = self.pack_module()
        if mod is None or not hasattr(mod, "comfy_entrypoint"):
            raise RuntimeError("the pack did not import in-process")
        ext = asyncio.run(mod.comfy_entrypoint())
        assert isinstance(ext, ComfyExtension), type(ext)
        return [{"class": c.__qualname__, "node_id": c.GET_SCHEMA().node_id, "v3": issubclass(c, io.ComfyNode)}
                for c in asyncio.run(ext.get_node_list())]

    def run(self, graph, timeout: float | None = None, fresh: bool = False) -> dict:
        import asyncio

        prompt = as_prompt(graph)
        if fresh:
            freshen(prompt)
        prompt_id = uuid.uuid4().hex
        ok, error, outputs, node_errors = asyncio.run(self.execution.validate_prompt(prompt_id, prompt, None))
        if not ok:
            raise PromptValidationError(error, node_errors)
        ex = self.executor
        ex.execute(prompt, prompt_id, {}, outputs)
        _raise_for_status_messages(ex.status_messages)
        if not any(ev == "execution_success" for ev, _ in ex.status_messages):
            raise ComfyError(f"prompt {prompt_id} did not succeed: {ex.status_messages!r}")
        return copy.deepcopy(ex.history_result["outputs"])

    def interrupt(self) -> None:
        self.nodes.interrupt_processing(True)

    def free(self) -> None:
        import comfy.model_management

        comfy.model_management.unload_all_models()
        self.executor.reset()

    def queue(self) -> dict:
        return {"queue_running": [], "queue_pending": []}

    def log_tail(self, lines: int = 60) -> str:
        return ""
