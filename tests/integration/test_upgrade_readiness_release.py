"""upgrade-readiness's checks against the release delta, on the real control plane: what kubeadm writes into a
cluster (tests/fixtures/kubeadm: the control-plane static pods as the kubelets' mirror pods in kube-system, the
kubeadm-config, kubelet-config and kube-proxy ConfigMaps as kubeadm writes them) and PrometheusRules (the
Prometheus Operator's own CRD), each check raised by the real objects and cleared by the fix an operator
makes; the ``readiness`` command's output with them, and against the v1.38 prerelease.

The masters are Node objects made here (their kubelet version gives the minor the delta starts from); the
objects in kube-system are made for the test and deleted after it.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from controllers.kube import client, resources
from controllers.upgrade_readiness import controller
from e2e import cluster, monitoring
from tests import harness
from tests.fixtures import kubeadm
from tests.integration import test_cli, uso_helpers
from tests.integration.kube_system import KubeSystem
from tests.integration.test_upgrade_readiness import blockers, config, result, status_is

RULES = resources.PROMETHEUS_RULES
OLD, NEW = "v1.36.3", "v1.37.2"
RELEASE_CHECKS = ("feature-gates", "component-flags", "kubeadm-config", "component-versions")


@pytest.fixture
async def kube_system(kube: client.Kube) -> AsyncIterator[KubeSystem]:
    made = KubeSystem(kube)
    try:
        yield made
    finally:
        await made.delete_all()


async def masters(nodes: cluster.Nodes, version: str, count: int = 2) -> list[str]:
    label = f"m-{uuid.uuid4().hex[:6]}"
    names = [f"{label}-cp{i}" for i in range(count)]
    for name in names:
        await nodes.create(name, version=version, master=True)
    return names


def subjects(gate: controller.UpgradeReadiness, check: str) -> list[str]:
    return [f["subject"] for f in result(gate, check)["findings"]]


async def test_a_gate_the_target_removes_blocks_naming_component_node_and_place_until_removed(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, kube_system: KubeSystem
) -> None:
    control_planes = await masters(nodes, OLD)
    await kube_system.control_planes(OLD, "kind-sidecar-gate", control_planes)
    await kube_system.config_maps(OLD, "kind-sidecar-gate")
    cfg = config(namespace, *RELEASE_CHECKS)
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        await harness.eventually(lambda: status_is(gate, "feature-gates", "blocked"), what="gates blocked")
        status = gate.status()
        assert status["target"] == "1.37"
        assert status["releaseDelta"] == {"from": "v1.36.3", "to": "v1.37.2", "prerelease": False}
        found = subjects(gate, "feature-gates")
        for node in control_planes:
            for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                assert (
                    f"{component} on {node} (static pod kube-system/{component}-{node}): SidecarContainers"
                    in found
                )
        config_map = "ConfigMap kube-system/kubeadm-config ClusterConfiguration"
        assert f"kube-apiserver ({config_map} apiServer.extraArgs): SidecarContainers" in found
        assert "kubelet (ConfigMap kube-system/kubelet-config kubelet): SidecarContainers" in found
        assert "kube-proxy (ConfigMap kube-system/kube-proxy config.conf): SidecarContainers" in found
        assert len(found) == 3 * len(control_planes) + 3 + 2, found
        (first, *_) = result(gate, "feature-gates")["findings"]
        assert first["severity"] == "blocker"
        assert "1.37 removes this feature gate (SidecarContainers=true is set)" in first["message"]
        assert blockers(gate, "feature-gates") == len(found)
        assert harness.metric(
            gate, "upgrade_readiness_findings", check="feature-gates", severity="blocker"
        ) == len(found)
        labels = {
            "check": "feature-gates",
            "subject": found[0],
            "severity": "blocker",
            "acknowledged": "false",
        }
        assert harness.metric(gate, "upgrade_readiness_finding_info", **labels) == 1
        assert harness.metric(gate, "upgrade_readiness_upgradeable") == 0
        # The rest: kubeadm v1.36 stores v1beta4 (v1.37 reads it), no flag 1.37 removes, what kubeadm installs.
        assert status_is(gate, "kubeadm-config", "pass") and status_is(gate, "component-flags", "pass")
        versions = result(gate, "component-versions")
        assert versions["status"] == "pass"
        assert [(f["severity"], f["message"]) for f in versions["findings"]] == [
            ("info", "kubeadm 1.37 installs etcd 3.7.0-0, 1.36 installed 3.6.8-0 (the cluster runs 3.6.8-0)"),
            ("info", "kubeadm 1.37 installs coredns v1.14.6, 1.36 installed v1.14.2"),
        ]
        assert (
            harness.metric(gate, "upgrade_readiness_findings", check="component-versions", severity="info")
            == 2
        )

        # An operator removes the gate: kubeadm-config, kubelet-config and kube-proxy, then each control
        # plane's manifests (new mirror pods).
        await kube_system.config_maps(OLD, "kind")
        await harness.eventually(
            lambda: len(subjects(gate, "feature-gates")) == 3 * len(control_planes), what="configs fixed"
        )
        await kube_system.control_planes(OLD, "kind", control_planes)
        await harness.eventually(lambda: status_is(gate, "feature-gates", "pass"), what="gates cleared")
        assert blockers(gate, "feature-gates") == 0
        assert harness.metric(gate, "upgrade_readiness_upgradeable") == 1

        async def notes() -> list[str]:
            return [e["note"] for e in await harness.state_events(gate)]

        async def passed() -> bool:
            return any(n.startswith("feature-gates is pass") for n in await notes())

        await harness.eventually(passed, what="the CheckPass Event")
        blocked = [n for n in await notes() if n.startswith("feature-gates is blocked: ")]
        assert any("SidecarContainers" in n for n in blocked), blocked


async def test_a_stored_kubeadm_configuration_the_target_cannot_read_blocks(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes, kube_system: KubeSystem
) -> None:
    await masters(nodes, OLD, count=1)
    stored = kubeadm.load(OLD, "kind", "kubeadm-config")["data"]["ClusterConfiguration"]
    v1beta3 = stored.replace("kubeadm.k8s.io/v1beta4", "kubeadm.k8s.io/v1beta3")
    await kube_system.config_maps(OLD, "kind", edit={"kubeadm-config": {"ClusterConfiguration": v1beta3}})
    cfg = config(namespace, "kubeadm-config", "component-flags")
    async with harness.running(controller.UpgradeReadiness, kube, cfg) as gate:
        await harness.eventually(
            lambda: status_is(gate, "kubeadm-config", "blocked"), what="kubeadm-config blocked"
        )
        (finding,) = result(gate, "kubeadm-config")["findings"]
        assert (
            finding["subject"]
            == "ConfigMap kube-system/kubeadm-config ClusterConfiguration kubeadm.k8s.io/v1beta3"
        )
        assert "kubeadm 1.37 no longer reads kubeadm.k8s.io/v1beta3" in finding["message"]
        assert status_is(gate, "component-flags", "pass")  # the same extraArgs, read in either shape

        await kube_system.config_maps(OLD, "kind")  # `kubeadm config migrate`d: v1beta4
        await harness.eventually(
            lambda: status_is(gate, "kubeadm-config", "pass"), what="kubeadm-config cleared"
        )

        broken = {"kubeadm-config": {"ClusterConfiguration": "kind: [ClusterConfiguration"}}
        await kube_system.config_maps(OLD, "kind", edit=broken)
        await harness.eventually(lambda: status_is(gate, "kubeadm-config", "unknown"), what="unreadable")
        assert "ConfigMap kube-system/kubeadm-config: not YAML" in result(gate, "kubeadm-config")["reason"]


def prometheus_rule(name: str, expr: str) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name},
        "spec": {"groups": [{"name": "storage", "rules": [
            {"alert": "KubeAPIServerTooManyObjects", "expr": expr, "for": "10m"},
            {"alert": "KubeAPIErrorsHigh", "expr": 'sum(rate(apiserver_request_total{code=~"5.."}[5m])) > 1'},
        ]}]},
    }  # fmt: skip


async def ensure_prometheus_rule_crd(kube: client.Kube) -> None:
    """The Prometheus Operator's own PrometheusRule CRD (from its module), unless served already."""
    with contextlib.suppress(client.ApiError):
        await kube.create(resources.CRDS.path(), monitoring.crd("prometheusrules"))
    await uso_helpers.established(kube, "prometheusrules.monitoring.coreos.com")


