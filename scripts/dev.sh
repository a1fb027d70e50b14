#!/usr/bin/env bash
# Start the dashboard on http://127.0.0.1:8000, setting up whatever is missing first.
# Arguments go to `layerdeck serve` (e.g. --host 0.0.0.0 --port 9000).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
setup_layerdeck
cd "$LAYERDECK_ROOT"
exec "$VENV/bin/layerdeck" serve "$@"
