#!/usr/bin/env bash
# Build one tool from the Go module proxy (or, for pause, from the Kubernetes module's C source) and cache it
# by tool and version:
#   e2e/build-tool.sh TOOL [VERSION]
# TOOL is one of
#   fixture:   kube-apiserver kube-controller-manager etcd etcdctl helm promtool storage-version-migrator
#   kind:      kind kubeadm kubelet kubectl kube-scheduler kube-proxy etcdutl coredns pause
#              containerd containerd-shim-runc-v2 ctr runc crictl cni-host-local cni-loopback cni-ptp cni-portmap
#   monitoring (the kind scenario's Prometheus stack):
#              prometheus alertmanager prometheus-operator prometheus-config-reloader kube-state-metrics
#   upgrade gate (make capi-proof): capi-manager (Cluster API's core manager)
# VERSION defaults to the pin in versions.env (the Kubernetes tools to KUBE_VERSION); coredns and pause have no
# pin of their own (e2e/kind/node-image.sh asks kubeadm which ones a release wants) and need it.
# Prints the cached binary's path on stdout; progress goes to stderr. Builds only when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

usage="usage: build-tool.sh TOOL [VERSION] (see the comment at the top of e2e/build-tool.sh)"
tool=${1:?$usage}
cache=${KUC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-upgrade-controllers}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

name=$tool
case "$tool" in
  kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubeadm | kubelet | kubectl)
    version=${2:-$KUBE_VERSION} ;;
  etcd | etcdctl | etcdutl) version=${2:-$ETCD_VERSION} ;;
  helm) version=$HELM_VERSION ;;
  promtool | prometheus) version=$PROMTOOL_VERSION ;;
  alertmanager) version=${2:-$ALERTMANAGER_VERSION} ;;
  prometheus-operator | prometheus-config-reloader) version=${2:-$PROMETHEUS_OPERATOR_VERSION} ;;
  kube-state-metrics) version=${2:-$KUBE_STATE_METRICS_VERSION} ;;
  storage-version-migrator) version=$SVM_VERSION ;;
  capi-manager) version=${2:-$CAPI_VERSION} ;;
  kind) version=${2:-$KIND_VERSION} ;;
  containerd | containerd-shim-runc-v2 | ctr) version=${2:-$CONTAINERD_VERSION} ;;
  runc) version=${2:-$RUNC_VERSION} ;;
  crictl) version=${2:-$CRICTL_VERSION} ;;
  cni-host-local | cni-loopback | cni-ptp | cni-portmap) version=${2:-$CNI_PLUGINS_VERSION}; name=${tool#cni-} ;;
  coredns | pause) version=${2:?build-tool.sh $tool needs a VERSION (kubeadm config images list tells which)} ;;
  *) echo "build-tool.sh: unknown tool '$tool'; $usage" >&2; exit 2 ;;
esac

# Users with internet may have controller-runtime's setup-envtest download etcd and kube-apiserver and point
# KUBEBUILDER_ASSETS at them: the local control plane then uses those as they are (nothing is built). Only for
# the fixture's own pins (no VERSION argument): the kind node images always get the release they name.
if [[ -n ${KUBEBUILDER_ASSETS:-} && -z ${2:-} && ($tool == etcd || $tool == kube-apiserver) ]] &&
  [ -x "$KUBEBUILDER_ASSETS/$tool" ]; then
  echo "[build-tool] $tool: using \$KUBEBUILDER_ASSETS/$tool (nothing built)" >&2
  echo "$KUBEBUILDER_ASSETS/$tool"
  exit 0
fi

out="$cache/bin/$tool-$version/$name"
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

# One build per tool and version at a time: a second caller waits, then finds the binary built.
mkdir -p "$cache/locks"
exec 9>"$cache/locks/$tool-$version.lock"
flock 9
if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

