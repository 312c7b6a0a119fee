#!/usr/bin/env bash
# End-to-end on a real kind cluster, for machines with a Docker engine (the project's CI machines have none,
# so this script is checked with shellcheck there but not run):
#   1. create a kind cluster with 3 control-plane nodes and 2 workers,
#   2. build the controller image and the example bundle image, load them into the cluster,
#   3. helm install the chart with every controller enabled,
#   4. wait until every controller is Ready, then scrape each one's /metrics through a port-forward.
# Usage: e2e/kind/run.sh [--keep]   (--keep leaves the cluster running; default: delete it at the end)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
cluster=${KIND_CLUSTER:-kuc-e2e}
image=kube-upgrade-controllers:e2e
bundles=kube-upgrade-controllers-bundles:e2e
namespace=kube-upgrade-controllers
keep=false
[ "${1:-}" = "--keep" ] && keep=true

need() { command -v "$1" >/dev/null 2>&1 || { echo "kind e2e: '$1' is required" >&2; exit 2; }; }
need docker
need kind
need kubectl
need helm
docker info >/dev/null 2>&1 || { echo "kind e2e: no Docker engine is running" >&2; exit 2; }

cleanup() {
  if [ "$keep" = false ]; then kind delete cluster --name "$cluster" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

echo "== creating kind cluster $cluster (3 control-plane nodes, 2 workers)"
kind create cluster --name "$cluster" --wait 180s --config - <<'KIND'
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
nodes:
  - role: control-plane
  - role: control-plane
  - role: control-plane
  - role: worker
  - role: worker
KIND

echo "== building and loading images"
docker build -t "$image" -f "$repo/images/Dockerfile" "$repo"
docker build -t "$bundles" -f "$repo/images/bundle.Dockerfile" "$repo"
kind load docker-image --name "$cluster" "$image" "$bundles"

echo "== helm install"
helm upgrade --install kuc "$repo/charts/kube-upgrade-controllers" \
  --namespace "$namespace" --create-namespace \
  -f "$repo/charts/kube-upgrade-controllers/ci/all-enabled-values.yaml" \
  --set image.repository="${image%%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set config.minMasters=3 \
  --wait --timeout 5m

echo "== waiting for every controller to be Ready"
kubectl -n "$namespace" wait --for=condition=Ready pod --all --timeout=180s

echo "== scraping /metrics"
port=18080
for service in $(kubectl -n "$namespace" get services -o name | grep metrics); do
  kubectl -n "$namespace" port-forward "$service" "$port:metrics" >/dev/null 2>&1 &
  forward=$!
  sleep 2
  if curl -fsS "http://127.0.0.1:$port/metrics" | grep -E '_masters_agreed|_agreed_version_info'; then
    echo "ok: $service"
  else
    echo "FAILED: $service serves no agreement metrics" >&2
    kill "$forward"
    exit 1
  fi
  kill "$forward"
  port=$((port + 1))
done

echo "== helm test"
helm test kuc --namespace "$namespace"
echo "kind e2e passed"
