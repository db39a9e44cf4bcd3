"""Security: the pack loads nothing with pickle, reaches no network, evaluates no code, and validates an
INVERSION before using it.

* Static: the pack's shipped code (``__init__.py``, ``nodes/``, ``inversion_core/``) is parsed (AST, so docstrings
  and comments do not count) for imports and calls that deserialize pickles, evaluate code, start processes or
  open connections. Files are read only through safetensors.
* Dynamic (in-process ComfyUI): every node runs while ``torch.load``, the pickle loaders and socket connections
  raise; none is touched.
* INVERSION: a literal typed into a hand-edited API JSON reaches the node as a plain value (ComfyUI only validates
  primitive widgets) and is refused over the server (test_hardening_inputs); here: a bogus Python object, an
  InversionRecord built with inconsistent fields, and a record tampered with after it was made (as another custom
  node could hand over) are all refused with a message naming the node and the input.

The static checks and the InversionRecord checks (the record class called directly) do not depend on the ComfyUI
version and run on the default host only (``host_independent``); the tests that run the nodes in ComfyUI run on
every host.
"""
from __future__ import annotations

import ast
import pickle
import socket
import sys
from pathlib import Path

import pytest

from devkit import harness as ch

PACK_FILES = sorted([ch.REPO_ROOT / "__init__.py", *(ch.REPO_ROOT / "nodes").rglob("*.py"),
                     *(ch.REPO_ROOT / "inversion_core").rglob("*.py")])

FORBIDDEN_MODULES = {
    "pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal", "copyreg",
    "socket", "ssl", "urllib", "urllib2", "urllib3", "http", "requests", "httpx", "aiohttp", "websocket",
    "websockets", "ftplib", "smtplib", "telnetlib", "xmlrpc", "subprocess", "multiprocessing", "ctypes",
    "huggingface_hub", "importlib",
}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "execfile", "input", "breakpoint"}
FORBIDDEN_ATTRIBUTES = {
    ("torch", "load"), ("torch.jit", "load"), ("torch.hub", "load"), ("torch.hub", "load_state_dict_from_url"),
    ("torch", "hub"), ("numpy", "load"), ("np", "load"), ("os", "system"), ("os", "popen"), ("os", "exec"),
    ("pickle", "load"), ("pickle", "loads"), ("comfy.utils", "load_torch_file"), ("utils", "load_torch_file"),
}


def _dotted(node) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _findings(path: Path, source: str | None = None) -> list[str]:
    source = path.read_text() if source is None else source
    tree = ast.parse(source, filename=str(path))
    label = path.relative_to(ch.REPO_ROOT) if path.is_relative_to(ch.REPO_ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        where = f"{label}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{where} import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{where} from {node.module} import ...")
            for alias in node.names:
                if (node.module, alias.name) in FORBIDDEN_ATTRIBUTES:
                    found.append(f"{where} from {node.module} import {alias.name}")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in FORBIDDEN_CALLS or name in {"builtins.eval", "builtins.exec", "builtins.__import__"}:
                found.append(f"{where} call {name}()")
            head, _, tail = name.rpartition(".")
            if (head, tail) in FORBIDDEN_ATTRIBUTES or tail in {"load_torch_file", "system", "popen"}:
                found.append(f"{where} call {name}()")
            if tail == "load" and head in {"torch", "pickle", "np", "numpy", "marshal"}:
                found.append(f"{where} call {name}()")
        elif isinstance(node, ast.Attribute) and (_dotted(node.value), node.attr) in FORBIDDEN_ATTRIBUTES:
            found.append(f"{where} uses {_dotted(node.value)}.{node.attr}")
    return found


@pytest.mark.host_independent
def test_pack_code_is_found():
    names = {p.relative_to(ch.REPO_ROOT).as_posix() for p in PACK_FILES}
    assert {"__init__.py", "nodes/validation.py", "nodes/record.py", "inversion_core/trajectory.py"} <= names


@pytest.mark.host_independent
@pytest.mark.parametrize("path", PACK_FILES, ids=lambda p: p.relative_to(ch.REPO_ROOT).as_posix())
def test_no_pickle_eval_network_or_processes(path):
    assert _findings(path) == []


@pytest.mark.host_independent
def test_the_scanner_catches_what_it_should(tmp_path):  # noqa: D103
    """The AST scan flags each forbidden pattern (so an empty result above means something)."""
    bad = tmp_path / "bad.py"
    bad.write_text("\n".join([
        '"""torch.load(x) in a docstring is fine."""',
        "import pickle", "import urllib.request", "from socket import create_connection", "import subprocess",
        "import torch", "torch.load('x.pt')", "eval('1')", "exec('x = 1')", "__import__('os')",
        "import numpy as np", "np.load('a.npy', allow_pickle=True)", "import os", "os.system('ls')",
        "from torch import load", "import requests", "torch.hub.load('a', 'b')",
    ]))
    findings = _findings(bad)
    for needle in ["import pickle", "import urllib.request", "from socket", "import subprocess", "torch.load",
                   "eval()", "exec()", "__import__()", "np.load", "os.system", "from torch import load",
                   "import requests", "torch.hub"]:
        assert any(needle in f for f in findings), (needle, findings)
    assert not any("docstring" in f for f in findings)


