#!/usr/bin/env bash
# Make sure the engine has the image kind starts as the control-plane load balancer when a cluster has more
# than one control plane (kind v0.33: envoyproxy/envoy:v1.36.2, read from the kind module itself):
#   e2e/kind/lb-image.sh          prints the image name
# An image the engine already has (upstream's, pulled on a machine with internet) is used as is. Otherwise a
# stand-in is built under that name: a small Debian root with Python and our own envoy_standin.py as `envoy`,
# which reads the configuration files kind writes for envoy (see its docstring). It carries the label
# io.kube-upgrade-controllers.e2e=lb-standin so that it can be told apart (and removed to pull the real one).
set -euo pipefail
log_tag=lb-image
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

kind_module=$(cd /tmp && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
image=$(sed -n 's/^const Image = "\(.*\)"$/\1/p' "$kind_module/pkg/cluster/internal/loadbalancer/const.go")
[ -n "$image" ] || die "cannot find the load balancer image in kind $KIND_VERSION's sources"
image=${image#docker.io/}

if have_image "$image"; then
  echo "$image"
  exit 0
fi
mkdir -p "$cache_dir/locks"
exec 8>"$cache_dir/locks/lb-image.lock"
flock 8
if have_image "$image"; then
  echo "$image"
  exit 0
fi

tools_rootfs=$(rootfs_image tools-rootfs iptables,conntrack,ipset,kmod,python3,python3-yaml)
mkdir -p "$KUC_KIND_CACHE"
ctx=$(mktemp -d "$KUC_KIND_CACHE/work.XXXXXX")
trap 'rm -rf "$ctx"' EXIT
cp "$kind_dir/envoy_standin.py" "$ctx/envoy"
chmod 0755 "$ctx/envoy"
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $tools_rootfs
COPY envoy /usr/local/bin/envoy
RUN python3 -c 'import yaml, asyncio, ssl' && mkdir -p /home/envoy
LABEL $kuc_label=lb-standin
CMD ["envoy", "-c", "/home/envoy/envoy.yaml"]
DOCKERFILE
log "building the load balancer stand-in as $image"
docker_build -t "$image" "$ctx"
echo "$image"
