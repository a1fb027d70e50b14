#!/usr/bin/env bash
# Fill wheels/ with Layerdeck's runtime dependencies (and what installing it needs) as wheels for
# Python 3.11 on this machine's platform, so the Dockerfile installs from them alone: for builds that
# cannot reach a package index. pip reads whatever index this machine is set up for. Wheels already
# there are kept; an empty or missing wheels/ makes the build use the index again.
#
#   scripts/wheelhouse.sh [DIR]        default wheels/ at the project root (the build context)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/wheels}"
PYTHON="${PYTHON:-python3}"
[ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"

mkdir -p "$DEST"
REQS="$(mktemp)"
trap 'rm -f "$REQS"' EXIT
# The same list the Dockerfile installs: pyproject.toml's build requirements and dependencies.
"$PYTHON" - "$ROOT/pyproject.toml" >"$REQS" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))
print("\n".join(p["build-system"]["requires"] + p["project"]["dependencies"]))
PY
"$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
  --dest "$DEST" -r "$REQS"
echo "$DEST: $(ls "$DEST"/*.whl | wc -l) wheels" >&2
