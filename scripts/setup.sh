#!/usr/bin/env bash
# Sets up whatever is missing for Layerdeck on this machine; sourced by scripts/dev.sh and scripts/test.sh.
#   setup_layerdeck          the virtual environment, the package, a Docker engine that answers
#   setup_layerdeck --test   the same plus the test tools: Chromium for browser tests, busybox for base images,
#                            debootstrap for the Debian base the Dockerfile's test builds on
set -euo pipefail

LAYERDECK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$LAYERDECK_ROOT/.venv"

say() { printf '\033[1mlayerdeck:\033[0m %s\n' "$*" >&2; }

is_debian_root() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  if ! is_debian_root; then
    say "missing: $* — install it with your package manager (Debian: apt-get install $*) and run this again."
    exit 1
  fi
  say "installing $* with apt-get"
  if [ ! -f /var/lib/apt/periodic/layerdeck-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    apt-get update -qq
    mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/layerdeck-updated
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

setup_venv() {
  local extras="$1" stamp want
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating the virtual environment in .venv"
    python3 -m venv "$VENV" || { apt_install python3-venv; python3 -m venv "$VENV"; }
  fi
  want="$(cat "$LAYERDECK_ROOT/pyproject.toml" | sha256sum | cut -c1-16)-$extras"
  stamp="$VENV/.layerdeck-installed"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "installing Layerdeck${extras:+ with [$extras]} into .venv"
    "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q --disable-pip-version-check -e "$LAYERDECK_ROOT${extras:+[$extras]}"
    echo "$want" > "$stamp"
  fi
}

engine_answers() {
  "$VENV/bin/python" - <<'PY' 2>/dev/null
import docker, sys
try:
    docker.from_env(timeout=5).ping()
except Exception:
    sys.exit(1)
PY
}

setup_engine() {
  if engine_answers; then return 0; fi
  if [ -n "${DOCKER_HOST:-}" ]; then
    say "DOCKER_HOST=$DOCKER_HOST does not answer. Start that engine, or unset DOCKER_HOST to use a local one."
    exit 1
  fi
  if ! is_debian_root; then
    say "no Docker engine answers on /var/run/docker.sock. Start Docker (Docker Desktop, or 'sudo systemctl start docker'),"
    say "or set DOCKER_HOST to an engine, then run this again."
    exit 1
  fi
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  # A dockerd killed without cleaning up leaves its pid file, and the next one refuses to start.
  if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
  fi
  if ! pgrep -x dockerd >/dev/null 2>&1; then
    mkdir -p "$LAYERDECK_ROOT/instance"
    say "starting dockerd (log: instance/dockerd.log)"
    nohup dockerd >"$LAYERDECK_ROOT/instance/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 1 60); do
    if engine_answers; then say "the Docker engine answers"; return 0; fi
    sleep 1
  done
  say "dockerd did not come up within 60 s; see instance/dockerd.log"
  exit 1
}

setup_test_tools() {
  [ -x /usr/bin/chromium ] || apt_install chromium
  # The static busybox (ldd fails on a static binary) with httpd in it; a pipeline's status is its last
  # failing command under pipefail, so no `| grep -q` here.
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 && [ -n "$(/bin/busybox --list 2>/dev/null | grep -x httpd)" ] \
    || apt_install busybox-static
  [ -x /usr/sbin/debootstrap ] || apt_install debootstrap
}

setup_layerdeck() {
  if [ "${1:-}" = "--test" ]; then
    setup_venv test
    setup_test_tools
  else
    setup_venv ""
  fi
  setup_engine
}
