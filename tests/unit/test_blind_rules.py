"""blind-alert-rules, pure: reading Prometheus's rules answer (untrusted), which selectors to ask about, when to
ask, which rules went blind, and the upgrade's beginning the watchdog remembers for it."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controllers.leader_watchdog import logic
from controllers.leader_watchdog.checks import blind_rules, interface
from controllers.structs import refs

T0 = 1_800_000_000.0
REF = refs.ObjectRef(kind="Namespace", name="kube-upgrade")


def answer(*groups: tuple[str, list[Any]]) -> dict[str, Any]:
    return {"groups": [{"name": name, "file": "rules.yml", "rules": rules} for name, rules in groups]}


def alerting(name: str, query: object) -> dict[str, Any]:
    return {"type": "alerting", "name": name, "query": query, "state": "inactive"}


def test_alerting_rules_are_read_with_their_rebuilt_selectors() -> None:
    data = answer(
        (
            "apiserver",
            [
                alerting("Errors", 'sum(rate(apiserver_request_total{code=~"5.."}[5m])) > 1  # x'),
                {"type": "recording", "name": "job:up:sum", "query": "sum by (job) (up)"},
                alerting("Gone", 'absent(up{job="apiserver"})'),
            ],
        ),
        ("broken", [alerting("NotText", 42), "not a rule", alerting("Regex", '{__name__=~"(a+)+"}')]),
    )
    rules, problems = blind_rules.alert_rules(data)
    assert rules == (
        interface.AlertRule("apiserver", "Errors", ('apiserver_request_total{code=~"5.."}',)),
        interface.AlertRule("apiserver", "Gone", ('up{job="apiserver"}',), absent=True),
        interface.AlertRule("broken", "NotText", ()),
        interface.AlertRule("broken", "Regex", ('{__name__=~"(a+)+"}',)),
    )
    # the regex is Prometheus's to run (RE2): the selector is whole and asked about
    assert problems == ("alert rule broken/NotText: the expression is not a string",)


def test_hostile_answers_are_bounded_and_never_raise() -> None:
    assert blind_rules.alert_rules(None) == ((), ())
    assert blind_rules.alert_rules({"groups": "x"}) == ((), ())
    long = "n" * 10_000
    many = answer((long, [alerting(long, "up")] * (blind_rules.MAX_RULES + 5)))
    rules, problems = blind_rules.alert_rules(many)
    assert len(rules) == blind_rules.MAX_RULES
    assert len(rules[0].group) == len(rules[0].name) == blind_rules.MAX_NAME
    assert problems == (f"more than {blind_rules.MAX_RULES} alerting rules: the rest not read",)


def test_selectors_asked_leave_out_absent_rules_and_are_bounded() -> None:
    rules = [
        interface.AlertRule("g", "a", ("x", "y")),
        interface.AlertRule("g", "b", ("y", "z")),
        interface.AlertRule("g", "c", ("w",), absent=True),
    ]
    assert blind_rules.selectors(rules) == (("x", "y", "z"), ())
    many = [interface.AlertRule("g", "r", tuple(f"m{i:05}" for i in range(blind_rules.MAX_SELECTORS + 1)))]
    asked, left_out = blind_rules.selectors(many)
    assert len(asked) == blind_rules.MAX_SELECTORS and "only the first" in left_out[0]
    assert blind_rules.silent({"a": 0, "b": 3, "c": 0}) == ("a", "c")


def test_asked_once_the_control_plane_is_done_then_every_interval() -> None:
    def due(began: float | None, phase: str | None, last: tuple[float, float] | None, now: float) -> bool:
        return blind_rules.due(began=began, phase=phase, last=last, interval_seconds=300, now=now)

    assert not due(None, None, None, T0)  # no upgrade seen
    assert not due(T0, "control-plane", None, T0 + 60)  # the control plane is still moving
    assert due(T0, "workers", None, T0 + 60)
    assert due(T0, None, None, T0 + 60)
    assert not due(T0, None, (T0, T0 + 60), T0 + 120)
    assert due(T0, None, (T0, T0 + 60), T0 + 360)
    assert due(T0 + 900, None, (T0, T0 + 600), T0 + 960)  # another upgrade: at once


def probe(
    rules: list[interface.AlertRule], now: dict[str, int], before: dict[str, int]
) -> interface.RulesProbe:
    return interface.RulesProbe(
        began=T0, window_seconds=3600, at=T0 + 600, rules=tuple(rules), now=now, before=before, problems=(),
        ref=REF,
    )  # fmt: skip


def situation(rules_probe: interface.RulesProbe | None) -> interface.Situation:
    shot = interface.Snapshot(
        leaders={}, apiservers=(), heartbeats={}, nodes=(), endpoint_ips=None, rules_probe=rules_probe
    )
    health = interface.NodeHealth(workers=0, not_ready=(), condition_not_ready=0, heartbeat_stale=0)
    return interface.Situation(snapshot=shot, now=T0 + 601, rules=interface.Thresholds(), health=health)


def test_a_rule_is_blind_when_a_selector_had_series_before_and_has_none_now() -> None:
    rules = [
        interface.AlertRule("k8s", "Gone", ("old_total", "up")),
        interface.AlertRule("k8s", "Kept", ("up",)),
        interface.AlertRule("k8s", "NeverHad", ("never_total",)),
        interface.AlertRule("k8s", "Unanswered", ("flaky_total",)),
        interface.AlertRule("k8s", "Absent", ("old_total",), absent=True),
    ]
    now = {"old_total": 0, "up": 4, "never_total": 0}  # flaky_total: Prometheus did not answer
    before = {"old_total": 3, "never_total": 0}
    found = blind_rules.find(situation(probe(rules, now, before)))
    assert [(f.check, f.object, f.severity, f.ref) for f in found] == [
        ("blind-alert-rule", "alert rule k8s/Gone", "warning", REF)
    ]
    assert found[0].evidence.startswith("old_total: series within 3600s before the upgrade began")
    assert found[0].since == T0 + 600
    assert blind_rules.find(situation(None)) == []


_SELECTORS = st.sampled_from(["a", "b", "c", 'd{x="1"}', "e"])
_COUNTS = st.dictionaries(_SELECTORS, st.integers(min_value=0, max_value=3))


@given(
    st.lists(
        st.builds(interface.AlertRule, st.just("g"), st.text(max_size=3), st.tuples(_SELECTORS, _SELECTORS),
                  absent=st.booleans()),
        max_size=6,
    ),
    _COUNTS,
    _COUNTS,
)  # fmt: skip
def test_blind_is_exactly_none_now_and_some_before(
    rules: list[interface.AlertRule], now: dict[str, int], before: dict[str, int]
) -> None:
    found = dict(blind_rules.blind(rules, now=now, before=before))
    for rule in rules:
        gone = found.get(rule, ())
        expected = (
            ()
            if rule.absent
            else tuple(s for s in rule.selectors if now.get(s) == 0 and before.get(s, 0) > 0)
        )
        assert gone == expected
        # a selector with series now, or never asked about now, never makes a rule blind
        assert all(now.get(s) == 0 for s in gone)


def test_the_watchdog_remembers_when_the_last_upgrade_began() -> None:
    def nodes(*versions: str) -> tuple[interface.NodeRecord, ...]:
        return tuple(
            interface.NodeRecord(name=f"m{i}", master=True, ready=True, version=v)
            for i, v in enumerate(versions)
        )

    history = logic.History()

    def see(versions: tuple[str, ...], agreed: str | None, now: float) -> float | None:
        nonlocal history
        shot = interface.Snapshot(
            leaders={}, apiservers=(), heartbeats={}, nodes=nodes(*versions), endpoint_ips=None,
            agreed_version=agreed,
        )  # fmt: skip
        history = logic.evaluate(shot, now=now, rules=interface.Thresholds(), history=history).history
        return history.began

    assert see(("v1.36.1", "v1.36.1"), "v1.36.1", T0) is None
    assert see(("v1.37.2", "v1.36.1"), None, T0 + 10) == T0 + 10  # the control-plane phase begins
    assert see(("v1.37.2", "v1.37.2"), "v1.37.2", T0 + 20) == T0 + 10  # over: still when it began
    assert see(("v1.37.2", "v1.37.2"), "v1.37.2", T0 + 30) == T0 + 10
    assert see(("v1.38.0", "v1.37.2"), None, T0 + 40) == T0 + 40  # the next upgrade
