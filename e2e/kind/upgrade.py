"""A rolling kubeadm upgrade of the e2e kind cluster to the new release, node by node, the way kubeadm's own
upgrade tests do it inside kind (``make kind-upgrade``, ``make kind-upgrade-workers``):

    python -m e2e.kind.upgrade control-planes   # stage, then each control plane in turn
    python -m e2e.kind.upgrade workers          # each worker in turn: drain, upgrade, uncordon
    python -m e2e.kind.upgrade stage            # only: the new images and binaries on every node

Staging puts the new release's artifacts (``e2e/kind/artifacts.sh``: kubeadm, kubelet, kubectl and every
image ``kubeadm config images list`` names) on every node first, images imported into its containerd, since
the health-check pod and the new kube-proxy can land anywhere and nothing can be pulled. A control plane:
the new kubeadm, ``kubeadm upgrade apply`` on the first, ``kubeadm upgrade node`` on the others, then its
kubelet and kubectl replaced and the kubelet restarted; the step ends when its kubelet and its kube-apiserver
mirror pod report the new release and the Node is Ready. A worker is drained first and uncordoned after.
Every step prints a timestamped line. The e2e suite calls the same functions one node at a time.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import time

from e2e.kind import gates
from e2e.kind import k8s as cluster

TAG = "kind-upgrade"
ON_NODE = "/kuc/upgrade"
# kubeadm's SystemVerification refuses cgroup v1 from 1.35 on; these machines have only cgroup v1.
IGNORE = "--ignore-preflight-errors=SystemVerification"


def new_release() -> str:
    return cluster.versions()["KIND_NEW_RELEASE"]


def artifacts(release: str) -> pathlib.Path:
    """The release's upgrade artifacts (built or extracted once, cached): bin/ and images/*.tar."""
    out = subprocess.run(
        [str(cluster.REPO / "e2e" / "kind" / "artifacts.sh"), release],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    return pathlib.Path(out.stdout.strip().splitlines()[-1])


def nodes() -> list[str]:
    return cluster.node_names(control_planes=True) + cluster.node_names(control_planes=False)


def stage(release: str) -> None:
    """Every node gets the release's binaries under /kuc/upgrade/<release>/ and its images in containerd."""
    source = artifacts(release)
    tarballs = sorted((source / "images").glob("*.tar"))
    for node in nodes():
        if cluster.node_exec(node, f"cat {ON_NODE}/{release}/staged 2>/dev/null || true").strip() == "yes":
            cluster.log(TAG, f"{node}: {release} already staged")
            continue
        cluster.log(TAG, f"{node}: staging kubeadm, kubelet, kubectl and {len(tarballs)} images of {release}")
        cluster.node_exec(node, f"mkdir -p {ON_NODE}/{release}")
        cluster.run(["docker", "cp", f"{source / 'bin'}/.", f"{node}:{ON_NODE}/{release}/"])
        for tarball in tarballs:
            cluster.node_exec(node, "ctr -n k8s.io images import --no-unpack -", input=tarball.read_bytes())
        cluster.node_exec(node, f"echo yes > {ON_NODE}/{release}/staged")


def swap(node: str, release: str, *binaries: str) -> None:
    for binary in binaries:
        cluster.node_exec(node, f"ln -sf {ON_NODE}/{release}/{binary} /usr/bin/{binary}")


def upgrade_control_plane(node: str, release: str, *, first: bool, settle: bool = True) -> None:
    """One control plane to ``release``: kubeadm, then its kubelet; waits until it runs the new release and
    (``settle``) its kube-apiserver serves steadily."""
    swap(node, release, "kubeadm")
    if first:
        cluster.log(TAG, f"{node}: kubeadm upgrade apply {release} (the first control plane; a few minutes)")
        cluster.node_exec(node, f"kubeadm upgrade apply {release} --yes {IGNORE}", timeout=1800)
    else:
        cluster.log(TAG, f"{node}: kubeadm upgrade node")
        cluster.node_exec(node, f"kubeadm upgrade node {IGNORE}", timeout=1800)
    upgrade_kubelet(node, release)
    cluster.eventually(
        lambda: cluster.apiserver_versions().get(node) == release,
        timeout=600,
        what=f"{node}'s kube-apiserver mirror pod to run {release}",
    )
    if not settle:
        cluster.log(TAG, f"{node}: kube-apiserver and kubelet at {release}, Ready")
        return
    waited = wait_serving(node)
    cluster.log(
        TAG, f"{node}: kube-apiserver and kubelet at {release}, Ready (serving steadily after {waited:.0f} s)"
    )


# How long a control plane's kube-apiserver must look settled before the next step goes on.
STEADY_SECONDS = 10.0


def wait_serving(node: str, *, steady: float = STEADY_SECONDS) -> float:
    """Wait until the node's kube-apiserver has been settled for ``steady`` seconds: one Ready pod sandbox with
    the same container running in it, which lets the admin list Nodes. Returns the seconds waited.

    Seen here after a kubelet upgrade: the new kubelet starts the static pod afresh in a new sandbox while the
    old kube-apiserver still holds port 6443 (the new container exits: address already in use), and swaps
    them seconds or a minute later; a freshly started kube-apiserver then answers 403 to RBAC-authorized users
    until its caches sync. Through the load balancer any client may land on it (``kubectl drain`` failed so)."""
    started = time.monotonic()
    seen: tuple[str, float] = ("", started)

    def settled() -> bool:
        nonlocal seen
        container = serving_container(node)
        if container != seen[0] or not container:
            seen = (container, time.monotonic())
            return False
        return time.monotonic() - seen[1] >= steady and authorizes(node)

    cluster.eventually(settled, timeout=600, interval=2, what=f"{node}'s kube-apiserver to serve steadily")
    return time.monotonic() - started


def serving_container(node: str) -> str:
    """The running kube-apiserver container of the node's one Ready kube-apiserver pod sandbox ("" while
    there is not exactly one of each)."""
    try:
        pods = cluster.node_exec(node, "crictl pods --name kube-apiserver --state ready -q").split()
        if len(pods) != 1:
            return ""
        running = cluster.node_exec(
            node, f"crictl ps --name kube-apiserver --state running -q --pod {pods[0]}"
        )
    except RuntimeError:  # the runtime is busy restarting: not settled
        return ""
    return running.split()[0] if len(running.split()) == 1 else ""


def authorizes(node: str) -> bool:
    """Whether the node's own kube-apiserver lets the admin list Nodes."""
    address = next(
        a.address for a in cluster.api().core.read_node(node).status.addresses if a.type == "InternalIP"
    )
    own = f"kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://{address}:6443 get nodes -o name"
    try:
        cluster.node_exec(node, own, timeout=30)
    except RuntimeError:
        return False
    return True


def upgrade_kubelet(node: str, release: str) -> None:
    cluster.log(TAG, f"{node}: kubelet and kubectl {release}, systemctl restart kubelet")
    swap(node, release, "kubelet", "kubectl")
    cluster.node_exec(node, f"systemctl restart kubelet && echo {release} > /kind/version")

    def upgraded() -> bool:
        found = cluster.api().core.read_node(node)
        return found.status.node_info.kubelet_version == release and cluster.ready(found)

    cluster.eventually(upgraded, timeout=600, what=f"{node}'s kubelet to report {release} and Ready")


def upgrade_worker(node: str, release: str) -> None:
    """Drain, ``kubeadm upgrade node``, the new kubelet, uncordon (once every control plane serves steadily:
    a kube-apiserver restarted moments ago would refuse the drain)."""
    for control_plane in cluster.node_names(control_planes=True):
        wait_serving(control_plane, steady=4.0)
    cluster.log(TAG, f"{node}: kubectl drain")
    cluster.run(
        ["kubectl", "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=300s"],
        timeout=360,
    )
    swap(node, release, "kubeadm")
    cluster.log(TAG, f"{node}: kubeadm upgrade node")
    cluster.node_exec(node, f"kubeadm upgrade node {IGNORE}", timeout=900)
    upgrade_kubelet(node, release)
    cluster.run(["kubectl", "uncordon", node])
    cluster.log(TAG, f"{node}: uncordoned, kubelet {release}")


def control_planes(release: str) -> None:
    """Every control plane in turn; first the feature gate the new minor removes, if the cluster still sets it
    (the e2e suite removes it itself, after upgrade-readiness reported it)."""
    gate = gates.removed_gate()
    if gates.in_config_map(gates.KUBEADM_CONFIG, gates.KUBEADM_KEY, gate):
        cluster.log(TAG, f"the cluster still sets {gate}, which {release} removes: removing it first")
        gates.remove(gate, settled=wait_serving)
    stage(release)
    for index, node in enumerate(cluster.node_names(control_planes=True)):
        upgrade_control_plane(node, release, first=index == 0)
    cluster.log(TAG, f"every control plane runs {release}")


def workers(release: str) -> None:
    for node in cluster.node_names(control_planes=False):
        if cluster.kubelet_versions()[node] == release:
            cluster.log(TAG, f"{node}: already at {release}")
            continue
        upgrade_worker(node, release)
    cluster.log(TAG, f"every worker runs {release}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("step", choices=["stage", "control-planes", "workers"])
    parser.add_argument(
        "--release", default=new_release(), help="the release to upgrade to (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    {"stage": stage, "control-planes": control_planes, "workers": workers}[args.step](args.release)
    return 0


if __name__ == "__main__":
    sys.exit(main())
