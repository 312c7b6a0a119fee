"""The release checks on a kind cluster as kubeadm writes it (tests/fixtures/kubeadm), against the shipped
release delta: a v1.36 cluster with kind's featureGates {SidecarContainers: true} before an upgrade to 1.37,
the same cluster once the gate is removed, and the upgraded v1.37 cluster against the v1.38 prerelease."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.agreement import version
from controllers.release_delta import catalog, model
from controllers.upgrade_readiness.checks import (
    alert_metrics,
    component_flags,
    component_versions,
    feature_gates,
    interface,
    kubeadm_config,
)
from controllers.upgrade_readiness.checks import component_settings as cs
from tests.fixtures import kubeadm

CONTROL_PLANES = ("kind-control-plane", "kind-control-plane2", "kind-control-plane3")


def what_the_cluster_shows(release: str, variant: str) -> list[cs.Settings]:
    """Every control plane's mirror pods, kubeadm's ClusterConfiguration, the kubelet and kube-proxy configs."""
    settings: list[cs.Settings] = []
    for node in CONTROL_PLANES:
        for name in kubeadm.STATIC_PODS:
            pod = kubeadm.mirror_pod(kubeadm.load(release, variant, name), node=node)
            settings.extend(cs.mirror_pod_settings(pod))
    settings.extend(cluster_configuration(release, variant).settings)
    settings.append(cs.kubelet_settings(kubeadm.load(release, variant, "kubelet-config")["data"]["kubelet"]))
    settings.append(
        cs.kube_proxy_settings(kubeadm.load(release, variant, "kube-proxy")["data"]["config.conf"])
    )
    return settings


def cluster_configuration(release: str, variant: str) -> cs.ClusterConfiguration:
    return cs.cluster_configuration(
        kubeadm.load(release, variant, "kubeadm-config")["data"]["ClusterConfiguration"]
    )


def running(release: str, variant: str) -> dict[Any, str]:
    etcd = kubeadm.load(release, variant, "etcd")["spec"]["containers"][0]["image"]
    return {"etcd": version.image_tag(etcd)}


def test_sidecar_containers_blocks_the_upgrade_to_1_37_everywhere_it_is_set() -> None:
    delta = catalog.delta("1.36", "1.37")
    verdict = feature_gates.feature_gates(what_the_cluster_shows("v1.36.3", "kind-sidecar-gate"), delta=delta)
    assert verdict.unknown == ""
    subjects = [f.subject for f in verdict.findings]
    assert all(
        f.severity == "blocker" and f.subject.endswith(": SidecarContainers") for f in verdict.findings
    )
    for node in CONTROL_PLANES:
        for component in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
            assert (
                f"{component} on {node} (static pod kube-system/{component}-{node}): SidecarContainers"
                in subjects
            )
    config = "ConfigMap kube-system/kubeadm-config ClusterConfiguration"
    assert f"kube-apiserver ({config} apiServer.extraArgs): SidecarContainers" in subjects
    assert f"kube-controller-manager ({config} controllerManager.extraArgs): SidecarContainers" in subjects
    assert f"kube-scheduler ({config} scheduler.extraArgs): SidecarContainers" in subjects
    assert "kubelet (ConfigMap kube-system/kubelet-config kubelet): SidecarContainers" in subjects
    assert "kube-proxy (ConfigMap kube-system/kube-proxy config.conf): SidecarContainers" in subjects
    assert len(subjects) == 3 * 3 + 3 + 2
    assert "1.37 removes this feature gate (SidecarContainers=true is set)" in verdict.findings[0].message


def test_with_the_gate_removed_nothing_else_blocks_the_upgrade_to_1_37() -> None:
    delta = catalog.delta("1.36", "1.37")
    shown = what_the_cluster_shows("v1.36.3", "kind")
    assert feature_gates.feature_gates(shown, delta=delta) == interface.Judgement("feature-gates")
    assert component_flags.component_flags(shown, delta=delta) == interface.Judgement("component-flags")
    assert kubeadm_config.kubeadm_config(
        cluster_configuration("v1.36.3", "kind"), delta=delta
    ) == interface.Judgement("kubeadm-config")  # kubeadm v1.36 stores v1beta4, which v1.37 reads
    versions = component_versions.component_versions(delta, running=running("v1.36.3", "kind"))
    assert [f.message for f in versions.findings] == [
        "kubeadm 1.37 installs etcd 3.7.0-0, 1.36 installed 3.6.8-0 (the cluster runs 3.6.8-0)",
        "kubeadm 1.37 installs coredns v1.14.6, 1.36 installed v1.14.2",
    ]


def test_an_alert_on_a_metric_1_37_hides_is_reported() -> None:
    rule = {
        "metadata": {"namespace": "monitoring", "name": "kube-apiserver"},
        "spec": {"groups": [{"name": "storage", "rules": [
            {"alert": "KubeAPIServerTooManyObjects",
             "expr": "max by (resource) (apiserver_storage_objects) > 100000"},
            {"alert": "KubeAPIErrorsHigh", "expr": 'sum(rate(apiserver_request_total{code=~"5.."}[5m])) > 1'},
        ]}]},
    }  # fmt: skip
    verdict = alert_metrics.alert_metrics(
        interface.prometheus_rules(rule), delta=catalog.delta("1.36", "1.37")
    )
    (finding,) = verdict.findings
    assert finding.subject.endswith("rule 'KubeAPIServerTooManyObjects'")
    assert finding.severity == "warning"
    assert "use apiserver_resource_objects" in finding.message


@pytest.mark.parametrize("variant", kubeadm.VARIANTS["v1.37.2"])
def test_the_upgraded_cluster_against_the_prerelease(variant: str) -> None:
    newest = catalog.pairs()[-1]
    delta = catalog.delta(model.minor_text(newest[0]), model.minor_text(newest[1]))
    assert delta.source.minor == "1.37" and delta.prerelease
    shown = what_the_cluster_shows("v1.37.2", variant)
    assert feature_gates.feature_gates(shown, delta=delta).findings == ()
    assert (
        kubeadm_config.kubeadm_config(cluster_configuration("v1.37.2", variant), delta=delta).findings == ()
    )
    (etcd, coredns) = component_versions.component_versions(
        delta, running=running("v1.37.2", variant)
    ).findings
    assert etcd.message.startswith(f"kubeadm 1.38 ({delta.target.version}, a prerelease) installs etcd")
    assert "(the cluster runs 3.7.0-0)" in etcd.message and coredns.subject == "coredns"
