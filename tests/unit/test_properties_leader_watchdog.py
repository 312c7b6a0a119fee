"""Properties: the watchdog's records and checks never raise on garbage Nodes, Leases and EndpointSlices;
what it cannot read becomes a finding (a Lease without times is stale) or nothing, and /status renders."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controllers.agreement import selector
from controllers.leader_watchdog import logic
from controllers.leader_watchdog.checks import interface
from controllers.structs import status
from tests import strategies

SELECTORS = tuple(selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS)


@strategies.PROPERTY
@given(
    nodes=st.lists(strategies.nodes, max_size=4),
    leader=st.one_of(st.none(), strategies.leases),
    apiservers=st.lists(strategies.leases, max_size=3),
    heartbeats=st.lists(strategies.leases, max_size=3),
    slices=st.lists(strategies.endpoint_slices, max_size=2),
    agreed=st.one_of(st.none(), strategies.version_texts),
    now=st.floats(0, 4e9),
    later=st.floats(0, 1e6),
)
def test_evaluate_any_snapshot(
    nodes: list[dict[str, Any]],
    leader: dict[str, Any] | None,
    apiservers: list[dict[str, Any]],
    heartbeats: list[dict[str, Any]],
    slices: list[dict[str, Any]],
    agreed: str | None,
    now: float,
    later: float,
) -> None:
    heartbeat_records = [interface.lease_record(raw) for raw in heartbeats]
    snapshot = interface.Snapshot(
        leaders={"kube-system/kube-scheduler": None if leader is None else interface.lease_record(leader)},
        apiservers=tuple(interface.lease_record(raw) for raw in apiservers),
        heartbeats={lease.name: lease for lease in heartbeat_records},
        nodes=tuple(interface.node_record(raw, selectors=SELECTORS) for raw in nodes),
        endpoint_ips=interface.service_endpoint_ips(interface.endpoint_slice_ips(raw) for raw in slices),
        agreed_version=agreed,
    )
    first = logic.evaluate(snapshot, now=now, rules=interface.Thresholds(), history=logic.History())
    second = logic.evaluate(snapshot, now=now + later, rules=interface.Thresholds(), history=first.history)
    if leader is None:
        assert any(f.check == "leader-missing" for f in first.findings)
    for evaluation, moment in ((first, now), (second, now + later)):
        json.dumps(logic.status_json(evaluation, snapshot, now=moment), allow_nan=False)
    first_conditions = logic.conditions(first.findings, snapshot.leaders, holders={})
    status.transitions(first_conditions, logic.conditions(second.findings, snapshot.leaders, holders={}))
    logic.to_status(second, snapshot, holders=first.history.holders, now=now + later).to_json()
