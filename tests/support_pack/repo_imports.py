"""Import the repository's pure-Python packages (``inversion_core``, ``testbed``) from inside ComfyUI.

ComfyUI loads this support pack through a symlink in ``<base>/custom_nodes``; ``os.path.realpath`` resolves it
back into the repository. The packages are found with ``PathFinder`` on the repository root only and registered
under their plain names, without putting the repository root on ``sys.path``: the root also holds the pack's
``nodes/`` package, which must never shadow ComfyUI's own ``nodes`` module.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


def import_repo_package(name: str, root: str = REPO_ROOT):
    """Import top-level package ``name`` from ``root`` (cached in ``sys.modules`` under ``name``)."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    spec = importlib.machinery.PathFinder.find_spec(name, [root])
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


def import_repo_module(dotted: str, root: str = REPO_ROOT):
    """``import_repo_module("inversion_core.analytic")``: load the top-level package from ``root``, then the module."""
    import_repo_package(dotted.split(".", 1)[0], root)
    return importlib.import_module(dotted)