@pytest.mark.host_independent
def test_files_are_read_only_as_safetensors():
    """The pack opens no files itself except through safetensors (and writes none)."""
    offenders = []
    for path in PACK_FILES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name in {"open", "io.open", "os.open"} or name.endswith((".read_bytes", ".write_bytes",
                                                                              ".read_text", ".write_text")):
                    offenders.append(f"{path.relative_to(ch.REPO_ROOT)}:{node.lineno} {name}()")
    assert offenders == []


# --------------------------------------------------------------------------------------------------- dynamic
try:  # the static checks above run without torch; everything below needs the ComfyUI host anyway
    import torch
except ImportError:  # pragma: no cover
    torch = None
import node_graphs as c  # noqa: E402

pytestmark_torch = pytest.mark.skipif(torch is None, reason="needs torch (the ComfyUI host)")


class _Forbidden(Exception):
    pass


@pytestmark_torch
def test_nodes_touch_no_pickle_and_no_network_at_run_time(executor, monkeypatch):
    touched = []

    def refuse(what):
        def fn(*args, **kwargs):
            touched.append(what)
            raise _Forbidden(what)
        return fn

    for module, attr in [(torch, "load"), (pickle, "load"), (pickle, "loads"), (pickle, "Unpickler"),
                         (socket, "create_connection"), (socket, "getaddrinfo")]:
        monkeypatch.setattr(module, attr, refuse(f"{module.__name__}.{attr}"))
    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, seed=77)
    last = None
    for node_id, params in [("ExactInvExactInvert", dict(max_calls=4)), ("ExactInvDDIMInvert", {}),
                            ("ExactInvReNoiseInvert", dict(iterations=2, average_start=1, average_end=3)),
                            ("ExactInvEasyInvInvert", {}), ("ExactInvRNRIInvert", dict(variant="released")),
                            ("ExactInvNoiseCorrect", dict(iterations=2))]:
        last = c.invert(g, node_id, m, pos, pos, lat, 2, **params)
        c.compare(g, lat, last.out(c.LATENT))
    back = c.inverted_sampler(g, m, pos, pos, last.out(c.INVERSION))
    replay = g.node("ExactInvReplaySampler", inversion=last.out(c.INVERSION))
    sca = c.sampler_custom_advanced(g, m, pos, pos, last.out(c.NOISE), last.out(c.SIGMAS), lat, sampler=replay)
    inverter = g.node("ExactInvInversionSampler", method="exact", tolerance=1e-3, iterations=4)
    sc = c.sampler_custom(g, m, pos, pos, lat, last.out(c.SIGMAS), sampler=inverter)
    for out in (back, sca.out(0), sc.out(0)):
        c.compare(g, lat, out)
    c.run(executor, g)
    assert touched == []


# --------------------------------------------------------------------------------------------------- INVERSION
def _pack_module(suffix: str):
    full = f"{ch.PACK_LINK_NAME}.{suffix}"
    found = [m for k, m in sys.modules.items() if k.endswith(full) and k[: -len(full)][-1:] in ("/", ".", "")]
    assert len(found) == 1, f"pack module {suffix} imported {len(found)} times"
    return found[0]


def _record_fields(record_module, **changes):
    x = torch.randn(1, 4, 8, 8)
    fields = dict(sigmas=torch.tensor([14.6, 1.0, 0.0]), latents=[x * 14.6, x, x], noises=[None, None],
                  parametrization="ve", step_kind="euler", eta=1.0, s_noise=1.0, fingerprint="f",
                  model_description="m", method="ddim")
    fields.update(changes)
    return fields


BOGUS_FIELDS = {   # lambdas: built only when a test runs (torch)
    "increasing sigmas": lambda: dict(sigmas=torch.tensor([0.0, 1.0, 14.6])),
    "one sigma": lambda: dict(sigmas=torch.tensor([1.0]), latents=[torch.zeros(1, 4, 8, 8)], noises=[]),
    "latents missing": lambda: dict(latents=[torch.zeros(1, 4, 8, 8)] * 2),
    "noises missing": lambda: dict(noises=[None]),
    "latent shapes differ": lambda: dict(latents=[torch.zeros(1, 4, 8, 8), torch.zeros(2, 4, 8, 8),
                                                  torch.zeros(1, 4, 8, 8)]),
    "NaN latent": lambda: dict(latents=[torch.full((1, 4, 8, 8), float("nan"))] * 3),
    "a latent that is not a tensor": lambda: dict(latents=[[0.0]] * 3),
    "unknown parametrization": lambda: dict(parametrization="magic"),
    "unknown step kind": lambda: dict(step_kind="dpmpp_2m"),
    "ancestral steps without noises": lambda: dict(step_kind="euler_ancestral"),
    "NaN eta": lambda: dict(eta=float("nan")),
    "noise of the wrong shape": lambda: dict(step_kind="euler_ancestral",
                                             noises=[torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 8, 8)]),
    "residuals missing": lambda: dict(residuals=[None]),
    "residual of the wrong shape": lambda: dict(residuals=[None, torch.zeros(1, 4, 4, 4)]),
    "NaN residual": lambda: dict(residuals=[torch.full((1, 4, 8, 8), float("nan")), None]),
    "a residual that is not a tensor": lambda: dict(residuals=[[0.0], None]),
}


