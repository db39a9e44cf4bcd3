#!/usr/bin/env bash
# Registry check: run comfy-cli's `comfy node validate` (what `comfy node publish` and Comfy-Org/publish-node-action
# check before publishing: pyproject.toml's [project] / [tool.comfy] and ruff's S102,S307,E702 security rules) on this
# repository. comfy-cli is not a dependency of the pack: install it into a separate venv, with ruff beside it
# (validate runs `python -m ruff` with comfy-cli's own interpreter), e.g.
#     python3 -m venv /tmp/comfycli && /tmp/comfycli/bin/pip install comfy-cli ruff
# and point COMFY_CLI at it (default: `comfy` on PATH, else /tmp/comfycli/bin/comfy).
# Exit status: comfy's; 3 when no comfy-cli is found; 1 when validate prints a warning or error.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
COMFY="${COMFY_CLI:-$(command -v comfy || echo /tmp/comfycli/bin/comfy)}"
if [[ ! -x "$COMFY" ]]; then
    echo "check_registry.sh: no comfy-cli (set COMFY_CLI or install it, see the header)" >&2
    exit 3
fi
cd "$ROOT"
# no telemetry prompt, no tracking
out="$(COMFY_CLI_SKIP_TRACKING=1 DO_NOT_TRACK=1 "$COMFY" --skip-prompt node validate 2>&1)" \
    || { rc=$?; echo "$out"; exit $rc; }
echo "$out"
# validate only warns (exit 0) on license formats and security findings: treat those as failures here
if grep -qiE "warning|error|security warnings" <<<"$out"; then
    echo "check_registry.sh: comfy node validate printed a warning" >&2
    exit 1
fi
grep -q "All validation checks passed" <<<"$out"
