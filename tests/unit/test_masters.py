"""The agreement rule and its settle window, on a fake clock (a 30 s window takes no time)."""

from typing import Any

from controllers.agreement import masters, selector
from controllers.agreement.version import parse_version

SELECTORS = [selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS]
RULES = masters.Rules(min_masters=3)


def node(name: str, kubelet: str, *, master: bool = True, ready: bool = True) -> dict[str, Any]:
    labels = {"node-role.kubernetes.io/control-plane": ""} if master else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "status": {
            "nodeInfo": {"kubeletVersion": kubelet},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def observe(*nodes: dict[str, Any], rules: masters.Rules = RULES) -> masters.Observation:
    return masters.evaluate(masters.master_statuses(nodes, selectors=SELECTORS), rules=rules)


def test_all_masters_on_one_version_agree_and_workers_do_not_count() -> None:
    obs = observe(
        node("m1", "v1.35.2"),
        node("m2", "v1.35.2-eks-1"),
        node("m3", "v1.35.2"),
        node("w1", "v1.30.0", master=False),
    )
    assert obs.agreed
    assert obs.version is not None and obs.version.key == (1, 35, 2)
    assert [m.name for m in obs.masters] == ["m1", "m2", "m3"]


def test_disagreement_reasons() -> None:
    assert "disagree" in observe(node("m1", "v1.35.2"), node("m2", "v1.36.0"), node("m3", "v1.35.2")).reason
    assert (
        "not Ready: m2"
        in observe(node("m1", "v1.35.2"), node("m2", "v1.35.2", ready=False), node("m3", "v1.35.2")).reason
    )
    assert "unparseable" in observe(node("m1", "v1.35.2"), node("m2", "banana"), node("m3", "v1.35.2")).reason
    assert "2 master(s) found" in observe(node("m1", "v1.35.2"), node("m2", "v1.35.2")).reason


def test_not_ready_is_tolerated_when_readiness_is_not_required() -> None:
    rules = masters.Rules(min_masters=1, require_ready=False)
    assert observe(node("m1", "v1.35.2", ready=False), rules=rules).agreed


def test_legacy_master_label_counts() -> None:
    legacy = node("k3s", "v1.30.2+k3s1", master=False)
    legacy["metadata"]["labels"] = {"node-role.kubernetes.io/master": "true"}
    assert observe(legacy, rules=masters.Rules(min_masters=1)).agreed


def test_apiserver_source_reads_the_mirror_pod_image_tag_per_node() -> None:
    nodes = [node("m1", "v1.35.0"), node("m2", "v1.35.0")]
    pods = [
        {
            "spec": {
                "nodeName": "m1",
                "containers": [{"name": "kube-apiserver", "image": "r/kube-apiserver:v1.36.1"}],
            }
        },
        {
            "spec": {
                "nodeName": "m2",
                "containers": [{"name": "kube-apiserver", "image": "r/kube-apiserver:v1.36.1"}],
            }
        },
    ]
    statuses = masters.master_statuses(nodes, selectors=SELECTORS, source="apiserver", apiserver_pods=pods)
    obs = masters.evaluate(statuses, rules=masters.Rules(min_masters=2))
    assert obs.version is not None and obs.version.raw == "v1.36.1"
    # A master without its apiserver pod has no known version.
    statuses = masters.master_statuses(
        nodes, selectors=SELECTORS, source="apiserver", apiserver_pods=pods[:1]
    )
    assert "m2=" in masters.evaluate(statuses, rules=masters.Rules(min_masters=2)).reason


def agreed_at(version: str) -> masters.Observation:
    return observe(node("m1", version), node("m2", version), node("m3", version))


def test_settle_window_reports_one_change_only_after_the_window() -> None:
    tracker = masters.Tracker(settle_seconds=30)
    assert tracker.observe(agreed_at("v1.35.0"), now=0) is None
    assert tracker.deadline() == 30
    assert tracker.tick(now=29.9) is None
    first = tracker.tick(now=30)
    assert first is not None and first.version.raw == "v1.35.0" and first.since == 0
    assert tracker.tick(now=100) is None  # reported once

    # A rolling upgrade: disagreement in between, then agreement at the new version.
    rolling = observe(node("m1", "v1.36.0"), node("m2", "v1.35.0"), node("m3", "v1.35.0"))
    assert tracker.observe(rolling, now=200) is None
    assert tracker.current is None
    assert tracker.observe(agreed_at("v1.36.0"), now=210) is None
    assert tracker.tick(now=239) is None
    second = tracker.tick(now=240)
    assert second is not None and second.version.raw == "v1.36.0"


def test_losing_agreement_cancels_a_pending_one() -> None:
    tracker = masters.Tracker(settle_seconds=30)
    tracker.observe(agreed_at("v1.36.0"), now=0)
    tracker.observe(
        observe(node("m1", "v1.36.0"), node("m2", "v1.36.0"), node("m3", "v1.36.0", ready=False)), now=20
    )
    assert tracker.deadline() is None
    assert tracker.tick(now=40) is None
    tracker.observe(agreed_at("v1.36.0"), now=41)
    assert tracker.tick(now=70) is None
    assert tracker.tick(now=71) is not None


def test_same_version_again_after_a_blip_is_not_reported_twice() -> None:
    tracker = masters.Tracker(settle_seconds=5)
    tracker.observe(agreed_at("v1.36.0"), now=0)
    assert tracker.tick(now=5) is not None
    tracker.observe(observe(node("m1", "v1.36.0"), node("m2", "v1.36.0")), now=6)  # a master vanished
    assert tracker.current is None
    tracker.observe(agreed_at("v1.36.0"), now=7)
    assert tracker.tick(now=12) is None
    assert tracker.current is not None  # agreed again, in force, but not a change


def test_unrelated_updates_do_not_restart_the_window() -> None:
    tracker = masters.Tracker(settle_seconds=30)
    tracker.observe(agreed_at("v1.36.0"), now=0)
    tracker.observe(agreed_at("v1.36.0-eks-2"), now=20)  # same (major, minor, patch)
    assert tracker.tick(now=30) is not None


def test_downgrade_is_a_change_too() -> None:
    tracker = masters.Tracker(settle_seconds=0)
    assert tracker.observe(agreed_at("v1.36.0"), now=0) is not None
    changed = tracker.observe(agreed_at("v1.35.9"), now=1)
    assert changed is not None and changed.version == parse_version("v1.35.9")
