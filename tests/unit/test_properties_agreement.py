"""Properties: the agreement rule, the shared object helpers and discovery parsing never raise on garbage.

Nodes, Leases, Pods and discovery documents with random holes (tests/strategies.py): the outcome is a
disagreement with a reason, a skipped object or an empty answer, never an exception.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from controllers.agreement import masters, selector, version
from controllers.kube import discovery
from controllers.structs import leases, refs, times
from tests import strategies

SELECTORS = tuple(selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS)


@strategies.PROPERTY
@given(
    nodes=st.lists(strategies.nodes, max_size=5),
    pods=st.lists(strategies.pods, max_size=4),
    source=st.sampled_from(masters.VERSION_SOURCES),
    min_masters=st.integers(-3, 5),
    now=st.floats(0, 2e9),
)
def test_agreement_judges_any_nodes(
    nodes: list[dict[str, Any]],
    pods: list[dict[str, Any]],
    source: masters.VersionSource,
    min_masters: int,
    now: float,
) -> None:
    statuses = masters.master_statuses(nodes, selectors=SELECTORS, source=source, apiserver_pods=pods)
    observation = masters.evaluate(statuses, rules=masters.Rules(min_masters=min_masters))
    assert observation.agreed or observation.reason
    event("agreed" if observation.agreed else observation.reason.split(":")[0].split(" found")[0])
    if any(status.version is None for status in statuses) and len(statuses) >= max(min_masters, 1):
        assert "unparseable version" in observation.reason
    tracker = masters.Tracker(settle_seconds=0)
    tracker.observe(observation, now=now)
    assert (tracker.current is not None) == observation.agreed


@strategies.PROPERTY
@given(node=strategies.nodes)
def test_node_fields_read_from_any_node(node: dict[str, Any]) -> None:
    assert isinstance(masters.node_ready(node), bool)
    assert isinstance(masters.kubelet_version(node), str)
    assert selector.matches_any(SELECTORS, masters.node_labels(node)) in (True, False)


@strategies.PROPERTY
@given(
    text=st.one_of(strategies.version_texts, strategies.garbage),
    image=st.one_of(st.text(), strategies.garbage),
)
def test_versions_parse_or_are_none(text: object, image: object) -> None:
    parsed = version.parse_version(text)
    assert parsed is None or parsed.key >= (0, 0, 0)
    assert isinstance(version.image_tag(image), str)


@strategies.PROPERTY
@given(text=st.text(max_size=30))
def test_selectors_parse_or_say_why_not(text: str) -> None:
    outcome = _parse_selector(text)
    if isinstance(outcome, selector.SelectorError):
        assert repr(text) in str(outcome) or "'!' takes a bare key" in str(outcome)
    else:
        assert outcome.requirements


def _parse_selector(text: str) -> selector.Selector | selector.SelectorError:
    try:
        return selector.parse_selector(text)
    except selector.SelectorError as error:
        return error


@strategies.PROPERTY
@given(lease=strategies.leases, now=st.floats(allow_nan=False))
def test_lease_fields_read_from_any_lease(lease: dict[str, Any], now: float) -> None:
    renewed = leases.renewed_at(lease)
    duration = leases.duration_seconds(lease)
    assert isinstance(leases.holder(lease), str)
    assert isinstance(leases.transitions(lease), int)
    assert leases.expired(renewed, duration, now=now) in (True, False)
    seen = leases.observe(None, lease, now=0.0)
    assert leases.observe(seen, lease, now=1.0) is seen
    assert seen.live(now=now) in (True, False)
    assert renewed is None or times.iso(renewed) is not None


@strategies.PROPERTY
@given(obj=strategies.nodes)
def test_object_refs_of_any_object(obj: dict[str, Any]) -> None:
    assert isinstance(str(refs.ObjectRef.of(obj)), str)


@strategies.PROPERTY
@given(
    core=strategies.api_versions,
    groups=strategies.api_group_lists,
    document=strategies.api_resource_lists,
    apiservices=st.lists(strategies.api_services, max_size=3),
)
def test_discovery_documents_parse_or_are_skipped(
    core: dict[str, Any], groups: dict[str, Any], document: dict[str, Any], apiservices: list[dict[str, Any]]
) -> None:
    served = discovery.served_group_versions(core=core, groups=groups)
    preferred = discovery.preferred_group_versions(core=core, groups=groups)
    assert all(isinstance(group, str) and version for group, version in served)
    assert all(isinstance(group, str) and version for group, version in preferred)
    found = discovery.parse_resource_list(group="example.com", version="v1", document=document)
    assert all(item.name and "/" not in item.name for item in found)
    assert all(isinstance(pair, tuple) for pair in discovery.aggregated_group_versions(apiservices))


def test_lease_numbers_and_times_out_of_range_read_as_absent() -> None:
    """Crashes the properties found, kept as examples."""
    for garbled in (math.inf, math.nan, "1e999", "NaN"):
        lease = {"spec": {"leaseTransitions": garbled, "leaseDurationSeconds": garbled}}
        assert (leases.transitions(lease), leases.duration_seconds(lease)) == (0, 0.0)
    assert times.parse_time("9999-12-31T23:59:59-23:59") is None
    assert times.parse_time("2026-11-22T01:52:12Z") == 1795312332.0
    assert masters.master_statuses([{"metadata": None}, {"status": "x"}], selectors=SELECTORS) == ()


def test_times_outside_the_calendar_are_written_as_none() -> None:
    assert times.iso(-(2.0**63)) is None and times.iso(1e300) is None and times.iso(math.nan) is None
    assert times.iso(0.0) == "1970-01-01T00:00:00.000000Z"
    assert leases.duration_seconds({"spec": {"leaseDurationSeconds": -(2**63)}}) == 0.0
