"""The upgrade-readiness gate in the e2e kind cluster: what it reports, and the two blockers the suite raises.

Before the upgrade the suite makes the gate say no for two real reasons and then yes once they are gone:
- a drain blocker: a small Deployment pinned to a worker under a PodDisruptionBudget with ``maxUnavailable: 0``
  (kube-controller-manager's disruption controller computes ``disruptionsAllowed: 0``);
- a client of a removed API: a pod (the suite's own image, nothing pulled) that lists ``KIND_REMOVED_API``
  (``e2e/versions.env``: an API the old release serves only because ``e2e/kind/cluster.sh`` enables it with
  ``--runtime-config``, and whose ``removed_release`` is the new release's minor) every few seconds with its
  ServiceAccount's token.

The gate is read the three ways an operator reads it: its ``/status`` document and ``/metrics`` (over HTTPS with
a reader's token, through the in-cluster metrics reader: ``k8s.pod_get``), its state ConfigMap, and the
Events on that ConfigMap.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from typing import Any

from kubernetes import client

from controllers.upgrade_readiness import logic
from e2e.kind import deploy, k8s

GATE = "upgrade-readiness"
NAMESPACE = "kuc-e2e"
BLOCKED_APP = "drain-blocked"  # the Deployment and its PodDisruptionBudget
CLIENT_APP = "removed-api-client"  # the Deployment, its ServiceAccount, ClusterRole and binding
CLIENT_PERIOD_SECONDS = 5
# The client: stdlib only, its ServiceAccount's token and CA, the apiserver through the kubernetes Service.
CLIENT_SCRIPT = """
import os, ssl, sys, time, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
url = "https://%s:%s%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"], sys.argv[1])
context = ssl.create_default_context(cafile=sa + "/ca.crt")
while True:
    token = open(sa + "/token").read()
    request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            print(time.strftime("%H:%M:%S"), response.status, len(response.read()), flush=True)
    except Exception as error:
        print(time.strftime("%H:%M:%S"), "error", error, flush=True)
    time.sleep(float(sys.argv[2]))
"""


@dataclasses.dataclass(frozen=True, slots=True)
class RemovedApi:
    """``KIND_REMOVED_API``: ``group/version/resource`` (a cluster-scoped resource)."""

    group: str
    version: str
    resource: str

    @property
    def path(self) -> str:
        return f"/apis/{self.group}/{self.version}/{self.resource}"

    @property
    def subject(self) -> str:
        """How the gate names it in a finding."""
        return f"{self.group}/{self.version} {self.resource}"


def removed_api() -> RemovedApi:
    group, version, resource = k8s.versions()["KIND_REMOVED_API"].split("/")
    return RemovedApi(group, version, resource)


def fullname(controller: str = GATE) -> str:
    return f"{k8s.RELEASE}-kube-upgrade-controllers-{controller}"


# ------------------------------------------------------------------------------------------ reading the gate


def gate_pod() -> str:
    """The leading gate pod of release ``kuc`` (one replica by default)."""
    prefix = GATE.replace("-", "_")
    for pod in k8s.controller_pods(k8s.RELEASE, GATE):
        if k8s.sample(k8s.pod_metrics(pod.metadata.name), f"{prefix}_leader") == 1:
            return str(pod.metadata.name)
    raise RuntimeError(f"no {GATE} pod leads")


def status(pod: str) -> dict[str, Any]:
    """The gate's ``/status`` document, read as an authorized client in the cluster reads it (k8s.pod_get)."""
    document: dict[str, Any] = json.loads(k8s.pod_get(pod, "status"))
    return document


def findings(document: dict[str, Any], check: str) -> list[str]:
    """``subject: message`` of every finding of ``check`` in a ``/status`` document."""
    for result in document.get("checks") or []:
        if result["check"] == check:
            return [f"{f['subject']}: {f['message']}" for f in result["findings"]]
    return []


def check_status(document: dict[str, Any], check: str) -> str:
    for result in document.get("checks") or []:
        if result["check"] == check:
            return str(result["status"])
    return "absent"


