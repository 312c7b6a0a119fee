"""Properties: node-tainter's decision never raises on garbage Nodes; a node it cannot read is skipped or
reported as unknown, never tainted."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controllers.agreement import selector, version
from controllers.node_tainter import logic
from tests import strategies

MASTERS = tuple(selector.parse_selector(text) for text in selector.DEFAULT_MASTER_SELECTORS)


@strategies.PROPERTY
@given(
    nodes=st.lists(strategies.nodes, max_size=6),
    agreed=strategies.version_texts,
    effect=st.sampled_from(logic.EFFECTS),
    fraction=st.floats(0, 1),
)
def test_plan_from_any_nodes(
    nodes: list[dict[str, Any]], agreed: str, effect: logic.Effect, fraction: float
) -> None:
    policy = logic.TaintPolicy(
        master_selectors=MASTERS,
        exclude=selector.parse_selector("exclude"),
        effect=effect,
        max_unschedulable_fraction=fraction,
    )
    views = {view.name: view for obj in nodes if (view := logic.node_view(obj, policy=policy)) is not None}
    agreed_version = version.parse_version(agreed)
    plan = logic.plan(views.values(), agreed=agreed_version, policy=policy)
    for change in plan.changes:
        node = views[change.node]
        if change.taint is not None:
            assert node.version is not None and not node.master
        assert all(
            t.get("key") != policy.taint_key
            for t in logic.edit_taints(node.taints, key=policy.taint_key, taint=None)
        )
        if agreed_version is not None:
            assert logic.explain(node, agreed=agreed_version)
    assert set(plan.unknown) == {name for name, view in views.items() if view.version is None}