def needs_fix(fix: str, *values):
    """Expected to fail until node fix ``fix`` (hardening report, with its diff) is applied; then drop the mark."""
    return pytest.param(*values, marks=pytest.mark.xfail(strict=True, reason=f"needs node fix {fix}"))


UNFIXED_F1 = set()


def _cases(names):
    return [needs_fix("F1", n) if n in UNFIXED_F1 else n for n in names]


@pytestmark_torch
@pytest.mark.host_independent   # the record class itself, called directly (the executor only imports the pack)
@pytest.mark.parametrize("case", _cases(BOGUS_FIELDS))
def test_inversion_record_refuses_inconsistent_fields(executor, case):
    record = _pack_module("nodes.record")
    record.InversionRecord(**_record_fields(record))           # the baseline is valid
    with pytest.raises(ValueError, match="INVERSION"):
        record.InversionRecord(**_record_fields(record, **BOGUS_FIELDS[case]()))


TAMPER = {
    "a dict": lambda r: {"sigmas": r.sigmas.tolist(), "latents": []},
    "an object with the same attributes": lambda r: type("FakeRecord", (), dict(vars(r)))(),
    "NaN written into the inverted latent": lambda r: _mutated(r, lambda t: t.latents[0].fill_(float("nan"))),
    "sigmas reversed": lambda r: _mutated(r, lambda t: setattr(t, "sigmas", t.sigmas.flip(0))),
    "latents dropped": lambda r: _mutated(r, lambda t: setattr(t, "latents", t.latents[:1])),
    "latent resized": lambda r: _mutated(r, lambda t: setattr(t, "latents", tuple(x[..., :4, :4] for x in t.latents))),
}


def _mutated(record, change):
    import copy

    clone = copy.copy(record)
    clone.latents = tuple(t.clone() for t in record.latents)
    change(clone)
    return clone


class _Tamper:
    """Test-only node (in-process only): INVERSION -> something else posing as an INVERSION."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"inversion": ("INVERSION",), "how": (list(TAMPER),)}}

    RETURN_TYPES = ("INVERSION",)
    FUNCTION = "tamper"
    CATEGORY = "testing/exact_inversion"

    def tamper(self, inversion, how):
        return (TAMPER[how](inversion),)


@pytestmark_torch
@pytest.mark.parametrize("consumer", ["ExactInvInvertedSampler", "ExactInvReplaySampler"])
@pytest.mark.parametrize("how", _cases(TAMPER))
def test_tampered_inversion_is_refused_before_use(executor, monkeypatch, how, consumer):
    monkeypatch.setitem(executor.nodes.NODE_CLASS_MAPPINGS, "HardenTamper", _Tamper)
    g = ch.Graph()
    m, pos, lat = c.model(g), c.cond(g), c.latent(g, seed=78)
    inv = c.invert(g, "ExactInvNoiseCorrect", m, pos, pos, lat, 3, iterations=2)
    bad = g.node("HardenTamper", inversion=inv.out(c.INVERSION), how=how)
    if consumer == "ExactInvInvertedSampler":
        user = c.inverted_sampler(g, m, pos, pos, bad)
        out, display = user, "Inverted Sampler"
    else:
        user = g.node("ExactInvReplaySampler", inversion=bad)
        out = c.sampler_custom_advanced(g, m, pos, pos, inv.out(c.NOISE), inv.out(c.SIGMAS), lat, sampler=user).out(0)
        display = "Replay Sampler"
    g.node("InvTestSaveTensor", latent=out, name="tampered")
    with pytest.raises(ch.PromptExecutionError) as info:
        c.run(executor, g)
    err = info.value
    print(f"\nBAD-INPUT | INVERSION tampered: {how} | {display} | {err.exception_message.strip()}")
    assert err.node_id == user.id, f"not refused by {display} itself but by {err.node_type}: {err.exception_message}"
    assert err.exception_type.endswith("NodeInputError"), err
    assert err.exception_message.startswith(f"{display}: input 'inversion' "), err.exception_message