def blockers(samples: k8s.Samples, check: str) -> float:
    return k8s.sample(samples, "upgrade_readiness_blockers", check=check) or 0.0


def finding_subjects(samples: k8s.Samples, check: str, *, severity: str = "") -> set[str]:
    """The subjects of the ``upgrade_readiness_finding_info`` series of ``check`` (of one ``severity``)."""
    found = set()
    for series, value in samples.items():
        if series.startswith("upgrade_readiness_finding_info{") and value == 1:
            labels = k8s.labels_of(series)
            if labels.get("check") == check and (not severity or labels.get("severity") == severity):
                found.add(labels["subject"])
    return found


def status_subjects(document: dict[str, Any], check: str, *, severity: str) -> set[str]:
    """The subjects of the findings of ``check`` of one ``severity`` in a ``/status`` document."""
    for result in document.get("checks") or []:
        if result["check"] == check:
            return {f["subject"] for f in result["findings"] if f.get("severity") == severity}
    return set()


def state() -> dict[str, str]:
    """The gate's state ConfigMap: ``phase`` (Upgradeable or NotUpgradeable), ``upgradeable``, ``reasons``."""
    name = f"{fullname()}-state"
    return dict(k8s.api().core.read_namespaced_config_map(name, k8s.RELEASE_NAMESPACE).data or {})


def events(*, since: float) -> list[tuple[str, str]]:
    """``(reason, note)`` of the gate's Events (on its state ConfigMap) at or after ``since`` (epoch seconds),
    oldest first."""
    return [
        (str(event.get("reason")), str(event.get("note")))
        for _, event in k8s.events(since=since, namespace=k8s.RELEASE_NAMESPACE)
        if (event.get("regarding") or {}).get("name") == f"{fullname()}-state"
    ]


