"""node-tainter's one write, against the real apiserver: a stale node gets a 409, is read again, decided
again, and only our key is edited."""

from __future__ import annotations

from controllers.agreement import selector, version
from controllers.kube import client, resources
from controllers.node_tainter import effects, logic
from e2e import cluster

NODES = resources.NODES
POLICY = logic.TaintPolicy(
    master_selectors=(selector.parse_selector("node-role.kubernetes.io/control-plane"),)
)
AGREED = version.Version(1, 36, 1, raw="v1.36.1")
THEIRS = {"key": "example.com/theirs", "value": "x", "effect": "NoSchedule"}


async def stale_view(kube: client.Kube, nodes: cluster.Nodes, name: str) -> logic.TaintableNode:
    await nodes.create(name, version="v1.35.2")
    view = logic.node_view(await kube.get(NODES.path(name=name)), policy=POLICY)
    assert view is not None
    # Someone else writes the node after we read it.
    await kube.patch(NODES.path(name=name), {"spec": {"taints": [THEIRS]}})
    return view


async def test_a_stale_write_is_refused_then_redone_on_the_fresh_node(
    kube: client.Kube, nodes: cluster.Nodes
) -> None:
    view = await stale_view(kube, nodes, "fx-stale")
    taint = logic.desired_taint(view, agreed=AGREED, policy=POLICY)
    change = logic.change_for(view, taint)
    assert change is not None
    result = await effects.apply_change(kube, view, change, agreed=AGREED, policy=POLICY)
    assert (result.outcome, result.conflicts) == ("applied", 1)
    node = await kube.get(NODES.path(name="fx-stale"))
    assert node["spec"]["taints"] == [
        THEIRS,
        {"key": logic.DEFAULT_TAINT_KEY, "value": "v1.35.2", "effect": "PreferNoSchedule"},
    ]
    assert result.node is not None and result.node["metadata"] == node["metadata"]
    written = logic.node_view(result.node, policy=POLICY)
    assert written is not None

    # Untainting leaves their taint alone too.
    untaint = logic.change_for(written, None)
    assert untaint is not None
    result = await effects.apply_change(kube, written, untaint, agreed=AGREED, policy=POLICY)
    assert (result.outcome, result.conflicts) == ("applied", 0)
    assert (await kube.get(NODES.path(name="fx-stale")))["spec"]["taints"] == [THEIRS]


async def test_after_a_conflict_the_rule_is_applied_to_what_is_there_now(
    kube: client.Kube, nodes: cluster.Nodes
) -> None:
    view = await stale_view(kube, nodes, "fx-upgraded")
    await nodes.set_status("fx-upgraded", version="v1.36.1")  # upgraded meanwhile: no taint wanted now
    change = logic.change_for(view, logic.desired_taint(view, agreed=AGREED, policy=POLICY))
    assert change is not None
    result = await effects.apply_change(kube, view, change, agreed=AGREED, policy=POLICY)
    assert (result.outcome, result.conflicts) == ("redecided", 1)
    assert (await kube.get(NODES.path(name="fx-upgraded")))["spec"]["taints"] == [THEIRS]


async def test_a_deleted_node_is_gone_not_an_error(kube: client.Kube, nodes: cluster.Nodes) -> None:
    await nodes.create("fx-gone", version="v1.35.2")
    view = logic.node_view(await kube.get(NODES.path(name="fx-gone")), policy=POLICY)
    assert view is not None
    await nodes.delete("fx-gone")
    change = logic.change_for(view, logic.desired_taint(view, agreed=AGREED, policy=POLICY))
    assert change is not None
    result = await effects.apply_change(kube, view, change, agreed=AGREED, policy=POLICY)
    assert result.outcome == "gone"
