"""A feature gate the new minor removes, in the e2e kind cluster: where it is set, and its removal as an
operator does it before ``kubeadm upgrade``.

``e2e/kind/cluster.sh`` creates the old cluster with ``KIND_REMOVED_GATE`` (``e2e/versions.env``) on the
kube-apiservers (kubeadm's ClusterConfiguration ``apiServer.extraArgs``, hence every control plane's static pod
manifest) and on the kubelets (the KubeletConfiguration kubeadm keeps in the ``kubelet-config`` ConfigMap and
writes to each node's ``/var/lib/kubelet/config.yaml``). The new release refuses to start on a gate it does
not know: ``kubeadm upgrade apply`` would write static pods whose kube-apiserver never comes up. The operator's
fix, one place at a time (what upgrade-readiness's feature-gates check sees, and what it cannot):

1. kubeadm's ClusterConfiguration (ConfigMap ``kube-system/kubeadm-config``): what ``kubeadm upgrade`` writes
   the new static pods from;
2. each control plane's static pod manifests (``/etc/kubernetes/manifests``, in the node container): the
   kubelet restarts the component, and its mirror pod shows the new command line;
3. the ``kubelet-config`` ConfigMap: what ``kubeadm upgrade node`` and new nodes take;
4. each node's ``/var/lib/kubelet/config.yaml``, then ``systemctl restart kubelet``.

The edits are pure functions of the text (tested in ``tests/unit/test_kind_gates.py`` on what kubeadm itself
writes); the rest runs them in the cluster (``k8s.node_exec``: ``docker exec`` into the node containers).
"""

from __future__ import annotations

import functools
import json
import shlex
from collections.abc import Callable, Mapping
from typing import Any

import yaml
from kubernetes import client

from e2e.kind import k8s

NAMESPACE = "kube-system"
KUBEADM_CONFIG, KUBEADM_KEY = "kubeadm-config", "ClusterConfiguration"
KUBELET_CONFIG, KUBELET_KEY = "kubelet-config", "kubelet"
MANIFESTS = "/etc/kubernetes/manifests"
KUBELET_FILE = "/var/lib/kubelet/config.yaml"
# ClusterConfiguration's sections whose extraArgs reach a component's command line.
SECTIONS = ("apiServer", "controllerManager", "scheduler")


def removed_gate() -> str:
    return k8s.versions()["KIND_REMOVED_GATE"]


# ----------------------------------------------------------------------------------------- the edits (pure)


def gates_without(value: str, gate: str) -> str:
    """A ``--feature-gates`` value (``A=true,B=false``) without ``gate``."""
    kept = [item for item in value.split(",") if item.strip() and item.partition("=")[0].strip() != gate]
    return ",".join(kept)


def args_without(args: list[Any], gate: str) -> list[Any]:
    """A command line without ``gate`` in its ``--feature-gates=...``; the flag dropped when nothing is left."""
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, str) and arg.startswith("--feature-gates="):
            rest = gates_without(arg.removeprefix("--feature-gates="), gate)
            if rest:
                out.append(f"--feature-gates={rest}")
            continue
        out.append(arg)
    return out


def _dump(document: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(document), sort_keys=False, default_flow_style=False)


def manifest_without(text: str, gate: str) -> str | None:
    """A static pod manifest without ``gate`` in any container's command or args; None when it has none."""
    pod = yaml.safe_load(text)
    changed = False
    for container in pod.get("spec", {}).get("containers") or []:
        for key in ("command", "args"):
            if isinstance(container.get(key), list):
                edited = args_without(container[key], gate)
                changed |= edited != container[key]
                container[key] = edited
    return _dump(pod) if changed else None


def _extra_args_without(value: Any, gate: str) -> Any:
    """extraArgs without ``gate``: a list of {name, value} (v1beta4 on) or a name→value map (v1beta3)."""
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, Mapping) and item.get("name") == "feature-gates":
                rest = gates_without(str(item.get("value") or ""), gate)
                if not rest:
                    continue
                item = {**item, "value": rest}
            out.append(item)
        return out
    if isinstance(value, Mapping) and "feature-gates" in value:
        rest = gates_without(str(value["feature-gates"]), gate)
        kept = {k: v for k, v in value.items() if k != "feature-gates"}
        return {**kept, "feature-gates": rest} if rest else kept
    return value


def cluster_configuration_without(text: str, gate: str) -> str | None:
    """kubeadm's ClusterConfiguration without ``gate`` in the components' extraArgs (an emptied extraArgs
    removed); None when it has none."""
    document = yaml.safe_load(text)
    changed = False
    for section in SECTIONS:
        part = document.get(section)
        if not isinstance(part, dict) or "extraArgs" not in part:
            continue
        edited = _extra_args_without(part["extraArgs"], gate)
        if edited != part["extraArgs"]:
            changed = True
            if edited:
                part["extraArgs"] = edited
            else:
                del part["extraArgs"]
    return _dump(document) if changed else None


def kubelet_configuration_without(text: str, gate: str) -> str | None:
    """A KubeletConfiguration without ``gate`` in featureGates (removed when emptied); None when it has none."""
    document = yaml.safe_load(text)
    gates = document.get("featureGates")
    if not isinstance(gates, dict) or gate not in gates:
        return None
    del gates[gate]
    if not gates:
        del document["featureGates"]
    return _dump(document)


# ------------------------------------------------------------------------------------ what the cluster sets


def in_config_map(name: str, key: str, gate: str) -> bool:
    """The gate is named in a kube-system ConfigMap's key (kubeadm-config, kubelet-config)."""
    data = k8s.api().core.read_namespaced_config_map(name, NAMESPACE).data or {}
    return without(data.get(key, ""), name, gate) is not None


