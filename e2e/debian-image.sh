#!/usr/bin/env bash
# Make a local image from Debian bookworm when the engine does not have it yet:
#   e2e/debian-image.sh TAG [--include PKG,PKG,...] [--change 'DOCKERFILE-LINE' ...]
# For machines that cannot pull: it stands in, under TAG, for an image a Dockerfile names in FROM (e.g.
# python:3.11-slim-bookworm). A debootstrap "minbase" rootfs with the listed packages, docs and apt lists
# removed, imported with `docker import`. When TAG exists (pulled, or made before) nothing is done.
# The Debian mirror is the one apt already uses on this machine. Needs root (debootstrap) and an engine.
set -euo pipefail

tag=${1:?usage: debian-image.sh TAG [--include PKG,...] [--change LINE ...]}
shift
include=""
changes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --include) include=$2; shift 2 ;;
    --change) changes+=(--change "$2"); shift 2 ;;
    *) echo "debian-image.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

log() { printf '[debian-image %s] %s: %s\n' "$(date +%T)" "$tag" "$*" >&2; }
die() { log "error: $*"; exit 1; }

if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
[ "$(id -u)" = 0 ] || die "not present and only root can debootstrap a stand-in; pull or build it first"

if ! command -v debootstrap >/dev/null 2>&1; then
  log "installing debootstrap (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
    die "apt-get install debootstrap failed"
fi

# The mirror apt is configured with: deb822 "URIs:" or a one-line "deb URL bookworm ..." entry.
mirror=$(
  { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p'
  { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
    sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p'
)
mirror=$(printf '%s\n' "$mirror" | grep -v -- '-security' | head -n 1 || true)
[ -n "$mirror" ] || die "no Debian mirror found in apt's sources"

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/debian-image.XXXXXX")
trap 'rm -rf "$rootfs"' EXIT
started=$(date +%s)
log "debootstrap bookworm (minbase${include:+ + $include}); about a minute"
debootstrap --variant=minbase ${include:+--include="$include"} bookworm "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; rm -f "$rootfs.log"; die "debootstrap failed"; }
rm -f "$rootfs.log"
# Only what an image needs: no apt lists or caches, docs, man pages or the host's resolver/hostname.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
  "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log "$rootfs"/tmp/*
: >"$rootfs/etc/resolv.conf"
: >"$rootfs/etc/hostname"

log "importing into the engine"
tar -C "$rootfs" --numeric-owner -c . |
  docker import \
    --change "LABEL org.opencontainers.image.description=\"local stand-in for $tag: Debian bookworm minbase${include:+ + $include}\"" \
    --change 'ENV LANG=C.UTF-8' \
    "${changes[@]}" - "$tag" >/dev/null
log "done in $(($(date +%s) - started)) s, $(docker image inspect --format '{{.Size}}' "$tag" | numfmt --to=iec) "
