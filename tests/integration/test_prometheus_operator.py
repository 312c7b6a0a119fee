"""The chart's monitoring objects and the kind scenario's Prometheus stack (e2e/monitoring/stack.py) as the
real Prometheus Operator reads them: the project's build of prometheus-operator, run against the local
control plane, with the Operator's own CRDs validating every object.

The Operator writes what it generates into Secrets and ConfigMaps before any pod could run (there is no
kubelet here): the Prometheus configuration scrapes the chart's ServiceMonitor, the kube-apiservers and the
kubelets, its rule files hold the chart's alerts and kubernetes-mixin's KubeVersionMismatch, and the
Alertmanager configuration sends to the notification recorder and holds the chart's inhibit rule —
unchanged with the matcher strategy docs/alerting.md asks for, narrowed to the namespace with the
Operator's default (which is why it asks).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import pathlib
import subprocess
from collections.abc import Iterator
from typing import Any

import yaml

from controllers.kube import client, resources
from e2e import controlplane, monitoring
from e2e.monitoring import stack
from tests import chart_tools, harness
from tests.integration import uso_helpers

CRDS = resources.CRDS
PLURALS = stack.PLURALS
IMAGES = stack.Images(prometheus="kuc-monitoring/prometheus:v0.316.0", alertmanager="kuc-monitoring/alertmanager:v0.35.0",
                      operator="kuc-monitoring/prometheus-operator:v0.85.0",
                      reloader="kuc-monitoring/prometheus-config-reloader:v0.85.0",
                      kube_state_metrics="kuc-monitoring/kube-state-metrics:v2.20.0", controller="kube-upgrade-controllers:0")  # fmt: skip
PROMETHEUSES = resources.Resource("monitoring.coreos.com", "v1", "prometheuses", namespaced=True)
ALERTMANAGERS = resources.Resource("monitoring.coreos.com", "v1", "alertmanagers", namespaced=True)
SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)  # only the tests read Secrets
CONFIGMAPS = resources.CONFIGMAPS
SERVICES = resources.Resource("", "v1", "services", namespaced=True)


def collection(obj: dict[str, Any]) -> str:
    """Where ``obj`` is created (its kind's plural is the lower-cased kind + s, or es after an s)."""
    group, _, version = obj["apiVersion"].rpartition("/")
    kind = obj["kind"].lower()
    plural = kind + ("es" if kind.endswith("s") else "s")
    namespace = obj["metadata"].get("namespace")
    return resources.Resource(group, version, plural, namespaced=namespace is not None).path(
        namespace=namespace
    )


async def ensure_operator_crds(kube: client.Kube) -> None:
    for plural in PLURALS:
        try:
            await kube.create(CRDS.path(), monitoring.crd(plural))
        except client.ApiError as error:
            if not error.already_exists:  # e.g. the reduced ones of test_chart_install
                raise
    for plural in PLURALS:
        await uso_helpers.established(kube, f"{plural}.monitoring.coreos.com")


@contextlib.contextmanager
def operator(plane: controlplane.ControlPlane, namespace: str, log: pathlib.Path) -> Iterator[None]:
    """prometheus-operator, scoped to ``namespace``, authenticating as the fixture's admin."""
    binary = chart_tools.tool("prometheus-operator")
    pki = plane.pki
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, f"--apiserver={plane.server}", f"--cert-file={pki / 'admin.crt'}",
             f"--key-file={pki / 'admin.key'}", f"--ca-file={pki / 'ca.crt'}",
             f"--namespaces={namespace},{stack.NAMESPACE},default,kube-system", "--kubelet-service=kube-system/kubelet",
             f"--web.listen-address=127.0.0.1:{controlplane.free_port()}", "--log-level=warn"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


def unzipped(data: dict[str, str], key: str) -> Any:
    return yaml.safe_load(gzip.decompress(base64.b64decode(data[key])))


async def generated(kube: client.Kube, namespace: str, secret: str, key: str) -> Any:
    """A Secret the Operator generates, decoded; None until it exists."""
    try:
        found = await kube.get(SECRETS.path(namespace=namespace, name=secret))
    except client.ApiError as error:
        if error.not_found:
            return None
        raise
    return unzipped(found.get("data") or {}, key) if key in (found.get("data") or {}) else None


async def test_the_operator_picks_up_the_charts_service_monitor_rules_and_inhibit_rule(
    control_plane: controlplane.ControlPlane, kube: client.Kube, namespace: str, tmp_path: pathlib.Path
) -> None:
    await ensure_operator_crds(kube)
    release_objects = "kuc-kube-upgrade-controllers"
    chart_tools.helm(
        "install", "kuc", chart_tools.CHART, "--namespace", namespace, "--kubeconfig", control_plane.kubeconfig,
        "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true",
        "--set", "alertmanagerConfig.enabled=true", timeout=300,
    )  # fmt: skip
    for obj in stack.manifests(IMAGES, alert_for="2m"):  # validated by the CRDs, server-side
        await kube.create(collection(obj), obj)
    # The Operator's default matcher strategy, for contrast, in the chart's namespace.
    await kube.create(ALERTMANAGERS.path(namespace=namespace), {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Alertmanager", "metadata": {"name": "default"},
        "spec": {"alertmanagerConfigSelector": {}, "alertmanagerConfigMatcherStrategy": {"type": "OnNamespace"}},
    })  # fmt: skip

    with operator(control_plane, namespace, tmp_path / "operator.log"):
        found: dict[str, Any] = {}

        async def all_generated() -> bool:
            for key, where, secret, name in (
                ("prometheus", stack.NAMESPACE, "prometheus-main", "prometheus.yaml.gz"),
                ("none", stack.NAMESPACE, "alertmanager-main-generated", "alertmanager.yaml.gz"),
                ("default", namespace, "alertmanager-default-generated", "alertmanager.yaml.gz"),
                ("control", stack.NAMESPACE, "alertmanager-control-generated", "alertmanager.yaml.gz"),
            ):
                if key not in found and (config := await generated(kube, where, secret, name)) is not None:
                    found[key] = config
            return len(found) == 4

        await harness.eventually(all_generated, timeout=120, interval=1,
                                 what=f"the Operator's generated configs (log: {tmp_path / 'operator.log'})")  # fmt: skip

    prometheus = found["prometheus"]
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert {f"serviceMonitor/{namespace}/{release_objects}/0", "serviceMonitor/monitoring/apiserver/0",
            "serviceMonitor/monitoring/kubelet/0", "serviceMonitor/monitoring/kube-state-metrics/0"} <= set(jobs)  # fmt: skip
    # The chart's secure default, as the Operator turns it into Prometheus' scrape config: HTTPS, Prometheus'
    # own ServiceAccount token, the self-signed certificate not verified (kubebuilder's ServiceMonitor does so).
    chart_job = jobs[f"serviceMonitor/{namespace}/{release_objects}/0"]
    assert chart_job["scheme"] == "https", chart_job
    assert chart_job["tls_config"]["insecure_skip_verify"] is True, chart_job
    assert chart_job["bearer_token_file"] == "/var/run/secrets/kubernetes.io/serviceaccount/token", chart_job
    assert prometheus["global"]["external_labels"]["cluster"] == stack.CLUSTER
    assert [
        a["kubernetes_sd_configs"][0]["namespaces"]["names"] for a in prometheus["alerting"]["alertmanagers"]
    ] == [[stack.NAMESPACE]]
    # The kubelet ServiceMonitor selects the Service the Operator keeps for the kubelets.
    kubelet = await kube.get(SERVICES.path(namespace="kube-system", name="kubelet"))
    assert kubelet["metadata"]["labels"]["app.kubernetes.io/name"] == "kubelet"
    assert {port["name"] for port in kubelet["spec"]["ports"]} >= {"https-metrics"}

    alerts: dict[str, Any] = {}
    for where in (namespace, stack.NAMESPACE):
        listed = await kube.get(CONFIGMAPS.path(namespace=where))
        for cm in listed["items"]:
            if cm["metadata"]["name"].startswith("prometheus-main-rulefiles-"):
                for text in cm["data"].values():
                    for group in yaml.safe_load(text)["groups"]:
                        alerts |= {rule["alert"]: rule for rule in group["rules"]}
    assert {"KubeUpgradeInProgress", "KubeUpgradeMastersNotAgreeing", "KubeUpgradeNodesOutdated"} <= set(
        alerts
    )
    for _, alert, expr, _ in stack.MIXIN_ALERTS:
        assert (alerts[alert]["expr"], alerts[alert]["for"]) == (expr, "2m")

    # Strategy None: the chart's rule as docs/alerting.md writes it for a plain alertmanager.yml, and every
    # notification to the recorder but severity none.
    config = found["none"]
    (rule,) = config["inhibit_rules"]
    assert rule == {"source_matchers": ['alertname="KubeUpgradeInProgress"'],
                    "target_matchers": ['alertname=~"KubeVersionMismatch"'], "equal": ["cluster"]}  # fmt: skip
    receivers = {r["name"]: r for r in config["receivers"]}
    url = f"http://{stack.RECORDER}.{stack.NAMESPACE}.svc:{stack.RECORDER_PORT}/notify"
    assert receivers["recorder"]["webhook_configs"][0]["url"] == url and "null" in receivers
    # The control Alertmanager selects no AlertmanagerConfig: the same routes, no inhibit rule, its own receiver.
    control = found["control"]
    assert not control.get("inhibit_rules") and control["route"]["receiver"] == stack.UNINHIBITED
    # The Operator's default narrows it to the namespace: KubeVersionMismatch (no namespace) never matches.
    (narrowed,) = found["default"]["inhibit_rules"]
    assert f'namespace="{namespace}"' in narrowed["target_matchers"]
