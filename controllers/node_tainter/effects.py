"""Every API call node-tainter makes: list and watch Nodes, change one node's taint safely, record Events.

A taint change is a merge patch of ``spec.taints`` that carries the resourceVersion it was computed from, so
the apiserver refuses it (409) when anyone wrote the node since; then the node is read again, the decision is
made again on what is there now, and only our key is edited. Taints that others write are never lost.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Literal

from controllers.agreement import version
from controllers.kube import events, resources, retry, watch
from controllers.kube.client import JSON, ApiError, Kube
from controllers.node_tainter import logic
from controllers.structs import refs

log = logging.getLogger(__name__)

NODES = resources.NODES

Outcome = Literal["applied", "gone", "moot", "redecided"]


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """``applied``: written; ``gone``: the node was deleted; ``moot``: it already carries what we want;
    ``redecided``: after a conflict the rule wants something else now (the next plan takes it from there)."""

    outcome: Outcome
    conflicts: int = 0
    node: logic.NodeView | None = None  # the node as last written or read


@dataclasses.dataclass(frozen=True, slots=True)
class NodeEvent:
    type: watch.EventType
    nodes: tuple[logic.NodeView, ...] = ()  # SYNC: all of them; ADDED/MODIFIED: the one
    name: str = ""  # DELETED


async def list_nodes(kube: Kube, *, policy: logic.Policy) -> list[logic.NodeView]:
    views: list[logic.NodeView | None] = []
    async for page in kube.list_pages(NODES.path()):
        views.extend(logic.node_view(obj, policy=policy) for obj in page.get("items", []))
    return [v for v in views if v is not None]


async def node_events(kube: Kube, *, policy: logic.Policy) -> AsyncIterator[NodeEvent]:
    """Every Node, as views: SYNC with all of them after each (re)list, then each change."""
    async with contextlib.aclosing(watch.watch(kube, NODES)) as events:
        async for event in events:
            if event.type == "SYNC":
                views = (logic.node_view(obj, policy=policy) for obj in event.objects)
                yield NodeEvent("SYNC", nodes=tuple(v for v in views if v is not None))
            elif event.object is not None:
                view = logic.node_view(event.object, policy=policy)
                if view is None:
                    continue
                if event.type == "DELETED":
                    yield NodeEvent("DELETED", name=view.name)
                else:
                    yield NodeEvent(event.type, nodes=(view,))


async def apply_change(
    kube: Kube, node: logic.NodeView, change: logic.Change, *, agreed: version.Version, policy: logic.Policy
) -> Result:
    """Make ``node`` carry ``change.taint`` under our key. Raises ApiError when the apiserver refuses for
    another reason than a conflict, or after too many conflicts in a row (``retry.CONFLICTS``)."""
    path = NODES.path(name=node.name)
    current, conflicts = node, 0

    async def attempt() -> Result:
        nonlocal current
        if conflicts:  # refused with 409: read the node again and decide again on what is there now
            log.debug("node %s changed under us (409); reading it again", node.name)
            fresh = logic.node_view(await kube.get(path), policy=policy)
            if fresh is None:
                return Result("gone", conflicts)
            current = fresh
            if logic.desired_taint(current, agreed=agreed, policy=policy) != change.taint:
                return Result("redecided", conflicts, current)
            if logic.change_for(current, change.taint) is None:
                return Result("moot", conflicts, current)
        taints = logic.edit_taints(current.taints, key=policy.taint_key, taint=change.taint)
        body: JSON = {
            "metadata": {"resourceVersion": current.resource_version},
            "spec": {"taints": taints or None},
        }
        written = await kube.patch(path, body)
        return Result("applied", conflicts, logic.node_view(written, policy=policy))

    def count(reason: retry.Reason, _: BaseException) -> None:
        nonlocal conflicts
        conflicts += reason == "conflict"

    try:
        return await retry.call(attempt, policy=retry.CONFLICTS, on_error=count)
    except ApiError as error:
        if error.not_found:
            return Result("gone", conflicts)
        raise


async def record(recorder: events.Recorder, node: logic.NodeView, change: logic.Change, *, why: str) -> None:
    """One Event on the node for each change made."""
    reason = {"taint": "Tainted", "untaint": "Untainted", "update": "TaintUpdated"}[change.action]
    if change.taint is not None:
        note = f"{why}: set taint {change.taint}"
    else:
        note = f"{why}: removed taint {', '.join(map(str, change.previous))}"
    await recorder.emit(
        refs.ObjectRef(kind="Node", name=node.name, uid=node.uid),
        reason=reason,
        note=note,
        action=change.action.capitalize(),
    )
