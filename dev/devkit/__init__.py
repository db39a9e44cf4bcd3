"""Development kit: what the showcase, the demo pack, the benchmarks, the workflow generator and the tests share.
Never part of the pack (ComfyUI loads the repository root, which imports nothing from here).

Modules
* ``devkit.harness``: the pack inside a real ComfyUI: a server subprocess (``ComfyServer``), an in-process
  ``PromptExecutor`` (``InProcessComfy``), base directories, the API-graph builder, the test-model build. Needs
  neither torch nor ComfyUI to import.
* ``devkit.analytic_models``: MODELs whose denoiser is a known function (the Gaussian-mixture ground truth, the
  learned testbed denoiser); ``devkit.conditional_models``: the class-conditional one (the digits demo, the edit
  benchmark). Import them inside a ComfyUI process only (they import ``comfy``).
* ``devkit.workflow_format``: the ComfyUI UI-workflow format (LiteGraph v0.4) <-> API prompts, with the frontend's
  widget rules and the validator; ``devkit.example_workflows``: the definitions of ``example_workflows/`` (written
  by ``scripts/make_workflows.py``).

How to import it (the one mechanism)
------------------------------------
Put ``<repository>/dev`` on ``sys.path`` and ``import devkit``. That folder holds nothing but this package, so it
shadows nothing; the repository root itself must never be on ``sys.path`` of a process that imports ComfyUI (the
root holds the pack's ``nodes/``, which would shadow ComfyUI's ``nodes`` module). Where it happens:

* pytest: ``pythonpath = ["dev"]`` in ``pyproject.toml``;
* the ComfyUI-loaded packs (``tests/support_pack``, ``demo_pack``), the showcase, ``benchmarks/host_support.py``
  and the ``scripts/``: one ``sys.path.insert(0, <repository>/dev)`` next to their first ``devkit`` import.

The repository's other top-level packages (``inversion_core``, ``testbed``, ``showcase``, ``benchmarks``) are
then loaded with :func:`import_repo_package` / :func:`import_repo_module`: found on the repository root only and
registered in ``sys.modules`` under their plain names, again without putting the root on ``sys.path``.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

REPO_ROOT = Path(os.path.realpath(__file__)).parent.parent.parent
DEV_DIR = REPO_ROOT / "dev"


def import_repo_package(name: str, root: str | os.PathLike = REPO_ROOT):
    """Import top-level package ``name`` from ``root`` (cached in ``sys.modules`` under ``name``)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.machinery.PathFinder.find_spec(name, [str(root)])
    if spec is None:
        raise ImportError(f"package {name!r} not found under {root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_repo_module(dotted: str, root: str | os.PathLike = REPO_ROOT):
    """``import_repo_module("inversion_core.analytic")``: load the top-level package from ``root``, then the module."""
    import_repo_package(dotted.split(".", 1)[0], root)
    return importlib.import_module(dotted)
