#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): speed of every GPU path beside the authors' protocol,
# and fp16/bf16 CamVid val mIoU, into one JSON and one markdown report.
#   bash scripts/gpu_check.sh --prepare            # once, where ../shared is: JPEG-95 val copy
#   bash scripts/gpu_check.sh                      # on the GPU machine: under 8 minutes (H200)
#   bash scripts/gpu_check.sh --quick              # anywhere, CPU too: small sizes, few runs
# Reports go to --out DIR, else $OUT, else outputs/gpu_check. Runs with the repository's .venv
# when there is one, else with the machine's python3 (which needs torch, numpy, opencv, pillow,
# safetensors, pyyaml; nothing is installed).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${BEVANET_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x "$REPO/.venv/bin/python" ]]; then PY="$REPO/.venv/bin/python"; else PY=python3; fi
fi
out=("--out" "${OUT:-$REPO/outputs/gpu_check}")
for arg in "$@"; do [[ "$arg" == --out || "$arg" == --out=* ]] && out=(); done
export PYTHONUNBUFFERED=1
exec "$PY" "$REPO/benchmarks/gpu_check.py" "${out[@]}" "$@"
