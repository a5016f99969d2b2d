#!/usr/bin/env bash
# Set up .venv if needed, then run the whole test suite.
#   bash scripts/test.sh                 # everything under test/
#   bash scripts/test.sh -k onnx -x      # extra arguments go to pytest
#   bash scripts/test.sh test/test_package.py
# Exits non-zero on any failure, and also when no test was collected (pytest exit 5).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

t0=$(date +%s.%N)
bash scripts/bootstrap.sh
t1=$(date +%s.%N)

# Run everything under test/ unless a test path was given explicitly.
targets=(test)
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
        targets=()
        break
    fi
done

# launch, launch_ros and vision_msgs built from ../shared/ros-src by bootstrap.sh, if there
if [[ -f .venv/ros-src/env.bash ]]; then
    # shellcheck disable=SC1091
    source .venv/ros-src/env.bash
fi

set +e
.venv/bin/python -m pytest "${targets[@]}" -q "$@"
rc=$?
set -e
t2=$(date +%s.%N)

awk -v a="$t0" -v b="$t1" -v c="$t2" \
    'BEGIN { printf "[test] bootstrap %.1f s, pytest wall time %.1f s\n", b - a, c - b }'
if [[ $rc -eq 5 ]]; then
    echo "[test] FAILED: pytest collected no tests (exit 5)" >&2
elif [[ $rc -ne 0 ]]; then
    echo "[test] FAILED: pytest exit code $rc" >&2
fi
exit $rc
