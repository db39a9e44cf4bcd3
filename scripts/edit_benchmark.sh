#!/usr/bin/env bash
# The edit benchmark (issue #13): provision the CPU ComfyUI host (idempotent), then run benchmarks/edit_benchmark.py
# with the host's python. It prints the tables and writes benchmarks/EDIT_RESULTS.md, benchmarks/edit_results.json
# and benchmarks/edit_tradeoff.png.
#   bash scripts/edit_benchmark.sh                              # everything
#   bash scripts/edit_benchmark.sh --ns 4,10 --parts main       # arguments pass through (see --help)
# Uses COMFYUI_DIR / COMFYUI_PYTHON when set, else .cache/comfy-host (see scripts/provision_host.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

t0=$SECONDS
provision_out="$(bash "$ROOT/scripts/provision_host.sh")"
COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$provision_out" | tail -n1)"
COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$provision_out" | tail -n1)"
[[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "edit_benchmark.sh: provisioning printed no host" >&2; exit 1; }
export COMFYUI_DIR COMFYUI_PYTHON
provision_s=$((SECONDS - t0))

# One torch thread and no BLAS/OpenMP oversubscription: stable timings on a small shared machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# The script is run by path (never with the repo root on sys.path: nodes/ would shadow ComfyUI's nodes module).
"$COMFYUI_PYTHON" "$ROOT/benchmarks/edit_benchmark.py" "$@"
echo "edit_benchmark.sh: total $((SECONDS - t0)) s (provisioning ${provision_s} s)" >&2
