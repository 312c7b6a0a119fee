"""The addon-updater's pure decisions: selection, validation, order, prune set, health, digest (the bundle loader
itself: test_bundle_documents.py)."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from controllers.addon_updater import logic
from controllers.bundles import documents, model

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples" / "bundles"
VARIABLES = {"CLUSTER_DOMAIN": "cluster.local", "DNS_SERVICE_IP": "10.0.0.10"}


def bundle_of(**files: str) -> model.Bundle:
    return model.Bundle(
        minor="1.36", source="test", files=tuple(model.BundleFile(name=n, text=t) for n, t in files.items())
    )


def example(minor: str) -> model.Bundle:
    folder = EXAMPLES / minor
    files = tuple(model.BundleFile(name=p.name, text=p.read_text()) for p in sorted(folder.glob("*.yaml")))
    return model.Bundle(minor=minor, source=str(folder), files=files)


def parse(text: str) -> tuple[model.Manifest, ...]:
    return documents.load(bundle_of(**{"b.yaml": text}), variables={}).manifests


def reason_of(text: str) -> str:
    with pytest.raises(model.BundleError) as error:
        parse(text)
    return error.value.reason


# --- selection ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "available", "selection", "chosen"),
    [
        ((1, 36), ["1.35", "1.36"], "exact", "1.36"),
        ((1, 37), ["1.35", "1.36"], "exact", None),
        ((1, 37), ["1.34", "1.36", "1.35"], "nearestLower", "1.36"),
        ((1, 36), ["1.36", "1.35"], "nearestLower", "1.36"),
        ((1, 34), ["1.35", "1.36"], "nearestLower", None),
        ((1, 10), ["1.9", "1.10"], "exact", "1.10"),  # numeric, not lexical
        ((1, 11), ["1.9", "1.10", "1.2"], "nearestLower", "1.10"),
        ((1, 36), ["README", "1.36.2", "latest"], "nearestLower", None),
    ],
)
def test_select_bundle(
    wanted: tuple[int, int], available: list[str], selection: model.BundleSelection, chosen: str | None
) -> None:
    assert model.select_bundle(wanted=wanted, available=available, selection=selection) == chosen


# --- variables ---------------------------------------------------------------------------------------------


def test_parse_variables() -> None:
    assert model.parse_variables(["A=1", "B_2=x=y", "EMPTY="]) == {"A": "1", "B_2": "x=y", "EMPTY": ""}
    assert model.variable_problem(["A=1"]) is None
    assert model.variable_problem(["no-equals"]) is not None
    assert model.variable_problem(["1BAD=x"]) is not None


# --- validation --------------------------------------------------------------------------------------------


def test_example_bundles_are_valid() -> None:
    for minor in ("1.35", "1.36"):
        manifests = documents.load(example(minor), variables=VARIABLES).manifests
        assert len(manifests) >= 6
        for manifest in manifests:
            if manifest.kind != "CustomResourceDefinition":
                assert manifest.body["metadata"]["labels"][logic.ADDON_MANAGER_MODE_LABEL]


def test_example_bundles_need_their_variables() -> None:
    with pytest.raises(model.BundleError) as error:
        documents.load(example("1.36"), variables={"CLUSTER_DOMAIN": "cluster.local"})
    assert "DNS_SERVICE_IP" in str(error.value)


def test_invalid_yaml() -> None:
    assert reason_of("kind: ConfigMap\nmetadata: {name: a\n") == "parse"


@pytest.mark.parametrize(
    "text",
    [
        "apiVersion: v1\nmetadata: {name: a}\n",  # no kind
        "kind: ConfigMap\nmetadata: {name: a}\n",  # no apiVersion
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n",  # no name
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: a-}\n",
        "apiVersion: v1\nkind: ConfigMap\n",
        "- just\n- a list\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: [x]}\n",
        "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
    ],
)
def test_invalid_documents(text: str) -> None:
    assert reason_of(text) == "invalid"


def test_error_names_file_and_document() -> None:
    with pytest.raises(model.BundleError) as error:
        parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: {name: b}\n"
        )
    assert str(error.value) == "b.yaml document 2: missing kind"


def test_duplicate_object() -> None:
    text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: n}\n---\n" * 2
    assert reason_of(text) == "duplicate"


def test_empty_documents_skipped_and_lists_flattened() -> None:
    manifests = parse(
        "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n"
        "- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n"
    )
    assert [m.name for m in manifests] == ["a", "b"]


# --- order -------------------------------------------------------------------------------------------------


def test_namespaces_then_crds_then_the_rest_in_bundle_order() -> None:
    manifests = parse(
        "apiVersion: example.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.io}\n---\n"
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: ns}\n"
    )
    assert [m.kind for m in logic.ordered(manifests)] == [
        "Namespace",
        "CustomResourceDefinition",
        "Widget",
        "ConfigMap",
    ]
    assert [logic.is_first_phase(m) for m in logic.ordered(manifests)] == [True, True, False, False]


def test_bundle_crd_kinds() -> None:
    manifests = documents.load(example("1.36"), variables=VARIABLES).manifests
    crds = logic.bundle_crd_kinds(manifests)
    assert set(crds) == {("dns.addons.example.io", "ForwardZone")}


# --- the applied body --------------------------------------------------------------------------------------


def test_labelled_body_keeps_bundle_labels_and_adds_the_suite_label() -> None:
    (manifest,) = parse(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: {addonmanager.kubernetes.io/mode: Reconcile}\n"
    )
    body = logic.labelled_body(
        manifest, namespaced=True, default_namespace="dflt", release="r1", minor="1.36", digest="ab" * 32
    )
    assert body["metadata"]["labels"] == {
        logic.ADDON_MANAGER_MODE_LABEL: "Reconcile",
        logic.BUNDLE_LABEL: "r1",
    }
    assert body["metadata"]["namespace"] == "dflt"
    assert body["metadata"]["annotations"][logic.DIGEST_ANNOTATION] == "abababababab"
    assert (
        "labels" in manifest.body["metadata"]
        and logic.BUNDLE_LABEL not in manifest.body["metadata"]["labels"]
    )


def test_cluster_scoped_objects_lose_a_namespace() -> None:
    (manifest,) = parse("apiVersion: v1\nkind: Namespace\nmetadata: {name: a, namespace: x}\n")
    body = logic.labelled_body(
        manifest, namespaced=False, default_namespace="d", release="r", minor="1.36", digest="0" * 64
    )
    assert "namespace" not in body["metadata"]
    assert logic.object_key(manifest, namespaced=False, default_namespace="d") == model.ObjectKey(
        "", "Namespace", "", "a"
    )


# --- prune -------------------------------------------------------------------------------------------------


def created(group: str, kind: str, namespace: str, name: str) -> logic.Created:
    return logic.Created(model.ObjectKey(group, kind, namespace, name), uid=f"uid-{name}")


def test_prune_only_created_objects_that_left_the_bundle_namespaces_last() -> None:
    kept = created("", "ConfigMap", "kube-system", "coredns")
    gone = created("", "ConfigMap", "kube-system", "dns-autoscaler")
    crd = created("apiextensions.k8s.io", "CustomResourceDefinition", "", "old.example.io")
    namespace = created("", "Namespace", "", "old-ns")
    role = created("rbac.authorization.k8s.io", "ClusterRole", "", "old-role")
    others = [created("", "ConfigMap", "kube-system", f"keep-{i}") for i in range(4)]
    plan = logic.prune_plan(
        inventory=[namespace, crd, role, kept, gone, *others],
        desired=[kept.key, *(o.key for o in others), model.ObjectKey("", "ConfigMap", "x", "adopted-one")],
        max_fraction=0.5,
    )
    assert [e.key.name for e in plan.doomed] == ["dns-autoscaler", "old-role", "old.example.io", "old-ns"]
    assert plan.skipped == ""


def test_an_empty_bundle_or_one_over_the_threshold_prunes_nothing_and_says_why() -> None:
    inventory = [created("", "ConfigMap", "ns", name) for name in ("a", "b", "c", "d")]
    empty = logic.prune_plan(inventory=inventory, desired=[], max_fraction=1.0)
    assert empty.doomed == () and "the bundle is empty" in empty.skipped
    half = logic.prune_plan(
        inventory=inventory, desired=[inventory[0].key, inventory[1].key], max_fraction=0.5
    )
    assert len(half.doomed) == 2  # exactly the fraction: allowed
    over = logic.prune_plan(inventory=inventory, desired=[inventory[0].key], max_fraction=0.5)
    assert over.doomed == ()
    assert over.skipped == (
        "3 of the 4 object(s) the suite created would be pruned, more than pruneMaxFraction 0.5: nothing pruned"
    )
    assert logic.prune_plan(inventory=inventory, desired=[e.key for e in inventory], max_fraction=0) == (
        logic.PrunePlan(())
    )


def test_origin_created_adopted() -> None:
    assert logic.origin_of(None) == "created"
    assert logic.origin_of({"metadata": {"name": "there-before"}}) == "adopted"
    ours = {"metadata": {"annotations": {logic.ORIGIN_ANNOTATION: "created"}}}
    assert logic.origin_of(ours) == "created"
    assert logic.origin_of({"metadata": {"annotations": {logic.ORIGIN_ANNOTATION: "adopted"}}}) == "adopted"
    body = {"metadata": {"name": "a", "annotations": {"x": "y"}}}
    marked = logic.with_origin(body, "adopted")
    assert marked["metadata"]["annotations"] == {"x": "y", logic.ORIGIN_ANNOTATION: "adopted"}
    assert logic.origin_of(marked) == "adopted" and body["metadata"]["annotations"] == {"x": "y"}


def test_keep_reason() -> None:
    entry = created("", "ConfigMap", "ns", "a")

    def live(**changes: object) -> logic.JSON:
        metadata: dict[str, object] = {
            "uid": "uid-a",
            "labels": {logic.BUNDLE_LABEL: "rel"},
            "annotations": {logic.ORIGIN_ANNOTATION: "created"},
        }
        return {"metadata": {**metadata, **changes}}

    assert logic.keep_reason(entry, live(), release="rel") is None
    assert "replaced" in (logic.keep_reason(entry, live(uid="other"), release="rel") or "")
    assert "no longer carries" in (logic.keep_reason(entry, live(labels={}), release="rel") or "")
    assert "no longer carries" in (logic.keep_reason(entry, live(), release="other") or "")
    assert "adopted" in (logic.keep_reason(entry, live(annotations={}), release="rel") or "")
    opted_out = {logic.ORIGIN_ANNOTATION: "created", logic.PRUNE_ANNOTATION: "disabled"}
    assert logic.keep_reason(entry, live(annotations=opted_out), release="rel") == (
        "addons.kube-upgrade-controllers.io/prune: disabled"
    )


def test_inventory_round_trip_and_garbage() -> None:
    entries = (created("", "ConfigMap", "ns", "a"), created("apps", "Deployment", "ns", "d"))
    assert logic.parse_inventory(logic.inventory_text(entries)) == tuple(sorted(entries))
    for garbage in ("", "{", "{}", "[1, null]", '[{"kind": "ConfigMap"}]', '[{"group": 1}]'):
        assert logic.parse_inventory(garbage) == ()


# --- health ------------------------------------------------------------------------------------------------


def deployment(*, generation: int = 2, observed: int = 2, replicas: int = 2, **status: int) -> logic.JSON:
    return {
        "kind": "Deployment",
        "metadata": {"generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, **status},
    }


def test_deployment_availability() -> None:
    good = deployment(updatedReplicas=2, replicas=2, availableReplicas=2)
    assert logic.workload_problem(good) is None
    assert "observed" in (logic.workload_problem(deployment(observed=1, updatedReplicas=2)) or "")
    problem = logic.workload_problem(deployment(updatedReplicas=2, availableReplicas=1))
    assert problem == "1 of 2 replicas available"
    old_pods = {**good, "status": {**good["status"], "replicas": 3}}
    assert logic.workload_problem(old_pods) == "old replicas are pending termination"
    assert (
        logic.workload_problem({"kind": "Deployment", "metadata": {}, "spec": {}, "status": {}}) is not None
    )


def test_daemonset_availability() -> None:
    ds: logic.JSON = {
        "kind": "DaemonSet",
        "metadata": {"generation": 1},
        "status": {"observedGeneration": 1, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3},
    }
    assert logic.workload_problem(ds) == "0 of 3 pods available"
    ds["status"]["numberAvailable"] = 3
    assert logic.workload_problem(ds) is None


def test_unavailable_reports_missing_workloads() -> None:
    key = model.ObjectKey("apps", "Deployment", "ns", "coredns")
    assert logic.unavailable(wanted=[key], live={}) == {key: "not found"}


def test_workload_keys() -> None:
    manifests = documents.load(example("1.36"), variables=VARIABLES).manifests
    assert logic.workload_keys(manifests, default_namespace="d") == (
        model.ObjectKey("apps", "Deployment", "kube-system", "coredns"),
    )


def test_crd_established() -> None:
    assert logic.crd_established({"status": {"conditions": [{"type": "Established", "status": "True"}]}})
    assert not logic.crd_established({"status": {"conditions": [{"type": "Established", "status": "False"}]}})
    assert not logic.crd_established({})


# --- digest, generations, decisions ------------------------------------------------------------------------


def test_digest_depends_on_content_names_and_variables_only() -> None:
    a = bundle_of(**{"a.yaml": "x", "b.yaml": "y"})
    reordered = model.Bundle(minor="1.35", source="elsewhere", files=tuple(reversed(a.files)))
    assert model.bundle_digest(a, variables={}) == model.bundle_digest(reordered, variables={})
    assert model.bundle_digest(a, variables={}) != model.bundle_digest(a, variables={"V": "1"})
    assert model.bundle_digest(a, variables={}) != model.bundle_digest(
        bundle_of(**{"a.yaml": "x"}), variables={}
    )
    renamed = bundle_of(**{"a.yaml": "x", "c.yaml": "y"})
    assert model.bundle_digest(a, variables={}) != model.bundle_digest(renamed, variables={})


def test_generation_names() -> None:
    name = logic.generation_name(minor="1.36", digest="0123456789abcdef" * 4)
    assert name == "..1.36_0123456789ab"
    assert logic.parse_generation(name) == ("1.36", "0123456789ab")
    assert logic.parse_generation("addons") is None
    stale = logic.stale_generations(
        ["..1.34_aaaaaaaaaaaa", name, "..1.35_bbbbbbbbbbbb", "addons", "..staging-x"],
        keep=[name, "..1.35_bbbbbbbbbbbb"],
    )
    assert stale == ("..1.34_aaaaaaaaaaaa",)


def test_bundle_file_names() -> None:
    assert model.bundle_file_name("coredns.yaml")
    assert model.bundle_file_name("x.yml") and model.bundle_file_name("x.json")
    assert not model.bundle_file_name("README.md")
    assert not model.bundle_file_name(".hidden.yaml")


BUNDLE = example("1.36")
D = model.bundle_digest(BUNDLE, variables=VARIABLES)


@pytest.mark.parametrize(
    ("recorded", "version", "in_place", "action"),
    [
        (logic.Recorded(phase="Done", version="v1.36.0", minor="1.36", digest=D), "v1.36.1", True, "current"),
        (logic.Recorded(phase="Done", minor="1.36", digest=D), "v1.36.0", False, "switch"),
        (logic.Recorded(phase="Done", minor="1.35", digest=D), "v1.36.0", True, "switch"),
        (logic.Recorded(phase="Done", minor="1.36", digest="old"), "v1.36.0", True, "switch"),
        (logic.Recorded(phase="Failed", minor="1.36", digest=D), "v1.36.0", True, "switch"),
        (
            logic.Recorded(phase="Invalid", version="v1.36.0", failed_digest=D),
            "v1.36.0",
            True,
            "known-invalid",
        ),
        (logic.Recorded(phase="Invalid", version="v1.36.0", failed_digest=D), "v1.36.1", True, "switch"),
        (logic.Recorded(), "v1.36.0", True, "switch"),
    ],
)
def test_decide(recorded: logic.Recorded, version: str, in_place: bool, action: str) -> None:
    """``in_place``: the target shows the bundle (apply: always; directory: its generation is linked)."""
    generation = logic.generation_name(minor="1.36", digest=D)
    placements = [("apply", None), ("directory", generation)] if in_place else [("directory", None)]
    for target, linked in placements:
        decision = logic.decide(
            bundle=BUNDLE,
            minor="1.36",
            variables=VARIABLES,
            recorded=recorded,
            version=version,
            target=target,  # type: ignore[arg-type]
            generation=linked,
        )
        assert decision.action == action
        assert decision.digest == D
        if action in ("current", "switch"):
            assert decision.manifests and len(decision.files) == len(BUNDLE.files)


def test_decide_missing_unreadable_and_unrenderable_bundles() -> None:
    common: dict[str, Any] = {
        "recorded": logic.Recorded(),
        "version": "v1.36.0",
        "target": "apply",
        "generation": None,
    }
    assert logic.decide(bundle=None, minor="", variables={}, **common).action == "missing"
    unreadable = model.BundleError("parse", "cannot read")
    decision = logic.decide(bundle=unreadable, minor="1.36", variables={}, **common)
    assert (decision.action, decision.error, decision.bundle and decision.bundle.minor) == (
        "invalid",
        unreadable,
        "1.36",
    )
    decision = logic.decide(bundle=BUNDLE, minor="1.36", variables={}, **common)  # its variables are missing
    assert decision.action == "invalid" and decision.error is not None and decision.error.reason == "variable"
    assert decision.digest == model.bundle_digest(BUNDLE, variables={})


def test_recorded_from_state() -> None:
    data = {
        "phase": "Done",
        "version": "v1.36.0",
        "bundleMinor": "1.36",
        "bundleDigest": "d",
        "failedDigest": "",
    }
    assert logic.Recorded.of(data) == logic.Recorded(
        phase="Done", version="v1.36.0", minor="1.36", digest="d"
    )
