#!/usr/bin/env bash
# Set up .venv if needed, then run the main job: `bevanet-demo` (bevanet_core/cli/demo.py)
# on the shipped sample drive, writing outputs/demo/.
#   bash scripts/demo.sh                      # the ROS 2 node over DDS where rclpy imports
#   bash scripts/demo.sh --max-frames 20      # same path, arguments go to bevanet-demo
#   bash scripts/demo.sh --in-process         # the node's runtime in this process, no DDS
#   bash scripts/demo.sh --help
# Which path it takes, and why, is printed first. Arguments never change the path, except
# the ones that name it: --in-process, --spawn-node, --through-node.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/bootstrap.sh >&2

args=()
mode=""
for arg in "$@"; do
    case "$arg" in
        --in-process) mode="in-process" ;;
        --spawn-node | --through-node) mode="named"; args+=("$arg") ;;
        -h | --help) exec .venv/bin/bevanet-demo --help ;;
        *) args+=("$arg") ;;
    esac
done

if [[ -z "$mode" ]]; then
    if why="$(.venv/bin/python -c "import rclpy, bevanet_ros.bag_client" 2>&1)"; then
        echo "[demo] path: the segmentation node over DDS (--spawn-node): rclpy imports, so" \
             "the node runs in its own process as deployed and the frames travel over DDS" \
             "(--in-process to run the runtime in this process instead)" >&2
        args=(--spawn-node "${args[@]}")
    else
        echo "[demo] path: in-process runtime: rclpy does not import ($(tail -n 1 <<<"$why"))," \
             "so the node's runtime runs in this process (install the ROS 2 wheels with" \
             "scripts/bootstrap.sh, or source ROS 2, to replay through the node)" >&2
    fi
elif [[ "$mode" == "in-process" ]]; then
    echo "[demo] path: in-process runtime, as --in-process asks (no node, no DDS)" >&2
else
    echo "[demo] path: as named on the command line (${args[*]})" >&2
fi
exec .venv/bin/bevanet-demo "${args[@]}"
