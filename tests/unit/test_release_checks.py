"""The checks that compare what the cluster configures with the release delta of the target minor."""

from __future__ import annotations

import dataclasses
from typing import Any

from controllers.release_delta import model
from controllers.upgrade_readiness import logic
from controllers.upgrade_readiness.checks import (
    alert_metrics,
    component_flags,
    component_versions,
    feature_gates,
    interface,
    kubeadm_config,
)
from controllers.upgrade_readiness.checks import component_settings as cs

DELTA = model.Delta(
    source=model.Release("v1.36.3"),
    target=model.Release("v1.37.2"),
    gates_removed=(
        model.RemovedGate("SidecarContainers", model.COMPONENTS, default=True, locked=True),
        model.RemovedGate("OnlyKcm", ("kube-controller-manager",), default=False, locked=False),
    ),
    gates_locked=(model.LockedGate("Locked", model.COMPONENTS, default=True),),
    flags_removed=(model.Flag("kube-apiserver", "gone"), model.Flag("kube-apiserver", "audit-*-mode")),
    flags_deprecated=(model.Flag("kube-apiserver", "soon", "use --other"),),
    metrics_removed=(
        model.RemovedMetric(
            "apiserver_storage_objects",
            "gauge",
            "STABLE",
            "hidden",
            ("kube-apiserver",),
            "apiserver_resource_objects",
        ),
        model.RemovedMetric("old_seconds", "histogram", "ALPHA", "removed", ("kubelet",)),
    ),
    kubeadm_apis=(
        model.KubeadmApi("kubeadm.k8s.io/v1", "experimental"),
        model.KubeadmApi("kubeadm.k8s.io/v1beta4", "served"),
    ),
    kubeadm_apis_removed=("kubeadm.k8s.io/v1beta3",),
    kubeadm_gates_removed=("ControlPlaneKubeletLocalMode",),
    versions=(model.VersionChange("etcd", "3.6.8-0", "3.7.0-0"),),
)


def settings(component: Any, *, gates: tuple[tuple[str, bool], ...] = (), flags: tuple[str, ...] = (), node: str = "") -> cs.Settings:  # fmt: skip
    return cs.Settings(component, f"static pod kube-system/{component}-cp1", node, flags, gates)


def test_a_removed_gate_blocks_naming_component_node_and_gate() -> None:
    verdict = feature_gates.feature_gates(
        [
            settings("kube-apiserver", gates=(("SidecarContainers", True),), node="cp1"),
            settings("kubelet", gates=(("SidecarContainers", False), ("Other", True))),
        ],
        delta=DELTA,
    )
    assert [(f.severity, f.subject) for f in verdict.findings] == [
        ("blocker", "kube-apiserver on cp1 (static pod kube-system/kube-apiserver-cp1): SidecarContainers"),
        ("blocker", "kubelet (static pod kube-system/kubelet-cp1): SidecarContainers"),
    ]
    assert "1.37 removes this feature gate (SidecarContainers=true is set)" in verdict.findings[0].message
    assert verdict.unknown == ""


def test_a_gate_removed_from_another_component_only_does_not_block() -> None:
    assert (
        feature_gates.feature_gates(
            [settings("kube-apiserver", gates=(("OnlyKcm", True),))], delta=DELTA
        ).findings
        == ()
    )
    assert (
        len(
            feature_gates.feature_gates(
                [settings("kube-controller-manager", gates=(("OnlyKcm", True),))], delta=DELTA
            ).findings
        )
        == 1
    )


def test_a_locked_gate_blocks_only_when_set_to_the_other_value() -> None:
    assert (
        feature_gates.feature_gates([settings("kubelet", gates=(("Locked", True),))], delta=DELTA).findings
        == ()
    )
    (finding,) = feature_gates.feature_gates(
        [settings("kubelet", gates=(("Locked", False),))], delta=DELTA
    ).findings
    assert "locks this feature gate to true" in finding.message


def test_kubeadm_gates_against_kubeadm_of_the_target() -> None:
    config = cs.cluster_configuration(
        "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nfeatureGates:\n  ControlPlaneKubeletLocalMode: true\n"
    )
    (finding,) = feature_gates.feature_gates(config.settings, delta=DELTA).findings
    assert finding.subject.startswith(
        "kubeadm (ConfigMap kube-system/kubeadm-config ClusterConfiguration featureGates)"
    )
    assert "kubeadm 1.37 no longer knows this feature gate" in finding.message


def test_what_could_not_be_read_is_unknown_not_silent() -> None:
    broken = cs.Settings("kubelet", "ConfigMap kube-system/kubelet-config kubelet", problem="not YAML")
    verdict = feature_gates.feature_gates([broken], delta=DELTA)
    assert verdict.findings == () and "not YAML" in verdict.unknown


def test_removed_flags_block_deprecated_flags_warn() -> None:
    verdict = component_flags.component_flags(
        [settings("kube-apiserver", flags=("gone", "audit-webhook-mode", "soon", "kept", "gone"))],
        delta=DELTA,
    )
    assert [(f.severity, f.subject.rsplit(": ", 1)[1]) for f in verdict.findings] == [
        ("blocker", "--gone"),
        ("blocker", "--audit-webhook-mode"),
        ("warning", "--soon"),
    ]
    assert verdict.findings[2].message == "1.37 deprecates --soon: use --other"


