"""One status shape (structs/status.py): rendered the same way for /status and the state ConfigMap, and one
rule for what is news (a condition that appeared, changed status or cleared)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from controllers.structs import refs, status

LEASE = refs.ObjectRef(kind="Lease", name="kube-scheduler", namespace="kube-system")


def test_status_renders_the_common_keys_then_the_controllers_own() -> None:
    blocked = status.Condition(
        "kubelet-skew", "blocked", "CheckBlocked", "kubelet-skew is blocked", warning=True
    )
    shown = status.Status(
        phase="NotUpgradeable",
        version="1.37",
        progress="1 blocker(s)",
        conditions=(blocked,),
        data={"upgradeable": "False"},
        detail={"upgradeable": False},
    )
    assert shown.to_json() == {
        "phase": "NotUpgradeable",
        "version": "1.37",
        "reason": "",
        "lastError": "",
        "progress": "1 blocker(s)",
        "conditions": [
            {
                "type": "kubelet-skew",
                "status": "blocked",
                "reason": "CheckBlocked",
                "message": "kubelet-skew is blocked",
            }
        ],
        "upgradeable": False,
    }
    data = shown.state_data()
    assert {k: data[k] for k in ("version", "phase", "progress", "lastError", "upgradeable")} == {
        "version": "1.37", "phase": "NotUpgradeable", "progress": "1 blocker(s)", "lastError": "",
        "upgradeable": "False",
    }  # fmt: skip
    assert json.loads(data["conditions"])[0]["status"] == "blocked"
    assert "conditions" not in status.Status(phase="Done").state_data()  # none: no key


def test_a_controllers_own_keys_never_hide_the_common_ones() -> None:
    with pytest.raises(AssertionError, match="phase"):
        status.Status(detail={"phase": "mine"}).to_json()
    with pytest.raises(AssertionError, match="lastError"):
        status.Status(data={"lastError": "mine"}).state_data()


def finding(check: str, subject: str, value: str = "True") -> status.Condition:
    return status.Condition(check, value, check.title().replace("-", ""), f"{subject}: evidence", subject,
                            LEASE, warning=True)  # fmt: skip


def test_news_is_what_appeared_cleared_or_changed_status() -> None:
    stale, missing = finding("stale-leader", "Lease a"), finding("leader-missing", "Lease b")
    leader = status.Condition("leader", "m1_x", "LeaderChanged", "from '' to 'm1_x'", "a", LEASE, quiet=True)
    assert status.transitions([], [stale, leader]) == [
        status.Transition(LEASE, "StaleLeader", "Lease a: evidence", warning=True)
    ]  # the leader's first sight is quiet
    moved = status.Condition(
        "leader", "m2_y", "LeaderChanged", "from 'm1_x' to 'm2_y'", "a", LEASE, quiet=True
    )
    changed_evidence = dataclasses.replace(stale, message="Lease a: other evidence")
    assert status.transitions([stale, leader], [missing, changed_evidence, moved]) == [
        status.Transition(LEASE, "LeaderMissing", "Lease b: evidence", warning=True),
        status.Transition(LEASE, "LeaderChanged", "from 'm1_x' to 'm2_y'", warning=False),
    ]  # new evidence is no news; a new holder is
    assert status.transitions([stale, moved], []) == [
        status.Transition(LEASE, "StaleLeaderCleared", "Lease a: cleared", warning=False)
    ]  # a quiet condition clears quietly
    passing = status.Condition("drain-blockers", "pass", "CheckPass", "drain-blockers is pass", quiet=True)
    blocked = status.Condition("drain-blockers", "blocked", "CheckBlocked", "…", warning=True)
    assert status.transitions([], [passing]) == []
    assert [t.reason for t in status.transitions([passing], [blocked])] == ["CheckBlocked"]
    assert [t.reason for t in status.transitions([blocked], [passing])] == ["CheckPass"]
