"""node-tainter's sync: plan against every Node and the agreement, apply what the plan asks for.

Woken by any Node change and by the agreement; it touches only the nodes whose taint must change, at most
``concurrency`` at a time, and never starts a second change on a node while one is in flight.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any, Literal

from controllers.agreement import selector, version
from controllers.kube import resources, retry, watch
from controllers.node_tainter import effects, logic
from controllers.node_tainter import metrics as metrics_module
from controllers.runtime import config, context, reconciler
from controllers.structs import status

log = logging.getLogger(__name__)

NAME = "node-tainter"
DESCRIPTION = (
    "Once all masters agree on version V, taint every worker whose kubelet is still below V (so that pods "
    "evicted during a surge upgrade do not land on another old node), and untaint it when it reaches V."
)
# Coalesce a burst of watch events (a surge, or our own writes coming back) into one re-plan.
PACE_SECONDS = 0.05
# While changes are in flight their completions and echoes wake the loop; re-plan less often then (a plan
# of 5,000 nodes costs tens of milliseconds).
BUSY_PACE_SECONDS = 0.5
# A node whose change failed is tried again after 2 s, 4 s, … up to a minute (reset once it went through).
NODE_RETRY = retry.RetryPolicy(base=2.0, cap=60.0)
EVENT_CONCURRENCY = 4


@dataclasses.dataclass(frozen=True)
class NodeTainterConfig(config.BaseConfig):
    taint_key: str = config.option(
        logic.DEFAULT_TAINT_KEY,
        "Key of the taint on outdated workers (node-tainter touches no other key).",
        check=logic.valid_taint_key,
    )
    taint_effect: Literal["PreferNoSchedule", "NoSchedule"] = config.option(
        "PreferNoSchedule",
        "Effect of the taint: PreferNoSchedule (soft), or NoSchedule (hard, limited by "
        "maxUnschedulableFraction).",
    )
    exclude_selector: str = config.option(
        "",
        "Label selector of nodes never to taint (they lose the taint if they carry it).",
        check=config.label_selector,
    )
    max_unschedulable_fraction: float = config.option(
        0.25,
        "With taintEffect NoSchedule: the largest fraction of schedulable workers it may make "
        "unschedulable; the other outdated workers wait (node_tainter_waiting_nodes).",
        check=config.fraction,
    )
    concurrency: int = config.option(16, "Nodes changed in parallel at most.", check=config.positive)

    @property
    def policy(self) -> logic.TaintPolicy:
        return logic.TaintPolicy(
            taint_key=self.taint_key,
            effect=self.taint_effect,
            master_selectors=self.master_selector_list,
            exclude=selector.parse_selector(self.exclude_selector) if self.exclude_selector else None,
            max_unschedulable_fraction=self.max_unschedulable_fraction,
        )


class NodeTainter(reconciler.Reconciler[NodeTainterConfig]):
    name = NAME
    description = DESCRIPTION
    config_type = NodeTainterConfig
    item_retry = NODE_RETRY

    def __init__(self, ctx: context.Context[NodeTainterConfig]) -> None:
        super().__init__(ctx)
        self.policy = ctx.config.policy
        self.metrics = metrics_module.Metrics(ctx.exporter)
        self.nodes = watch.Store(
            watch.Stream(resources.NODES), lambda obj: logic.node_view(obj, policy=self.policy)
        )
        self.plan: logic.TaintPlan | None = None
        self.reported: set[tuple[str, logic.Taint | None]] = set()  # dry-run changes already logged
        self.last_error = ""
        self._slots = asyncio.Semaphore(ctx.config.concurrency)
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)
        self.published = status.Status(detail={"synced": False})

    def wakes(self) -> reconciler.Wakes:
        return reconciler.Wakes(stores=(self.nodes,), agreement=True, pace=PACE_SECONDS)

    async def sync(self) -> reconciler.Synced:
        agreement = self.ctx.agreements.current
        agreed = agreement.version if agreement else None
        self.plan = logic.plan(self.nodes.items.values(), agreed=agreed, policy=self.policy)
        self.retries.keep(self.nodes.items)  # a deleted node is not retried
        self.last_error = self.retries.last_error or self.last_error
        started = self._start(agreed) if agreed else []
        plan = self.plan
        if self.ctx.config.once:  # the report shows what was planned; the state and metrics what is now
            await asyncio.gather(*started)
            plan = logic.plan(self.nodes.items.values(), agreed=agreed, policy=self.policy)
        self.metrics.observe_plan(plan, in_flight=len(self.working))
        await self.publish(self._status(plan), settled=not self.working)
        return reconciler.Synced(
            ok=agreed is not None and not (self.ctx.config.once and self.retries.failing),
            pace=BUSY_PACE_SECONDS if self.working else None,
        )

    def _start(self, agreed: version.Version) -> list[asyncio.Task[None]]:
        """Start the changes of the plan that are not in flight nor waiting for a retry (in dry-run: none,
        each logged once)."""
        assert self.plan is not None
        started = []
        for change in self.plan.changes:
            if not self.ready(change.node):
                continue
            if self.ctx.config.dry_run:
                if (change.node, change.taint) not in self.reported:
                    self.reported.add((change.node, change.taint))
                    log.info("dry-run: would %s node %s (%s)", change.action, change.node, change.taint)
                continue
            work = self._apply(self.nodes.items[change.node], change, agreed=agreed)
            started.append(self.run_item(change.node, work, what=f"{change.action} {change.node}"))
        return started

    async def _apply(
        self, node: logic.TaintableNode, change: logic.Change, *, agreed: version.Version
    ) -> None:
        """Apply one change with its metrics, logs and Event (an item of the skeleton: a failure waits out
        the node's backoff; a bug stops the controller, restarted by its process)."""
        try:
            async with self._slots:
                result = await effects.apply_change(
                    self.ctx.kube, node, change, agreed=agreed, policy=self.policy
                )
        except Exception:
            self.metrics.observe_operation(change.action, ok=False)
            raise
        self.metrics.observe_conflicts(result.conflicts)
        view = self.nodes.remember(result.node) if result.node is not None else None
        if result.outcome == "applied":
            self.metrics.observe_operation(change.action, ok=True)
            why = logic.explain(view or node, agreed=agreed)
            log.info("%s node %s (%s): %s", change.action, change.node, change.taint or "no taint", why)
            # Events are a report, recorded in the background as client-go's recorder does: the next
            # taint does not wait for the last one's Event.
            self.spawn(self._record(view or node, change, why=why), wake=False)

    async def _record(self, node: logic.TaintableNode, change: logic.Change, *, why: str) -> None:
        async with self._event_slots:  # the Recorder never fails its caller
            await effects.record(self.ctx.recorder, node, change, why=why)

    def _status(self, plan: logic.TaintPlan) -> status.Status:
        """The phase and progress of ``plan`` (what is now); ``/status`` and the ``--once`` report also show
        the plan of this sync, and what is in flight or failed. Nothing is recorded without an agreement;
        progress made while changes are in flight is recorded once they are done (``settled``)."""
        assert self.plan is not None
        agreed = self.plan.agreed
        detail = {
            "synced": True,
            "agreed": agreed is not None,
            "dryRun": self.ctx.config.dry_run,
            "inFlight": sorted(self.working),
            "failed": sorted(self.retries.failing),
            **plan_report(self.plan),
        }
        if agreed is None:
            reason = reconciler.no_agreement(self.ctx)
            return status.Status(reason=reason, last_error=self.last_error, detail=detail)
        adding = sum(1 for c in plan.changes if c.taint is not None)
        phase = "Tainting" if self.working or plan.changes else "Waiting" if plan.waiting else "Done"
        if phase == "Done":
            self.last_error = ""
        return status.Status(
            phase=phase,
            version=agreed.raw,
            last_error=self.last_error,
            progress=f"{plan.to_taint - adding}/{plan.to_taint} outdated workers tainted"
            + (f", {len(plan.waiting)} waiting for the NoSchedule cap" if plan.waiting else ""),
            data={
                "outdated": str(plan.outdated),
                "tainted": str(plan.tainted),
                "waiting": str(len(plan.waiting)),
                "taint": f"{self.policy.taint_key}:{self.policy.effect}",
            },
            detail=detail,
        )


def plan_report(plan: logic.TaintPlan) -> dict[str, Any]:
    return {
        "changes": [
            {"node": c.node, "action": c.action, "taint": str(c.taint) if c.taint else ""}
            for c in plan.changes
        ],
        "outdated": plan.outdated,
        "tainted": plan.tainted,
        "waiting": list(plan.waiting),
        "unknownVersion": list(plan.unknown),
        "skewViolations": {"tooOld": plan.too_old, "tooNew": plan.too_new},
    }
