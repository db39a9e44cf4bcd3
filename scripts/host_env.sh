# Sourced by the benchmark scripts: provision the CPU ComfyUI host (idempotent; an existing ComfyUI where
# COMFYUI_DIR / COMFYUI_PYTHON are set, see provision_host.sh), export COMFYUI_DIR and COMFYUI_PYTHON, set
# provision_s (seconds it took) and one torch / BLAS thread (stable timings on a small shared machine).
#   source "$ROOT/scripts/host_env.sh" <caller name for messages>
_host_env_caller="${1:-host_env.sh}"
_host_env_t0=$SECONDS
_host_env_out="$(bash "$ROOT/scripts/provision_host.sh")"
COMFYUI_DIR="$(sed -n 's/^COMFYUI_DIR=//p' <<<"$_host_env_out" | tail -n1)"
COMFYUI_PYTHON="$(sed -n 's/^COMFYUI_PYTHON=//p' <<<"$_host_env_out" | tail -n1)"
[[ -n "$COMFYUI_DIR" && -n "$COMFYUI_PYTHON" ]] || { echo "$_host_env_caller: provisioning printed no host" >&2; exit 1; }
export COMFYUI_DIR COMFYUI_PYTHON
provision_s=$((SECONDS - _host_env_t0))
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
