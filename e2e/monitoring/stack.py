"""The kind scenario's Prometheus stack, as the objects to apply.

- the Prometheus Operator as upstream publishes it (its CRDs, ServiceAccount, ClusterRole(Binding) and
  Deployment from its module's ``example/``), in namespace ``monitoring``, with the images of
  ``e2e/monitoring/images.sh``;
- a Prometheus (upstream's example RBAC) that selects every ServiceMonitor and PrometheusRule: the chart's,
  and two for the control plane like kube-prometheus-stack's — the kube-apiservers (``default/kubernetes``,
  job ``apiserver``) and the kubelets (the Service the Operator keeps, job ``kubelet``); its external label
  ``cluster`` is what alerts carry to Alertmanager;
- kube-state-metrics (nodes, pods, Deployments, DaemonSets) and kubernetes-mixin's alerts an upgrade trips
  (:data:`MIXIN_ALERTS`: KubeVersionMismatch and the node and workload alerts of a drain, quoted as
  published);
- an Alertmanager with matcher strategy None (docs/alerting.md) that takes every AlertmanagerConfig, whose
  base configuration sends every alert but severity ``none`` to the notification recorder
  (``recorder.py``, run by the controller image), one notification per alert; and beside it a control
  Alertmanager without any AlertmanagerConfig (so without the chart's inhibit rule), notifying the same
  recorder as another receiver: the notifications of the same upgrade with and without the rule.

    python -m e2e.monitoring.stack manifests IMAGES CONTROLLER_IMAGE   # IMAGES: images.sh's output file
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import pathlib
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from e2e import monitoring

NAMESPACE = "monitoring"
CLUSTER = "kuc-e2e"  # the external label ``cluster`` of the scenario's Prometheus
RECORDER = "notification-recorder"
RECORDER_PORT = 8080
RECEIVER = "recorder"  # the receiver of Alertmanager main (with the chart's inhibit rule)
UNINHIBITED = "uninhibited"  # the receiver of Alertmanager control (no AlertmanagerConfig, no inhibit rule)
ALERTMANAGER_MAIN = "main"
ALERTMANAGER_CONTROL = "control"
RECORDER_SCRIPT = pathlib.Path(__file__).resolve().parent / "recorder.py"
RECORDER_JOURNAL_DIR = "/journal"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
CLUSTER_SCOPED = frozenset({"ClusterRole", "ClusterRoleBinding"})  # the kinds of upstream's example RBAC
PLURALS = ("alertmanagerconfigs", "alertmanagers", "podmonitors", "probes", "prometheusagents",
           "prometheuses", "prometheusrules", "scrapeconfigs", "servicemonitors", "thanosrulers")  # fmt: skip

# kubernetes-mixin's alerts (github.com/kubernetes-monitoring/kubernetes-mixin) that an upgrade trips: the
# version mismatch itself, and the node and workload alerts of a drain (nodes NotReady or unreachable while
# their kubelet restarts, evicted pods Pending, Deployments and DaemonSets short of replicas). The mixin is
# not on the Go module proxy, so it is not generated here: each expression is quoted as published in
# kube-prometheus-stack's rules (templates/prometheus/rules-1.14/, generated from kube-prometheus'
# kubernetesControlPlane-prometheusRule.yaml; its default appNamespacesTarget ".*" filled in), with the
# mixin's default clusterLabel "cluster". Upstream they all wait 15m (`for`); the scenario's upgrade is
# shorter, so `for` is a parameter; group, expression and severity are not.
KUBE_VERSION_MISMATCH = (
    'count by (cluster) (count by (git_version, cluster) (label_replace(kubernetes_build_info{job!~"kube-dns|coredns"},'
    '"git_version","$1","git_version","(v[0-9]*.[0-9]*).*"))) > 1'
)
KSM = 'job="kube-state-metrics"'
MIXIN_ALERTS: tuple[tuple[str, str, str, str], ...] = (  # group, alert, expression, severity
    ("kubernetes-system", "KubeVersionMismatch", KUBE_VERSION_MISMATCH, "warning"),
    ("kubernetes-system-kubelet", "KubeNodeNotReady",
     f'kube_node_status_condition{{{KSM},condition="Ready",status="true"}} == 0', "warning"),
    ("kubernetes-system-kubelet", "KubeNodeUnreachable",
     f'(kube_node_spec_taint{{{KSM},key="node.kubernetes.io/unreachable",effect="NoSchedule"}} unless '
     f'ignoring(key,value) kube_node_spec_taint{{{KSM},key=~"ToBeDeletedByClusterAutoscaler|'
     'cloud.google.com/impending-node-termination|aws-node-termination-handler/spot-itn"}) == 1', "warning"),
    ("kubernetes-apps", "KubePodNotReady",
     f'sum by (namespace, pod) (max by(namespace, pod) (kube_pod_status_phase{{{KSM}, namespace=~".*", '
     'phase=~"Pending|Unknown"}) * on(namespace, pod) group_left(owner_kind) topk by(namespace, pod) '
     '(1, max by(namespace, pod, owner_kind) (kube_pod_owner{owner_kind!="Job"}))) > 0', "warning"),
    ("kubernetes-apps", "KubeDeploymentReplicasMismatch",
     f'(kube_deployment_spec_replicas{{{KSM}, namespace=~".*"}} > kube_deployment_status_replicas_available'
     f'{{{KSM}, namespace=~".*"}}) and (changes(kube_deployment_status_replicas_updated{{{KSM}, '
     'namespace=~".*"}[10m]) == 0)', "warning"),
    ("kubernetes-apps", "KubeDaemonSetRolloutStuck",
     f'((kube_daemonset_status_current_number_scheduled{{{KSM}, namespace=~".*"}} != '
     f'kube_daemonset_status_desired_number_scheduled{{{KSM}, namespace=~".*"}}) or '
     f'(kube_daemonset_status_number_misscheduled{{{KSM}, namespace=~".*"}} != 0) or '
     f'(kube_daemonset_status_updated_number_scheduled{{{KSM}, namespace=~".*"}} != '
     f'kube_daemonset_status_desired_number_scheduled{{{KSM}, namespace=~".*"}}) or '
     f'(kube_daemonset_status_number_available{{{KSM}, namespace=~".*"}} != '
     f'kube_daemonset_status_desired_number_scheduled{{{KSM}, namespace=~".*"}})) and '
     f'(changes(kube_daemonset_status_updated_number_scheduled{{{KSM}, namespace=~".*"}}[5m]) == 0)', "warning"),
)  # fmt: skip
# What kube-state-metrics collects here: what the alerts above read.
KSM_RESOURCES = ("nodes", "pods", "deployments", "daemonsets")


@dataclasses.dataclass(frozen=True, slots=True)
class Images:
    prometheus: str
    alertmanager: str
    operator: str
    reloader: str
    kube_state_metrics: str
    controller: str  # the suite's own image: it runs the recorder

    @classmethod
    def from_listing(cls, listing: str, *, controller: str) -> Images:
        """From images.sh's output ("TOOL IMAGE" per line)."""
        found = dict(line.split() for line in listing.splitlines() if line.strip())
        return cls(
            prometheus=found["prometheus"],
            alertmanager=found["alertmanager"],
            operator=found["prometheus-operator"],
            reloader=found["prometheus-config-reloader"],
            kube_state_metrics=found["kube-state-metrics"],
            controller=controller,
        )


