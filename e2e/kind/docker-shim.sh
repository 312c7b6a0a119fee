#!/usr/bin/env bash
# Put on kind's PATH as `docker` (e2e/kind/cluster.sh does) when the engine refuses `docker run --privileged`
# ("unable to apply caps: operation not permitted": the sandbox's capability bounding set lacks
# CAP_SYS_RESOURCE, and --privileged asks for every capability). kind builds its docker arguments itself, so
# they are adjusted here, on their way to the real client (KUC_REAL_DOCKER):
#   docker run ... --privileged ...   ->  every capability but CAP_SYS_RESOURCE, /proc and /sys paths not
#                                        masked or read-only, every device allowed in the node's devices
#                                        cgroup (privileged pods such as kube-proxy get "a *:* rwm", which a
#                                        child cgroup may only have if its parent has it, and only before
#                                        it has children), and the host's /dev/kmsg for the kubelet;
#   docker exec --privileged ...      ->  without it (the process gets the container's capabilities).
# kind passes seccomp=unconfined, apparmor=unconfined and --cgroupns=private itself. What --privileged also
# did and this does not: the cgroup mounts stay read-only (the node image's first entrypoint step remounts
# them, e2e/kind/node-init.sh) and the host's other devices are not exposed (a kind node needs none).
# Every other invocation passes through unchanged.
set -euo pipefail

real=${KUC_REAL_DOCKER:?KUC_REAL_DOCKER must name the real docker client}
case "${1:-}" in
  run | exec | create) ;;
  *) exec "$real" "$@" ;;
esac

sub=$1
shift
args=("$sub")
for arg in "$@"; do
  if [ "$arg" != --privileged ]; then
    args+=("$arg")
    continue
  fi
  if [ "$sub" = exec ]; then
    continue
  fi
  args+=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt systempaths=unconfined --device-cgroup-rule "a *:* rwm")
  if [ -c /dev/kmsg ]; then
    args+=(--device /dev/kmsg)
  fi
done
exec "$real" "${args[@]}"