def without(text: str, config_map: str, gate: str) -> str | None:
    """The key's text of kubeadm-config or kubelet-config without the gate; None when it names none."""
    edit = {KUBEADM_CONFIG: cluster_configuration_without, KUBELET_CONFIG: kubelet_configuration_without}
    return edit[config_map](text, gate) if text else None


def apiserver_command(node: str) -> list[str]:
    """The command line of the node's kube-apiserver mirror pod (what upgrade-readiness reads)."""
    pod = k8s.api().core.read_namespaced_pod(f"kube-apiserver-{node}", NAMESPACE)
    container = pod.spec.containers[0]
    return [*(container.command or []), *(container.args or [])]


def apiserver_sets(node: str, gate: str) -> bool:
    """The node's kube-apiserver mirror pod's command line sets the gate."""
    command = apiserver_command(node)
    return args_without(command, gate) != command


def mirror_pod_without(node: str, gate: str) -> bool:
    """The node's kube-apiserver mirror pod is there, without the gate (while the kubelet restarts the static
    pod its mirror pod is deleted and made again: absent is not without)."""
    try:
        return not apiserver_sets(node, gate)
    except client.ApiException:
        return False


def kubelet_gates(node: str) -> dict[str, bool]:
    """The featureGates the node's running kubelet has loaded (its ``/configz``, read as the admin through the
    apiserver's node proxy; upgrade-readiness never reads it: ``nodes/proxy`` is not granted to it)."""
    raw = k8s.run(["kubectl", "get", "--raw", f"/api/v1/nodes/{node}/proxy/configz"], timeout=60)
    gates = json.loads(raw).get("kubeletconfig", {}).get("featureGates") or {}
    return {str(name): bool(value) for name, value in gates.items()}


# --------------------------------------------------------------------------------------- the removal (I/O)


def edit_config_map(name: str, key: str, gate: str) -> bool:
    """Rewrite one key of a kube-system ConfigMap without the gate (replace: the resourceVersion read guards
    against a concurrent writer). False when it had none."""
    core = k8s.api().core
    config_map = core.read_namespaced_config_map(name, NAMESPACE)
    edited = without((config_map.data or {}).get(key, ""), name, gate)
    if edited is None:
        return False
    config_map.data[key] = edited
    core.replace_namespaced_config_map(name, NAMESPACE, config_map)
    k8s.log("gates", f"ConfigMap {NAMESPACE}/{name} ({key}): {gate} removed")
    return True


def write_node_file(node: str, path: str, text: str) -> None:
    """Replace a file in a node container at once (written on the same file system, then renamed): the
    kubelet watches the manifest directory and must never read half a file, nor a second manifest, so the
    temporary file lies in the directory above."""
    parent = path.rsplit("/", 2)[0]
    temporary = f"{parent}/.kuc-{path.rsplit('/', 1)[-1]}.tmp"
    k8s.node_exec(node, f"cat > {temporary} && mv {temporary} {shlex.quote(path)}", input=text.encode())


def edit_manifests(node: str, gate: str) -> list[str]:
    """Every static pod manifest of a control plane without the gate; the ones changed."""
    changed = []
    for name in k8s.node_exec(node, f"ls {MANIFESTS}").split():
        path = f"{MANIFESTS}/{name}"
        edited = manifest_without(k8s.node_exec(node, f"cat {shlex.quote(path)}"), gate)
        if edited is not None:
            write_node_file(node, path, edited)
            changed.append(name)
    k8s.log("gates", f"{node}: {gate} removed from {', '.join(changed) or 'no manifest'}")
    return changed


def edit_kubelet(node: str, gate: str) -> bool:
    """The node's kubelet configuration file without the gate, and the kubelet restarted; False when the file
    had none."""
    edited = kubelet_configuration_without(k8s.node_exec(node, f"cat {KUBELET_FILE}"), gate)
    if edited is None:
        return False
    write_node_file(node, KUBELET_FILE, edited)
    k8s.node_exec(node, "systemctl restart kubelet")
    k8s.log("gates", f"{node}: {gate} removed from {KUBELET_FILE}, kubelet restarted")
    return True


def kubelet_ready_without(node: str, gate: str) -> bool:
    """The node's kubelet runs without the gate (its /configz) and the Node is Ready (False while the kubelet
    restarts: the node proxy cannot reach it)."""
    try:
        loaded = kubelet_gates(node)
    except RuntimeError:
        return False
    return gate not in loaded and k8s.ready(k8s.api().core.read_node(node))


def remove(gate: str, *, settled: Callable[[str], object]) -> None:
    """The whole removal, in the order above (``make kind-upgrade`` runs it when the gate is still set):
    ``settled(node)`` waits until a control plane's kube-apiserver serves again after its restart."""
    edit_config_map(KUBEADM_CONFIG, KUBEADM_KEY, gate)
    for node in k8s.node_names(control_planes=True):
        if edit_manifests(node, gate):
            k8s.eventually(
                functools.partial(mirror_pod_without, node, gate),
                timeout=300,
                what=f"{node}'s kube-apiserver mirror pod without {gate}",
            )
            settled(node)
    edit_config_map(KUBELET_CONFIG, KUBELET_KEY, gate)
    for node in k8s.node_names(control_planes=True) + k8s.node_names(control_planes=False):
        if edit_kubelet(node, gate):
            k8s.eventually(
                functools.partial(kubelet_ready_without, node, gate),
                timeout=300,
                what=f"{node}'s kubelet Ready without {gate}",
            )