@dataclasses.dataclass(frozen=True)
class View:
    """The gate as an operator sees it at one moment: ``/status``, ``/metrics``, the state ConfigMap and its
    Events since the stage began."""

    document: dict[str, Any]
    samples: k8s.Samples
    state: dict[str, str]
    events: list[tuple[str, str]]

    def in_status(self, check: str, subject: str) -> bool:
        """``check`` is blocked in ``/status`` by a finding about ``subject``."""
        return check_status(self.document, check) == "blocked" and any(
            f.startswith(f"{subject}: ") for f in findings(self.document, check)
        )

    def in_metrics(self, check: str, subject: str) -> bool:
        """``upgrade_readiness_blockers{check}`` counts it and a finding series names ``subject``."""
        return blockers(self.samples, check) >= 1 and subject in finding_subjects(self.samples, check)

    def in_state(self, check: str, subject: str) -> bool:
        reasons: list[str] = json.loads(self.state.get("reasons") or "[]")
        return self.state.get("phase") == "NotUpgradeable" and any(
            r.startswith(f"{check}: {subject}: ") for r in reasons
        )

    def in_events(self, check: str, subject: str) -> bool:
        return any(
            reason == "CheckBlocked" and note.startswith(f"{check} is blocked: {subject}: ")
            for reason, note in self.events
        )

    def upgradeable_again(self) -> bool:
        """An Upgradeable Event after the last NotUpgradeable one."""
        reasons = [reason for reason, _ in self.events]
        return (
            "NotUpgradeable" in reasons
            and "Upgradeable" in reasons[len(reasons) - reasons[::-1].index("NotUpgradeable") :]
        )

    def acknowledged(self, check: str) -> bool:
        """An admin accepted ``check`` for the target minor: ``/status`` says acknowledged and lists the
        acknowledgement active, the metrics too, and it blocks nothing."""
        entries = self.document.get("acknowledgements") or []
        return (
            check_status(self.document, check) == "acknowledged"
            and any(e["check"] == check and e["state"] == "active" for e in entries)
            and k8s.sample(self.samples, "upgrade_readiness_acknowledgements", state="active") == 1
            and k8s.sample(self.samples, "upgrade_readiness_check_status", check=check, status="acknowledged")
            == 1
            and blockers(self.samples, check) == 0
        )

    def blocked_by_exactly(self, check: str, subjects: set[str]) -> bool:
        """``check`` is blocked by exactly these findings, in ``/status`` and in ``/metrics``
        (``upgrade_readiness_blockers{check}`` and a finding series each)."""
        return (
            check_status(self.document, check) == "blocked"
            and status_subjects(self.document, check, severity="blocker") == subjects
            and blockers(self.samples, check) == len(subjects)
            and finding_subjects(self.samples, check, severity="blocker") == subjects
        )

    def not_named(self, check: str, subject: str) -> bool:
        """No finding of ``check`` names ``subject``, in ``/status`` or ``/metrics``."""
        return all(not f.startswith(f"{subject}: ") for f in findings(self.document, check)) and (
            subject not in finding_subjects(self.samples, check)
        )

    def warns(self, check: str, subject: str) -> bool:
        """A finding of ``check`` names ``subject`` as a warning (``/status`` and ``/metrics``), and the check
        blocks nothing."""
        return (
            subject in status_subjects(self.document, check, severity="warning")
            and subject in finding_subjects(self.samples, check, severity="warning")
            and (k8s.sample(self.samples, "upgrade_readiness_findings", check=check, severity="warning") or 0)
            >= 1
            and blockers(self.samples, check) == 0
        )

    def state_blocked_by(self, check: str, text: str) -> bool:
        """The state ConfigMap says NotUpgradeable with a reason of ``check`` that contains ``text`` (a reason
        names a check's first finding and counts the others)."""
        reasons: list[str] = json.loads(self.state.get("reasons") or "[]")
        return self.state.get("phase") == "NotUpgradeable" and any(
            r.startswith(f"{check}: ") and text in r for r in reasons
        )

    def passes(self, check: str) -> bool:
        return check_status(self.document, check) == "pass" and blockers(self.samples, check) == 0

    @property
    def upgradeable(self) -> bool:
        """Upgradeable everywhere: ``/status``, the state ConfigMap and the metric."""
        return (
            self.document.get("upgradeable") is True
            and (self.state.get("phase"), self.state.get("upgradeable")) == ("Upgradeable", "True")
            and k8s.sample(self.samples, "upgrade_readiness_upgradeable") == 1
        )

    def summary(self) -> str:
        """One line per check: status, and its findings' subjects."""
        parts = []
        for result in self.document.get("checks") or []:
            subjects = [f["subject"] for f in result["findings"]]
            detail = f" ({'; '.join(subjects)})" if subjects else ""
            if result["status"] == "unknown":
                detail = f" ({result['reason']})"
            parts.append(f"{result['check']} {result['status']}{detail}")
        return f"target {self.document.get('target')}: " + ", ".join(parts)


def view(*, since: float) -> View:
    pod = gate_pod()
    return View(document=status(pod), samples=k8s.pod_metrics(pod), state=state(), events=events(since=since))


def apiserver_metrics(node: str) -> str:
    """One control plane's kube-apiserver's ``/metrics``, read directly (as the gate does), as the admin."""
    address = next(
        a.address for a in k8s.api().core.read_node(node).status.addresses if a.type == "InternalIP"
    )
    return k8s.run(["kubectl", "get", "--raw", "/metrics", "--server", f"https://{address}:6443"], timeout=60)


def deprecated_series(node: str) -> list[str]:
    """The ``apiserver_requested_deprecated_apis`` series of one control plane's kube-apiserver, e.g.
    ``group="networking.k8s.io",removed_release="1.37",...``."""
    return sorted(
        line.partition("{")[2].rpartition("}")[0]
        for line in apiserver_metrics(node).splitlines()
        if line.startswith("apiserver_requested_deprecated_apis{")
    )


def metric_names(node: str) -> set[str]:
    """The names of the series one control plane's kube-apiserver exports."""
    return {
        line.partition("{")[0].partition(" ")[0]
        for line in apiserver_metrics(node).splitlines()
        if line and not line.startswith("#")
    }


