#!/usr/bin/env bash
# Build one fixture tool from the Go module proxy and cache it by tool and version:
#   e2e/build-tool.sh kube-apiserver|kube-controller-manager|etcd|etcdctl|helm|promtool|storage-version-migrator
# Prints the cached binary's path on stdout; progress goes to stderr. Builds only when missing.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
. "$here/versions.env"

tool=${1:?usage: build-tool.sh kube-apiserver|kube-controller-manager|etcd|etcdctl|helm|promtool|storage-version-migrator}
cache=${KUC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/kube-upgrade-controllers}
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

case "$tool" in
  kube-apiserver | kube-controller-manager) version=$KUBE_VERSION ;;
  etcd | etcdctl) version=$ETCD_VERSION ;;
  helm) version=$HELM_VERSION ;;
  promtool) version=$PROMTOOL_VERSION ;;
  storage-version-migrator) version=$SVM_VERSION ;;
  *) echo "build-tool.sh: unknown tool '$tool'" >&2; exit 2 ;;
esac

out="$cache/bin/$tool-$version/$tool"
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

log() { printf '[build-tool] %s %s: %s\n' "$tool" "$version" "$*" >&2; }
work="$cache/src/$tool-$version"
rm -rf "$work"
mkdir -p "$work" "$(dirname "$out")"
cd "$work"
started=$(date +%s)

# Each tool is built inside a small wrapper module of its own, so that replace directives the upstream
# module needs (and that `go install` would ignore) are spelled out here.
case "$tool" in
  kube-apiserver | kube-controller-manager)
    gomod_path=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    minor_patch=${KUBE_VERSION#v1.}
    go_line=$(sed -n 's/^go \(.*\)$/\1/p' "$gomod_path")
    godebug_line=$(sed -n 's/^godebug \(.*\)$/\1/p' "$gomod_path")
    {
      echo "module fixture/$tool"
      echo
      echo "go $go_line"
      [ -n "$godebug_line" ] && echo "godebug $godebug_line"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      echo "replace ("
      # Every staging module k8s.io/X => ./staging/src/k8s.io/X becomes k8s.io/X v0.<minor>.<patch>.
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$gomod_path" |
        while read -r mod; do echo "	$mod => $mod v0.$minor_patch"; done
      echo ")"
    } >go.mod
    pkg=k8s.io/kubernetes/cmd/$tool
    minor=${minor_patch%%.*}
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
    ;;
  etcd | etcdctl)
    if [ "$tool" = etcd ]; then pkg=go.etcd.io/etcd/server/v3; else pkg=go.etcd.io/etcd/etcdctl/v3; fi
    printf 'module fixture/%s\n\ngo 1.26\n' "$tool" >go.mod
    ldflags="-s -w"
    ;;
  helm)
    pkg=helm.sh/helm/${HELM_VERSION%%.*}/cmd/helm
    printf 'module fixture/helm\n\ngo 1.26\n' >go.mod
    ldflags="-s -w -X helm.sh/helm/${HELM_VERSION%%.*}/internal/version.version=$HELM_VERSION"
    ;;
  promtool)
    pkg=github.com/prometheus/prometheus/cmd/promtool
    printf 'module fixture/promtool\n\ngo 1.26\n' >go.mod
    # v0.316.0 requires pseudo-versions of three modules that the module proxy does not serve (403 "not
    # available"); the ones v0.315.0 requires are served and build.
    go mod edit \
      -replace=github.com/google/pprof=github.com/google/pprof@v0.0.0-20260906184651-6331bc6350fe \
      -replace=github.com/hashicorp/nomad/api=github.com/hashicorp/nomad/api@v0.0.0-20260907080526-08ef8f3d26da \
      -replace=github.com/prometheus/client_golang/exp=github.com/prometheus/client_golang/exp@v0.0.0-20260907100614-57bb367da472
    # promtool checks and tests rules here; without the ~30 service discovery plugins it compiles in a
    # fraction of the time (Prometheus' own build tag).
    export GOFLAGS="$GOFLAGS -tags=remove_all_sd"
    ldflags="-s -w"
    ;;
  storage-version-migrator)
    # The benchmark anchor (bench/uso.py). Its go.mod has no replace directives; reflect2 < 1.0.2 (pulled
    # in through client-go v0.21's json-iterator) crashes on Go >= 1.18, so the wrapper raises it.
    pkg=sigs.k8s.io/kube-storage-version-migrator/cmd/migrator
    printf 'module fixture/storage-version-migrator\n\ngo 1.26\n' >go.mod
    go mod edit -require=github.com/modern-go/reflect2@v1.0.2
    ldflags="-s -w"
    ;;
esac

log "resolving modules (first time: downloads a few hundred MB)"
mod_version=$version
case "$tool" in kube-apiserver | kube-controller-manager) mod_version=$KUBE_VERSION ;; esac
go get -tool "$pkg@$mod_version" >&2
log "compiling $pkg (2 cores: kube-apiserver or kube-controller-manager takes 5-15 min)"
go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg" >&2
mv "$out.tmp" "$out"
log "built in $(($(date +%s) - started)) s -> $out"
echo "$out"