def version_of(image: str) -> str:
    """The upstream release an image of images.sh holds (its tag is the module version)."""
    tag = image.rsplit(":", 1)[1]
    return "v3." + tag.removeprefix("v0.3") if image.split("/")[-1].startswith("prometheus:") else tag


def upstream(relative: str) -> list[dict[str, Any]]:
    """Documents of a file of the Operator module's ``example/`` directory, moved to :data:`NAMESPACE`."""
    text = (monitoring.operator_module() / "example" / relative).read_text()
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    for doc in documents:
        if doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = NAMESPACE
        for subject in doc.get("subjects") or []:
            subject["namespace"] = NAMESPACE
    return documents


def crds() -> list[dict[str, Any]]:
    return [monitoring.crd(plural) for plural in PLURALS]


def operator(images: Images) -> list[dict[str, Any]]:
    objects = [
        doc
        for name in ("service-account", "cluster-role", "cluster-role-binding", "deployment")
        for doc in upstream(f"rbac/prometheus-operator/prometheus-operator-{name}.yaml")
    ]
    deployment = next(doc for doc in objects if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    container["image"] = images.operator
    container["imagePullPolicy"] = "Never"
    container["args"] = [
        f"--prometheus-config-reloader={images.reloader}"
        if arg.startswith("--prometheus-config-reloader=")
        else arg
        for arg in container["args"]
    ]
    return objects


def service_monitor(name: str, *, namespace: str, selector: Mapping[str, str], job_label: str,
                    endpoint: dict[str, Any], more: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "jobLabel": job_label,
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": dict(selector)},
            "endpoints": [endpoint, *more],
        },
    }