async def test_an_alert_rule_on_a_metric_the_target_hides_warns_and_blocks_when_strict(
    kube: client.Kube, namespace: str, nodes: cluster.Nodes
) -> None:
    await masters(nodes, OLD, count=1)
    await ensure_prometheus_rule_crd(kube)
    path = RULES.path(namespace=namespace, name="apiserver")
    await kube.create(
        RULES.path(namespace=namespace),
        prometheus_rule("apiserver", "max by (resource) (apiserver_storage_objects) > 1e5"),
    )
    subject = f"PrometheusRule {namespace}/apiserver group 'storage' rule 'KubeAPIServerTooManyObjects'"
    async with harness.running(controller.UpgradeReadiness, kube, config(namespace, "alert-metrics")) as gate:
        await harness.eventually(lambda: subject in subjects(gate, "alert-metrics"), what="the rule reported")
        found = result(gate, "alert-metrics")
        finding = next(f for f in found["findings"] if f["subject"] == subject)
        assert finding["severity"] == "warning"
        assert "selects apiserver_storage_objects: 1.37 hides it (deprecated)" in finding["message"]
        assert "use apiserver_resource_objects" in finding["message"]
        if found["status"] == "warning":  # other tests' PrometheusRules may say what cannot be read (unknown)
            assert gate.status()["upgradeable"] is True and blockers(gate, "alert-metrics") == 0
        warnings = harness.metric(
            gate, "upgrade_readiness_findings", check="alert-metrics", severity="warning"
        )
        assert warnings is not None and warnings >= 1

        rule = await kube.get(path)  # the rule moved to the metric 1.37 exports instead
        rule["spec"]["groups"][0]["rules"][0]["expr"] = "max by (resource) (apiserver_resource_objects) > 1e5"
        await kube.replace(path, rule)
        await harness.eventually(
            lambda: subject not in subjects(gate, "alert-metrics"), what="the rule fixed"
        )

    await kube.replace(
        path,
        {
            **(await kube.get(path)),
            "spec": prometheus_rule("apiserver", "apiserver_storage_objects > 1")["spec"],
        },
    )
    strict = config(namespace, "alert-metrics", strict=True)
    async with harness.running(controller.UpgradeReadiness, kube, strict) as gate:
        await harness.eventually(lambda: status_is(gate, "alert-metrics", "blocked"), what="strict: blocked")
        finding = next(f for f in result(gate, "alert-metrics")["findings"] if f["subject"] == subject)
        assert finding["severity"] == "blocker"
        assert blockers(gate, "alert-metrics") >= 1 and gate.status()["upgradeable"] is False


