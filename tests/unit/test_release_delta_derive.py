"""The release delta's derivation from two releases' facts (hack/release_delta/derive.py), on small facts."""

from __future__ import annotations

import copy
from typing import Any, cast

import pytest

from controllers.release_delta import model
from hack.release_delta import derive


def spec(version: str, *, default: bool, locked: bool = False, pre: str = "GA") -> derive.SpecFacts:
    return {"version": version, "default": default, "preRelease": pre, "lockToDefault": locked}


def facts(version: str, **changes: Any) -> derive.Facts:
    """Facts of a release where every component knows gates G and every flag is on the apiserver."""
    base: dict[str, Any] = {
        "version": version,
        "components": {
            c: {
                "packages": 1,
                "declarations": 1,
                "flags": [],
                "unresolvedFlags": 0,
                "gates": [],
                "metrics": [],
            }
            for c in model.COMPONENTS
        },
        "gates": [],
        "metrics": [],
        "apis": [],
        "kubeadm": {
            "apiVersions": [{"version": "kubeadm.k8s.io/v1beta4", "status": "served"}],
            "gates": [],
            "defaults": {"etcd": "3.6.8-0", "coredns": "v1.14.2", "pause": "3.10.2"},
        },
    }
    for key, value in changes.items():
        base[key] = value
    return cast(derive.Facts, base)


def with_gates(f: derive.Facts, gates: dict[str, list[derive.SpecFacts]], *, components: tuple[str, ...] = model.COMPONENTS) -> derive.Facts:  # fmt: skip
    f = copy.deepcopy(f)
    f["gates"] = [
        {"name": n, "package": "k8s.io/kubernetes/pkg/features", "specs": s} for n, s in gates.items()
    ]
    for component in components:
        f["components"][component]["gates"] = sorted(gates)
    return f


def test_a_gate_gone_is_removed_for_the_components_that_knew_it() -> None:
    old = with_gates(
        facts("v1.36.3"), {"SidecarContainers": [spec("1.33", default=True, locked=True)], "Kept": []}
    )
    new = with_gates(facts("v1.37.2"), {"Kept": []})
    new["components"]["kube-controller-manager"]["gates"] = []  # kcm lost "Kept" too
    delta = derive.derive(old, new)
    assert delta.gates_removed == (
        model.RemovedGate("Kept", ("kube-controller-manager",), default=False, locked=False),
        model.RemovedGate("SidecarContainers", model.COMPONENTS, default=True, locked=True),
    )


def test_a_gate_newly_locked_to_its_default_is_listed_once() -> None:
    specs = [spec("1.30", default=False, pre="Beta"), spec("1.37", default=True, locked=True)]
    old = with_gates(facts("v1.36.3"), {"G": specs, "Always": [spec("1.20", default=True, locked=True)]})
    new = with_gates(facts("v1.37.2"), {"G": specs, "Always": [spec("1.20", default=True, locked=True)]})
    assert derive.derive(old, new).gates_locked == (model.LockedGate("G", model.COMPONENTS, default=True),)


@pytest.mark.parametrize(
    ("specs", "minor", "expected"),
    [
        ([spec("1.30", default=False), spec("1.33", default=True)], (1, 32), 0),
        ([spec("1.30", default=False), spec("1.33", default=True)], (1, 33), 1),
        ([spec("1.33", default=True), spec("1.30", default=False)], (1, 40), 0),  # by version, not by order
        ([spec("1.40", default=True)], (1, 33), None),
        ([spec("", default=True)], (1, 33), 0),  # an unversioned FeatureSpec
    ],
)
def test_the_spec_in_effect_is_the_last_at_or_below_the_minor(
    specs: list[derive.SpecFacts], minor: tuple[int, int], expected: int | None
) -> None:
    assert derive.spec_at(specs, minor) == (None if expected is None else specs[expected])


def flags(component: str, f: derive.Facts, *entries: derive.FlagFacts) -> derive.Facts:
    f = copy.deepcopy(f)
    f["components"][component]["flags"] = list(entries)
    return f