def prometheus(images: Images) -> list[dict[str, Any]]:
    objects = [
        doc
        for name in ("service-account", "cluster-role", "cluster-role-binding")
        for doc in upstream(f"rbac/prometheus/prometheus-{name}.yaml")
    ]
    everything: dict[str, Any] = {}
    objects.append({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "Prometheus",
        "metadata": {"name": "main", "namespace": NAMESPACE},
        "spec": {
            "image": images.prometheus,
            "version": version_of(images.prometheus),
            "imagePullPolicy": "Never",
            "serviceAccountName": "prometheus",
            "replicas": 1,
            "scrapeInterval": "15s",
            "evaluationInterval": "15s",
            "retention": "6h",
            "externalLabels": {"cluster": CLUSTER},
            "serviceMonitorSelector": everything,
            "serviceMonitorNamespaceSelector": everything,
            "ruleSelector": everything,
            "ruleNamespaceSelector": everything,
            "alerting": {"alertmanagers": [{"namespace": NAMESPACE, "name": "alertmanager-operated", "port": "web"}]},
            "resources": {"requests": {"cpu": "50m", "memory": "200Mi"}},
        },
    })  # fmt: skip
    token = f"{SERVICE_ACCOUNT_DIR}/token"
    objects.append(service_monitor(
        "apiserver", namespace="default", selector={"component": "apiserver", "provider": "kubernetes"},
        job_label="component",
        endpoint={"port": "https", "scheme": "https", "bearerTokenFile": token,
                  "tlsConfig": {"caFile": f"{SERVICE_ACCOUNT_DIR}/ca.crt", "serverName": "kubernetes"}},
    ))  # fmt: skip
    kubelet = {"port": "https-metrics", "scheme": "https", "bearerTokenFile": token, "honorLabels": True,
               "tlsConfig": {"insecureSkipVerify": True},  # kind's kubelets serve self-signed certificates
               "relabelings": [{"sourceLabels": ["__metrics_path__"], "targetLabel": "metrics_path"}]}  # fmt: skip
    # Also the containers' usage (cAdvisor), as kube-prometheus-stack scrapes it: the stack's own memory.
    objects.append(service_monitor(
        "kubelet", namespace="kube-system", selector={"app.kubernetes.io/name": "kubelet"},
        job_label="app.kubernetes.io/name", endpoint=kubelet, more=[{**copy.deepcopy(kubelet), "path": "/metrics/cadvisor"}],
    ))  # fmt: skip
    return objects


def mixin_rules(*, alert_for: str) -> dict[str, Any]:
    """:data:`MIXIN_ALERTS` as a PrometheusRule, each waiting ``alert_for`` (15m upstream)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for group, alert, expr, severity in MIXIN_ALERTS:
        groups.setdefault(group, []).append(
            {"alert": alert, "expr": expr, "for": alert_for, "labels": {"severity": severity}}
        )
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "kubernetes-mixin", "namespace": NAMESPACE},
        "spec": {"groups": [{"name": name, "rules": rules} for name, rules in groups.items()]},
    }


def kube_state_metrics(images: Images) -> list[dict[str, Any]]:
    """kube-state-metrics for :data:`KSM_RESOURCES` only (so its RBAC is as small), job kube-state-metrics."""
    name, labels = "kube-state-metrics", {"app.kubernetes.io/name": "kube-state-metrics"}
    groups = {"nodes": "", "pods": "", "deployments": "apps", "daemonsets": "apps"}
    rules = [{"apiGroups": [groups[r]], "resources": [r], "verbs": ["list", "watch"]} for r in KSM_RESOURCES]
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
         "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": NAMESPACE}]},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"serviceAccountName": name, "containers": [{
                 "name": name, "image": images.kube_state_metrics, "imagePullPolicy": "Never",
                 "args": [f"--resources={','.join(KSM_RESOURCES)}", "--port=8080", "--telemetry-port=8081"],
                 "ports": [{"name": "http-metrics", "containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": 8081}},
                 "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "runAsUser": 65534,
                                     "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
         "spec": {"selector": labels, "ports": [{"name": "http-metrics", "port": 8080, "targetPort": "http-metrics"}]}},
        service_monitor(name, namespace=NAMESPACE, selector=labels, job_label="app.kubernetes.io/name",
                        endpoint={"port": "http-metrics", "honorLabels": True}),
    ]  # fmt: skip


def alertmanager_base_config(*, receiver: str = RECEIVER) -> dict[str, Any]:
    """One notification per alert (group_by ...), quickly, to the recorder as ``receiver``; severity none
    (KubeUpgradeInProgress) to nobody."""
    url = f"http://{RECORDER}.{NAMESPACE}.svc:{RECORDER_PORT}/notify"
    return {
        "route": {
            "receiver": receiver,
            "group_by": ["..."],
            "group_wait": "5s",
            "group_interval": "10s",
            "repeat_interval": "12h",
            "routes": [{"matchers": ['severity="none"'], "receiver": "null"}],
        },
        "receivers": [{"name": receiver, "webhook_configs": [{"url": url}]}, {"name": "null"}],
    }


def alertmanager(images: Images) -> list[dict[str, Any]]:
    """Two Alertmanagers, both sent every alert by Prometheus (through the Operator's ``alertmanager-operated``
    Service, which selects every Alertmanager pod of the namespace), both notifying the recorder:

    - ``main``: takes every AlertmanagerConfig (the chart's inhibit rule), receiver ``recorder``;
    - ``control``: the same routes, no AlertmanagerConfig, so no inhibit rule; receiver ``uninhibited``. What
      it notifies is what the same upgrade notifies without the chart's rule, measured rather than guessed.

    Each has a Service of its own (``alertmanager-main``, ``alertmanager-control``) for the suite's reads."""
    everything: dict[str, Any] = {}
    objects: list[dict[str, Any]] = []
    for name, receiver in ((ALERTMANAGER_MAIN, RECEIVER), (ALERTMANAGER_CONTROL, UNINHIBITED)):
        objects.append({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"alertmanager-{name}-base", "namespace": NAMESPACE},
            "stringData": {"alertmanager.yaml": yaml.safe_dump(alertmanager_base_config(receiver=receiver))},
        })  # fmt: skip
        spec: dict[str, Any] = {
            "image": images.alertmanager,
            "version": version_of(images.alertmanager),
            "imagePullPolicy": "Never",
            "replicas": 1,
            "configSecret": f"alertmanager-{name}-base",
            "resources": {"requests": {"cpu": "10m", "memory": "50Mi"}},
        }
        if name == ALERTMANAGER_MAIN:
            spec |= {
                "alertmanagerConfigSelector": everything,
                "alertmanagerConfigNamespaceSelector": everything,
                # docs/alerting.md: the Operator's default would add namespace= to the inhibit rules.
                "alertmanagerConfigMatcherStrategy": {"type": "None"},
            }
        objects.append({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "Alertmanager",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": spec,
        })  # fmt: skip
        objects.append({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": f"alertmanager-{name}", "namespace": NAMESPACE},
            "spec": {"selector": {"alertmanager": name},
                     "ports": [{"name": "web", "port": 9093, "targetPort": "web"}]},
        })  # fmt: skip
    return objects


