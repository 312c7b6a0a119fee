#!/usr/bin/env bash
# Make sure the container engine has the kind node image of a Kubernetes release, building it offline when
# it is missing:
#   e2e/kind/node-image.sh RELEASE         e.g. v1.35.4; prints the image name (kindest/node:RELEASE)
#
# With internet, `docker pull kindest/node:RELEASE` (upstream's image) is all it takes: an image the engine
# already has is used as is. Without, the image is assembled here the way kind's own node image build does,
# from parts built from source, and nothing is pulled:
#   - a Debian base (debootstrap, the mirror apt already uses) laid out like kind's base image, from the files
#     that ship in the kind Go module (images/base/files), with containerd v2, runc, crictl and the CNI
#     plugins built from the Go module proxy (e2e/build-tool.sh);
#   - kubeadm, kubelet and kubectl of RELEASE in /usr/bin, RELEASE in /kind/version;
#   - every image `kubeadm config images list` names, under exactly those names, imported into the node's
#     containerd: kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy (with iptables and
#     conntrack), etcd (with etcdctl and etcdutl), CoreDNS and pause; the pause image is also the sandbox
#     image of the node's containerd.
# By-product: the release's upgrade artifacts, what a kubeadm upgrade to RELEASE needs on the nodes of an
# older cluster, in $KUC_CACHE_DIR/kind/artifacts/RELEASE/ (see e2e/kind/artifacts.sh).
# Everything is cached (binaries by tool and version, image tarballs by release, the base image by its
# inputs); a rebuild reuses it all. Progress with timestamps on stderr.
set -euo pipefail
log_tag=node-image
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

release=${1:?usage: node-image.sh RELEASE (e.g. $KIND_OLD_RELEASE)}
case "$release" in v1.[0-9]*.[0-9]*) ;; *) die "RELEASE must look like v1.35.4, not '$release'" ;; esac
image=kindest/node:$release
artifacts=$KUC_KIND_CACHE/artifacts/$release

if have_image "$image"; then
  log "$image is in the engine already: using it as is"
  echo "$image"
  exit 0
fi

mkdir -p "$cache_dir/locks" "$KUC_KIND_CACHE"
exec 8>"$cache_dir/locks/node-image-$release.lock"
flock 8
if have_image "$image"; then
  echo "$image"
  exit 0
fi
command -v docker >/dev/null 2>&1 || die "no docker client on PATH (e2e/engine.sh starts an engine)"
log "building $image offline (cold: the Kubernetes binaries take most of the time)"

# --- the parts, built from source (cached by version) --------------------------------------------------
declare -A bin
for t in kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
  log "binary $t $release"
  bin[$t]=$(tool "$t" "$release")
done
for t in containerd containerd-shim-runc-v2 ctr runc crictl cni-host-local cni-loopback cni-ptp cni-portmap; do
  log "binary $t"
  bin[$t]=$(tool "$t")
done

# The images this release's kubeadm asks for, e.g. registry.k8s.io/etcd:3.6.6-0.
mapfile -t wanted < <("${bin[kubeadm]}" config images list --kubernetes-version "$release")
[ "${#wanted[@]}" -ge 7 ] || die "kubeadm $release listed only: ${wanted[*]}"
pause_image=
for ref in "${wanted[@]}"; do
  case "$ref" in */pause:*) pause_image=$ref ;; esac
done
[ -n "$pause_image" ] || die "kubeadm $release names no pause image"

