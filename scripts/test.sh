#!/usr/bin/env bash
# Run the whole test suite (unit, real-engine integration, websocket and browser tests), setting up
# whatever is missing first. Arguments go to pytest (e.g. -k websocket, -x).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
setup_layerdeck --test
cd "$LAYERDECK_ROOT"
exec "$VENV/bin/python" -m pytest "$@"