async def test_the_readiness_command_reports_the_release_checks(
    kubeconfig: str, namespace: str, nodes: cluster.Nodes, kube_system: KubeSystem
) -> None:
    label = f"cli-{uuid.uuid4().hex[:8]}"
    control_planes = [f"{label}-cp0"]
    await nodes.create(control_planes[0], version=OLD, master=True, labels={label: ""})
    await kube_system.control_planes(OLD, "kind-sidecar-gate", control_planes)
    await kube_system.config_maps(OLD, "kind-sidecar-gate")
    argv = ("readiness", "--kubeconfig", kubeconfig, "-n", namespace, test_cli.selector(label),
            "--checks", ",".join(RELEASE_CHECKS))  # fmt: skip
    ran = await test_cli.cli(*argv, "-o", "wide")
    assert ran.code == 1, (ran.out, ran.err)
    lines = ran.out.splitlines()
    assert lines[0] == "NOT upgradeable to 1.37 (the masters' minor 1.36 + 1)"
    assert lines[1] == "Compared with the release delta v1.36.3 -> v1.37.2"
    table = "\n".join(lines)
    assert "feature-gates       blocked" in table
    assert "component-versions  pass" in table
    gate = f"kube-apiserver on {control_planes[0]} (static pod kube-system/kube-apiserver-{control_planes[0]}): SidecarContainers"
    assert any(line.startswith("feature-gates       blocker   ") and gate in line for line in lines), table
    assert any("info" in line and "installs etcd 3.7.0-0" in line for line in lines), table
    document = json.loads((await test_cli.cli(*argv, "-o", "json")).out)
    checks = {c["check"]: c for c in document["checks"]}
    assert [c["check"] for c in document["checks"]] == list(RELEASE_CHECKS)
    assert len(checks["feature-gates"]["findings"]) == 3 + 3 + 2
    assert {f["severity"] for f in checks["feature-gates"]["findings"]} == {"blocker"}
    assert document["releaseDelta"] == {"from": "v1.36.3", "to": "v1.37.2", "prerelease": False}


async def test_readiness_against_the_prerelease_says_so(
    kubeconfig: str, namespace: str, nodes: cluster.Nodes, kube_system: KubeSystem
) -> None:
    """A v1.37 cluster (as kubeadm v1.37.2 writes it) judged against --target-version v1.38: the shipped delta
    to v1.38.0-beta.0, and the output says the target is a prerelease."""
    label = f"cli-{uuid.uuid4().hex[:8]}"
    control_plane = f"{label}-cp0"
    await nodes.create(control_plane, version=NEW, master=True, labels={label: ""})
    await kube_system.control_planes(NEW, "kind", [control_plane])
    await kube_system.config_maps(NEW, "kind")
    argv = ("readiness", "--kubeconfig", kubeconfig, "-n", namespace, test_cli.selector(label),
            "--checks", ",".join(RELEASE_CHECKS), "--target-version", "v1.38")  # fmt: skip
    ran = await test_cli.cli(*argv)
    assert ran.code == 0, (ran.out, ran.err)
    lines = ran.out.splitlines()
    assert lines[0] == "Upgradeable to 1.38 (--target-version 1.38)"
    assert lines[1] == (
        "Compared with the release delta v1.37.2 -> v1.38.0-beta.0: the target is a prerelease (v1.38.0-beta.0)"
    )
    assert "kubeadm 1.38 (v1.38.0-beta.0, a prerelease) installs etcd" in ran.out
    document = json.loads((await test_cli.cli(*argv, "-o", "json")).out)
    assert document["releaseDelta"] == {"from": "v1.37.2", "to": "v1.38.0-beta.0", "prerelease": True}
    assert {c["check"]: c["status"] for c in document["checks"]} == dict.fromkeys(RELEASE_CHECKS, "pass")
