"""upgrade-readiness's pure checks: the target, each check, acknowledgements and the verdict."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.agreement import masters, version
from controllers.upgrade_readiness import checks, logic
from controllers.upgrade_readiness.checks import (
    addon_bundle,
    crd_stored_versions,
    drain_blockers,
    interface,
    kubelet_skew,
    removed_apis,
)

V = version.parse_version


def status(name: str, reported: str) -> masters.MasterStatus:
    return masters.MasterStatus(name=name, reported=reported, version=V(reported), ready=True)


def node(name: str, kubelet: str, *, master: bool = False) -> interface.NodeView:
    return interface.NodeView(name=name, kubelet=kubelet, version=V(kubelet), master=master)


TARGET = logic.next_minor(V("v1.37.2"))  # type: ignore[arg-type]


def test_target_is_the_agreed_minor_plus_one_the_newest_while_they_disagree_or_the_override() -> None:
    agreed = logic.choose_target([status("a", "v1.37.2"), status("b", "v1.37.1")], override=None)
    assert agreed.version is not None and agreed.version.minor_text == "1.38"
    upgrading = logic.choose_target([status("a", "v1.37.2"), status("b", "v1.38.0")], override=None)
    assert upgrading.version is not None and upgrading.version.minor_text == "1.38"
    assert "disagree" in upgrading.reason
    forced = logic.choose_target([status("a", "v1.37.2")], override=logic.parse_target("v1.40"))
    assert forced.version is not None and forced.version.minor_text == "1.40"
    assert logic.choose_target([status("a", "garbage")], override=None).version is None
    assert logic.parse_target("1.37") == logic.parse_target("v1.37.5")
    assert logic.parse_target("soon") is None


def test_kubelet_skew_more_than_three_minors_below_or_newer_blocks() -> None:
    verdict = kubelet_skew.kubelet_skew(
        [node("old", "v1.34.9"), node("ok", "v1.35.0"), node("new", "v1.39.0"), node("odd", "x")],
        target=TARGET,
    )
    assert [f.subject for f in verdict.findings] == ["Node new", "Node old"]
    assert "4 minors below 1.38" in verdict.findings[1].message
    assert "odd" in verdict.unknown


def test_crd_stored_versions_listing_an_unserved_version() -> None:
    crd: dict[str, Any] = {
        "metadata": {"name": "widgets.example.com"},
        "spec": {"versions": [{"name": "v1", "served": False}, {"name": "v2", "served": True}]},
        "status": {"storedVersions": ["v1", "v2"]},
    }
    verdict = crd_stored_versions.crd_stored_versions([interface.crd_view(crd)])
    assert [f.subject for f in verdict.findings] == ["CustomResourceDefinition widgets.example.com"]
    crd["status"]["storedVersions"] = ["v2"]
    assert crd_stored_versions.crd_stored_versions([interface.crd_view(crd)]).findings == ()


def pdb(name: str, *, allowed: int | None, selector: dict[str, Any] | None) -> interface.PdbView:
    return interface.PdbView(namespace="ns", name=name, selector=selector, disruptions_allowed=allowed)


def pod(name: str, node_name: str, **labels: str) -> interface.PodView:
    return interface.PodView(namespace="ns", name=name, node=node_name, labels=labels)


def test_drain_blockers_only_over_pods_on_workers_to_drain() -> None:
    nodes = [node("m", "v1.37.2", master=True), node("old", "v1.37.2"), node("done", "v1.38.0")]
    draining = drain_blockers.nodes_to_drain(nodes, target=TARGET)
    assert draining == {"old"}
    pods = [pod("a", "old", app="db"), pod("b", "done", app="web"), pod("c", "m", app="cp")]
    verdict = drain_blockers.drain_blockers(
        [
            pdb("db", allowed=0, selector={"matchLabels": {"app": "db"}}),
            pdb("web", allowed=0, selector={"matchLabels": {"app": "web"}}),  # its pods are on upgraded nodes
            pdb("cp", allowed=0, selector={"matchLabels": {"app": "cp"}}),  # masters are not drained here
            pdb("relaxed", allowed=1, selector={}),
            pdb("new", allowed=None, selector={"matchExpressions": [{"key": "app", "operator": "Exists"}]}),
        ],
        pods,
        draining=draining,
    )
    assert [f.subject for f in verdict.findings] == ["PodDisruptionBudget ns/db"]
    assert "ns/new" in verdict.unknown


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({}, {"a": "1"}, True),
        (None, {"a": "1"}, False),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ],
)
def test_label_selector(selector: dict[str, Any] | None, labels: dict[str, str], matches: bool) -> None:
    assert drain_blockers.selector_matches(selector, labels) is matches


METRICS = """# HELP apiserver_requested_deprecated_apis Gauge of deprecated APIs that have been requested
apiserver_requested_deprecated_apis{group="resource.k8s.io",removed_release="1.38",resource="deviceclasses",subresource="",version="v1beta1"} 1
apiserver_requested_deprecated_apis{group="storagemigration.k8s.io",removed_release="1.40",resource="storageversionmigrations",subresource="",version="v1beta1"} 1
apiserver_request_total{code="200",component="apiserver",dry_run="",group="resource.k8s.io",resource="deviceclasses",scope="cluster",subresource="",verb="LIST",version="v1beta1"} {count}
apiserver_request_total{code="200",component="apiserver",dry_run="",group="storagemigration.k8s.io",resource="storageversionmigrations",scope="cluster",subresource="",verb="LIST",version="v1beta1"} 9
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="cluster",subresource="",verb="LIST",version="v1"} 100
"""


def scrape(count: int, address: str = "a") -> interface.ApiserverMetrics:
    return interface.parse_apiserver_metrics(METRICS.replace("{count}", str(count)), address=address)


def test_parse_apiserver_metrics_reads_the_gauge_and_sums_the_counters() -> None:
    sample = scrape(3)
    gvr = ("resource.k8s.io", "v1beta1", "deviceclasses", "")
    assert sample.deprecated[gvr] == "1.38"
    assert sample.requests[gvr] == 3
    assert ("", "v1", "pods", "") in sample.requests


def test_removed_apis_count_only_while_the_counter_moves_within_the_window() -> None:
    def judge(
        usage: dict[Any, interface.Usage], samples: list[interface.ApiserverMetrics], now: float
    ) -> list[str]:
        verdict = removed_apis.removed_apis(samples, usage, target=TARGET, window_seconds=60, now=now)
        return [f.subject for f in verdict.findings]

    first = [scrape(3)]
    usage = removed_apis.update_usage({}, first, now=0)
    # Removed in 1.38 (at the target): reported; removed in 1.40: not yet.
    assert judge(usage, first, 0) == ["resource.k8s.io/v1beta1 deviceclasses"]
    usage = removed_apis.update_usage(usage, [scrape(3)], now=50)
    assert judge(usage, [scrape(3)], 50) == ["resource.k8s.io/v1beta1 deviceclasses"]
    usage = removed_apis.update_usage(usage, [scrape(3)], now=61)
    assert judge(usage, [scrape(3)], 61) == []  # the gauge still says 1: stale
    usage = removed_apis.update_usage(usage, [scrape(13)], now=71)
    assert judge(usage, [scrape(13)], 71) == ["resource.k8s.io/v1beta1 deviceclasses"]
    assert usage[("a", ("resource.k8s.io", "v1beta1", "deviceclasses", ""))].rate == pytest.approx(1.0)
    never = [scrape(0, "b")]
    assert judge(removed_apis.update_usage({}, never, now=0), never, 0) == []


def test_an_apiserver_that_does_not_answer_is_unknown_not_a_blocker() -> None:
    down = interface.ApiserverMetrics("https://10.0.0.3:6443", {}, {}, error="cannot read /metrics: 403")
    verdict = removed_apis.removed_apis([scrape(0), down], {}, target=TARGET, window_seconds=60, now=0)
    assert verdict.findings == () and "10.0.0.3" in verdict.unknown
    report = logic.evaluate(logic.TargetMinor(TARGET, ""), [verdict], acknowledged=frozenset(), strict=False)
    assert report.upgradeable and report.results[0].status == "unknown"
    strict = logic.evaluate(logic.TargetMinor(TARGET, ""), [verdict], acknowledged=frozenset(), strict=True)
    assert not strict.upgradeable


def test_addon_bundle_missing_or_invalid_blocks() -> None:
    assert addon_bundle.addon_bundle(interface.BundleProbe("1.38", "", "directory /b")).findings
    assert addon_bundle.addon_bundle(
        interface.BundleProbe("1.38", "1.38", "directory /b", "parse: bad")
    ).findings
    assert addon_bundle.addon_bundle(interface.BundleProbe("1.38", "1.38", "directory /b")).findings == ()


def test_acknowledged_checks_are_shown_and_do_not_block() -> None:
    acked = frozenset({"kubelet-skew", "removed-apis"})  # what waived_checks found active
    skew = kubelet_skew.kubelet_skew([node("old", "v1.30.0")], target=TARGET)
    report = logic.evaluate(logic.TargetMinor(TARGET, "t"), [skew], acknowledged=acked, strict=False)
    assert report.upgradeable
    assert report.results[0].status == "acknowledged" and report.results[0].findings
    assert report.reasons == (f"kubelet-skew: {report.results[0].reason}",)
    assert report.summary()["checks"][0]["findings"][0]["subject"] == "Node old"
    blocked = logic.evaluate(logic.TargetMinor(TARGET, "t"), [skew], acknowledged=frozenset(), strict=False)
    assert not blocked.upgradeable and blocked.blocking[0].check == "kubelet-skew"


def test_no_target_is_not_upgradeable() -> None:
    target = logic.TargetMinor(None, "no master reports a parseable version")
    report = logic.evaluate(
        target, logic.unknown_all(checks.TABLE.names, "no target"), acknowledged=frozenset(), strict=False
    )
    assert not report.upgradeable and "no target version" in report.reasons[0]


def test_the_request_rate_is_said_only_once_there_is_a_baseline() -> None:
    """Seen once, a counter has no rate yet: the finding says so instead of "0 requests/s" (seen in kind
    while the client was requesting the API every 5 s)."""
    first = removed_apis.update_usage({}, [scrape(3)], now=0)
    (finding,) = removed_apis.removed_apis(
        [scrape(3)], first, target=TARGET, window_seconds=60, now=0
    ).findings
    assert "first seen in this scrape" in finding.message and "requests/s" not in finding.message
    later = removed_apis.update_usage(first, [scrape(23)], now=10)
    (finding,) = removed_apis.removed_apis(
        [scrape(23)], later, target=TARGET, window_seconds=60, now=10
    ).findings
    assert "(2 requests/s lately)" in finding.message
