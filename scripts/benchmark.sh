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
source "$ROOT/scripts/host_env.sh" benchmark.sh
# The script is run by path (never with the repo root on sys.path: nodes/ would shadow ComfyUI's nodes module).
"$COMFYUI_PYTHON" "$ROOT/benchmarks/host_benchmark.py" --provision-seconds "$provision_s" "$@"
echo "benchmark.sh: total $((SECONDS - t0)) s (provisioning ${provision_s} s)" >&2
