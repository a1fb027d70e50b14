#!/usr/bin/env bash
# Make a Debian 12 base image with Python 3.11 from Debian's own packages, for building Layerdeck's
# Dockerfile where no registry can be pulled from:
#
#   docker build --build-arg BASE_IMAGE="$(scripts/base-image.sh)" -t layerdeck .
#
# debootstrap (installed with apt-get when missing) lays a minimal bookworm with python3 and
# python3-venv into a temporary folder, and `docker import` turns that into an image. It takes minutes,
# so an image already there under the tag is reused: delete it to make a fresh one. Prints the tag.
#
#   scripts/base-image.sh [TAG]        default layerdeck-test/debian-python:12
#   LAYERDECK_DEBIAN_MIRROR=URL        the Debian mirror; by default the one apt uses on this machine
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

TAG="${1:-layerdeck-test/debian-python:12}"
SUITE=bookworm
PACKAGES=python3,python3-venv,ca-certificates

# The mirror apt reads bookworm from here (deb822 .sources or one-line .list), else Debian's own.
debian_mirror() {
  if [ -n "${LAYERDECK_DEBIAN_MIRROR:-}" ]; then echo "$LAYERDECK_DEBIAN_MIRROR"; return; fi
  local uri
  uri="$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
    | grep -v '^\s*#' | grep -oE '(https?|file)://[^ ]+/debian/?(\s|$)' | head -n1 | tr -d '[:space:]')" || true
  echo "${uri:-http://deb.debian.org/debian}"
}

if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "$TAG"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
[ "$(id -u)" = 0 ] || { say "debootstrap needs root: run this as root (or with sudo)."; exit 1; }

MIRROR="$(debian_mirror)"
ROOTFS="$(mktemp -d /tmp/layerdeck-rootfs.XXXXXX)"
cleanup() {
  # debootstrap mounts /proc and /sys inside the tree; a failed run may leave them mounted.
  awk -v root="$ROOTFS/" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l || true
  rm -rf --one-file-system "$ROOTFS" "$ROOTFS.tar"
}
trap cleanup EXIT
start=$(date +%s)
say "debootstrap $SUITE ($PACKAGES) from $MIRROR; this takes a few minutes"
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1; then
  tail -n 30 "$ROOTFS.log" >&2
  say "debootstrap failed (full log: $ROOTFS.log)"
  exit 1
fi
rm -f "$ROOTFS.log"
# What an image needs none of: downloaded packages, package lists, the host's resolver and hostname.
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/dev/* \
  "$ROOTFS"/proc/* "$ROOTFS"/sys/* "$ROOTFS"/tmp/* "$ROOTFS"/var/log/*.log
: >"$ROOTFS/etc/resolv.conf"
: >"$ROOTFS/etc/hostname"
say "debootstrap took $(( $(date +%s) - start )) s; importing it as $TAG"
tar --numeric-owner -C "$ROOTFS" -cf "$ROOTFS.tar" .
image="$(docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/usr/bin/python3"]' \
  --change 'LABEL layerdeck.test="base" org.opencontainers.image.description="Debian 12 minbase + python3 (scripts/base-image.sh)"' \
  --message "scripts/base-image.sh: debootstrap --variant=minbase --include=$PACKAGES $SUITE" \
  "$ROOTFS.tar")"
rm -f "$ROOTFS.tar"
# Tagged only once it is known to hold a Python that can make a virtual environment.
if ! docker run --rm --network none --label layerdeck.test=base-check "$image" \
    python3 -c 'import ensurepip, sqlite3, ssl, venv' >&2; then
  docker rmi "$image" >/dev/null || true
  say "the imported image has no working python3; not tagging it"
  exit 1
fi
docker tag "$image" "$TAG"
say "made $TAG in $(( $(date +%s) - start )) s"
echo "$TAG"
