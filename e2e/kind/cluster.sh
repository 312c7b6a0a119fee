#!/usr/bin/env bash
# The e2e kind cluster, made to run where nothing can be pulled and `docker run --privileged` is refused:
#   e2e/kind/cluster.sh up [--control-planes N] [--workers N] [--release vX.Y.Z] [--no-check]
#   e2e/kind/cluster.sh check      pod networking across workers, a Service, DNS, a pause pod as uid 999
#   e2e/kind/cluster.sh down       delete the cluster, its network and volumes (the engine keeps running)
# Defaults: KIND_CONTROL_PLANES (3), KIND_WORKERS (2), the release KIND_OLD_RELEASE from versions.env.
#
# `up` makes sure of the engine (e2e/engine.sh), kind, kubectl, the node image (e2e/kind/node-image.sh: the
# engine's kindest/node image, or one built offline) and, with more than one control plane and a locally
# built node image, a stand-in for kind's load balancer image (e2e/kind/lb-image.sh); creates the cluster
# kuc-e2e on its own docker network with the pod and service ranges below; wires pod networking itself
# (kind's default CNI, kindnetd, is not available offline): each node gets a static CNI configuration (ptp
# + host-local on its podCIDR) and routes to the other nodes' podCIDRs; then waits until every node is Ready
# and CoreDNS and kube-proxy run, runs `check` (unless --no-check), and writes
#   .kind/kubeconfig   the cluster's admin kubeconfig
#   .kind/env          KUBECONFIG, PATH (kubectl, kind), KIND_CLUSTER_NAME, KUC_KIND_* (`. .kind/env`)
# An existing cluster of that name is reused (the networking and the waits are idempotent).
# Every step is logged with a timestamp on stderr.
set -euo pipefail
log_tag=cluster
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "$0")/common.sh"

cluster=${KIND_CLUSTER_NAME:-kuc-e2e}
network=$cluster
# The test's own ranges (not kind's defaults): the nodes' docker network, pods, services.
node_subnet=${KUC_KIND_NODE_SUBNET:-172.29.9.0/24}
pod_subnet=${KUC_KIND_POD_SUBNET:-10.210.0.0/16}
service_subnet=${KUC_KIND_SERVICE_SUBNET:-10.211.0.0/16}
state_dir=$repo_dir/.kind
kubeconfig=$state_dir/kubeconfig

control_planes=${KIND_CONTROL_PLANES:-3}
workers=${KIND_WORKERS:-2}
release=$KIND_OLD_RELEASE
check=true
command=${1:-}
[ $# -gt 0 ] && shift
while [ $# -gt 0 ]; do
  case "$1" in
    --control-planes) control_planes=${2:?}; shift 2 ;;
    --workers) workers=${2:?}; shift 2 ;;
    --release) release=${2:?}; shift 2 ;;
    --no-check) check=false; shift ;;
    *) die "unknown option '$1'" ;;
  esac
done

real_docker=$(command -v docker || true)
kind_bin=
kubectl_bin=

# kind, with the docker shim first on its PATH when the engine refuses --privileged.
kind_cmd() {
  local path=$PATH
  if [ -n "${shim_dir:-}" ]; then
    path=$shim_dir:$PATH
  fi
  PATH=$path KUC_REAL_DOCKER=$real_docker KIND_EXPERIMENTAL_DOCKER_NETWORK=$network "$kind_bin" "$@"
}
k() { "$kubectl_bin" --kubeconfig "$kubeconfig" "$@"; }

nodes_of_cluster() {
  docker ps -a --filter "label=io.x-k8s.kind.cluster=$cluster" --format '{{.Names}}' | sort
}

# Can this engine run a privileged container? If not, kind goes through e2e/kind/docker-shim.sh.
setup_shim() {
  local image=$1
  if docker run --rm --privileged --entrypoint true "$image" >/dev/null 2>&1; then
    log "the engine runs privileged containers: kind talks to it directly"
    shim_dir=
    return
  fi
  shim_dir=$KUC_KIND_CACHE/docker-shim
  mkdir -p "$shim_dir"
  ln -sf "$kind_dir/docker-shim.sh" "$shim_dir/docker"
  log "the engine refuses --privileged: kind's docker calls go through e2e/kind/docker-shim.sh"
}