def service_account_can(
    verb: str, *, resource: str = "", group: str = "", namespace: str = "", path: str = ""
) -> bool:
    """A SubjectAccessReview, in the real cluster, for the gate's ServiceAccount (the chart's RBAC): on a
    resource, or on a non-resource ``path`` such as ``/metrics``."""
    deployment = k8s.api().apps.read_namespaced_deployment(fullname(), k8s.RELEASE_NAMESPACE)
    account = deployment.spec.template.spec.service_account_name
    spec = client.V1SubjectAccessReviewSpec(
        user=f"system:serviceaccount:{k8s.RELEASE_NAMESPACE}:{account}",
        groups=[
            "system:serviceaccounts",
            f"system:serviceaccounts:{k8s.RELEASE_NAMESPACE}",
            "system:authenticated",
        ],
    )
    if path:
        spec.non_resource_attributes = client.V1NonResourceAttributes(verb=verb, path=path)
    else:
        spec.resource_attributes = client.V1ResourceAttributes(
            verb=verb, resource=resource, group=group, namespace=namespace
        )
    review = client.V1SubjectAccessReview(spec=spec)
    answer = client.AuthorizationV1Api(k8s.api().raw).create_subject_access_review(review)
    return bool(answer.status.allowed)


# ----------------------------------------------------------------------------------------- the two blockers


def pause_container() -> dict[str, Any]:
    return {"name": "pause", "image": k8s.pause_image(), "imagePullPolicy": "Never"}


def one_replica(name: str, *, pod: dict[str, Any]) -> dict[str, Any]:
    """A one-replica Deployment ``name`` in the scenario's namespace; its pods (``app: <name>``) run ``pod``."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def acknowledge(*checks: str, target: str = "") -> None:
    """The admin's acknowledgement (docs/upgrade-readiness.md): one key ``ack-<target>-<check>`` per check, for
    an hour, with a reason, written into the ConfigMap the chart made for them and the gate watches
    (``<release fullname>-upgrade-readiness-acks``); none: every key removed again."""
    name, core = f"{fullname()}-acks", k8s.api().core
    if checks:
        minor = logic.parse_target(target)
        assert minor is not None, f"no target minor to acknowledge for: {target!r}"
        until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        value = logic.ack_value(until=until, reason="e2e: the drain blocker is the scenario's own")
        data = {logic.ack_key(target=minor, check=check): value for check in checks}
        core.patch_namespaced_config_map(name, k8s.RELEASE_NAMESPACE, {"data": data})
    else:
        acks = core.read_namespaced_config_map(name, k8s.RELEASE_NAMESPACE)
        acks.data = {}
        core.replace_namespaced_config_map(name, k8s.RELEASE_NAMESPACE, acks)


def create_drain_blocker(*, worker: str) -> None:
    """One pause pod pinned to ``worker``, under a PodDisruptionBudget that allows no disruption."""
    pod = {"nodeSelector": {"kubernetes.io/hostname": worker}, "containers": [pause_container()]}
    k8s.api().apps.create_namespaced_deployment(NAMESPACE, one_replica(BLOCKED_APP, pod=pod))


def create_pdb() -> None:
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": BLOCKED_APP, "namespace": NAMESPACE},
        "spec": {"maxUnavailable": 0, "selector": {"matchLabels": {"app": BLOCKED_APP}}},
    }
    client.PolicyV1Api(k8s.api().raw).create_namespaced_pod_disruption_budget(NAMESPACE, pdb)


def pdb_disruptions_allowed() -> int | None:
    pdb = client.PolicyV1Api(k8s.api().raw).read_namespaced_pod_disruption_budget(BLOCKED_APP, NAMESPACE)
    if pdb.status is None or (pdb.status.observed_generation or 0) < (pdb.metadata.generation or 0):
        return None
    return int(pdb.status.disruptions_allowed)


def delete_pdb() -> None:
    client.PolicyV1Api(k8s.api().raw).delete_namespaced_pod_disruption_budget(BLOCKED_APP, NAMESPACE)


def pod_running_on(app: str) -> str | None:
    """The node of the app's Ready pod, or None."""
    for pod in k8s.api().core.list_namespaced_pod(NAMESPACE, label_selector=f"app={app}").items:
        conditions = pod.status.conditions or []
        if pod.status.phase == "Running" and any(
            c.type == "Ready" and c.status == "True" for c in conditions
        ):
            return str(pod.spec.node_name)
    return None


