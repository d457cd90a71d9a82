#!/usr/bin/env bash
# make gpu-check on an air-gapped GPU host (no .venv): the host's own python3 and its CUDA build
# of PyTorch, plus the wheelhouse (.whl/, from `make wheelhouse` on a connected machine) installed
# with --no-index --no-deps into a temporary folder. Nothing is fetched.
#
#   PY=python3 REPORT=gpu-check-report.txt benchmarks/gpu_check_offline.sh [--dry-run]
#
# --dry-run skips the CUDA requirement and runs gpu_check.py's CPU dry run on the same path (the
# offline-install test does, in a network namespace with no network).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
REPORT=${REPORT:-gpu-check-report.txt}
WHEELS=${WHEELS:-.whl}
args=(--device cuda)
[ "${1:-}" = "--dry-run" ] && args=(--dry-run)
log() { echo "$*" | tee -a "$REPORT"; }
: >"$REPORT"

NEEDS_CUDA='
import sys
need = "make gpu-check needs a CUDA build of PyTorch"
try:
    import torch
except ImportError:
    sys.exit(f"{need}: {sys.executable} cannot import torch (and there is no .venv)")
if torch.version.cuda is None:
    sys.exit(f"{need}: {sys.executable} has torch {torch.__version__}, built without CUDA")
if not torch.cuda.is_available():
    sys.exit(f"{need} that sees a GPU: {sys.executable} has torch {torch.__version__} "
             f"(CUDA {torch.version.cuda}) and no GPU is visible")
'
if [ "${args[0]}" != "--dry-run" ] && ! why=$("$PY" -c "$NEEDS_CUDA" 2>&1); then
  log "$why" >&2
  exit 2
fi

shopt -s nullglob
wheels=("$WHEELS"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
  log "make gpu-check without a .venv needs the wheelhouse: run \`make wheelhouse\` on a machine" \
      "with a package index, then copy the tree with its $WHEELS/ folder here." >&2
  exit 2
fi
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
"$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
  --disable-pip-version-check --target "$site" "${wheels[@]}"
log "[${SECONDS} s] ${#wheels[@]} wheels from $WHEELS/ installed offline into $site" \
    "($("$PY" --version))"
PYTHONPATH="$site:$PWD" "$PY" benchmarks/gpu_check.py "${args[@]}" --report "$REPORT"
