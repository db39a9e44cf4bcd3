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
source "$ROOT/scripts/host_env.sh" edit_benchmark.sh
# The script is run by path (never with the repo root on sys.path: nodes/ would shadow ComfyUI's nodes module).
"$COMFYUI_PYTHON" "$ROOT/benchmarks/edit_benchmark.py" "$@"
echo "edit_benchmark.sh: total $((SECONDS - t0)) s (provisioning ${provision_s} s)" >&2
