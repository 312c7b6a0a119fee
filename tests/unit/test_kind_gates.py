"""The kind scenario's removal of a feature gate (e2e/kind/gates.py), on what kubeadm itself writes
(tests/fixtures/kubeadm): kind's cluster with ``SidecarContainers: true`` on every component, edited, is kind's
cluster without it, and the release checks find nothing left."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controllers.release_delta import catalog
from controllers.upgrade_readiness.checks import component_settings as cs
from controllers.upgrade_readiness.checks import feature_gates
from e2e.kind import gates
from tests.fixtures import kubeadm

RELEASE, GATE = "v1.36.3", "SidecarContainers"


def text_of(variant: str, name: str) -> str:
    return (kubeadm.directory(RELEASE, variant) / f"{name}.yaml").read_text(encoding="utf-8")


def config_map_key(variant: str, name: str, key: str) -> str:
    value = kubeadm.load(RELEASE, variant, name)["data"][key]
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("SidecarContainers=true", ""),
        ("A=true,SidecarContainers=true,B=false", "A=true,B=false"),
        ("A=true, SidecarContainers = false", "A=true"),
        ("SidecarContainersX=true", "SidecarContainersX=true"),
        ("", ""),
    ],
)
def test_gates_without(value: str, expected: str) -> None:
    assert gates.gates_without(value, GATE) == expected


def test_a_command_line_loses_the_gate_and_keeps_every_other_flag() -> None:
    args = ["kube-apiserver", "--a=1", "--feature-gates=X=true,SidecarContainers=true", "--b"]
    assert gates.args_without(args, GATE) == ["kube-apiserver", "--a=1", "--feature-gates=X=true", "--b"]
    assert gates.args_without(["x", "--feature-gates=SidecarContainers=true"], GATE) == ["x"]
    assert gates.args_without(["x", "--feature-gates=Y=false"], GATE) == ["x", "--feature-gates=Y=false"]


@pytest.mark.parametrize("name", kubeadm.STATIC_PODS)
def test_each_static_pod_manifest_becomes_the_one_without_the_gate(name: str) -> None:
    edited = gates.manifest_without(text_of("kind-sidecar-gate", name), GATE)
    if name == "etcd":  # kind never gives etcd a Kubernetes gate
        assert edited is None
        return
    assert edited is not None
    assert yaml.safe_load(edited) == kubeadm.load(RELEASE, "kind", name)
    assert gates.manifest_without(edited, GATE) is None


def test_kubeadms_cluster_configuration_becomes_the_one_without_the_gate() -> None:
    text = config_map_key("kind-sidecar-gate", "kubeadm-config", "ClusterConfiguration")
    edited = gates.cluster_configuration_without(text, GATE)
    assert edited is not None
    # scheduler: its only extraArgs entry was the gate: {} as kubeadm writes it without one.
    assert yaml.safe_load(edited) == yaml.safe_load(
        config_map_key("kind", "kubeadm-config", "ClusterConfiguration")
    )
    assert gates.cluster_configuration_without(edited, GATE) is None


def test_the_v1beta3_extra_args_map_loses_the_gate() -> None:
    text = yaml.safe_dump(
        {
            "apiVersion": "kubeadm.k8s.io/v1beta3",
            "kind": "ClusterConfiguration",
            "apiServer": {
                "extraArgs": {"runtime-config": "x/v1=true", "feature-gates": "SidecarContainers=true"}
            },
            "scheduler": {"extraArgs": {"feature-gates": "A=false,SidecarContainers=true"}},
            "controllerManager": {"extraArgs": {"feature-gates": "SidecarContainers=true"}},
        }
    )
    edited: dict[str, Any] = yaml.safe_load(gates.cluster_configuration_without(text, GATE) or "")
    assert edited["apiServer"] == {"extraArgs": {"runtime-config": "x/v1=true"}}
    assert edited["scheduler"] == {"extraArgs": {"feature-gates": "A=false"}}
    assert edited["controllerManager"] == {}


def test_the_kubelet_configuration_becomes_the_one_without_the_gate() -> None:
    edited = gates.kubelet_configuration_without(
        config_map_key("kind-sidecar-gate", "kubelet-config", "kubelet"), GATE
    )
    assert edited is not None
    assert yaml.safe_load(edited) == yaml.safe_load(config_map_key("kind", "kubelet-config", "kubelet"))
    assert gates.kubelet_configuration_without(edited, GATE) is None
    kept = gates.kubelet_configuration_without(
        "kind: KubeletConfiguration\nfeatureGates: {A: true, SidecarContainers: true}\n", GATE
    )
    assert yaml.safe_load(kept or "") == {"kind": "KubeletConfiguration", "featureGates": {"A": True}}


def test_after_the_edits_the_feature_gates_check_finds_nothing_where_it_found_the_gate() -> None:
    """Where kubeadm's own output blocked the upgrade to 1.37 (tests/unit/test_release_checks_kind.py), the
    edited texts block nothing."""
    settings: list[cs.Settings] = []
    for name in kubeadm.STATIC_PODS:
        text = text_of("kind-sidecar-gate", name)
        manifest = yaml.safe_load(gates.manifest_without(text, GATE) or text)
        settings.extend(cs.mirror_pod_settings(kubeadm.mirror_pod(manifest)))
    config = config_map_key("kind-sidecar-gate", "kubeadm-config", "ClusterConfiguration")
    settings.extend(cs.cluster_configuration(gates.cluster_configuration_without(config, GATE)).settings)
    kubelet = config_map_key("kind-sidecar-gate", "kubelet-config", "kubelet")
    settings.append(cs.kubelet_settings(gates.kubelet_configuration_without(kubelet, GATE)))
    verdict = feature_gates.feature_gates(settings, delta=catalog.delta("1.36", "1.37"))
    assert verdict.findings == () and verdict.unknown == ""
    assert sum(1 for s in settings if s.component == "kube-apiserver" and "feature-gates" in s.flags) == 0
