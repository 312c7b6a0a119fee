# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the scripts that source this file
# Shared by the e2e/kind scripts (sourced, not run): paths, pins, timestamped logging.
# KUC_CACHE_DIR is the cache e2e/build-tool.sh uses; everything kind-related lives under $KUC_KIND_CACHE.

kind_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
e2e_dir=$(dirname "$kind_dir")
repo_dir=$(dirname "$e2e_dir")
# The kind scenario's release pins may be set from the environment (`make e2e KIND_OLD_RELEASE=v1.35.4
# KIND_NEW_RELEASE=v1.36.3`): those win over versions.env, here as in the Python side (controlplane.OVERRIDABLE).
kuc_old_from_env=${KIND_OLD_RELEASE:-}
kuc_new_from_env=${KIND_NEW_RELEASE:-}
# shellcheck source-path=SCRIPTDIR source=../versions.env
. "$e2e_dir/versions.env"
KIND_OLD_RELEASE=${kuc_old_from_env:-$KIND_OLD_RELEASE}
KIND_NEW_RELEASE=${kuc_new_from_env:-$KIND_NEW_RELEASE}
cache_dir=${KUC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-upgrade-controllers}
KUC_KIND_CACHE=$cache_dir/kind
build_tool=$e2e_dir/build-tool.sh
# The label every image, container and network these scripts create carries (kind-down removes by it).
kuc_label=io.kube-upgrade-controllers.e2e

# A log line with the wall clock and the seconds since the script started.
kuc_started=${kuc_started:-$(date +%s)}
log() { printf '[%s %s +%ss] %s\n' "${log_tag:-kind}" "$(date +%T)" "$(($(date +%s) - kuc_started))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Build (or find) one tool with e2e/build-tool.sh and print its path.
tool() { "$build_tool" "$@"; }

# Does the engine have this image locally?
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# The Debian mirror for debootstrap: KUC_DEBIAN_MIRROR, else the one apt already uses for that suite (deb822
# .sources files or the classic lists), else apt's first Debian archive. Nothing is written into the repo.
debian_mirror() {
  local suite=$1 file uri
  if [ -n "${KUC_DEBIAN_MIRROR:-}" ]; then
    echo "$KUC_DEBIAN_MIRROR"
    return 0
  fi
  for want in "$suite" any; do
    for file in /etc/apt/sources.list.d/*.sources; do
      [ -f "$file" ] || continue
      uri=$(awk -v suite="$suite" -v want="$want" '
        function flush() { if (!done && uris != "" && found) { print uris; done = 1 } found = 0; uris = "" }
        /^URIs:/ { uris = $2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite || (want == "any" && $i !~ /-/)) found = 1 }
        /^$/ { flush() }
        END { flush() }' "$file")
      case "$want:$uri" in
        any:*/debian | any:*/debian/ | "$suite":?*) echo "$uri"; return 0 ;;
      esac
    done
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -f "$file" ] || continue
      uri=$(awk -v suite="$suite" -v want="$want" '$1 == "deb" && ($3 == suite || (want == "any" && $2 ~ /\/debian\/?$/)) { print $2; exit }' "$file")
      [ -n "$uri" ] && { echo "$uri"; return 0; }
    done
  done
  return 1
}

# rootfs_image NAME PACKAGES: a local image (kuc-kind/NAME:SUITE-KEY) of a minimal Debian NODE_DEBIAN_SUITE
# with PACKAGES (comma-separated) made with debootstrap, cached as a tarball by suite and package list.
# Prints the image reference.
rootfs_image() {
  local name=$1 packages=$2 key tarball ref mirror dir
  key=$(printf '%s\n' "$NODE_DEBIAN_SUITE" "$packages" "1" | sha256sum | cut -c1-12)
  ref=kuc-kind/$name:$NODE_DEBIAN_SUITE-$key
  if have_image "$ref"; then
    echo "$ref"
    return
  fi
  tarball=$KUC_KIND_CACHE/rootfs/$name-$NODE_DEBIAN_SUITE-$key.tar
  if [ ! -f "$tarball" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root (or import $tarball built elsewhere)"
    if ! command -v debootstrap >/dev/null 2>&1; then  # a fresh machine: install it, as debian-image.sh does
      log "installing debootstrap (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
        die "debootstrap is not installed and apt-get install debootstrap failed"
    fi
    mirror=$(debian_mirror "$NODE_DEBIAN_SUITE") || die "no Debian mirror in apt's sources; set KUC_DEBIAN_MIRROR"
    dir=$KUC_KIND_CACHE/rootfs/$name.tmp
    rm -rf "$dir"
    mkdir -p "$dir"
    log "debootstrap $NODE_DEBIAN_SUITE ($name: $packages) from $mirror (a minute or two)"
    debootstrap --variant=minbase --include="$packages" "$NODE_DEBIAN_SUITE" "$dir" "$mirror" \
      >"$KUC_KIND_CACHE/rootfs/$name.debootstrap.log" 2>&1 ||
      die "debootstrap failed, see $KUC_KIND_CACHE/rootfs/$name.debootstrap.log"
    # Nothing of the build machine stays in the image; docs, caches and package lists go.
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/* "$dir"/usr/share/doc/* "$dir"/usr/share/man/* \
      "$dir"/usr/share/info/* "$dir"/etc/hostname "$dir"/etc/machine-id
    find "$dir/var/log" -type f -delete
    : >"$dir/etc/resolv.conf"
    tar -C "$dir" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$dir"
  fi
  log "importing $tarball as $ref"
  docker import "$tarball" "$ref" >/dev/null
  echo "$ref"
}


# docker build, quiet: the output (and the classic builder's deprecation notice) only when it fails.
docker_build() {
  local out
  if ! out=$(docker build -q "$@" 2>&1); then
    printf '%s\n' "$out" >&2
    return 1
  fi
}
