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
exec .venv/bin/bevanet-demo "$@"