def test_flags_removed_and_newly_deprecated_per_component() -> None:
    old = flags(
        "kubelet",
        facts("v1.36.3"),
        {"name": "gone", "deprecated": True},
        {"name": "soon", "deprecated": False},
        {"name": "already", "deprecated": True},
        {"name": "audit-*-mode", "deprecated": False},
    )
    new = flags(
        "kubelet",
        facts("v1.37.2"),
        {"name": "soon", "deprecated": True, "deprecationMessage": "use the config file"},
        {"name": "already", "deprecated": True},
        {"name": "new", "deprecated": True},
    )
    delta = derive.derive(old, new)
    assert delta.flags_removed == (model.Flag("kubelet", "audit-*-mode"), model.Flag("kubelet", "gone"))
    assert delta.flags_deprecated == (model.Flag("kubelet", "soon", "use the config file"),)
    assert delta.removed_flag("kubelet", "audit-log-mode") == model.Flag("kubelet", "audit-*-mode")
    assert delta.removed_flag("kubelet", "audit-log-maxage") is None
    assert delta.removed_flag("kube-apiserver", "gone") is None


def metric(name: str, **fields: str) -> derive.MetricFacts:
    return cast(derive.MetricFacts, {"name": name, "type": "counter", "stability": "ALPHA", **fields})


def metrics(f: derive.Facts, *defined: derive.MetricFacts, component: str = "kube-apiserver") -> derive.Facts:
    f = copy.deepcopy(f)
    f["metrics"] = list(defined)
    f["components"][component]["metrics"] = [m["name"] for m in defined]
    return f


@pytest.mark.parametrize(
    ("stability", "deprecated", "release", "hidden"),
    [
        ("STABLE", "1.34.0", "v1.36.3", False),
        ("STABLE", "1.34.0", "v1.37.2", True),  # 1.34 + 3 reached
        ("STABLE", "1.34.0", "v1.37.0-alpha.0", False),  # not in the minor's alpha.0
        ("BETA", "1.36.0", "v1.37.2", True),
        ("BETA", "1.36.0", "v1.36.3", False),
        ("ALPHA", "1.37.0", "v1.37.2", True),
        ("ALPHA", "", "v1.37.2", False),
        ("ALPHA", "2.0.0", "v1.99.0", False),
        ("ALPHA", "0.9.0", "v1.0.0", True),
    ],
)
def test_a_deprecated_metric_is_hidden_as_component_base_hides_it(
    stability: str, deprecated: str, release: str, hidden: bool
) -> None:
    assert (
        derive.hidden(metric("m", stability=stability, deprecatedVersion=deprecated), release=release)
        is hidden
    )


def test_metrics_gone_hidden_and_renamed() -> None:
    old = metrics(
        facts("v1.36.3"),
        metric("apiserver_storage_objects", stability="STABLE", deprecatedVersion="1.34.0",
               help="[DEPRECATED, consider using apiserver_resource_objects instead] Number of stored objects"),
        metric("resource_manager_allocations_total", help="Number of allocations."),
        metric("gone_total", type="histogram"),
        metric("kept_total"),
    )  # fmt: skip
    new = metrics(
        facts("v1.37.2"),
        old["metrics"][0],
        metric("apiserver_resource_objects"),
        metric("kubelet_resource_manager_allocations_total", help="Number of allocations."),
        metric("kept_total"),
    )
    delta = derive.derive(old, new)
    assert delta.metrics_removed == (
        model.RemovedMetric("apiserver_storage_objects", "counter", "STABLE", "hidden", ("kube-apiserver",),
                            "apiserver_resource_objects"),
        model.RemovedMetric("gone_total", "histogram", "ALPHA", "removed", ("kube-apiserver",)),
        model.RemovedMetric("resource_manager_allocations_total", "counter", "ALPHA", "removed", ("kube-apiserver",),
                            "kubelet_resource_manager_allocations_total"),
    )  # fmt: skip
    assert delta.metrics_removed[1].series() == (
        "gone_total",
        "gone_total_bucket",
        "gone_total_sum",
        "gone_total_count",
    )


