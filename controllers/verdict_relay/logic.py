"""verdict-relay's decisions (pure: no I/O, no clock): what the mirror in each namespace holds, and how
Cluster API's lifecycle hooks are answered.

The relay runs in a Cluster API management cluster. Each workload cluster judges itself (its own
upgrade-readiness, its verdict ConfigMap); the relay reads that verdict through the Cluster's
``<cluster>-kubeconfig`` Secret and mirrors it into the Cluster's namespace, one ConfigMap per namespace whose
keys carry the Cluster's name (``<cluster>.upgradeable``: controllers/structs/gate.py), where the chart's
admission policies read it (``upgradeGate.verdict: relay``) and the Runtime Extension answers from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from controllers.structs import gate

KUBECONFIG_SUFFIX = "-kubeconfig"  # Cluster API's Secret of a cluster's admin kubeconfig
KUBECONFIG_KEY = "value"
VerdictState = Literal["upgradeable", "blocked", "unread"]
STATES: tuple[VerdictState, ...] = ("upgradeable", "blocked", "unread")

HOOKS_API_VERSION = "hooks.runtime.cluster.x-k8s.io/v1alpha1"
# The handlers the extension serves: its name in the discovery answer (the path's last part) → the hook.
HANDLERS: Mapping[str, str] = {
    "before-cluster-upgrade": "BeforeClusterUpgrade",
    "before-control-plane-upgrade": "BeforeControlPlaneUpgrade",
}
Answer = Literal["proceed", "hold", "failure"]
ANSWERS: tuple[Answer, ...] = ("proceed", "hold", "failure")


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterRef:
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def cluster_ref(obj: Mapping[str, Any]) -> ClusterRef:
    meta = obj.get("metadata") or {}
    return ClusterRef(
        str(meta.get("namespace") or ""), str(meta.get("name") or ""), str(meta.get("uid") or "")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Reading:
    """One read of a workload cluster's verdict: the verdict, or why there is none."""

    verdict: gate.GateVerdict | None
    problem: str = ""


def state_of(reading: Reading | None, *, now: float) -> VerdictState:
    if reading is None or reading.verdict is None:
        return "unread"
    return "upgradeable" if gate.at(reading.verdict, now=now).upgradeable else "blocked"


def mirrored(cluster: ClusterRef, reading: Reading | None, *, now: float) -> gate.GateVerdict:
    """What the mirror says of ``cluster``: its verdict as read (turned once its acknowledgement expired, even
    while the cluster cannot be read again), the command to acknowledge against that cluster; or no verdict
    (``target`` empty: every upgrade is refused) with why."""
    if reading is None or reading.verdict is None:
        why = reading.problem if reading is not None else "not read yet"
        return gate.GateVerdict(upgradeable=False, target="", reasons=f"cluster {cluster.key}: {why}")
    verdict = gate.at(reading.verdict, now=now)
    if verdict.acknowledge:
        where = f"clusterctl get kubeconfig {cluster.name} -n {cluster.namespace}"
        verdict = dataclasses.replace(
            verdict, acknowledge=f"with the workload cluster's kubeconfig ({where}): {verdict.acknowledge}"
        )
    return verdict


def mirrors(
    clusters: Iterable[ClusterRef], readings: Mapping[str, Reading], *, now: float
) -> tuple[dict[str, dict[str, str]], list[str]]:
    """The data of the mirror in each namespace that holds Clusters, and the Clusters whose names cannot be a
    key prefix (not mirrored: their upgrades are refused, as without a verdict)."""
    found: dict[str, dict[str, str]] = {}
    skipped = []
    for cluster in sorted(clusters, key=lambda c: c.key):
        prefix = gate.cluster_prefix(cluster.name)
        data = found.setdefault(cluster.namespace, {})
        if prefix is None:
            skipped.append(cluster.key)
            continue
        data.update(mirrored(cluster, readings.get(cluster.key), now=now).data(prefix=prefix))
    return found, skipped


# --- Cluster API's Runtime Extension ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class HookRequest:
    hook: str
    cluster: ClusterRef
    old: str  # the version the control plane runs
    new: str  # the version it would pick up now


def discovery(*, timeout_seconds: int) -> dict[str, Any]:
    """The answer to Cluster API's discovery call: the two handlers, failing closed (an error of this
    extension holds the upgrade, as Cluster API retries a failed hook)."""
    return {
        "apiVersion": HOOKS_API_VERSION,
        "kind": "DiscoveryResponse",
        "status": "Success",
        "handlers": [
            {
                "name": name,
                "requestHook": {"apiVersion": HOOKS_API_VERSION, "hook": hook},
                "timeoutSeconds": timeout_seconds,
                "failurePolicy": "Fail",
            }
            for name, hook in HANDLERS.items()
        ],
    }


def hook_request(hook: str, body: object) -> HookRequest | str:
    """The request of ``hook`` (BeforeClusterUpgrade: the first step of its plan, else the target; the
    control plane's next step for BeforeControlPlaneUpgrade), or what is wrong with it."""
    if not isinstance(body, Mapping):
        return "the request is not a JSON object"
    meta = (body.get("cluster") or {}).get("metadata") if isinstance(body.get("cluster"), Mapping) else None
    if not isinstance(meta, Mapping) or not meta.get("name") or not meta.get("namespace"):
        return "the request names no cluster"
    old, new = body.get("fromKubernetesVersion"), body.get("toKubernetesVersion")
    steps = body.get("controlPlaneUpgrades")
    if hook == "BeforeClusterUpgrade" and isinstance(steps, list) and steps and isinstance(steps[0], Mapping):
        new = steps[0].get("version")
    if not isinstance(old, str) or not isinstance(new, str) or not new:
        return "the request carries no fromKubernetesVersion or toKubernetesVersion"
    return HookRequest(hook, ClusterRef(str(meta["namespace"]), str(meta["name"])), old, new)


def hook_answer(
    request: HookRequest, verdict: gate.GateVerdict | str, *, now: float, retry_after_seconds: int
) -> tuple[Answer, dict[str, Any]]:
    """Hold (``Success`` with ``retryAfterSeconds``: Cluster API calls again then) while the gate refuses the
    step, with the reasons; proceed (``retryAfterSeconds: 0``) when it admits it. ``verdict`` is the
    mirrored one, or why there is none (then the step is held: no verdict, no upgrade)."""
    found = gate.at(verdict, now=now) if isinstance(verdict, gate.GateVerdict) else None
    refused = gate.admits(found, old=request.old, new=request.new)
    if found is None and refused:
        refused = f"{refused} ({verdict})"
    where = f"cluster {request.cluster.key}: upgrade gate"
    message = f"{where}: {refused}" if refused else f"{where}: {request.new} admitted"
    answer: Answer = "hold" if refused else "proceed"
    return answer, {
        "apiVersion": HOOKS_API_VERSION,
        "kind": f"{request.hook}Response",
        "status": "Success",
        "message": gate.bounded(message),
        "retryAfterSeconds": retry_after_seconds if refused else 0,
    }


def hook_failure(hook: str, message: str) -> dict[str, Any]:
    """A request that cannot be answered: ``Failure`` (Cluster API treats it as an error and calls again)."""
    return {
        "apiVersion": HOOKS_API_VERSION,
        "kind": f"{hook}Response",
        "status": "Failure",
        "message": gate.bounded(message),
        "retryAfterSeconds": 0,
    }
