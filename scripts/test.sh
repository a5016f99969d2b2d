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

# A native crash (SIGSEGV, ...) kills pytest before its summary: test/conftest.py has every
# thread's Python stack written here, and it is printed below when pytest dies of a signal.
crash_log="$(mktemp -t bevanet-test-crash.XXXXXX)"
export BEVANET_CRASH_LOG="$crash_log"
show_crash() {  # $1: pytest's exit status
    if [[ $1 -gt 128 ]]; then
        echo "[test] pytest died of signal $(($1 - 128)); the test that was running and its stacks:" >&2
        awk '/^\[start\] /{buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$crash_log" >&2
        echo "[test] pytest died of signal $(($1 - 128)) in: $(grep '^\[start\] ' "$crash_log" | tail -n 1 | cut -c9-)" >&2
    fi
    : >"$crash_log"
}

set +e
if [[ ${#targets[@]} -gt 0 ]]; then
    # The modules that run rclpy nodes in the test process get a process of their own, after the
    # rest: whatever DDS or rcl state one of them leaves behind cannot reach the other tests.
    mapfile -t ros_modules < <(grep -l "test_ros_support\|rclpy\.init\|rclpy\.create_node" test/test_*.py | grep -v test_ros_support.py)
    ignores=()
    for m in "${ros_modules[@]}"; do ignores+=(--ignore "$m"); done
    .venv/bin/python -m pytest "${targets[@]}" "${ignores[@]}" -q "$@"
    rc=$?
    show_crash $rc
    .venv/bin/python -m pytest "${ros_modules[@]}" -q "$@"
    rc_ros=$?
    show_crash $rc_ros
    # a filter (-k) may leave one of the two with nothing to run (exit 5): that is not a failure
    if [[ $rc -eq 5 && $rc_ros -ne 5 ]]; then rc=$rc_ros; elif [[ $rc -eq 0 && $rc_ros -ne 5 ]]; then rc=$rc_ros; fi
else
    .venv/bin/python -m pytest "$@" -q
    rc=$?
    show_crash $rc
fi
rm -f "$crash_log"
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
