#!/usr/bin/env bash
# The host benchmark: provision the CPU ComfyUI host (idempotent), then run benchmarks/host_benchmark.py
# with the host's python. It prints the tables and writes benchmarks/RESULTS.md, benchmarks/host_results.json and
# benchmarks/psnr_vs_calls.png.
#   bash scripts/benchmark.sh                       # everything (about 10 min on 2 shared CPU cores)
#   bash scripts/benchmark.sh --parts quality --ns 4,10    # arguments pass through (see --help)
# Uses COMFYUI_DIR / COMFYUI_PYTHON when set (an existing ComfyUI, e.g. a CUDA one for the GPU table), else
# .cache/comfy-host (see scripts/provision_host.sh).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

t0=$SECONDS
provision_out="$(bash "$ROOT/scripts/provision_host.sh")"
COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$provision_out" | tail -n1)"
COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$provision_out" | tail -n1)"
[[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "benchmark.sh: provisioning printed no host" >&2; exit 1; }
export COMFYUI_DIR COMFYUI_PYTHON
provision_s=$((SECONDS - t0))

# One torch thread and no BLAS/OpenMP oversubscription: stable timings on a small shared machine.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
# The script is run by path (never with the repo root on sys.path: nodes/ would shadow ComfyUI's nodes module).
"$COMFYUI_PYTHON" "$ROOT/benchmarks/host_benchmark.py" --provision-seconds "$provision_s" "$@"
echo "benchmark.sh: total $((SECONDS - t0)) s (provisioning ${provision_s} s)" >&2
