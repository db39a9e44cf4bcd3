"""Make a torchaudio whose compiled extension cannot load import as one without it (test host only).

ComfyUI since 2026-01 imports torchaudio unconditionally (``comfy/sd.py`` -> the LTX-2 audio VAE), so the server
and the in-process executor cannot start without it. The registry has no torchaudio built for CPU torch 2.13.0:
the newest (2.11.1) links CUDA libraries, and ``torchaudio._extension`` raises ``OSError`` when its
``lib/_torchaudio*.so`` fails to load. torchaudio supports running without the extension when the library files
are *absent* (``_load_lib`` returns False and only the pure-Python ``functional`` / ``transforms`` remain), which
is all ComfyUI needs to import.

Installed as a ``.pth`` hook in the host venv (scripts/provision_host.sh). When ``torchaudio._extension.utils`` is
first imported, this module tries to load torchaudio's own library files itself. If every one loads (a matching
build) it does nothing more. If one fails, it points that module's library directory at a folder that holds no
libraries, so torchaudio takes its own "extension not present" path instead of failing. It imports neither torch nor
torchaudio at interpreter start-up.
"""
import importlib.machinery
import os
import sys

_MODULE = "torchaudio._extension.utils"
LOAD_ERRORS = []  # (library, error) for each library file that failed to load; read by whoever wants to know


def _library_files(lib_dir):
    try:
        names = sorted(os.listdir(lib_dir))
    except OSError:
        return []
    return [os.path.join(lib_dir, n) for n in names if n.endswith((".so", ".pyd")) and "torchaudio" in n]


def _extension_loads(lib_dir):
    import torch

    ok = True
    for path in _library_files(lib_dir):
        try:
            torch.ops.load_library(path)
        except OSError as exc:
            LOAD_ERRORS.append((path, str(exc)))
            ok = False
    return ok


class _Loader(importlib.machinery.SourceFileLoader):
    """The module's own source loader, plus the library-directory fix after it ran."""

    def exec_module(self, module):
        super().exec_module(module)
        lib_dir = getattr(module, "_LIB_DIR", None)
        if lib_dir is not None and not _extension_loads(str(lib_dir)):
            # a sibling of lib/ that never holds libraries: _load_lib() globs it, finds nothing, returns False
            module._LIB_DIR = type(lib_dir)(str(lib_dir) + "-unloadable-cuda-build")


class _Finder:
    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(cls)  # one shot
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is not None and isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            spec.loader = _Loader(spec.loader.name, spec.loader.path)
        return spec


if _Finder not in sys.meta_path:
    sys.meta_path.insert(0, _Finder)