def create_client(api: RemovedApi) -> None:
    """A Deployment that lists ``api`` every few seconds, with the RBAC to do it (a request the apiserver
    refuses never reaches the handler that counts deprecated APIs)."""
    rbac = client.RbacAuthorizationV1Api(k8s.api().raw)
    k8s.api().core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": CLIENT_APP}})
    rbac.create_cluster_role(
        {
            "metadata": {"name": f"kuc-e2e-{CLIENT_APP}"},
            "rules": [{"apiGroups": [api.group], "resources": [api.resource], "verbs": ["get", "list"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": f"kuc-e2e-{CLIENT_APP}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"kuc-e2e-{CLIENT_APP}",
            },
            "subjects": [{"kind": "ServiceAccount", "name": CLIENT_APP, "namespace": NAMESPACE}],
        }
    )
    container = {
        "name": "client",
        "image": f"{deploy.IMAGE}:{deploy.app_version()}",
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", CLIENT_SCRIPT, api.path, str(CLIENT_PERIOD_SECONDS)],
    }
    pod = {"serviceAccountName": CLIENT_APP, "terminationGracePeriodSeconds": 1, "containers": [container]}
    k8s.api().apps.create_namespaced_deployment(NAMESPACE, one_replica(CLIENT_APP, pod=pod))


def client_log() -> str:
    pods = k8s.api().core.list_namespaced_pod(NAMESPACE, label_selector=f"app={CLIENT_APP}").items
    return "".join(k8s.api().core.read_namespaced_pod_log(p.metadata.name, NAMESPACE) for p in pods)


def stop_client() -> None:
    """Delete the client and its RBAC, and wait until its pod is gone (no request after that)."""
    k8s.api().apps.delete_namespaced_deployment(CLIENT_APP, NAMESPACE, propagation_policy="Foreground")
    rbac = client.RbacAuthorizationV1Api(k8s.api().raw)
    rbac.delete_cluster_role_binding(f"kuc-e2e-{CLIENT_APP}")
    rbac.delete_cluster_role(f"kuc-e2e-{CLIENT_APP}")
    k8s.api().core.delete_namespaced_service_account(CLIENT_APP, NAMESPACE)


def client_gone() -> bool:
    pods = k8s.api().core.list_namespaced_pod(NAMESPACE, label_selector=f"app={CLIENT_APP}").items
    return not pods


# ------------------------------------------------------------------- a rule on a metric the new minor hides

RULE, RULE_GROUP, RULE_ALERT = "hidden-metric", "e2e-hidden-metric", "E2EStoredObjectsHigh"


def hidden_metric() -> str:
    return k8s.versions()["KIND_HIDDEN_METRIC"]


def rules_served() -> bool:
    """Whether the cluster serves PrometheusRules (the Prometheus stack's CRDs: not with MONITORING=0)."""
    try:
        k8s.api().custom.list_namespaced_custom_object(
            "monitoring.coreos.com", "v1", NAMESPACE, "prometheusrules"
        )
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def create_rule(metric: str) -> str:
    """A PrometheusRule with one alert on ``metric`` (one that never fires: a billion objects of a resource);
    the subject alert-metrics names it by."""
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": RULE, "namespace": NAMESPACE},
        "spec": {
            "groups": [
                {
                    "name": RULE_GROUP,
                    "rules": [
                        {
                            "alert": RULE_ALERT,
                            "expr": f"max by (resource) ({metric}) > 1e9",
                            "for": "1h",
                            "labels": {"severity": "warning"},
                        }
                    ],
                }
            ]
        },
    }
    k8s.api().custom.create_namespaced_custom_object(
        "monitoring.coreos.com", "v1", NAMESPACE, "prometheusrules", rule
    )
    return f"PrometheusRule {NAMESPACE}/{RULE} group {RULE_GROUP!r} rule {RULE_ALERT!r}"
