"""Properties: the addon-updater's decision never raises on a garbage bundle, state ConfigMap, CRD or
workload: an unreadable bundle is ``invalid`` with a BundleError naming the file, an unreadable object is
not established / not available with a reason."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from controllers.addon_updater import logic
from controllers.bundles import documents, model
from tests import strategies


@strategies.PROPERTY
@given(
    texts=st.lists(strategies.bundle_texts, min_size=1, max_size=3),
    data=strategies.configmap_data,
    minor=strategies.minor_texts,
    target=st.sampled_from(["apply", "directory"]),
)
def test_decide_any_bundle(texts: list[str], data: dict[str, str], minor: str, target: Any) -> None:
    bundle = model.Bundle(
        minor=minor,
        source="test",
        files=tuple(model.BundleFile(name=f"f{i}.yaml", text=text) for i, text in enumerate(texts)),
    )
    decision = logic.decide(
        bundle=bundle,
        minor=minor,
        variables={"DOMAIN": "cluster.local"},
        recorded=logic.Recorded.of(data),
        version="v1.36.1",
        target=target,
        generation=None,
    )
    event(decision.action if decision.error is None else f"invalid: {decision.error.reason}")
    if decision.action == "invalid":
        assert decision.error is not None and str(decision.error)
        return
    manifests = logic.ordered(decision.manifests)
    logic.bundle_crd_kinds(manifests)
    logic.bundle_namespaces(manifests)
    logic.workload_keys(manifests, default_namespace="default")
    for manifest in manifests:
        body = logic.labelled_body(
            manifest,
            namespaced=True,
            default_namespace="default",
            release="r",
            minor=minor,
            digest=decision.digest,
        )
        assert body["metadata"]["labels"][logic.BUNDLE_LABEL] == "r"
        assert str(logic.object_key(manifest, namespaced=False, default_namespace="default"))


@strategies.PROPERTY
@given(crds=st.lists(strategies.crds, max_size=3), objects=st.lists(strategies.workloads, max_size=3))
def test_health_of_any_object(crds: list[dict[str, Any]], objects: list[dict[str, Any]]) -> None:
    for crd in crds:
        assert logic.crd_established(crd) in (True, False)
    for obj in objects:
        problem = logic.workload_problem(obj)
        assert problem is None or problem


@strategies.PROPERTY
@given(
    objects=st.lists(strategies.workloads, max_size=4),
    text=st.one_of(st.text(max_size=40), strategies.garbage.map(json.dumps)),
)
def test_prune_decisions_on_any_live_object_or_inventory(objects: list[dict[str, Any]], text: str) -> None:
    inventory = logic.parse_inventory(text)
    plan = logic.prune_plan(inventory=inventory, desired=(), max_fraction=1.0)
    assert plan.doomed == ()  # an empty bundle never prunes
    entry = logic.Created(model.ObjectKey("apps", "Deployment", "ns", "d"), uid="u")
    for obj in objects:
        logic.origin_of(obj)
        reason = logic.keep_reason(entry, obj, release="r")
        assert reason is None or reason


def test_bundle_dates_stay_strings_and_bad_ones_are_parse_errors() -> None:
    """Crashes the properties found, kept as examples: kubectl reads an unquoted date as a string."""
    head = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata:\n"
    bundle = model.Bundle(
        minor="1.36", source="t", files=(model.BundleFile(name="f.yaml", text=head + "  day: 2026-01-31\n"),)
    )
    (manifest,) = documents.load(bundle, variables={}).manifests
    assert manifest.body["data"] == {"day": "2026-01-31"}
    for text, reason in (
        (head + "  day: !!timestamp 2001-13-45\n", "parse"),
        (head + "  blob: !!binary aGVsbG8=\n", "invalid"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, annotations: [1]}\n", "invalid"),
    ):
        decision = logic.decide(
            bundle=model.Bundle(
                minor="1.36", source="test", files=(model.BundleFile(name="f.yaml", text=text),)
            ),
            minor="1.36",
            variables={},
            recorded=logic.Recorded(),
            version="v1.36.1",
            target="apply",
            generation=None,
        )
        assert decision.action == "invalid" and decision.error is not None
        assert decision.error.reason == reason, decision.error