log() { printf '[build-tool %s] %s %s: %s\n' "$(date +%T)" "$tool" "$version" "$*" >&2; }
# The source directory of MODULE@VERSION in the module cache (downloaded first when missing).
module_dir() { go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'; }
work="$cache/src/$tool-$version"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
cd "$work"
started=$(date +%s)

# Each tool is built inside a small wrapper module of its own, so that replace directives the upstream
# module needs (and that `go install` would ignore) are spelled out here.
case "$tool" in
  kube-apiserver | kube-controller-manager | kube-scheduler | kube-proxy | kubeadm | kubelet | kubectl)
    info=$(go mod download -json "k8s.io/kubernetes@$version")
    gomod_path=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$info")
    minor_patch=${version#v1.}
    go_line=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod_path")
    godebug_line=$(sed -n 's/^godebug \(.*\)$/\1/p' "$gomod_path")
    {
      echo "module fixture/$tool"
      echo
      echo "go $go_line"
      [ -n "$godebug_line" ] && echo "godebug $godebug_line"
      echo
      echo "require k8s.io/kubernetes $version"
      echo
      echo "replace ("
      # Every staging module k8s.io/X => ./staging/src/k8s.io/X becomes k8s.io/X v0.<minor>.<patch>.
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod_path" |
        while read -r mod; do echo "	$mod => $mod v0.$minor_patch"; done
      echo ")"
    } >go.mod
    pkg=k8s.io/kubernetes/cmd/$tool
    minor=${minor_patch%%.*}
    # What hack/lib/version.sh stamps, in both version packages. A module zip carries no git metadata: the
    # tree state is "archive" (Kubernetes' own word for a build from a source archive), the commit is left
    # empty, and the build date is the tag's time as the module proxy reports it (reproducible).
    tag_time=$(sed -n 's/.*"Time":[[:space:]]*"\([^"]*\)".*/\1/p' "${gomod_path%.mod}.info")
    ldflags="-s -w"
    for var in "gitVersion=$version" gitMajor=1 "gitMinor=$minor" gitTreeState=archive gitCommit= "buildDate=$tag_time"; do
      ldflags+=" -X k8s.io/component-base/version.$var -X k8s.io/client-go/pkg/version.$var"
    done
    ;;
  etcd | etcdctl | etcdutl)
    case "$tool" in
      etcd) pkg=go.etcd.io/etcd/server/v3 ;;
      *) pkg=go.etcd.io/etcd/$tool/v3 ;;
    esac
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    ldflags="-s -w"
    ;;
  helm)
    pkg=helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm
    printf 'module fixture/helm\n\ngo 1.26\n' >go.mod
    ldflags="-s -w -X helm.sh/helm/${HELM_VERSION%%.*}/internal/version.version=$HELM_VERSION"
    ;;
  promtool | prometheus)
    pkg=github.com/prometheus/prometheus/cmd/$tool
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    # v0.316.0 requires pseudo-versions of three modules that the module proxy does not serve (403 "not
    # available"); the ones v0.315.0 requires are served and build.
    go mod edit \
      -replace=github.com/google/pprof=github.com/google/pprof@v0.0.0-20260906184651-6331bc6350fe \
      -replace=github.com/hashicorp/nomad/api=github.com/hashicorp/nomad/api@v0.0.0-20260907080526-08ef8f3d26da \
      -replace=github.com/prometheus/client_golang/exp=github.com/prometheus/client_golang/exp@v0.0.0-20260907100614-57bb367da472
    # promtool checks and tests rules here; without the ~30 service discovery plugins it compiles in a
    # fraction of the time (Prometheus' own build tag). The kind scenario's Prometheus keeps only the
    # kubernetes one (what the Operator's generated configuration uses). Without the `builtinassets` tag the
    # web UI is not compiled in (upstream builds it with npm); the API, all the e2e reads, is.
    tags=remove_all_sd
    [ "$tool" = prometheus ] && tags+=,enable_kubernetes_sd
    export GOFLAGS="$GOFLAGS -tags=$tags"
    ldflags="-s -w"
    # v0.3MM.P is Prometheus 3.MM.P (the module's Go version scheme); /api/v1/status/buildinfo reports it.
    ldflags+=" -X github.com/prometheus/common/version.Version=3.${version#v0.3}"
    ;;
  alertmanager)
    pkg=github.com/prometheus/alertmanager/cmd/alertmanager
    printf 'module fixture/alertmanager\n\ngo 1.26\n' >go.mod
    # From v0.32 on the web UI is an npm (Elm) build output that the module zip lacks, and `go:embed`
    # refuses to compile without it. The tests and the kind scenario use the API only: the module is
    # copied here with a one-page ui/app/dist that says so (the API, routing, inhibition are the release's).
    src=$(module_dir "github.com/prometheus/alertmanager@$version")
    if [ ! -d "$src/ui/app/dist" ]; then
      log "the module has no built web UI: building with a placeholder page"
      cp -r "$src" alertmanager-src
      chmod -R u+w alertmanager-src
      mkdir -p alertmanager-src/ui/app/dist
      echo '<!doctype html><title>Alertmanager</title><p>Web UI not built (kube-upgrade-controllers test build); the API is at /api/v2/.' \
        >alertmanager-src/ui/app/dist/index.html
      go mod edit -require="github.com/prometheus/alertmanager@$version" \
        -replace=github.com/prometheus/alertmanager=./alertmanager-src
    fi
    ldflags="-s -w -X github.com/prometheus/common/version.Version=${version#v}"
    ;;
  prometheus-operator | prometheus-config-reloader)
    # Its go.mod replaces its two API submodules by local paths; both are published at the same tag, which
    # is what a wrapper module resolves them to.
    case "$tool" in
      prometheus-operator) pkg=github.com/prometheus-operator/prometheus-operator/cmd/operator ;;
      *) pkg=github.com/prometheus-operator/prometheus-operator/cmd/$tool ;;
    esac
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    ldflags="-s -w -X github.com/prometheus/common/version.Version=${version#v}"
    ;;
  kube-state-metrics)
    # The module's root package is the command (no replace directives).
    pkg=k8s.io/kube-state-metrics/v2
    printf 'module fixture/kube-state-metrics\n\ngo 1.26\n' >go.mod
    ldflags="-s -w -X github.com/prometheus/common/version.Version=${version#v}"
    ;;
  storage-version-migrator)
    # The benchmark anchor (bench/uso.py). Its go.mod has no replace directives; reflect2 < 1.0.2 (pulled
    # in through client-go v0.21's json-iterator) crashes on Go >= 1.18, so the wrapper raises it.
    pkg=sigs.k8s.io/kube-storage-version-migrator/cmd/migrator
    printf 'module fixture/storage-version-migrator\n\ngo 1.26\n' >go.mod
    go mod edit -require=github.com/modern-go/reflect2@v1.0.2
    ldflags="-s -w"
    ;;
  capi-manager)
    # Cluster API's core manager (its Makefile's `managers` target builds sigs.k8s.io/cluster-api/core). Its
    # go.mod replaces the API module by ./api; the API module is published at the same tag, which is what a
    # wrapper module resolves it to. The build tag and the version stamps are its Dockerfile's and
    # hack/scripts/release/version.sh's (a module zip has no git metadata: tree state "archive").
    pkg=sigs.k8s.io/cluster-api/core
    printf 'module fixture/capi-manager\n\ngo 1.26.0\n' >go.mod
    go mod edit -require="sigs.k8s.io/cluster-api/api@$version"
    export GOFLAGS="$GOFLAGS -tags=fieldsv1string"
    tag_time=$(go mod download -json "sigs.k8s.io/cluster-api@$version" | sed -n 's/.*"Info": "\(.*\)".*/\1/p' |
      xargs sed -n 's/.*"Time":[[:space:]]*"\([^"]*\)".*/\1/p')
    minor=${version#v1.}
    ldflags="-s -w"
    for var in "gitVersion=$version" gitMajor=1 "gitMinor=${minor%%.*}" gitTreeState=archive "buildDate=$tag_time"; do
      ldflags+=" -X sigs.k8s.io/cluster-api/version.$var"
    done
    ;;
  kind)
    pkg=sigs.k8s.io/kind
    printf 'module fixture/kind\n\ngo 1.26\n' >go.mod
    ldflags="-s -w"
    ;;
  containerd | containerd-shim-runc-v2 | ctr)
    pkg=github.com/containerd/containerd/v2/cmd/$tool
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    # The snapshotters kind never selects are left out, as kind's base image does.
    export GOFLAGS="$GOFLAGS -tags=no_aufs,no_zfs,no_btrfs,no_devmapper,urfave_cli_no_docs"
    ldflags="-s -w -X github.com/containerd/containerd/v2/version.Version=$version"
    ldflags+=" -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2"
    ;;
  runc)
    # runc needs cgo (its nsenter is C) and libseccomp for seccomp profiles (RuntimeDefault pods); linked
    # statically so that the node image needs no libseccomp of a given version.
    if ! pkg-config --exists libseccomp 2>/dev/null; then
      if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        log "runc needs libseccomp's headers and static library (Debian: libseccomp-dev) and pkg-config"
        exit 1
      fi
      log "installing Debian's libseccomp-dev and pkg-config (apt-get)"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev pkg-config >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libseccomp-dev pkg-config >/dev/null; }
    fi
    pkg=github.com/opencontainers/runc
    printf 'module fixture/runc\n\ngo 1.26\n' >go.mod
    export CGO_ENABLED=1 GOFLAGS="$GOFLAGS -tags=seccomp,netgo,osusergo,urfave_cli_no_docs"
    ldflags="-s -w -X main.version=${version#v} -extldflags -static"
    ;;
  crictl)
    pkg=sigs.k8s.io/cri-tools/cmd/crictl
    printf 'module fixture/crictl\n\ngo 1.26\n' >go.mod
    ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$version"
    ;;
  cni-host-local | cni-loopback | cni-ptp | cni-portmap)
    case "$name" in
      host-local) pkg=github.com/containernetworking/plugins/plugins/ipam/host-local ;;
      portmap) pkg=github.com/containernetworking/plugins/plugins/meta/portmap ;;
      *) pkg=github.com/containernetworking/plugins/plugins/main/$name ;;
    esac
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$version"
    ;;
  coredns)
    # The module's root package is the coredns command, with the default plugin set compiled in.
    pkg=github.com/coredns/coredns
    printf 'module fixture/coredns\n\ngo 1.26\n' >go.mod
    ldflags="-s -w"
    ;;
  pause)
    # The pause container's program is C, in the Kubernetes module (build/pause/linux/pause.c), built
    # statically as its Makefile does.
    src=$(module_dir "k8s.io/kubernetes@$KUBE_VERSION")
    log "compiling $src/build/pause/linux/pause.c"
    gcc -Os -Wall -Werror -static -DVERSION="v${version#v}" -o "$out.tmp" "$src/build/pause/linux/pause.c"
    strip "$out.tmp"
    mv "$out.tmp" "$out"
    log "built in $(($(date +%s) - started)) s -> $out"
    echo "$out"
    exit 0
    ;;
esac

log "resolving modules (first time: downloads up to a few hundred MB)"
go get -tool "$pkg@$version" >&2
log "compiling $pkg (2 cores: a Kubernetes component takes 5-15 min cold, much less once another one is built)"
go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg" >&2
mv "$out.tmp" "$out"
log "built in $(($(date +%s) - started)) s -> $out"
echo "$out"