kind_config() {
  local minor=${release#v1.}
  minor=${minor%%.*}
  local kubeadm_api=kubeadm.k8s.io/v1beta3 etcd_args apiserver_args
  # kind writes kubeadm's v1beta3 API below 1.36 and v1beta4 from 1.36 (extraArgs became a list; kind merges
  # a patch's list into its own by name, so kind's runtime-config stays).
  etcd_args=$'          heartbeat-interval: "500"\n          election-timeout: "5000"'
  apiserver_args="        feature-gates: \"$KIND_REMOVED_GATE=true\""
  if [ "$minor" -ge 36 ]; then
    kubeadm_api=kubeadm.k8s.io/v1beta4
    etcd_args=$'          - name: heartbeat-interval\n            value: "500"\n          - name: election-timeout\n            value: "5000"'
    apiserver_args=$'        - name: feature-gates\n          value: "'"$KIND_REMOVED_GATE"$'=true"'
  fi
  # The group/version of KIND_REMOVED_API (versions.env) on: kind passes runtimeConfig to kubeadm as the
  # apiserver's --runtime-config, and kubeadm upgrade keeps it (the new release simply no longer serves it).
  local removed_gv=${KIND_REMOVED_API%/*}
  cat <<YAML
# written by e2e/kind/cluster.sh
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $cluster
runtimeConfig:
  "$removed_gv": "true"
networking:
  ipFamily: ipv4
  # no kindnetd offline: cluster.sh writes each node's CNI configuration
  disableDefaultCNI: true
  podSubnet: "$pod_subnet"
  serviceSubnet: "$service_subnet"
kubeadmConfigPatches:
  # 1.35+ kubelets refuse cgroup v1 unless told otherwise (this engine's host is cgroup v1). The feature gate
  # KIND_REMOVED_GATE (versions.env), which the new minor removes, on the kubelets here and on the
  # kube-apiservers below (kubeadm's extraArgs; not kind's featureGates, which set it on all five components):
  # upgrade-readiness blocks on it, and the scenario removes it before the upgrade (e2e/kind/gates.py).
  - |
    apiVersion: kubelet.config.k8s.io/v1beta1
    kind: KubeletConfiguration
    failCgroupV1: false
    featureGates:
      $KIND_REMOVED_GATE: true
  # 2 shared cores: etcd's default 100 ms heartbeat / 1 s election flaps under load.
  - |
    apiVersion: $kubeadm_api
    kind: ClusterConfiguration
    apiServer:
      extraArgs:
$apiserver_args
    etcd:
      local:
        extraArgs:
$etcd_args
nodes:
YAML
  local i
  for ((i = 0; i < control_planes; i++)); do echo "  - role: control-plane"; done
  for ((i = 0; i < workers; i++)); do echo "  - role: worker"; done
}

ensure_network() {
  if docker network inspect "$network" >/dev/null 2>&1; then
    return
  fi
  # A network left by another cluster (one of another name that a killed run left behind) may hold the range:
  # name it and how to remove it, rather than the engine's "Pool overlaps".
  local other
  for other in $(docker network ls --quiet --filter "label=$kuc_label=network"); do
    if [[ $(docker network inspect --format '{{range .IPAM.Config}}{{.Subnet}} {{end}}' "$other") == *"$node_subnet "* ]]; then
      other=$(docker network inspect --format '{{.Name}}' "$other")
      die "the range $node_subnet is taken by docker network $other (cluster $other): delete it with" \
        "KIND_CLUSTER_NAME=$other e2e/kind/cluster.sh down, or choose another range with KUC_KIND_NODE_SUBNET"
    fi
  done
  log "creating docker network $network ($node_subnet)"
  docker network create --driver bridge --subnet "$node_subnet" \
    --opt com.docker.network.bridge.enable_ip_masquerade=true \
    --label "$kuc_label=network" "$network" >/dev/null
}

# Static pod networking: on every node a CNI configuration for its own podCIDR (ptp: a veth per pod and a
# host route; host-local hands out the addresses), a route to every other node's podCIDR through that node,
# forwarding on, and masquerading of pod traffic leaving the pod range (DNS through the engine, the host).
wire_pod_network() {
  local names name cidr ip i expected
  # kind returns once every kubeadm join returned; a kubelet may register its Node a little later.
  expected=$(docker ps --filter "label=io.x-k8s.kind.cluster=$cluster" --format '{{.Label "io.x-k8s.kind.role"}}' |
    grep -c -e '^control-plane$' -e '^worker$')
  for i in $(seq 1 300); do
    mapfile -t names < <(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
    [ "${#names[@]}" -ge "$expected" ] && break
    [ "$i" = 300 ] && die "only ${#names[@]} of $expected nodes registered within 300 s"
    sleep 1
  done
  declare -A cidr_of ip_of
  for name in "${names[@]}"; do
    for i in $(seq 1 120); do
      cidr=$(k get node "$name" -o jsonpath='{.spec.podCIDR}')
      [ -n "$cidr" ] && break
      [ "$i" = 120 ] && die "node $name got no podCIDR in 120 s (kube-controller-manager allocates them)"
      sleep 1
    done
    ip=$(k get node "$name" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
    cidr_of[$name]=$cidr
    ip_of[$name]=$ip
  done
  for name in "${names[@]}"; do
    local routes=()
    for other in "${names[@]}"; do
      [ "$other" = "$name" ] || routes+=("${cidr_of[$other]}" "${ip_of[$other]}")
    done
    log "pod network on $name: ${cidr_of[$name]} (routes to the $((${#names[@]} - 1)) other nodes)"
    docker exec -i "$name" bash -euc '
      cidr=$1 pods=$2
      shift 2
      mkdir -p /etc/cni/net.d
      cat >/etc/cni/net.d/10-kuc-ptp.conflist.tmp <<CNI
{
  "cniVersion": "1.0.0",
  "name": "kuc-ptp",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "/run/cni-ipam-state",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
CNI
      mv /etc/cni/net.d/10-kuc-ptp.conflist.tmp /etc/cni/net.d/10-kuc-ptp.conflist
      sysctl -qw net.ipv4.ip_forward=1
      while [ $# -gt 0 ]; do
        ip route replace "$1" via "$2"
        shift 2
      done
      iptables -t nat -N KUC-POD-MASQ 2>/dev/null || iptables -t nat -F KUC-POD-MASQ
      iptables -t nat -A KUC-POD-MASQ -d "$pods" -j RETURN
      iptables -t nat -A KUC-POD-MASQ -j MASQUERADE
      iptables -t nat -C POSTROUTING -s "$pods" -j KUC-POD-MASQ 2>/dev/null ||
        iptables -t nat -A POSTROUTING -s "$pods" -j KUC-POD-MASQ
    ' _ "${cidr_of[$name]}" "$pod_subnet" "${routes[@]}"
  done
}

wait_ready() {
  log "waiting for every node to be Ready"
  k wait --for=condition=Ready node --all --timeout=600s >/dev/null
  log "waiting for kube-proxy and CoreDNS"
  k -n kube-system rollout status daemonset/kube-proxy --timeout=600s >/dev/null
  k -n kube-system rollout status deployment/coredns --timeout=600s >/dev/null
  log "nodes:"
  k get nodes -o wide >&2
}

write_env() {
  {
    echo "# written by e2e/kind/cluster.sh up: . .kind/env"
    printf 'export KUBECONFIG=%q\n' "$kubeconfig"
    printf 'export KIND_CLUSTER_NAME=%q\n' "$cluster"
    printf 'export KIND_EXPERIMENTAL_DOCKER_NETWORK=%q\n' "$network"
    printf 'export KUC_KIND_RELEASE=%q\n' "$release"
    printf 'export KUC_KIND_CONTROL_PLANES=%q\n' "$control_planes"
    printf 'export KUC_KIND_WORKERS=%q\n' "$workers"
    # shellcheck disable=SC2016 # $PATH is for the shell that sources the file
    printf 'export PATH=%q:%q:"$PATH"\n' "$(dirname "$kubectl_bin")" "$(dirname "$kind_bin")"
    if [ -n "${shim_dir:-}" ]; then
      # kind commands that run containers (e.g. `kind create`) need the shim; `kind load`/`kind get` do not.
      printf 'export KUC_REAL_DOCKER=%q\n' "$real_docker"
      printf 'export KUC_KIND_DOCKER_SHIM=%q\n' "$shim_dir"
    fi
  } >"$state_dir/env.tmp"
  mv "$state_dir/env.tmp" "$state_dir/env"
}

cmd_up() {
  "$e2e_dir/engine.sh"
  real_docker=$(command -v docker)
  log "kind $KIND_VERSION, kubectl $release"
  kind_bin=$(tool kind)
  kubectl_bin=$(tool kubectl "$release")
  local image lb
  image=$("$kind_dir/node-image.sh" "$release")
  # kind's load balancer (more than one control plane): with a locally built node image (no registry) the
  # stand-in of lb-image.sh; with upstream's node image kind pulls upstream's envoy as usual, unless the
  # engine has it. KUC_KIND_LB_STANDIN=always builds the stand-in regardless.
  if [ "$control_planes" -gt 1 ]; then
    if [ "${KUC_KIND_LB_STANDIN:-auto}" = always ] ||
      [ "$(docker image inspect -f '{{index .Config.Labels "io.kube-upgrade-controllers.built-locally"}}' "$image")" = true ]; then
      lb=$("$kind_dir/lb-image.sh")
      log "load balancer image: $lb"
    else
      log "upstream node image: kind provides its own load balancer image"
    fi
  fi
  setup_shim "$image"
  mkdir -p "$state_dir"
  if kind_cmd get clusters 2>/dev/null | grep -qx "$cluster"; then
    log "cluster $cluster exists: reusing it"
    kind_cmd export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig" >/dev/null 2>&1
  else
    ensure_network
    kind_config >"$state_dir/kind-config.yaml"
    log "creating cluster $cluster: $control_planes control plane(s), $workers worker(s), $image (kind's own progress follows)"
    kind_cmd create cluster --name "$cluster" --config "$state_dir/kind-config.yaml" --image "$image" \
      --kubeconfig "$kubeconfig" --retain --wait 0s ||
      die "kind create cluster failed; nodes kept for inspection (docker logs $cluster-control-plane), 'cluster.sh down' removes them"
  fi
  chmod 0600 "$kubeconfig"
  wire_pod_network
  wait_ready
  write_env
  if [ "$check" = true ]; then
    cmd_check
  fi
  log "cluster $cluster is up: . .kind/env; kubectl get nodes"
}

# A namespace of its own: a server pod on one worker, a client on another, a Service; a pause pod as uid 999
# on each worker (what kubeadm upgrade's health check runs).
cmd_check() {
  [ -n "$kubectl_bin" ] || kubectl_bin=$(tool kubectl "$release")
  local ns=kuc-netcheck workers_list server client image pause svc_ip pod_ip
  mapfile -t workers_list < <(k get nodes -l '!node-role.kubernetes.io/control-plane' -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  if [ "${#workers_list[@]}" -lt 1 ]; then
    mapfile -t workers_list < <(k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}')
  fi
  server=${workers_list[0]}
  client=${workers_list[${#workers_list[@]} - 1]}
  # A small Debian image with python3 (the load balancer stand-in's root), loaded into the nodes for this.
  image=$(rootfs_image tools-rootfs iptables,conntrack,ipset,kmod,python3,python3-yaml)
  pause=$(docker exec "$server" grep -o 'sandbox_image = "[^"]*"' /etc/containerd/config.toml | cut -d'"' -f2)
  log "check: loading $image into the nodes"
  [ -n "$kind_bin" ] || kind_bin=$(tool kind)
  [ -n "${shim_dir+set}" ] || setup_shim "$(docker inspect -f '{{.Config.Image}}' "$server")"
  kind_cmd load docker-image --name "$cluster" --nodes "$server,$client" "$image" >/dev/null
  k delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  k create namespace "$ns" >/dev/null
  k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: server, labels: {app: netcheck}}
spec:
  nodeName: $server
  containers:
    - name: http
      image: $image
      imagePullPolicy: Never
      command: [python3, -m, http.server, "8080"]
      ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: netcheck}
spec:
  selector: {app: netcheck}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  nodeName: $client
  containers:
    - name: client
      image: $image
      imagePullPolicy: Never
      command: [sleep, infinity]
YAML
  # kubeadm upgrade's health check: a Job running the pause image with -v (it prints its version and exits)
  # as uid 999; here one pod per worker, which must succeed.
  for worker in "${workers_list[@]}"; do
    k -n "$ns" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: pause-$worker}
spec:
  nodeName: $worker
  restartPolicy: Never
  securityContext: {runAsUser: 999, runAsGroup: 999, runAsNonRoot: true}
  containers:
    - name: pause
      image: $pause
      imagePullPolicy: Never
      args: [-v]
YAML
  done
  k -n "$ns" wait --for=condition=Ready pod/server pod/client --timeout=180s >/dev/null
  for worker in "${workers_list[@]}"; do
    k -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/pause-$worker" --timeout=180s >/dev/null ||
      die "check: the pause pod as uid 999 on $worker did not succeed"
  done
  pod_ip=$(k -n "$ns" get pod server -o jsonpath='{.status.podIP}')
  svc_ip=$(k -n "$ns" get service netcheck -o jsonpath='{.spec.clusterIP}')
  local url
  for url in "http://$pod_ip:8080/" "http://$svc_ip/" "http://netcheck.$ns.svc.cluster.local/"; do
    if ! k -n "$ns" exec client -- python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' "$url"; then
      die "check: the client on $client cannot reach $url (server on $server)"
    fi
    log "check: pod on $client reached $url (pod on $server)"
  done
  log "check: $pause ran as uid 999 on ${workers_list[*]}"
  k delete namespace "$ns" --wait=false >/dev/null
  log "check passed"
}

cmd_down() {
  local names
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    real_docker=$(command -v docker)
    log "deleting cluster $cluster"
    # kind when it is built; the containers carry kind's cluster label either way (removed below).
    kind_bin=$(tool kind 2>/dev/null) || kind_bin=
    if [ -n "$kind_bin" ]; then
      kind_cmd delete cluster --name "$cluster" >/dev/null 2>&1 || true
    fi
    # Anything kind left behind (a half-created cluster), and our own build containers (only those: every
    # node container of a locally built image carries $kuc_label too, whatever cluster it belongs to).
    mapfile -t names < <(nodes_of_cluster)
    if [ "${#names[@]}" -gt 0 ]; then
      docker rm -f -v "${names[@]}" >/dev/null
    fi
    mapfile -t names < <(docker ps -a --filter "label=$kuc_label=builder" --format '{{.Names}}')
    if [ "${#names[@]}" -gt 0 ]; then
      docker rm -f -v "${names[@]}" >/dev/null
    fi
    if docker network inspect "$network" >/dev/null 2>&1; then
      log "deleting docker network $network"
      docker network rm "$network" >/dev/null
    fi
  fi
  rm -f "$state_dir/kubeconfig" "$state_dir/env" "$state_dir/kind-config.yaml"
  rmdir "$state_dir" 2>/dev/null || true
  log "cluster $cluster deleted"
}

case "$command" in
  up) cmd_up ;;
  check) cmd_check ;;
  down) cmd_down ;;
  *) die "usage: cluster.sh up [--control-planes N] [--workers N] [--release vX.Y.Z] [--no-check] | check | down" ;;
esac