def test_the_stored_kubeadm_configuration_must_be_readable_by_the_target() -> None:
    def check(api_version: str) -> interface.Judgement:
        config = cs.cluster_configuration(f"apiVersion: {api_version}\nkind: ClusterConfiguration\n")
        return kubeadm_config.kubeadm_config(config, delta=DELTA)

    assert check("kubeadm.k8s.io/v1beta4").findings == ()
    (removed,) = check("kubeadm.k8s.io/v1beta3").findings
    assert removed.severity == "blocker"
    assert "kubeadm 1.37 no longer reads kubeadm.k8s.io/v1beta3" in removed.message
    (experimental,) = check("kubeadm.k8s.io/v1").findings
    assert (
        "does not read kubeadm.k8s.io/v1 (it reads kubeadm.k8s.io/v1 (experimental)" in experimental.message
    )
    assert kubeadm_config.kubeadm_config(None, delta=DELTA) == interface.Judgement("kubeadm-config")
    assert "not YAML" in kubeadm_config.kubeadm_config(cs.cluster_configuration("{"), delta=DELTA).unknown


PROMETHEUS_RULE: dict[str, Any] = {
    "metadata": {"namespace": "monitoring", "name": "apiserver"},
    "spec": {
        "groups": [
            {
                "name": "storage",
                "rules": [
                    {
                        "alert": "TooManyObjects",
                        "expr": 'max by (resource) (apiserver_storage_objects{resource="pods"}) > 1e5',
                    },
                    {
                        "record": "kubelet:old:p99",
                        "expr": "histogram_quantile(0.99, rate(old_seconds_bucket[5m]))",
                    },
                    {"alert": "Fine", "expr": "up == 0"},
                    {"alert": "Odd", "expr": '{__name__=~"(x+)+"}'},
                    "not a rule",
                ],
            },
            {"name": "empty"},
            7,
        ]
    },
}


def test_rules_that_would_go_blind_warn_or_block_when_strict() -> None:
    rules = interface.prometheus_rules(PROMETHEUS_RULE)
    assert [r.rule for r in rules] == ["TooManyObjects", "kubelet:old:p99", "Fine", "Odd"]
    verdict = alert_metrics.alert_metrics(rules, delta=DELTA)
    assert [(f.severity, f.subject) for f in verdict.findings] == [
        ("warning", "PrometheusRule monitoring/apiserver group 'storage' rule 'TooManyObjects'"),
        ("warning", "PrometheusRule monitoring/apiserver group 'storage' rule 'kubelet:old:p99'"),
    ]
    assert (
        "hides it (deprecated) from kube-apiserver; use apiserver_resource_objects"
        in verdict.findings[0].message
    )
    assert "selects old_seconds_bucket: 1.37 removes it" in verdict.findings[1].message
    assert "'Odd'" in verdict.unknown
    target = logic.TargetMinor(logic.parse_target("v1.37"), "test")
    (result,) = logic.evaluate(target, [verdict], acknowledged=frozenset(), strict=False).results
    assert result.status == "unknown"  # 'Odd' could not be read; the warnings block nothing
    verdict = dataclasses.replace(verdict, unknown="")
    report = logic.evaluate(target, [verdict], acknowledged=frozenset(), strict=False)
    assert (report.results[0].status, report.upgradeable) == ("warning", True)
    report = logic.evaluate(target, [verdict], acknowledged=frozenset(), strict=True)
    assert (report.results[0].status, report.results[0].blockers, report.upgradeable) == ("blocked", 2, False)


def test_a_prometheus_rule_of_any_shape_is_read_without_an_exception() -> None:
    for spec in (
        None,
        5,
        {"groups": "x"},
        {"groups": [{"rules": {"a": 1}}]},
        {"groups": [{"rules": [{"expr": None}]}]},
    ):
        interface.prometheus_rules({"metadata": None, "spec": spec})


def test_component_versions_are_information() -> None:
    verdict = component_versions.component_versions(DELTA, running={"etcd": "3.6.8-0"})
    (finding,) = verdict.findings
    assert (finding.severity, finding.subject) == ("info", "etcd")
    assert (
        finding.message
        == "kubeadm 1.37 installs etcd 3.7.0-0, 1.36 installed 3.6.8-0 (the cluster runs 3.6.8-0)"
    )
    target = logic.TargetMinor(logic.parse_target("v1.37"), "test")
    (result,) = logic.evaluate(target, [verdict], acknowledged=frozenset(), strict=True).results
    assert (result.status, result.blockers) == ("pass", 0)  # information never blocks
    assert result.reason.startswith("etcd: kubeadm 1.37 installs etcd 3.7.0-0")


def test_a_prerelease_target_says_so() -> None:
    prerelease = model.Delta(source=model.Release("v1.37.2"), target=model.Release("v1.38.0-beta.0"),
                             versions=(model.VersionChange("coredns", "v1.14.6", "v1.15.0"),))  # fmt: skip
    (finding,) = component_versions.component_versions(prerelease).findings
    assert finding.message.startswith("kubeadm 1.38 (v1.38.0-beta.0, a prerelease) installs coredns v1.15.0")
