#!/usr/bin/env bash
# Set up .venv if needed, then run the main job: `bevanet-demo` (bevanet_core/cli/demo.py).
#   bash scripts/demo.sh --help
# All arguments are passed to bevanet-demo.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

bash scripts/bootstrap.sh >&2

if [[ ! -f bevanet_core/cli/demo.py ]]; then
    echo "[demo] bevanet_core/cli/demo.py is not built yet: the demo entry point" \
         "'bevanet-demo = bevanet_core.cli.demo:main' has no module to run." >&2
    exit 2
fi
# With no arguments, replay the sample bag through the ROS 2 node itself (started in its own
# process, frames over DDS) when rclpy imports; otherwise through the node's runtime in-process.
if [[ $# -eq 0 ]] && .venv/bin/python -c "import rclpy, bevanet_ros.bag_client" >/dev/null 2>&1; then
    exec .venv/bin/bevanet-demo --spawn-node
fi
exec .venv/bin/bevanet-demo "$@"
