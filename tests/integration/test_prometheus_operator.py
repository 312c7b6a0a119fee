"""The chart's monitoring objects as the real Prometheus Operator reads them (the project's build of
prometheus-operator, run against the local control plane with the Operator's own CRDs).

The Operator writes what it generates into Secrets and ConfigMaps before any pod could run (there is no
kubelet here): the Prometheus configuration scrapes the chart's ServiceMonitor, its rule files hold the
chart's alerts, and the Alertmanager configuration holds the chart's inhibit rule — unchanged with the
matcher strategy docs/alerting.md asks for, narrowed to the namespace with the Operator's default (which is
why it asks).
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
from tests import chart_tools, harness
from tests.integration import uso_helpers

CRDS = resources.CRDS
PLURALS = ("alertmanagerconfigs", "alertmanagers", "podmonitors", "probes", "prometheusagents",
           "prometheuses", "prometheusrules", "scrapeconfigs", "servicemonitors", "thanosrulers")  # fmt: skip
PROMETHEUSES = resources.Resource("monitoring.coreos.com", "v1", "prometheuses", namespaced=True)
ALERTMANAGERS = resources.Resource("monitoring.coreos.com", "v1", "alertmanagers", namespaced=True)
SECRETS = resources.Resource("", "v1", "secrets", namespaced=True)  # only the tests read Secrets
CONFIGMAPS = resources.CONFIGMAPS


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
    binary = controlplane.tool_path("prometheus-operator")
    pki = plane.pki
    with log.open("w") as out:
        process = subprocess.Popen(
            [binary, f"--apiserver={plane.server}", f"--cert-file={pki / 'admin.crt'}",
             f"--key-file={pki / 'admin.key'}", f"--ca-file={pki / 'ca.crt'}", f"--namespaces={namespace}",
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
    everything: dict[str, Any] = {}  # an empty selector: every object of its kind in the namespace
    await kube.create(PROMETHEUSES.path(namespace=namespace), {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": "main"},
        "spec": {"serviceMonitorSelector": everything, "ruleSelector": everything,
                 "alerting": {"alertmanagers": [{"name": "alertmanager-operated", "namespace": namespace,
                                                 "port": "web"}]}},
    })  # fmt: skip
    for name, strategy in (("none", "None"), ("default", "OnNamespace")):
        await kube.create(ALERTMANAGERS.path(namespace=namespace), {
            "apiVersion": "monitoring.coreos.com/v1", "kind": "Alertmanager", "metadata": {"name": name},
            "spec": {"alertmanagerConfigSelector": everything,
                     "alertmanagerConfigMatcherStrategy": {"type": strategy}},
        })  # fmt: skip

    with operator(control_plane, namespace, tmp_path / "operator.log"):
        found: dict[str, Any] = {}

        async def all_generated() -> bool:
            for key, secret, name in (("prometheus", "prometheus-main", "prometheus.yaml.gz"),
                                      ("none", "alertmanager-none-generated", "alertmanager.yaml.gz"),
                                      ("default", "alertmanager-default-generated", "alertmanager.yaml.gz")):  # fmt: skip
                if (
                    key not in found
                    and (config := await generated(kube, namespace, secret, name)) is not None
                ):
                    found[key] = config
            return len(found) == 3

        await harness.eventually(all_generated, timeout=120, interval=1,
                                 what=f"the Operator's generated configs (log: {tmp_path / 'operator.log'})")  # fmt: skip

    jobs = [job["job_name"] for job in found["prometheus"]["scrape_configs"]]
    assert f"serviceMonitor/{namespace}/{release_objects}/0" in jobs
    listed = await kube.get(CONFIGMAPS.path(namespace=namespace))
    rule_files = [
        cm for cm in listed["items"] if cm["metadata"]["name"].startswith("prometheus-main-rulefiles-")
    ]
    alerts = {rule["alert"] for cm in rule_files for text in cm["data"].values()
              for group in yaml.safe_load(text)["groups"] for rule in group["rules"]}  # fmt: skip
    assert {"KubeUpgradeInProgress", "KubeUpgradeMastersNotAgreeing", "KubeUpgradeNodesOutdated"} <= alerts

    # Strategy None: the chart's rule as docs/alerting.md writes it for a plain alertmanager.yml.
    (rule,) = found["none"]["inhibit_rules"]
    assert rule == {"source_matchers": ['alertname="KubeUpgradeInProgress"'],
                    "target_matchers": ['alertname=~"KubeVersionMismatch"'], "equal": ["cluster"]}  # fmt: skip
    # The Operator's default narrows it to the namespace: KubeVersionMismatch (no namespace) never matches.
    (narrowed,) = found["default"]["inhibit_rules"]
    assert f'namespace="{namespace}"' in narrowed["target_matchers"]
