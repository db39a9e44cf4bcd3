"""Pytest fixtures: the pack running inside a real ComfyUI (see dev/devkit/harness.py for the runner API).

Fixtures (session scope unless noted)
* ``comfy_dir`` / ``comfy_python``: ComfyUI location (env COMFYUI_DIR, default .cache/comfy-host/ComfyUI) and its
  interpreter (env COMFYUI_PYTHON, default the provisioned venv). Missing host: the tests that need it skip, or
  fail when EXACT_INVERSION_REQUIRE_HOST=1 (scripts/test.sh sets it).
* ``test_models_dir``: models/ tree written by tests/support_pack/build_models.py (cached in .cache/test-models).
* ``server``: a ComfyServer (main.py subprocess) on a free port with its own tmp base dir; launched at session
  start (not waited for) when any selected test uses it.
* ``executor``: an InProcessComfy (ComfyUI's PromptExecutor in this process, own tmp base dir). Skips unless
  pytest runs under the ComfyUI interpreter.
* ``pack_nodes``: [{"class", "node_id", "v3"}] of the pack's NODE_LIST as ComfyUI imports it.
* ``graph`` (function scope): an empty ``devkit.harness.Graph``.
* ``demo_server``: a ComfyServer with the pack, ``demo_pack/`` and the support pack: the showcase's ComfyUI
  (``showcase.client.make_base_dir``) plus the test nodes (e.g. InvTestEvalLatents). One for the session (two
  modules use it; it starts in ~10-25 s), launched at session start like ``server``.

``devkit`` (``dev/devkit``, on sys.path through ``pythonpath`` in pyproject.toml) is the harness and model
library; ``inversion_core`` is importable in tests (registered in sys.modules by ``devkit.import_repo_package``,
without putting the repo root on sys.path).
"""
from __future__ import annotations

import os
import sys

import pytest

import devkit
from devkit import harness as ch

try:  # make `import inversion_core` work in every test module
    devkit.import_repo_package("inversion_core")
except ImportError:
    pass


def pytest_report_header(config):
    """Name the ComfyUI the suite runs against (scripts/test.sh can provision several, see COMPAT.md)."""
    d = ch.comfyui_dir()
    version = "not provisioned"
    try:
        text = (d / "comfyui_version.py").read_text()
        version = text.split("__version__", 1)[1].split("=", 1)[1].strip().splitlines()[0].strip("\"'")
    except (OSError, IndexError):
        if (d / "main.py").is_file():
            version = "unknown version"
    return f"ComfyUI: {version} at {d}"


CORE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "core")


def pytest_collection_modifyitems(config, items):
    """tests/core is the math alone (no ComfyUI): host-independent as a whole (scripts/test.sh also leaves the
    folder out on the other hosts, which saves collecting it)."""
    for item in items:
        if os.path.commonpath([str(item.path), CORE_DIR]) == CORE_DIR:
            item.add_marker(pytest.mark.host_independent)


def _host_missing(reason: str):
    if os.environ.get("EXACT_INVERSION_REQUIRE_HOST") == "1":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def comfy_dir():
    d = ch.comfyui_dir()
    if not (d / "main.py").is_file():
        _host_missing(f"no ComfyUI at {d}: run scripts/provision_host.sh (or set COMFYUI_DIR)")
    return d


@pytest.fixture(scope="session")
def comfy_python(comfy_dir):
    py = ch.comfyui_python()
    try:
        ch.interpreter_prefix(py)
    except Exception as exc:  # noqa: BLE001
        _host_missing(f"COMFYUI_PYTHON={py} does not run: {exc}")
    return py


@pytest.fixture(scope="session")
def test_models_dir(comfy_dir, comfy_python):
    return ch.build_models(comfy_python, comfy_dir)


@pytest.fixture(scope="session")
def _server_process(tmp_path_factory, comfy_dir, comfy_python, test_models_dir):
    base = ch.make_base_dir(tmp_path_factory.mktemp("comfy_server"), test_models_dir)
    srv = ch.ComfyServer(comfy_dir, comfy_python, base).launch()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session", autouse=True)
def _prestart_server(request):
    """Launch the servers at session start (without waiting) when any selected test uses them, so their start-up
    (~5 s; the demo server's ~10-25 s) overlaps with the in-process ComfyUI import and the first tests."""
    for name, process in (("server", "_server_process"), ("demo_server", "_demo_server_process")):
        if any(name in getattr(item, "fixturenames", ()) for item in request.session.items):
            try:
                request.getfixturevalue(process)
            except (pytest.skip.Exception, pytest.fail.Exception):
                pass  # re-raised where a test really asks for the server


@pytest.fixture(scope="session")
def server(_server_process):
    return _server_process.wait_ready()


@pytest.fixture(scope="session")
def executor(tmp_path_factory, comfy_dir, comfy_python, test_models_dir):
    if not ch.running_in(comfy_python):
        pytest.skip(f"in-process ComfyUI needs pytest to run under COMFYUI_PYTHON={comfy_python} "
                    f"(this is {os.path.realpath(sys.prefix)}); the server fixture still works")
    base = ch.make_base_dir(tmp_path_factory.mktemp("comfy_inproc"), test_models_dir)
    return ch.InProcessComfy.get(comfy_dir, base)


@pytest.fixture(scope="session")
def pack_nodes(request, comfy_dir, comfy_python):
    """[{"class", "node_id", "v3"}] for every class in the pack's nodes.NODE_LIST, read from the pack as ComfyUI
    imports it: from the in-process ComfyUI when available, else from a fresh ComfyUI interpreter (which also
    reports the import traceback if the pack fails to import)."""
    try:
        inproc = request.getfixturevalue("executor")
    except pytest.skip.Exception:
        inproc = None
    if inproc is not None and inproc.pack_module() is not None:
        return inproc.pack_node_list()
    return ch.pack_node_list(comfy_python, comfy_dir)


@pytest.fixture
def graph():
    return ch.Graph()


@pytest.fixture(scope="session")
def _demo_server_process(tmp_path_factory, comfy_dir, comfy_python):
    client = devkit.import_repo_module("showcase.client")
    base = client.make_base_dir(tmp_path_factory.mktemp("comfy_demo"))
    (base / "custom_nodes" / ch.SUPPORT_LINK_NAME).symlink_to(ch.SUPPORT_PACK_DIR, target_is_directory=True)
    srv = ch.ComfyServer(comfy_dir, comfy_python, base).launch()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def demo_server(_demo_server_process):
    """A ComfyUI server with the pack, demo_pack/ and the support pack (as the showcase, plus the test nodes)."""
    return _demo_server_process.wait_ready()
