#!/usr/bin/env bash
# The test command: provision the CPU ComfyUI host (idempotent), then run pytest inside it.
#   bash scripts/test.sh [pytest args]      e.g. bash scripts/test.sh tests/test_host.py -k analytic -x
# Uses COMFYUI_DIR / COMFYUI_PYTHON when set (an existing ComfyUI), else .cache/comfy-host (see provision_host.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

provision_out="$(bash "$ROOT/scripts/provision_host.sh")"
COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$provision_out" | tail -n1)"
COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$provision_out" | tail -n1)"
[[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "test.sh: provisioning printed no host" >&2; exit 1; }
export COMFYUI_DIR COMFYUI_PYTHON
# The test models are tiny: one intra-op thread is faster than two and does not thrash on a shared box
# (measured 60x slower model calls with 2 threads under load). Override by exporting OMP_NUM_THREADS.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# A missing host must fail the run, not skip it.
export EXACT_INVERSION_REQUIRE_HOST=1

# No arguments: the whole suite. With arguments, pytest falls back to testpaths (= tests, pyproject.toml) unless
# they name paths, so `scripts/test.sh tests/test_host.py -x` runs just that file.
if [[ $# -eq 0 ]]; then
    exec "$COMFYUI_PYTHON" -m pytest tests
fi
exec "$COMFYUI_PYTHON" -m pytest "$@"
