"""Every write node-tainter makes: change one node's taint safely, record Events (the skeleton watches the
Nodes).

A taint change is a merge patch of ``spec.taints`` that carries the resourceVersion it was computed from, so
the apiserver refuses it (409) when anyone wrote the node since; then the node is read again, the decision is
made again on what is there now, and only our key is edited. Taints that others write are never lost.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

from controllers.agreement import version
from controllers.kube import events, resources, retry
from controllers.kube.client import JSON, ApiError, Kube
from controllers.node_tainter import logic
from controllers.structs import refs

log = logging.getLogger(__name__)


ChangeOutcome = Literal["applied", "gone", "moot", "redecided"]


@dataclasses.dataclass(frozen=True, slots=True)
class ChangeResult:
    """``applied``: written; ``gone``: the node was deleted; ``moot``: it already carries what we want;
    ``redecided``: after a conflict the rule wants something else now (the next plan takes it from there)."""

    outcome: ChangeOutcome
    conflicts: int = 0
    node: JSON | None = None  # the node as last written or read


async def apply_change(
    kube: Kube,
    node: logic.TaintableNode,
    change: logic.Change,
    *,
    agreed: version.Version,
    policy: logic.TaintPolicy,
) -> ChangeResult:
    """Make ``node`` carry ``change.taint`` under our key. Raises ApiError when the apiserver refuses for
    another reason than a conflict, or after too many conflicts in a row (``retry.CONFLICTS``)."""
    path = resources.NODES.path(name=node.name)
    current, conflicts = node, 0

    async def attempt() -> ChangeResult:
        nonlocal current
        if conflicts:  # refused with 409: read the node again and decide again on what is there now
            log.debug("node %s changed under us (409); reading it again", node.name)
            obj = await kube.get(path)
            fresh = logic.node_view(obj, policy=policy)
            if fresh is None:
                return ChangeResult("gone", conflicts)
            current = fresh
            if logic.desired_taint(current, agreed=agreed, policy=policy) != change.taint:
                return ChangeResult("redecided", conflicts, obj)
            if logic.change_for(current, change.taint) is None:
                return ChangeResult("moot", conflicts, obj)
        taints = logic.edit_taints(current.taints, key=policy.taint_key, taint=change.taint)
        body: JSON = {
            "metadata": {"resourceVersion": current.resource_version},
            "spec": {"taints": taints or None},
        }
        return ChangeResult("applied", conflicts, await kube.patch(path, body))

    def count(reason: retry.Reason, _: BaseException) -> None:
        nonlocal conflicts
        conflicts += reason == "conflict"

    try:
        return await retry.call(attempt, policy=retry.CONFLICTS, on_error=count)
    except ApiError as error:
        if error.not_found:
            return ChangeResult("gone", conflicts)
        raise


async def record(
    recorder: events.Recorder, node: logic.TaintableNode, change: logic.Change, *, why: str
) -> None:
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