def test_a_metric_another_component_still_exports_is_not_removed() -> None:
    old = metrics(facts("v1.36.3"), metric("shared_total"), component="kubelet")
    new = metrics(facts("v1.37.2"), metric("shared_total"), component="kube-proxy")
    assert derive.derive(old, new).metrics_removed == ()


def api(group: str, version: str, kind: str, **lifecycle: str) -> derive.ApiFacts:
    return cast(derive.ApiFacts, {"group": group, "version": version, "kind": kind, **lifecycle})


def test_apis_no_longer_served() -> None:
    old = facts(
        "v1.36.3",
        apis=[
            api("storage.k8s.io", "v1beta1", "VolumeAttributesClass", removed="1.37", replacement="storage.k8s.io/v1 VolumeAttributesClass"),
            api("resource.k8s.io", "v1alpha3", "DeviceClass", removed="1.39"),
            api("policy", "v1beta1", "PodSecurityPolicy", removed="1.25"),
            api("", "v1", "Pod"),
        ],
    )  # fmt: skip
    new = facts("v1.37.2", apis=[old["apis"][0], old["apis"][2], old["apis"][3]])
    assert derive.derive(old, new).apis_removed == (
        model.RemovedApi("resource.k8s.io", "v1alpha3", "DeviceClass", "1.37"),  # gone from the source
        model.RemovedApi("storage.k8s.io", "v1beta1", "VolumeAttributesClass", "1.37",
                         "storage.k8s.io/v1 VolumeAttributesClass"),
    )  # fmt: skip


def test_kubeadm_api_versions_gates_and_installed_versions() -> None:
    old = facts("v1.36.3")
    old["kubeadm"]["apiVersions"].insert(0, {"version": "kubeadm.k8s.io/v1beta3", "status": "deprecated"})
    old["kubeadm"]["gates"] = [
        {"name": "Gone", "spec": spec("", default=False, pre="Alpha"), "deprecated": False},
        {"name": "Locks", "spec": spec("", default=True, pre="Beta"), "deprecated": False},
    ]
    new = facts("v1.37.2")
    new["kubeadm"]["apiVersions"].insert(0, {"version": "kubeadm.k8s.io/v1", "status": "experimental"})
    new["kubeadm"]["gates"] = [
        {"name": "Locks", "spec": spec("", default=True, locked=True), "deprecated": False}
    ]
    new["kubeadm"]["defaults"]["etcd"] = "3.7.0-0"
    delta = derive.derive(old, new)
    assert delta.kubeadm_apis == (
        model.KubeadmApi("kubeadm.k8s.io/v1", "experimental"),
        model.KubeadmApi("kubeadm.k8s.io/v1beta4", "served"),
    )
    assert delta.kubeadm_apis_removed == ("kubeadm.k8s.io/v1beta3",)
    assert delta.kubeadm_gates_removed == ("Gone",)
    assert delta.kubeadm_gates_locked == (model.LockedGate("Locks", (), default=True),)
    assert delta.versions == (model.VersionChange("etcd", "3.6.8-0", "3.7.0-0"),)


def test_the_newest_release_of_each_minor_from_the_first_on() -> None:
    versions = ["v1.32.9", "v1.33.6", "v1.33.13", "v1.34.0-rc.1", "v1.34.0", "v1.35.0-beta.0", "v1.35.0-rc.0",
                "v1.35.0-rc.10", "v1.35.0-rc.2", "v1.36.4-rc.0", "v1.36.3", "v1.37.0-alpha.2", "v1.37.0-beta.0",
                "not-a-version"]  # fmt: skip
    assert derive.newest_per_minor(versions, first=(1, 33)) == [
        "v1.33.13", "v1.34.0", "v1.35.0-rc.10", "v1.36.3", "v1.37.0-beta.0",
    ]  # fmt: skip


def test_the_derived_delta_survives_its_json_form() -> None:
    old = with_gates(facts("v1.37.2"), {"A": [spec("1.30", default=True)]})
    new = facts("v1.38.0-beta.0")
    delta = derive.derive(old, new)
    assert delta.prerelease
    assert model.loads(model.dumps(delta)) == delta
