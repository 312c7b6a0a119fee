#!/bin/bash
# The first step of a locally built kind node image, before kind's own entrypoint (which then execs systemd):
# what `docker run --privileged` would have given the node, on an engine that refuses --privileged (see
# e2e/kind/docker-shim.sh). On a node started with --privileged both steps find nothing to do.
set -o errexit -o nounset -o pipefail

# Without --privileged the engine mounts the cgroup hierarchies read-only; kind's entrypoint, systemd, the
# kubelet and containerd must create cgroups in them. A plain `remount,rw` of those bind mounts is refused
# ("busy"); `remount,bind,rw` works on each hierarchy (and a plain remount on the tmpfs holding them, cgroup v1).
findmnt -rn -R -o TARGET,FSTYPE,OPTIONS /sys/fs/cgroup | while read -r target fstype options; do
  case ",$options," in *,ro,*) ;; *) continue ;; esac
  echo "INFO: making $target writable" >&2
  case "$fstype" in
    tmpfs) mount -o remount,rw "$target" ;;
    cgroup | cgroup2) mount -o remount,bind,rw "$target" ;;
  esac
done

# The kubelet's OOM watcher reads /dev/kmsg; an unprivileged container has none unless the engine passed
# the host's (the docker shim does). The console is the fallback kind itself used to make.
if [ ! -e /dev/kmsg ]; then
  echo "INFO: no /dev/kmsg, linking it to /dev/console" >&2
  ln -s /dev/console /dev/kmsg
fi

exec "$@"