def recorder(images: Images) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": RECORDER}
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": RECORDER, "namespace": NAMESPACE},
        "data": {"recorder.py": RECORDER_SCRIPT.read_text()},
    }
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": RECORDER, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{
                        "name": "recorder",
                        "image": images.controller,
                        "imagePullPolicy": "Never",
                        "command": ["python", "/recorder/recorder.py", str(RECORDER_PORT), "0.0.0.0",
                                    f"{RECORDER_JOURNAL_DIR}/notifications.jsonl"],
                        "ports": [{"name": "http", "containerPort": RECORDER_PORT}],
                        "readinessProbe": {"httpGet": {"path": "/notifications", "port": "http"}},
                        "volumeMounts": [{"name": "script", "mountPath": "/recorder"},
                                         {"name": "journal", "mountPath": RECORDER_JOURNAL_DIR}],
                        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True,
                                            "runAsUser": 65534, "capabilities": {"drop": ["ALL"]}},
                    }],
                    # The journal outlives a restarted container (not the pod): nothing notified is forgotten.
                    "volumes": [{"name": "script", "configMap": {"name": RECORDER}},
                                {"name": "journal", "emptyDir": {}}],
                },
            },
        },
    }  # fmt: skip
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": RECORDER, "namespace": NAMESPACE},
        "spec": {
            "selector": labels,
            "ports": [{"name": "http", "port": RECORDER_PORT, "targetPort": "http"}],
        },
    }
    return [config_map, deployment, service]


def manifests(images: Images, *, alert_for: str = "15m") -> list[dict[str, Any]]:
    """Everything but the CRDs (apply those first, and wait for them to be Established)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    return copy.deepcopy([
        namespace, *operator(images), *prometheus(images), *kube_state_metrics(images),
        mixin_rules(alert_for=alert_for), *alertmanager(images), *recorder(images),
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("manifests", help="print the CRDs and then the stack as YAML documents")
    render.add_argument("images", type=pathlib.Path, help="a file with images.sh's output")
    render.add_argument("controller_image", help="the suite's image (it runs the notification recorder)")
    render.add_argument("--alert-for", default="15m", help="the kubernetes-mixin alerts' for (15m upstream)")
    args = parser.parse_args()
    images = Images.from_listing(args.images.read_text(), controller=args.controller_image)
    yaml.safe_dump_all([*crds(), *manifests(images, alert_for=args.alert_for)], sys.stdout)


if __name__ == "__main__":
    main()