# --- the node base image, shared by every release ------------------------------------------------------
kind_module=$(cd "$KUC_KIND_CACHE" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" |
  sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
[ -d "$kind_module/images/base/files" ] || die "the kind module has no images/base/files"

node_rootfs=$(rootfs_image node-rootfs \
  systemd,conntrack,iptables,nftables,iproute2,ethtool,kmod,libseccomp2,pigz,ca-certificates,curl,jq,procps,iputils-ping)

# Build contexts live in a directory of this run's own, removed at the end.
builder=kuc-kind-build-${release//./-}
work=$(mktemp -d "$KUC_KIND_CACHE/work.XXXXXX")
trap 'docker rm -f "$builder" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
ctx=$work/node-base
mkdir -p "$ctx/bin" "$ctx/cni"
# kind's base image files, with the modes its Dockerfile gives them (the module cache is read-only).
cp -r "$kind_module/images/base/files" "$ctx/files"
rm -rf "$ctx/files/LICENSES"
chmod -R u+w "$ctx/files"
find "$ctx/files" -type d -exec chmod 0755 {} +
find "$ctx/files" -type f -exec chmod 0644 {} +
chmod 0755 "$ctx"/files/usr/local/bin/* "$ctx"/files/kind/bin/*
cp "$kind_dir/node-init.sh" "$ctx/bin/kuc-node-init"
for t in containerd containerd-shim-runc-v2 ctr crictl runc; do cp "${bin[$t]}" "$ctx/bin/"; done
for t in host-local loopback ptp portmap; do cp "${bin[cni-$t]}" "$ctx/cni/"; done
chmod 0755 "$ctx"/bin/* "$ctx"/cni/*
cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $node_rootfs
COPY files/ /
COPY bin/kuc-node-init bin/containerd bin/containerd-shim-runc-v2 bin/ctr bin/crictl /usr/local/bin/
COPY bin/runc /usr/local/sbin/runc
COPY cni/ /opt/cni/bin/
# What kind's base Dockerfile does after installing its packages (the packages came with debootstrap here):
# units it does not want, journald not reading kmsg, systemd as /sbin/init, its three units enabled, the
# containerd base OCI spec with kind's product-files hook, the kubelet's manifests directory. Then the one
# containerd setting this engine needs: the node cannot lower oom_score_adj (no CAP_SYS_RESOURCE), so
# containerd clamps the scores the kubelet asks for (harmless where it could).
RUN find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete \\
 && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \\
      /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \\
      /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \\
 && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \\
 && ln -sf /usr/lib/systemd/systemd /sbin/init \\
 && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \\
 && systemctl mask systemd-binfmt.service \\
 && mkdir -p /etc/kubernetes/manifests /opt/cni/bin \\
 && ctr oci spec \\
    | jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \\
    | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json \\
 && sed -i 's/restrict_oom_score_adj = false/restrict_oom_score_adj = true/' /etc/containerd/config.toml \\
 && containerd --version && runc --version && crictl --version
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL $kuc_label=node-base
ENTRYPOINT ["/usr/local/bin/kuc-node-init", "/usr/local/bin/entrypoint", "/sbin/init"]
DOCKERFILE
base_key=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
node_base=kuc-kind/node-base:$base_key
if ! have_image "$node_base"; then
  log "building the node base image $node_base"
  docker_build -t "$node_base" "$ctx"
fi

# --- the control-plane images, saved as tarballs (the upgrade artifacts) ---------------------------------
static_rootfs() {
  # A distroless-like root for static binaries: users, /tmp, CA certificates, and a PATH.
  local ctx=$work/static ref key
  mkdir -p "$ctx/root/etc/ssl/certs" "$ctx/root/tmp"
  chmod 1777 "$ctx/root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$ctx/root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$ctx/root/etc/group"
  printf 'hosts: files dns\n' >"$ctx/root/etc/nsswitch.conf"
  docker run --rm --entrypoint cat "$node_rootfs" /etc/ssl/certs/ca-certificates.crt >"$ctx/root/etc/ssl/certs/ca-certificates.crt"
  printf 'FROM scratch\nCOPY root/ /\nENV PATH=/usr/local/bin:/usr/bin:/bin\nLABEL %s=static\n' "$kuc_label" >"$ctx/Dockerfile"
  key=$(cd "$ctx" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12)
  ref=kuc-kind/static:$key
  have_image "$ref" || docker_build -t "$ref" "$ctx"
  echo "$ref"
}

tools_rootfs=
static_base=
mkdir -p "$artifacts/images" "$artifacts/bin"
for ref in "${wanted[@]}"; do
  repo=${ref%:*}
  tag=${ref##*:}
  name=${repo##*/}
  tarball=$artifacts/images/$name.tar
  [ -f "$tarball" ] && continue
  [ -n "$static_base" ] || static_base=$(static_rootfs)
  ctx=$work/$name
  mkdir -p "$ctx"
  case "$name" in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      cp "${bin[$name]}" "$ctx/"
      printf 'FROM %s\nCOPY %s /usr/local/bin/%s\nENTRYPOINT ["/usr/local/bin/%s"]\n' "$static_base" "$name" "$name" "$name" >"$ctx/Dockerfile"
      ;;
    kube-proxy)
      # kube-proxy programs iptables and conntrack: a Debian root with both, and a wrapper that picks the
      # iptables backend (legacy or nft) the node already uses, on first use.
      [ -n "$tools_rootfs" ] || tools_rootfs=$(rootfs_image tools-rootfs iptables,conntrack,ipset,kmod,python3,python3-yaml)
      cp "${bin[kube-proxy]}" "$ctx/"
      cp "$kind_dir/iptables-wrapper.sh" "$ctx/iptables-wrapper"
      chmod 0755 "$ctx/iptables-wrapper"
      cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $tools_rootfs
