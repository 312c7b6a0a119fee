#!/usr/bin/env bash
# The upgrade artifacts of a Kubernetes release: what the nodes of an older kind cluster need to be upgraded
# to RELEASE with kubeadm, the way kubeadm's own upgrade tests do it in kind:
#   e2e/kind/artifacts.sh RELEASE      prints the directory, $KUC_CACHE_DIR/kind/artifacts/RELEASE/:
#     bin/kubeadm bin/kubelet bin/kubectl   the release's binaries (static, for /usr/bin on a node)
#     images/<name>.tar                     docker-archive tarballs of every image kubeadm RELEASE lists, for
#                                           `ctr -n k8s.io images import --no-unpack -` on every node
#     images.txt                            `kubeadm config images list --kubernetes-version RELEASE`
# A locally built node image (e2e/kind/node-image.sh) leaves them as a by-product. When the engine has
# upstream's kindest/node:RELEASE instead, they are extracted from it: the binaries from /usr/bin, the images
# from its containerd (an upstream node image has no pause image of kubeadm's version: its containerd's
# sandbox image is what it carries; the upgrade's health-check pod then needs a registry or that image).
# With neither, the node image is built, which makes them.
set -euo pipefail
log_tag=artifacts
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

release=${1:?usage: artifacts.sh RELEASE (e.g. $KIND_NEW_RELEASE)}
dir=$KUC_KIND_CACHE/artifacts/$release
image=kindest/node:$release

complete() {
  local ref repo
  [ -x "$dir/bin/kubeadm" ] && [ -x "$dir/bin/kubelet" ] && [ -x "$dir/bin/kubectl" ] && [ -f "$dir/images.txt" ] || return 1
  while read -r ref; do
    repo=${ref%:*}
    [ -f "$dir/images/${repo##*/}.tar" ] || [ -f "$dir/images/${repo##*/}.missing" ] || return 1
  done <"$dir/images.txt"
}

if complete; then
  echo "$dir"
  exit 0
fi
if ! have_image "$image"; then
  "$kind_dir/node-image.sh" "$release" >/dev/null
  complete || die "node-image.sh $release left no complete artifacts in $dir"
  echo "$dir"
  exit 0
fi

log "extracting the upgrade artifacts of $release from $image"
mkdir -p "$dir/bin" "$dir/images"
box=kuc-kind-artifacts-${release//./-}
docker rm -f "$box" >/dev/null 2>&1 || true
trap 'docker rm -f "$box" >/dev/null 2>&1 || true' EXIT
docker run -d --name "$box" --label "$kuc_label=builder" --entrypoint sleep "$image" infinity >/dev/null
for t in kubeadm kubelet kubectl; do
  docker cp "$box:/usr/bin/$t" "$dir/bin/$t.tmp"
  mv "$dir/bin/$t.tmp" "$dir/bin/$t"
done
"$dir/bin/kubeadm" config images list --kubernetes-version "$release" >"$dir/images.txt.tmp"
docker exec "$box" bash -euc '
  containerd >/dev/null 2>&1 &
  for _ in $(seq 1 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  ctr version >/dev/null 2>&1 || { echo "containerd did not start in the build container" >&2; exit 1; }
'
while read -r ref; do
  repo=${ref%:*}
  name=${repo##*/}
  if docker exec "$box" ctr -n k8s.io images export - "$ref" >"$dir/images/$name.tar.tmp" 2>/dev/null; then
    mv "$dir/images/$name.tar.tmp" "$dir/images/$name.tar"
    log "exported $ref"
  else
    rm -f "$dir/images/$name.tar.tmp"
    : >"$dir/images/$name.missing"
    log "$image does not carry $ref (left out; a registry must provide it)"
  fi
done <"$dir/images.txt.tmp"
mv "$dir/images.txt.tmp" "$dir/images.txt"
echo "$dir"
