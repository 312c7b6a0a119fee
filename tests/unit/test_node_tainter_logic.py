"""node-tainter's decision (pure): which node carries the taint, what changes, the NoSchedule cap."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.agreement import selector, version
from controllers.node_tainter import logic

KEY = logic.DEFAULT_TAINT_KEY
MASTERS = tuple(selector.parse_selector(s) for s in selector.DEFAULT_MASTER_SELECTORS)
POLICY = logic.TaintPolicy(master_selectors=MASTERS)
V136 = version.Version(1, 36, 1, raw="v1.36.1")


def node_obj(
    name: str,
    kubelet: str,
    *,
    master: bool = False,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
    cordoned: bool = False,
    rv: str = "1",
) -> dict[str, Any]:
    all_labels = {**(labels or {}), **({"node-role.kubernetes.io/control-plane": ""} if master else {})}
    return {
        "metadata": {"name": name, "labels": all_labels, "resourceVersion": rv, "uid": f"uid-{name}"},
        "spec": {"taints": taints or [], "unschedulable": cordoned},
        "status": {"nodeInfo": {"kubeletVersion": kubelet}},
    }


def view(
    name: str, kubelet: str, *, policy: logic.TaintPolicy = POLICY, **kwargs: Any
) -> logic.TaintableNode:
    node = logic.node_view(node_obj(name, kubelet, **kwargs), policy=policy)
    assert node is not None
    return node


def ours(value: str, effect: str = "PreferNoSchedule") -> dict[str, str]:
    return {"key": KEY, "value": value, "effect": effect}


OTHER = {"key": "example.com/maintenance", "value": "x", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("kubelet", "expected"),
    [
        ("v1.35.2", logic.Taint(KEY, "v1.35.2", "PreferNoSchedule")),
        ("v1.35.9+k3s1", logic.Taint(KEY, "v1.35.9_k3s1", "PreferNoSchedule")),
        ("v1.36.0-eks-1234abc", logic.Taint(KEY, "v1.36.0-eks-1234abc", "PreferNoSchedule")),
        ("v1.36.1", None),  # at the agreed version
        ("v1.36.1-gke.1326000", None),  # vendor suffixes do not count
        ("v1.36.1+k3s1", None),
        ("v1.37.0", None),  # above
        ("garbage", None),  # unknown versions are never tainted
        ("", None),
    ],
)
def test_desired_taint_compares_major_minor_patch(kubelet: str, expected: logic.Taint | None) -> None:
    assert logic.desired_taint(view("w", kubelet), agreed=V136, policy=POLICY) == expected


def test_masters_and_excluded_nodes_are_never_tainted() -> None:
    policy = logic.TaintPolicy(master_selectors=MASTERS, exclude=selector.parse_selector("pool=gpu"))
    assert logic.desired_taint(view("m", "v1.30.0", master=True), agreed=V136, policy=policy) is None
    legacy = view("k3s", "v1.30.0", labels={"node-role.kubernetes.io/master": "true"})
    assert logic.desired_taint(legacy, agreed=V136, policy=policy) is None
    gpu = view("g", "v1.30.0", policy=policy, labels={"pool": "gpu"})
    assert gpu.excluded
    assert logic.desired_taint(gpu, agreed=V136, policy=policy) is None


def test_effect_and_key_come_from_the_policy() -> None:
    policy = logic.TaintPolicy(taint_key="example.com/old", effect="NoSchedule", master_selectors=MASTERS)
    taint = logic.desired_taint(view("w", "v1.35.0", policy=policy), agreed=V136, policy=policy)
    assert taint == logic.Taint("example.com/old", "v1.35.0", "NoSchedule")
    assert taint.to_json() == {"key": "example.com/old", "value": "v1.35.0", "effect": "NoSchedule"}


@pytest.mark.parametrize(
    ("reported", "value"),
    [
        ("v1.30.2+k3s1", "v1.30.2_k3s1"),
        ("v1.31.4-eks-1234abc", "v1.31.4-eks-1234abc"),
        ("v1.29.6-gke.1326000", "v1.29.6-gke.1326000"),
        ("v1.28.0-rc.1", "v1.28.0-rc.1"),
        ("v1.28.0+" + "a" * 80, "v1.28.0_" + "a" * 55),
        ("v1.28.0-", "v1.28.0"),
    ],
)
def test_taint_value_is_a_valid_label_value(reported: str, value: str) -> None:
    assert logic.taint_value(reported) == value
    assert selector.parse_selector(f"k={value}").requirements[0].value == value


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        (KEY, True),
        ("outdated", True),
        ("example.com/a_b.c-d", True),
        ("", False),
        ("Example.com/x", False),
        ("a/b/c", False),
        ("example.com/", False),
        ("example.com/-x", False),
        ("x" * 64, False),
        ("has space", False),
    ],
)
def test_valid_taint_key(key: str, ok: bool) -> None:
    assert (logic.valid_taint_key(key) is None) == ok


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"metadata": None},
        {"metadata": {"name": ""}},
        {"metadata": {"name": 5}},
    ],
)
def test_node_view_without_a_name_is_skipped(obj: dict[str, Any]) -> None:
    assert logic.node_view(obj, policy=POLICY) is None


def test_node_view_survives_odd_input() -> None:
    odd = {
        "metadata": {"name": "odd", "labels": "not-a-map"},
        "spec": {"taints": ["junk", {"key": KEY}], "unschedulable": None},
        "status": {"nodeInfo": "junk"},
    }
    node = logic.node_view(odd, policy=POLICY)
    assert node is not None
    assert node.version is None and not node.master and not node.unschedulable
    assert node.ours == (logic.Taint(KEY, "", ""),)
    plan = logic.plan([node], agreed=V136, policy=POLICY)
    assert [c.action for c in plan.changes] == ["untaint"]
    assert plan.unknown == ("odd",)


def test_no_agreement_changes_nothing() -> None:
    nodes = [view("w1", "v1.30.0"), view("w2", "v1.36.1", taints=[ours("v1.35.0")])]
    plan = logic.plan(nodes, agreed=None, policy=POLICY)
    assert plan.changes == ()
    assert plan.tainted == 1 and plan.outdated == 0


def test_plan_taints_untaints_and_updates() -> None:
    nodes = [
        view("m1", "v1.36.1", master=True, taints=[ours("v1.35.0")]),  # a master loses it
        view("old", "v1.35.2", taints=[OTHER]),  # taint
        view("done", "v1.35.2", taints=[ours("v1.35.2")]),  # already right
        view("upgraded", "v1.36.1", taints=[ours("v1.35.2"), OTHER]),  # untaint
        view("patched", "v1.35.3", taints=[ours("v1.35.2")]),  # value moves with the kubelet
        view("effect", "v1.35.3", taints=[ours("v1.35.3", "NoSchedule")]),  # effect follows the policy
        view("twice", "v1.35.3", taints=[ours("v1.35.3"), ours("v1.35.3", "NoSchedule")]),
    ]
    plan = logic.plan(nodes, agreed=V136, policy=POLICY)
    by_node = {c.node: c for c in plan.changes}
    assert {n: c.action for n, c in by_node.items()} == {
        "m1": "untaint",
        "old": "taint",
        "upgraded": "untaint",
        "patched": "update",
        "effect": "update",
        "twice": "update",
    }
    assert by_node["old"].taint == logic.Taint(KEY, "v1.35.2", "PreferNoSchedule")
    assert by_node["upgraded"].previous == (logic.Taint(KEY, "v1.35.2", "PreferNoSchedule"),)
    assert plan.outdated == 5 and plan.to_taint == 5 and plan.tainted == 6


def test_edit_taints_touches_only_our_key() -> None:
    others = [OTHER, {"key": "b", "effect": "NoExecute", "timeAdded": "2026-01-01T00:00:00Z"}]
    mixed = [others[0], ours("v1"), others[1], ours("v1", "NoSchedule")]
    taint = logic.Taint(KEY, "v2", "PreferNoSchedule")
    assert logic.edit_taints(mixed, key=KEY, taint=taint) == [*others, taint.to_json()]
    assert logic.edit_taints(mixed, key=KEY, taint=None) == others
    assert logic.edit_taints([], key=KEY, taint=None) == []


def test_change_for_is_none_when_nothing_must_change() -> None:
    taint = logic.Taint(KEY, "v1.35.2", "PreferNoSchedule")
    assert logic.change_for(view("w", "v1.35.2", taints=[ours("v1.35.2")]), taint) is None
    assert logic.change_for(view("w", "v1.36.1"), None) is None
    change = logic.change_for(view("w", "v1.35.2"), taint)
    assert change == logic.Change(node="w", taint=taint, previous=())


def no_schedule(fraction: float) -> logic.TaintPolicy:
    return logic.TaintPolicy(
        effect="NoSchedule", master_selectors=MASTERS, max_unschedulable_fraction=fraction
    )


def test_no_schedule_cap_leaves_the_rest_waiting_oldest_first() -> None:
    policy = no_schedule(0.3)
    nodes = [view(f"w{i}", "v1.35.0", policy=policy) for i in range(8)]
    nodes += [view("ancient", "v1.33.0", policy=policy), view("new", "v1.36.1", policy=policy)]
    nodes += [view(f"m{i}", "v1.36.1", master=True, policy=policy) for i in range(3)]  # not workers
    plan = logic.plan(nodes, agreed=V136, policy=policy)
    assert [c.node for c in plan.changes] == ["ancient", "w0", "w1"]  # floor(0.3 * 10) = 3
    assert plan.waiting == tuple(f"w{i}" for i in range(2, 8))
    assert plan.to_taint == 3 and plan.outdated == 9


def test_no_schedule_cap_counts_nodes_already_held_and_ignores_cordoned_ones() -> None:
    policy = no_schedule(0.5)
    held = [view(f"h{i}", "v1.35.0", policy=policy, taints=[ours("v1.35.0", "NoSchedule")]) for i in range(2)]
    cordoned = [view(f"c{i}", "v1.35.0", policy=policy, cordoned=True) for i in range(4)]
    fresh = [view(f"w{i}", "v1.35.0", policy=policy) for i in range(4)]
    plan = logic.plan([*held, *cordoned, *fresh], agreed=V136, policy=policy)
    # 6 schedulable workers (cordoned ones are unschedulable already): 3 slots, 2 held → 1 more.
    assert sorted(c.node for c in plan.changes) == ["c0", "c1", "c2", "c3", "w0"]
    assert plan.waiting == ("w1", "w2", "w3")


def test_no_schedule_cap_zero_taints_nothing_new_but_still_untaints() -> None:
    policy = no_schedule(0.0)
    nodes = [
        view("w0", "v1.35.0", policy=policy),
        view("up", "v1.36.1", policy=policy, taints=[ours("v1.35.0", "NoSchedule")]),
    ]
    plan = logic.plan(nodes, agreed=V136, policy=policy)
    assert [(c.node, c.action) for c in plan.changes] == [("up", "untaint")]
    assert plan.waiting == ("w0",)


def test_prefer_no_schedule_has_no_cap() -> None:
    policy = logic.TaintPolicy(master_selectors=MASTERS, max_unschedulable_fraction=0.0)
    plan = logic.plan([view(f"w{i}", "v1.35.0") for i in range(5)], agreed=V136, policy=policy)
    assert len(plan.changes) == 5 and plan.waiting == ()


def test_skew_policy_violations() -> None:
    nodes = [
        view("ok-3-behind", "v1.33.9"),
        view("too-old", "v1.32.0"),
        view("much-too-old", "v0.99.0"),
        view("newer-patch", "v1.36.4"),  # the same minor: within the policy
        view("too-new", "v1.37.0"),
        view("m", "v1.36.1", master=True),
    ]
    plan = logic.plan(nodes, agreed=V136, policy=POLICY)
    assert (plan.too_old, plan.too_new) == (2, 1)


def test_explain() -> None:
    assert "below" in logic.explain(view("w", "v1.35.0"), agreed=V136)
    assert "at or above" in logic.explain(view("w", "v1.36.1"), agreed=V136)
    assert "masters" in logic.explain(view("m", "v1.35.0", master=True), agreed=V136)
    assert "cannot be parsed" in logic.explain(view("w", "x"), agreed=V136)