COPY kube-proxy iptables-wrapper /usr/local/bin/
RUN for cmd in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do \\
      update-alternatives --quiet --remove-all "\$cmd" >/dev/null 2>&1 || true; \\
      ln -sf /usr/local/bin/iptables-wrapper "/usr/sbin/\$cmd"; \\
    done
ENTRYPOINT ["/usr/local/bin/kube-proxy"]
DOCKERFILE
      ;;
    etcd)
      # The image tag is the etcd release plus a build suffix: 3.6.6-0 is etcd v3.6.6.
      etcd_version=v${tag%-*}
      for t in etcd etcdctl etcdutl; do
        log "binary $t $etcd_version"
        cp "$(tool "$t" "$etcd_version")" "$ctx/"
      done
      printf 'FROM %s\nCOPY etcd etcdctl etcdutl /usr/local/bin/\nENTRYPOINT ["/usr/local/bin/etcd"]\n' "$static_base" >"$ctx/Dockerfile"
      ;;
    coredns)
      log "binary coredns $tag"
      cp "$(tool coredns "$tag")" "$ctx/"
      printf 'FROM %s\nCOPY coredns /coredns\nEXPOSE 53 53/udp\nENTRYPOINT ["/coredns"]\n' "$static_base" >"$ctx/Dockerfile"
      ;;
    pause)
      log "binary pause $tag"
      cp "$(tool pause "$tag")" "$ctx/"
      printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$ctx/Dockerfile"
      ;;
    *) die "kubeadm $release asks for an image this script does not know how to build: $ref" ;;
  esac
  log "image $ref"
  docker_build --label "$kuc_label=component" -t "$ref" "$ctx"
  docker save -o "$tarball.tmp" "$ref"
  mv "$tarball.tmp" "$tarball"
  # The tarball is the cache; the engine's copy would only shadow a real registry image of that name.
  docker rmi "$ref" >/dev/null
done
printf '%s\n' "${wanted[@]}" >"$artifacts/images.txt"
for t in kubeadm kubelet kubectl; do
  ln -f "${bin[$t]}" "$artifacts/bin/$t" 2>/dev/null || cp "${bin[$t]}" "$artifacts/bin/$t"
done

# --- the node image: base + binaries + preloaded images, committed --------------------------------------
docker rm -f "$builder" >/dev/null 2>&1 || true
log "assembling $image in container $builder"
docker run -d --name "$builder" --label "$kuc_label=builder" --entrypoint sleep "$node_base" infinity >/dev/null
for t in kubeadm kubelet kubectl; do
  docker cp "${bin[$t]}" "$builder:/usr/bin/$t"
done
docker exec -i "$builder" bash -euc '
  chown root:root /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
  chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl
  echo "$1" >/kind/version
  # The sandbox (pause) image is the one this release names, which the node has.
  sed -i "s#sandbox_image = .*#sandbox_image = \"$2\"#" /etc/containerd/config.toml
  grep -q "sandbox_image = \"$2\"" /etc/containerd/config.toml
  # A containerd of our own, only to import the images (not unpacked: the snapshotter needs a real mount,
  # the node unpacks on first use, as kind does).
  containerd >/var/log/kuc-import-containerd.log 2>&1 &
  for _ in $(seq 1 50); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
  ctr version >/dev/null 2>&1 || { echo "containerd did not start in the build container" >&2; exit 1; }
' _ "$release" "$pause_image"
for ref in "${wanted[@]}"; do
  repo=${ref%:*}
  log "importing $ref into the node's containerd"
  # (ctr's own notice that cgroup v1 is deprecated is only shown when the import fails)
  if ! out=$(docker exec -i "$builder" ctr -n k8s.io images import --no-unpack - <"$artifacts/images/${repo##*/}.tar" 2>&1); then
    printf '%s\n' "$out" >&2
    die "importing $ref failed"
  fi
done
docker exec "$builder" bash -euc '
  echo "$(ctr -n k8s.io images ls -q 2>/dev/null | grep -vc "^sha256:") images in the node'"'"'s containerd"
  pkill -x containerd
  for _ in $(seq 1 50); do pgrep -x containerd >/dev/null || break; sleep 0.2; done
  rm -f /var/log/kuc-import-containerd.log
' >&2
docker commit \
  --change 'ENTRYPOINT ["/usr/local/bin/kuc-node-init", "/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change 'CMD []' \
  --change "LABEL $kuc_label=node io.kube-upgrade-controllers.built-locally=true" \
  "$builder" "$image" >/dev/null
log "built $image ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1 / 1e6}')); upgrade artifacts in $artifacts"
echo "$image"
