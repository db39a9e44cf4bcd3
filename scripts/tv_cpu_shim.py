"""Let a CUDA-built torchvision wheel import on a CPU-only torch (test host only).

PyPI only ships torchvision 0.28.0 built against CUDA: its ``_C`` extension cannot load next to a CPU torch, and
``torchvision/_meta_registrations.py`` then fails at import with ``operator torchvision::nms does not exist``
because it registers fake kernels for ops that were never defined. This module installs a one-shot
``sys.meta_path`` hook (from ``tv_cpu_shim.pth``). On the first ``import torchvision`` it tries to load the real
``_C``; only if that fails does it declare the two operator schemas (``nms``, ``qnms``) so the pure-Python parts
ComfyUI uses (transforms, model definitions) import. The ops themselves stay unimplemented. It never imports torch
at interpreter start-up, and on a machine where torchvision's ``_C`` loads it does nothing.
"""
import importlib.machinery
import sys

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBS = []  # keep the torch.library.Library objects alive


def _declare_missing_schemas(spec):
    import glob
    import os

    import torch

    for location in spec.submodule_search_locations or []:
        for so in glob.glob(os.path.join(location, "_C*.so")) + glob.glob(os.path.join(location, "_C*.pyd")):
            try:
                torch.ops.load_library(so)
                return  # the real extension loaded: nothing to do
            except (OSError, RuntimeError):
                pass
    lib = torch.library.Library("torchvision", "DEF")
    for name, schema in _SCHEMAS.items():
        try:
            getattr(torch.ops.torchvision, name)
        except (AttributeError, RuntimeError):
            lib.define(schema)
    _LIBS.append(lib)


class _TorchvisionShimFinder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != "torchvision":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not cls]
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None:
            try:
                _declare_missing_schemas(spec)
            except Exception as exc:  # never break the import itself
                print(f"tv_cpu_shim: {exc!r}", file=sys.stderr)
        return spec


if not any(f is _TorchvisionShimFinder for f in sys.meta_path):
    sys.meta_path.insert(0, _TorchvisionShimFinder)
