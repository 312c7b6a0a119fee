#!/usr/bin/env bash
# Make sure a container engine answers: `docker info` works, or this script makes it work.
#   e2e/engine.sh          install (Debian's docker.io, as root) and start dockerd when needed, wait for it
#   e2e/engine.sh --check  exit 0 if an engine answers, 1 if not; changes nothing
# Idempotent: on a machine where Docker already runs it only checks. Progress goes to stderr.
set -euo pipefail

log() { printf '[engine %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

answers() { docker info >/dev/null 2>&1; }

if answers; then
  exit 0
fi
[ "${1:-}" = "--check" ] && exit 1

if ! command -v dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and dockerd is not installed; install Docker, or run this script as root on Debian"
  command -v apt-get >/dev/null 2>&1 || die "no Docker engine answers and this is not a Debian-like system (no apt-get); install Docker"
  log "installing Debian's docker.io (apt-get; about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  # One update per machine is enough; a stale index only fails the install, which is then retried after one.
  apt-get install -y -qq --no-install-recommends docker.io >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; } ||
    die "apt-get install docker.io failed"
fi
command -v docker >/dev/null 2>&1 || die "dockerd is installed but the docker client is not on PATH"

if ! pgrep -x dockerd >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "dockerd is installed but not running, and only root can start it here"
  log "starting dockerd in the background (log: /var/log/kuc-dockerd.log)"
  # setsid: the daemon outlives the make or CI step that started it, as a system service would. It keeps no
  # descriptor of its caller's beyond 0-2: an outer `flock FILE make e2e` would otherwise stay locked for as
  # long as dockerd runs (it did: the next run waited for a lock nobody released).
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      if [ "$fd" -gt 2 ]; then eval "exec $fd>&-"; fi
    done 2>/dev/null
    exec setsid dockerd >/var/log/kuc-dockerd.log 2>&1 </dev/null
  ) &
fi

for _ in $(seq 1 60); do
  if answers; then
    log "engine ready: $(docker info --format '{{.ServerVersion}}, storage {{.Driver}}, cgroup v{{.CgroupVersion}}')"
    exit 0
  fi
  sleep 1
done
die "dockerd did not answer within 60 s; see /var/log/kuc-dockerd.log"
