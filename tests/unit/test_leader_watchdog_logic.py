"""The watchdog's pure checks: leaders, live apiservers, the kubernetes endpoints, the outage pattern."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from controllers.agreement import selector
from controllers.leader_watchdog import checks, logic
from controllers.leader_watchdog.checks import heartbeats, interface, leaders
from controllers.structs import refs, status, times

NOW = 1_800_000_000.0
RULES = interface.Thresholds(
    heartbeat_stale_seconds=40, outage_window_seconds=300, notready_jump_min=3, notready_jump_fraction=0.1
)
SELECTORS = [selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS]


def master(
    name: str, *, ready: bool = True, version: str = "v1.31.4", address: str = "10.0.0.1"
) -> interface.NodeRecord:
    return interface.NodeRecord(
        name=name,
        master=True,
        ready=ready,
        version=version,
        hostnames=frozenset({name}),
        addresses=frozenset({address}),
    )


def worker(name: str, *, ready: bool = True) -> interface.NodeRecord:
    return interface.NodeRecord(name=name, master=False, ready=ready, hostnames=frozenset({name}))


def lease(
    name: str,
    *,
    holder: str = "m1_1234",
    age: float = 1.0,
    duration: float = 15.0,
    namespace: str = "kube-system",
    labels: dict[str, str] | None = None,
    at: float = NOW,
) -> interface.LeaseRecord:
    return interface.LeaseRecord(
        namespace=namespace,
        name=name,
        holder=holder,
        renew_time=at - age,
        duration_seconds=duration,
        transitions=0,
        labels=labels or {},
    )


def shot(
    *,
    nodes: Iterable[interface.NodeRecord] = (master("m1"),),
    leaders: dict[str, interface.LeaseRecord | None] | None = None,
    apiservers: Iterable[interface.LeaseRecord] = (),
    heartbeats: dict[str, interface.LeaseRecord] | None = None,
    endpoint_ips: Iterable[str] | None = None,
    agreed: str | None = None,
) -> interface.Snapshot:
    return interface.Snapshot(
        leaders=leaders if leaders is not None else {"kube-system/kube-scheduler": lease("kube-scheduler")},
        apiservers=tuple(apiservers),
        heartbeats=heartbeats or {},
        nodes=tuple(nodes),
        endpoint_ips=None if endpoint_ips is None else tuple(endpoint_ips),
        agreed_version=agreed,
    )


def found_checks(
    snapshot: interface.Snapshot, *, now: float = NOW, history: logic.History | None = None
) -> list[str]:
    evaluation = logic.evaluate(snapshot, now=now, rules=RULES, history=history or logic.History())
    return [finding.check for finding in evaluation.findings]


def test_a_healthy_cluster_has_no_findings() -> None:
    assert found_checks(shot(endpoint_ips=["10.0.0.1"], agreed="v1.31.4")) == []


# leaseDurationSeconds 15 and RULES' failover grace of 15 s: stale once the claim ran out more than 15 s ago.
@pytest.mark.parametrize(
    ("age", "stale"), [(14.9, False), (15.1, False), (29.9, False), (30.1, True), (600, True)]
)
def test_stale_leader_when_nobody_led_for_longer_than_a_failover(age: float, stale: bool) -> None:
    found = found_checks(shot(leaders={"kube-system/kube-scheduler": lease("kube-scheduler", age=age)}))
    assert found == (["stale-leader"] if stale else [])


def test_stale_leader_dates_from_the_expiry_and_is_critical() -> None:
    evaluation = logic.evaluate(
        shot(leaders={"kube-system/kube-scheduler": lease("kube-scheduler", age=40)}),
        now=NOW,
        rules=RULES,
        history=logic.History(),
    )
    (finding,) = evaluation.findings
    assert finding.severity == "critical" and evaluation.critical
    assert finding.since == NOW - 25
    assert finding.object == "Lease kube-system/kube-scheduler"
    assert "m1_1234" in finding.evidence


@pytest.mark.parametrize(("released_ago", "stale"), [(0.0, False), (14.0, False), (16.0, True)])
def test_a_released_lease_is_stale_once_nobody_took_it_for_longer_than_a_failover(
    released_ago: float, stale: bool
) -> None:
    released = lease("kube-scheduler", holder="", age=released_ago, duration=1)  # as client-go releases it
    assert found_checks(shot(leaders={"kube-system/kube-scheduler": released})) == (
        ["stale-leader"] if stale else []
    )


def test_during_a_failover_the_run_out_holder_is_not_judged() -> None:
    """A holder whose claim ran out seconds ago is on its way out (a restarting control plane): neither a
    stale leader yet nor a leader on an unknown master."""
    gone = lease("kube-scheduler", holder="old-master_1", age=20)
    assert found_checks(shot(leaders={"kube-system/kube-scheduler": gone})) == []


def test_a_lease_with_no_time_at_all_is_stale_at_once() -> None:
    timeless = dataclasses.replace(lease("kube-scheduler"), renew_time=None)
    assert found_checks(shot(leaders={"kube-system/kube-scheduler": timeless})) == ["stale-leader"]


def test_missing_leader_lease_is_a_warning() -> None:
    evaluation = logic.evaluate(
        shot(leaders={"kube-system/kube-controller-manager": None}),
        now=NOW,
        rules=RULES,
        history=logic.History(),
    )
    assert [(f.check, f.severity) for f in evaluation.findings] == [("leader-missing", "warning")]
    assert not evaluation.critical


def test_holder_on_unknown_master() -> None:
    leaders: dict[str, interface.LeaseRecord | None] = {
        "kube-system/kube-scheduler": lease("s", holder="old-master_9f")
    }
    assert found_checks(shot(leaders=leaders)) == ["leader-on-unknown-master"]


def test_holder_matches_a_master_by_hostname_label_case_insensitively() -> None:
    node = dataclasses.replace(
        master("ip-10-0-0-1.ec2.internal"), hostnames=frozenset({"ip-10-0-0-1", "ip-10-0-0-1.ec2.internal"})
    )
    leaders: dict[str, interface.LeaseRecord | None] = {
        "kube-system/kube-scheduler": lease("s", holder="IP-10-0-0-1_abc")
    }
    assert found_checks(shot(nodes=[node], leaders=leaders)) == []


def test_holder_on_a_worker_is_not_on_a_master() -> None:
    leaders: dict[str, interface.LeaseRecord | None] = {
        "kube-system/kube-scheduler": lease("s", holder="w1_abc")
    }
    assert found_checks(shot(nodes=[master("m1"), worker("w1")], leaders=leaders)) == [
        "leader-on-unknown-master"
    ]


def test_holder_on_a_notready_master() -> None:
    assert found_checks(shot(nodes=[master("m1", ready=False)])) == ["leader-on-notready-master"]


def test_holder_master_must_run_the_agreed_version_once_agreed() -> None:
    nodes = [master("m1", version="v1.30.9"), master("m2", version="v1.31.4")]
    assert found_checks(shot(nodes=nodes, agreed="v1.31.4")) == ["leader-version-skew"]
    assert found_checks(shot(nodes=nodes, agreed=None)) == []  # no agreement: nothing to compare with
    assert found_checks(shot(nodes=nodes, agreed="v1.30.9-eks-1")) == []  # vendor suffixes do not count


def test_apiserver_identity_lease_on_a_master_is_recognised() -> None:
    identity = lease(
        "apiserver-a", holder="apiserver-a_x", duration=3600, labels={interface.HOSTNAME_LABEL: "m1"}
    )
    snapshot = shot(apiservers=[identity])
    assert found_checks(snapshot) == []
    evaluation = logic.evaluate(snapshot, now=NOW, rules=RULES, history=logic.History())
    status = logic.status_json(evaluation, snapshot, now=NOW)
    assert status["apiservers"][0]["master"] == "m1" and status["apiservers"][0]["live"]


def test_live_apiserver_on_a_removed_master_is_stale() -> None:
    old = lease("apiserver-b", holder="apiserver-b_x", duration=3600, labels={interface.HOSTNAME_LABEL: "m0"})
    expired = lease("apiserver-c", age=4000, duration=3600, labels={interface.HOSTNAME_LABEL: "gone"})
    evaluation = logic.evaluate(
        shot(apiservers=[old, expired]), now=NOW, rules=RULES, history=logic.History()
    )
    assert [(f.check, f.object) for f in evaluation.findings] == [
        ("stale-apiserver", "Lease kube-system/apiserver-b")
    ]
    assert "'m0'" in evaluation.findings[0].evidence
    assert evaluation.findings[0].evidence.startswith("a live kube-apiserver on host 'm0' (renewed 1.0s ago)")


def test_an_apiserver_lease_not_renewed_for_three_renewals_is_silent_not_live() -> None:
    """A master lost without shutting down (killed, powered off) leaves a Lease unexpired for up to an
    hour: the finding stands, but does not claim the apiserver runs."""
    lost = lease("apiserver-b", age=95, duration=3600, labels={interface.HOSTNAME_LABEL: "m0"})
    (finding,) = logic.evaluate(
        shot(apiservers=[lost]), now=NOW, rules=RULES, history=logic.History()
    ).findings
    assert finding.check == "stale-apiserver"
    assert finding.evidence == (
        "a kube-apiserver on host 'm0', silent since its identity Lease was renewed 95.0s ago (lost without "
        "shutting down, or cut off from etcd; its Lease expires in 3505s), is not a current master "
        "(masters: m1)"
    )


def test_endpoint_ip_that_no_master_has_is_stale() -> None:
    evaluation = logic.evaluate(
        shot(nodes=[master("m1", address="10.0.0.1")], endpoint_ips=["10.0.0.1", "10.0.0.9"]),
        now=NOW,
        rules=RULES,
        history=logic.History(),
    )
    assert [(f.check, f.object) for f in evaluation.findings] == [
        ("stale-endpoint", "Service default/kubernetes endpoint 10.0.0.9")
    ]
    assert evaluation.findings[0].ref == refs.ObjectRef(
        kind="Service", name="kubernetes", namespace="default"
    )


def test_the_kubernetes_service_endpoints_are_every_address_of_its_slices() -> None:
    dual_stack = [
        {
            "endpoints": [
                {"addresses": ["10.0.0.1"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.2"]},
            ]
        },
        {
            "endpoints": [
                {"addresses": ["fd00::1"], "conditions": {"ready": False}},
                {"addresses": ["10.0.0.1"]},
            ]
        },
    ]
    slices = [interface.endpoint_slice_ips(raw) for raw in dual_stack]
    assert interface.service_endpoint_ips(slices) == ("10.0.0.1", "10.0.0.2", "fd00::1")
    assert interface.service_endpoint_ips([interface.endpoint_slice_ips({"endpoints": None})]) == ()
    assert interface.service_endpoint_ips([]) is None  # no slice: not judged


def test_missing_endpoints_are_not_judged() -> None:
    assert found_checks(shot(endpoint_ips=None)) == []


def test_checks_can_be_turned_off() -> None:
    snapshot = dataclasses.replace(shot(endpoint_ips=["10.9.9.9"]), checks=frozenset({"leaders"}))
    assert found_checks(snapshot) == []


# --- node heartbeats and the outage pattern -------------------------------------------------------------

WORKERS = [worker(f"w{i:03d}") for i in range(100)]


def fleet(*, masters: Iterable[str], stale: int, at: float) -> tuple[float, interface.Snapshot]:
    """100 workers at time ``at``; the first ``stale`` stopped renewing their heartbeat a minute ago."""
    beats = {
        node.name: lease(
            node.name, namespace="kube-node-lease", age=60 if i < stale else 1, duration=40, at=at
        )
        for i, node in enumerate(WORKERS)
    }
    return at, shot(nodes=[*map(master, masters), *WORKERS], heartbeats=beats, leaders={})


def run(steps: Iterable[tuple[float, interface.Snapshot]]) -> list[logic.Evaluation]:
    history = logic.History()
    out = []
    for now, snapshot in steps:
        evaluation = logic.evaluate(snapshot, now=now, rules=RULES, history=history)
        history = evaluation.history
        out.append(evaluation)
    return out


def found(evaluation: logic.Evaluation) -> set[str]:
    return {finding.check for finding in evaluation.findings}


def test_stale_heartbeats_and_notready_conditions_count_as_notready() -> None:
    nodes = [worker("a", ready=False), worker("b", ready=False), worker("c"), worker("d"), worker("e")]
    beats = {name: lease(name, age=age) for name, age in [("a", 60), ("c", 60), ("d", 5)]}  # e: no Lease
    health = heartbeats.node_health([master("m1"), *nodes], beats, rules=RULES, now=NOW)
    assert (health.workers, health.not_ready, health.condition_not_ready, health.heartbeat_stale) == (
        5,
        ("a", "b", "c"),
        2,
        2,
    )


def test_jump_after_master_replacement_is_the_outage_pattern() -> None:
    evaluations = run(
        [
            fleet(masters=["m1"], stale=0, at=NOW),
            fleet(masters=["m2"], stale=0, at=NOW + 1),
            fleet(masters=["m2"], stale=40, at=NOW + 45),
            fleet(masters=["m2"], stale=40, at=NOW + 400),
        ]
    )
    assert evaluations[1].master_set_changed and found(evaluations[1]) == set()
    assert found(evaluations[2]) == {"nodes-not-ready", "outage-pattern"}
    pattern = next(f for f in evaluations[2].findings if f.check == "outage-pattern")
    assert pattern.severity == "critical" and pattern.since == NOW + 45
    assert "from 0 to 40" in pattern.evidence
    # The pattern holds while the nodes stay NotReady, even after the window, with its first "since".
    later = next(f for f in evaluations[3].findings if f.check == "outage-pattern")
    assert later.since == NOW + 45


def test_same_jump_without_master_change_is_plain_notready() -> None:
    evaluations = run([fleet(masters=["m1"], stale=0, at=NOW), fleet(masters=["m1"], stale=40, at=NOW + 45)])
    assert [(f.check, f.severity) for f in evaluations[1].findings] == [("nodes-not-ready", "warning")]
    assert "40 of 100 worker(s) NotReady" in evaluations[1].findings[0].evidence
    assert not evaluations[1].critical


def test_jump_after_the_window_is_plain_notready() -> None:
    evaluations = run(
        [
            fleet(masters=["m1"], stale=0, at=NOW),
            fleet(masters=["m2"], stale=0, at=NOW + 1),
            fleet(masters=["m2"], stale=40, at=NOW + 302),
        ]
    )
    assert found(evaluations[2]) == {"nodes-not-ready"}


def test_small_rise_after_master_change_is_not_a_jump() -> None:
    evaluations = run(
        [
            fleet(masters=["m1"], stale=0, at=NOW),
            fleet(masters=["m2"], stale=0, at=NOW + 1),
            fleet(masters=["m2"], stale=9, at=NOW + 50),  # threshold: max(3, 10% of 100) = 10
            fleet(masters=["m2"], stale=10, at=NOW + 51),
        ]
    )
    assert found(evaluations[2]) == {"nodes-not-ready"}
    assert found(evaluations[3]) == {"nodes-not-ready", "outage-pattern"}


def test_already_notready_nodes_are_the_baseline() -> None:
    evaluations = run(
        [
            fleet(masters=["m1"], stale=30, at=NOW),
            fleet(masters=["m2"], stale=30, at=NOW + 1),
            fleet(masters=["m2"], stale=35, at=NOW + 45),
            fleet(masters=["m2"], stale=40, at=NOW + 46),
        ]
    )
    assert found(evaluations[2]) == {"nodes-not-ready"}
    assert found(evaluations[3]) == {"nodes-not-ready", "outage-pattern"}


def test_baseline_is_kept_across_a_two_step_replacement() -> None:
    """Adding the new master and removing the old one are two changes; the baseline is from before both."""
    evaluations = run(
        [
            fleet(masters=["m1"], stale=0, at=NOW),
            fleet(masters=["m1", "m2"], stale=0, at=NOW + 1),
            fleet(masters=["m1", "m2"], stale=40, at=NOW + 45),
            fleet(masters=["m2"], stale=40, at=NOW + 46),
            fleet(masters=["m2"], stale=40, at=NOW + 47),
        ]
    )
    assert "outage-pattern" in found(evaluations[2])
    assert evaluations[3].master_set_changed
    assert evaluations[4].history.notready_before_change == 0
    assert "outage-pattern" in found(evaluations[4])


def test_pattern_clears_when_nodes_recover() -> None:
    evaluations = run(
        [
            fleet(masters=["m1"], stale=0, at=NOW),
            fleet(masters=["m2"], stale=0, at=NOW + 1),
            fleet(masters=["m2"], stale=40, at=NOW + 45),
            fleet(masters=["m2"], stale=0, at=NOW + 60),
        ]
    )
    assert evaluations[3].findings == ()
    assert evaluations[3].history.pattern_since is None


def test_first_sight_of_masters_is_no_change() -> None:
    evaluations = run([fleet(masters=["m1"], stale=0, at=NOW)])
    assert not evaluations[0].master_set_changed
    assert evaluations[0].history.masters == frozenset({"m1"})


# --- transitions, since, parsing ------------------------------------------------------------------------


def test_leader_transitions_are_holder_changes() -> None:
    first = shot(leaders={"kube-system/kube-scheduler": lease("kube-scheduler", holder="m1_a")})
    second = shot(leaders={"kube-system/kube-scheduler": lease("kube-scheduler", holder="m1_b")})
    evaluations = run([(NOW, first), (NOW + 1, first), (NOW + 2, second)])
    assert [e.transitions for e in evaluations] == [
        (),
        (),
        (logic.HolderChange(lease="kube-system/kube-scheduler", previous="m1_a", holder="m1_b"),),
    ]


def test_since_is_kept_from_the_first_sighting() -> None:
    leaders: dict[str, interface.LeaseRecord | None] = {
        "kube-system/kube-scheduler": lease("s", holder="gone_1", duration=3600)
    }
    evaluations = run([(NOW, shot(leaders=leaders)), (NOW + 30, shot(leaders=leaders))])
    assert evaluations[1].findings[0].since == NOW
    assert evaluations[1].findings[0].to_json()["since"] == times.iso(NOW)


def test_lease_record_parses_a_raw_lease_and_tolerates_junk() -> None:
    raw = {
        "metadata": {"name": "kube-scheduler", "namespace": "kube-system", "labels": {"a": "b"}},
        "spec": {
            "holderIdentity": "m1_0f3e",
            "leaseDurationSeconds": 15,
            "renewTime": "2026-11-22T01:52:12.123456Z",
            "leaseTransitions": 3,
        },
    }
    record = interface.lease_record(raw)
    assert (record.key, record.holder_hostname, record.duration_seconds, record.transitions) == (
        "kube-system/kube-scheduler",
        "m1",
        15.0,
        3,
    )
    assert times.iso(record.renew_time) == "2026-11-22T01:52:12.123456Z"
    junk = interface.lease_record(
        {"metadata": {"name": "x"}, "spec": {"renewTime": "yesterday", "leaseDurationSeconds": "?"}}
    )
    assert junk.renew_time is None and junk.duration_seconds == 0 and junk.expired(now=NOW)


def test_node_record_collects_hostnames_and_addresses() -> None:
    raw = {
        "metadata": {
            "name": "ip-10-0-0-1.ec2.internal",
            "labels": {"node-role.kubernetes.io/control-plane": "", interface.HOSTNAME_LABEL: "IP-10-0-0-1"},
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.1"},
                {"type": "Hostname", "address": "ip-10-0-0-1"},
                {"type": "InternalDNS", "address": "ip-10-0-0-1.ec2.internal"},
            ],
            "conditions": [{"type": "Ready", "status": "True"}],
            "nodeInfo": {"kubeletVersion": "v1.31.4"},
        },
    }
    record = interface.node_record(raw, selectors=SELECTORS)
    assert record.master and record.ready and record.version == "v1.31.4"
    assert record.hostnames == {"ip-10-0-0-1.ec2.internal", "ip-10-0-0-1"}
    assert record.addresses == {"10.0.0.1"}
    assert interface.node_record(raw, selectors=SELECTORS, reported_version="v1.32.0").version == "v1.32.0"
    assert not interface.node_record({"metadata": {"name": "bare"}}, selectors=SELECTORS).ready


def test_status_json_lists_findings_with_object_evidence_and_since() -> None:
    snapshot = shot(
        leaders={"kube-system/kube-scheduler": lease("kube-scheduler", age=100)}, endpoint_ips=["10.0.0.1"]
    )
    evaluation = logic.evaluate(snapshot, now=NOW, rules=RULES, history=logic.History())
    status = logic.status_json(evaluation, snapshot, now=NOW)
    assert status["critical"] is True
    assert status["findings"] == [
        {
            "check": "stale-leader",
            "severity": "critical",
            "object": "Lease kube-system/kube-scheduler",
            "evidence": "holder 'm1_1234' last renewed 100.0s ago; leaseDurationSeconds 15",
            "since": times.iso(NOW - 85),
        }
    ]
    assert status["leaders"][0]["holder"] == "m1_1234"
    assert status["endpoints"] == ["10.0.0.1"]


def test_every_check_has_a_severity_and_a_reason() -> None:
    kinds = [kind for check in checks.TABLE.checks for kind in check.kinds]
    assert len({kind.name for kind in kinds}) == len(kinds) == len(checks.KINDS)
    assert all(kind.severity in ("critical", "warning") and kind.reason for kind in kinds)


def test_notices_say_what_appeared_cleared_and_changed_hands() -> None:
    node_ref = refs.ObjectRef(kind="Namespace", name="kube-node-lease")
    raised = interface.Finding(heartbeats.NOT_READY, "Nodes", "3 of 10 NotReady", NOW, node_ref)
    lease = refs.ObjectRef(
        kind="Lease", name="kube-scheduler", namespace="kube-system", api_version="coordination.k8s.io/v1"
    )
    cleared = interface.Finding(leaders.STALE, str(lease), "old", NOW, lease)
    key = "kube-system/kube-scheduler"
    held = {key: interface.LeaseRecord("kube-system", "kube-scheduler", "m1_a", NOW, 15, 0)}
    moved = {key: dataclasses.replace(held[key], holder="m2_b")}
    before = logic.conditions([cleared], held, holders={})
    found = status.transitions(before, logic.conditions([raised], moved, holders={key: "m1_a"}))
    assert found == [
        status.Transition(node_ref, "NodesNotReady", "Nodes: 3 of 10 NotReady", warning=True),
        status.Transition(lease, "StaleLeaderCleared", "Lease kube-system/kube-scheduler: cleared", False),
        status.Transition(lease, "LeaderChanged", "leader changed from 'm1_a' to 'm2_b'", False),
    ]
    assert status.transitions([], before) == [  # a leader first seen is no news; a finding is
        status.Transition(lease, "StaleLeader", "Lease kube-system/kube-scheduler: old", warning=True)
    ]
