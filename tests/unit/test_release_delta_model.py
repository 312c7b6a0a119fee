"""The release delta's typed model: its JSON form, validation, the union across minors, and the shipped data."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from controllers.release_delta import catalog, model


def delta(source: str, target: str, **fields: Any) -> model.Delta:
    return model.Delta(source=model.Release(source), target=model.Release(target), **fields)


FIRST = delta(
    "v1.35.4",
    "v1.36.3",
    gates_removed=(model.RemovedGate("A", ("kubelet",), default=True, locked=True),),
    gates_locked=(
        model.LockedGate("B", ("kube-apiserver",), default=True),
        model.LockedGate("C", ("kubelet",), default=False),
    ),
    flags_removed=(model.Flag("kubelet", "x"),),
    flags_deprecated=(model.Flag("kube-apiserver", "soon", "use y"), model.Flag("kubelet", "later")),
    apis_removed=(model.RemovedApi("policy", "v1beta1", "PodSecurityPolicy", "1.36"),),
    metrics_removed=(model.RemovedMetric("m_total", "counter", "ALPHA", "removed", ("kubelet",)),),
    kubeadm_apis=(
        model.KubeadmApi("kubeadm.k8s.io/v1beta3", "deprecated"),
        model.KubeadmApi("kubeadm.k8s.io/v1beta4", "served"),
    ),
    kubeadm_gates_locked=(model.LockedGate("K", (), default=True),),
    versions=(
        model.VersionChange("etcd", "3.6.6-0", "3.6.8-0"),
        model.VersionChange("pause", "3.10.1", "3.10.2"),
    ),
)
SECOND = delta(
    "v1.36.3",
    "v1.37.2",
    gates_removed=(
        model.RemovedGate("A", ("kube-apiserver",), default=True, locked=True),
        model.RemovedGate("C", ("kubelet",), default=False, locked=True),
    ),
    flags_removed=(model.Flag("kubelet", "later"),),
    kubeadm_apis=(model.KubeadmApi("kubeadm.k8s.io/v1beta4", "served"),),
    kubeadm_apis_removed=("kubeadm.k8s.io/v1beta3",),
    kubeadm_gates_removed=("K",),
    versions=(
        model.VersionChange("etcd", "3.6.8-0", "3.7.0-0"),
        model.VersionChange("coredns", "v1.14.2", "v1.14.6"),
    ),
)


def test_the_json_form_round_trips_and_is_stable() -> None:
    text = model.dumps(FIRST)
    assert model.loads(text) == FIRST
    assert model.dumps(model.loads(text)) == text
    assert text.endswith("}\n") and not text.endswith("\n\n")
    document = json.loads(text)
    assert document["from"] == "v1.35.4" and document["to"] == "v1.36.3" and document["prerelease"] is False
    assert document["flags"]["removed"] == [{"component": "kubelet", "name": "x"}]


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: d.update(schema=2), "schema 2"),
        (lambda d: d.update({"to": "1.37"}), "not a release version"),
        (lambda d: d["featureGates"].update(removed={}), "is not a list"),
        (
            lambda d: d["featureGates"]["removed"].append(
                {"name": "X", "components": ["kubectl"], "default": True, "locked": False}
            ),
            "'kubectl' is not one of",
        ),
        pytest.param(
            lambda d: d["flags"]["removed"].append({"component": "kubelet"}), "malformed", id="no-name"
        ),
        (lambda d: d["metrics"]["removed"][0].update(change="renamed"), "'renamed' is not one of"),
        pytest.param(lambda d: d.pop("kubeadm"), "malformed", id="no-kubeadm"),
        (lambda d: d["kubeadm"].update(apiVersionsRemoved=[1]), "1 is not a string"),
    ],
)
def test_a_document_out_of_shape_is_a_clear_error(mutate: Any, error: str) -> None:
    document = json.loads(model.dumps(FIRST))
    mutate(document)
    with pytest.raises(model.DeltaError, match=error):
        model.from_document(document)


@pytest.mark.parametrize("text", ["", "[]", "{", "null"])
def test_a_document_that_is_no_object_is_a_clear_error(text: str) -> None:
    with pytest.raises(model.DeltaError):
        model.loads(text)


def test_across_two_minors_the_union() -> None:
    both = model.combine([FIRST, SECOND])
    assert (both.source.version, both.target.version) == ("v1.35.4", "v1.37.2")
    assert both.gates_removed == (
        model.RemovedGate("A", ("kube-apiserver", "kubelet"), default=True, locked=True),
        model.RemovedGate("C", ("kubelet",), default=False, locked=True),
    )
    assert both.gates_locked == (model.LockedGate("B", ("kube-apiserver",), default=True),)  # C is removed
    assert both.flags_removed == (model.Flag("kubelet", "later"), model.Flag("kubelet", "x"))
    assert both.flags_deprecated == (model.Flag("kube-apiserver", "soon", "use y"),)  # "later" is removed
    assert both.apis_removed == FIRST.apis_removed and both.metrics_removed == FIRST.metrics_removed
    assert both.kubeadm_apis == SECOND.kubeadm_apis
    assert both.kubeadm_apis_removed == ("kubeadm.k8s.io/v1beta3",)
    assert both.kubeadm_gates_removed == ("K",) and both.kubeadm_gates_locked == ()
    assert both.versions == (
        model.VersionChange("etcd", "3.6.6-0", "3.7.0-0"),
        model.VersionChange("coredns", "v1.14.2", "v1.14.6"),
        model.VersionChange("pause", "3.10.1", "3.10.2"),
    )


def test_pairs_that_do_not_follow_each_other_do_not_combine() -> None:
    with pytest.raises(model.DeltaError, match="not consecutive"):
        model.combine([SECOND, FIRST])
    with pytest.raises(model.DeltaError):
        model.combine([])


@pytest.mark.parametrize(("text", "minor"), [("1.37", (1, 37)), ("v1.37", (1, 37)), (" 1.5 ", (1, 5))])
def test_minors(text: str, minor: tuple[int, int]) -> None:
    assert model.parse_minor(text) == minor


@pytest.mark.parametrize("text", ["1.37.2", "137", "v1", "", "1.x"])
def test_no_minor(text: str) -> None:
    with pytest.raises(model.DeltaError, match="is not a minor"):
        model.parse_minor(text)


# --- the shipped data --------------------------------------------------------------------------------------


def test_the_shipped_pairs_follow_each_other_from_1_33() -> None:
    pairs = catalog.pairs()
    assert pairs[0][0] == (1, 33)
    assert all(earlier[1] == later[0] for earlier, later in itertools.pairwise(pairs))
    assert [pair[1][1] - pair[0][1] for pair in pairs] == [1] * len(pairs)


def test_every_shipped_pair_is_read_and_only_the_newest_may_be_a_prerelease() -> None:
    deltas = [catalog.pair(s, t) for s, t in catalog.pairs()]
    assert [d.prerelease for d in deltas[:-1]] == [False] * (len(deltas) - 1)
    for d in deltas:
        assert model.parse_minor(d.source.minor) < model.parse_minor(d.target.minor)


def test_1_36_to_1_37_removes_the_gates_the_issue_names() -> None:
    shipped = catalog.delta("1.36", "1.37")
    removed = {g.name for g in shipped.gates_removed}
    assert {
        "SidecarContainers",
        "JobSuccessPolicy",
        "SchedulerQueueingHints",
        "PodLifecycleSleepAction",
    } <= removed
    assert shipped.kubeadm_apis_removed == ("kubeadm.k8s.io/v1beta3",)


def test_the_prerelease_delta_says_so() -> None:
    newest = catalog.pairs()[-1]
    shipped = catalog.delta(model.minor_text(newest[0]), model.minor_text(newest[1]))
    assert shipped.prerelease == ("-" in shipped.target.version)


def test_a_delta_across_minors_is_the_union_of_the_shipped_pairs() -> None:
    across = catalog.delta("1.35", "v1.37")
    first, second = catalog.delta("1.35", "1.36"), catalog.delta("1.36", "1.37")
    assert {g.name for g in across.gates_removed} == {
        g.name for g in first.gates_removed + second.gates_removed
    }
    assert across == model.combine([first, second])


@pytest.mark.parametrize(
    ("source", "target", "error"),
    [
        ("1.37", "1.36", "is not older"),
        ("1.37", "1.37", "is not older"),
        ("1.20", "1.37", "no release delta from 1.20"),
        ("1.36", "1.99", "no release delta from"),
        ("x", "1.37", "is not a minor"),
    ],
)
def test_minors_without_data_are_a_clear_error(source: str, target: str, error: str) -> None:
    with pytest.raises(model.DeltaError, match=error):
        catalog.delta(source, target)
