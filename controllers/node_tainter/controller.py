"""node-tainter on the shared runtime: its config, the watch-driven daemon and ``--once``.

The daemon keeps a view of every Node (one list+watch) and re-plans whenever a node or the agreement
changes; it touches only the nodes whose taint must change, at most ``concurrency`` at a time, and never
starts a second change on a node while one is in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any, Literal

from controllers.agreement import selector, version
from controllers.kube import retry, state
from controllers.node_tainter import effects, logic, metrics
from controllers.runtime import app, config

log = logging.getLogger(__name__)

NAME = "node-tainter"
DESCRIPTION = (
    "Once all masters agree on version V, taint every worker whose kubelet is still below V (so that pods "
    "evicted during a surge upgrade do not land on another old node), and untaint it when it reaches V."
)
# Coalesce a burst of watch events (a surge, or our own writes coming back) into one re-plan.
DEBOUNCE_SECONDS = 0.05
# While changes are in flight their completions wake the loop; re-plan less often then (a plan of 5,000
# nodes costs tens of milliseconds).
BUSY_DEBOUNCE_SECONDS = 0.5
# A node whose change failed is tried again after 2 s, 4 s, … up to a minute (jittered).
NODE_RETRY = retry.Policy(base=2.0, cap=60.0)
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
    def policy(self) -> logic.Policy:
        return logic.Policy(
            taint_key=self.taint_key,
            effect=self.taint_effect,
            master_selectors=self.master_selector_list,
            exclude=selector.parse_selector(self.exclude_selector) if self.exclude_selector else None,
            max_unschedulable_fraction=self.max_unschedulable_fraction,
        )


class NodeTainter:
    name = NAME
    description = DESCRIPTION
    config_type = NodeTainterConfig

    async def run(self, ctx: app.Context[NodeTainterConfig]) -> None:
        await Daemon(ctx).run()

    async def once(self, ctx: app.Context[NodeTainterConfig]) -> int:
        """Plan against the agreement now, apply (unless dry-run), print a JSON report."""
        tainter = Tainter(ctx)
        observation = await ctx.agreements.now()
        nodes = {v.name: v for v in await effects.list_nodes(ctx.kube, policy=tainter.policy)}
        plan = logic.plan(nodes.values(), agreed=observation.version, policy=tainter.policy)
        report: dict[str, Any] = {
            "agreed": observation.agreed,
            "version": observation.version.raw if observation.version else "",
            "reason": observation.reason,
            "dryRun": ctx.config.dry_run,
            **plan_report(plan),
        }
        failed: list[str] = []
        if observation.version is not None and not ctx.config.dry_run and plan.changes:
            semaphore = asyncio.Semaphore(ctx.config.concurrency)
            agreed = observation.version

            async def one(change: logic.Change) -> None:
                async with semaphore:
                    result = await tainter.apply(nodes[change.node], change, agreed=agreed)
                if result is None:
                    failed.append(change.node)
                elif result.node is not None:
                    nodes[change.node] = result.node

            await asyncio.gather(*(one(change) for change in plan.changes))
            await tainter.drain_events()
            plan = logic.plan(nodes.values(), agreed=agreed, policy=tainter.policy)
        for change in plan.changes if ctx.config.dry_run else ():
            log.info("dry-run: would %s node %s (%s)", change.action, change.node, change.taint)
        report["failed"] = sorted(failed)
        metrics.observe_plan(tainter.metrics, plan)
        try:
            await tainter.write_state(plan, pending=0)
        except Exception as error:  # the state is a report; the nodes are what counts
            log.warning("could not write the state ConfigMap: %s", error)
        print(json.dumps(report, sort_keys=True))
        return app.EXIT_FAILED if failed else app.EXIT_OK


def plan_report(plan: logic.Plan) -> dict[str, Any]:
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


class Tainter:
    """Applies changes with their metrics, logs and Events; writes the state ConfigMap."""

    def __init__(self, ctx: app.Context[NodeTainterConfig]) -> None:
        self.ctx = ctx
        self.policy = ctx.config.policy
        self.metrics = metrics.Metrics(ctx.exporter)
        self.last_error = ""
        self._state: state.State | None = None
        self._written: dict[str, str] = {}
        self._events: set[asyncio.Task[None]] = set()
        self._event_slots = asyncio.Semaphore(EVENT_CONCURRENCY)

    async def apply(
        self, node: logic.NodeView, change: logic.Change, *, agreed: version.Version
    ) -> effects.Result | None:
        """Apply one change; None when it failed (logged, counted, ``last_error`` set)."""
        try:
            result = await effects.apply_change(
                self.ctx.kube, node, change, agreed=agreed, policy=self.policy
            )
        except Exception as error:  # an API refusal, a dropped connection: retried later, never fatal
            metrics.observe_operation(self.metrics, change.action, ok=False)
            self.last_error = f"{change.action} {change.node}: {error}"
            log.warning("could not %s node %s: %s", change.action, change.node, error)
            return None
        metrics.observe_conflicts(self.metrics, result.conflicts)
        if result.outcome == "applied":
            metrics.observe_operation(self.metrics, change.action, ok=True)
            why = logic.explain(result.node or node, agreed=agreed)
            log.info("%s node %s (%s): %s", change.action, change.node, change.taint or "no taint", why)
            self._record_later(result.node or node, change, why=why)
        return result

    def _record_later(self, node: logic.NodeView, change: logic.Change, *, why: str) -> None:
        """Events are a report, recorded in the background as client-go's recorder does: the next taint
        does not wait for the last one's Event."""
        task = asyncio.create_task(self._record(node, change, why=why))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _record(self, node: logic.NodeView, change: logic.Change, *, why: str) -> None:
        async with self._event_slots:
            try:
                await effects.record(self.ctx.recorder, node, change, why=why)
            except Exception as error:  # the Recorder logs API refusals; this is a dropped connection
                log.warning("could not record an event on node %s: %s", node.name, error)

    async def drain_events(self) -> None:
        await asyncio.gather(*self._events)

    async def cancel_events(self) -> None:
        for task in self._events:
            task.cancel()
        await asyncio.gather(*self._events, return_exceptions=True)

    async def write_state(self, plan: logic.Plan, *, pending: int) -> None:
        """Record the agreed version acted on and the progress (only when it says something new)."""
        if plan.agreed is None:
            return
        adding = sum(1 for c in plan.changes if c.taint is not None)
        phase = "Tainting" if pending or plan.changes else "Waiting" if plan.waiting else "Done"
        if phase == "Done":
            self.last_error = ""
        data = {
            "version": plan.agreed.raw,
            "phase": phase,
            "progress": f"{plan.to_taint - adding}/{plan.to_taint} outdated workers tainted"
            + (f", {len(plan.waiting)} waiting for the NoSchedule cap" if plan.waiting else ""),
            "lastError": self.last_error,
            "outdated": str(plan.outdated),
            "tainted": str(plan.tainted),
            "waiting": str(len(plan.waiting)),
            "taint": f"{self.policy.taint_key}:{self.policy.effect}",
        }
        if data == self._written:
            return
        if pending and self._written and data["phase"] == self._written["phase"]:
            return  # progress while changes are in flight: written once they are done
        if self._state is None:
            self._state = await self.ctx.read_state()
        self._state = await self.ctx.update_state(self._state, data)
        self._written = data


class Daemon:
    """Watch-driven: re-plan on every node or agreement change, apply what the plan asks for."""

    def __init__(self, ctx: app.Context[NodeTainterConfig], *, debounce: float = DEBOUNCE_SECONDS) -> None:
        self.ctx = ctx
        self.tainter = Tainter(ctx)
        self.policy = self.tainter.policy
        self.debounce = debounce
        self.nodes: dict[str, logic.NodeView] = {}
        self.plan: logic.Plan | None = None
        self.in_flight: set[str] = set()
        self.retry_at: dict[str, tuple[int, float]] = {}  # node → (failures in a row, retry not before)
        self.reported: set[tuple[str, logic.Taint | None]] = set()  # dry-run changes already logged
        self.wake = asyncio.Event()
        self.synced = asyncio.Event()
        self.semaphore = asyncio.Semaphore(ctx.config.concurrency)
        self._loop = asyncio.get_running_loop()
        ctx.routes["/status"] = self.status

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._watch_nodes(), name="watch nodes")
                group.create_task(self._watch_agreement(), name="watch agreement")
                group.create_task(self._reconcile_forever(), name="reconcile")
        finally:
            await self.tainter.cancel_events()

    def status(self) -> dict[str, Any]:
        """``/status``: the current plan."""
        if self.plan is None:
            return {"synced": False}
        agreed = self.plan.agreed
        return {
            "synced": True,
            "agreed": agreed is not None,
            "version": agreed.raw if agreed else "",
            "inFlight": sorted(self.in_flight),
            "lastError": self.tainter.last_error,
            **plan_report(self.plan),
        }

    async def _watch_nodes(self) -> None:
        async for event in effects.node_events(self.ctx.kube, policy=self.policy):
            if event.type == "SYNC":
                self.nodes = {v.name: v for v in event.nodes}
                self.synced.set()
            elif event.type == "DELETED":
                self.nodes.pop(event.name, None)
                self.retry_at.pop(event.name, None)
            else:
                for view in event.nodes:
                    self._remember(view)
            self.wake.set()

    async def _watch_agreement(self) -> None:
        async for _ in self.ctx.agreements.changes():
            self.wake.set()

    def _remember(self, view: logic.NodeView) -> None:
        """Keep the newest version of a node: the watch may deliver an older one after our write returned."""
        known = self.nodes.get(view.name)
        if known is None or _newer(view.resource_version, than=known.resource_version):
            self.nodes[view.name] = view

    async def _reconcile_forever(self) -> None:
        await self.synced.wait()
        self.ctx.health.ready = True
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self._next_timer())
            await asyncio.sleep(
                self.debounce if not self.in_flight else max(self.debounce, BUSY_DEBOUNCE_SECONDS)
            )
            self.wake.clear()
            self._reconcile()
            try:
                await self.tainter.write_state(
                    self.plan or logic.Plan(agreed=None), pending=len(self.in_flight)
                )
            except Exception as error:  # the state is a report; failing to write it must not stop the work
                log.warning("could not write the state ConfigMap: %s", error)

    def _next_timer(self) -> float | None:
        """Seconds until something without a watch event is due: a settling agreement, a retry."""
        moments = [at for _, at in self.retry_at.values()]
        deadline = self.ctx.agreements.tracker.deadline()
        if deadline is not None and self.ctx.agreements.current is None:
            moments.append(deadline + self.debounce)  # the same version may settle again: no change event
        if not moments:
            return None
        return max(0.0, min(moments) - self._loop.time())

    def _reconcile(self) -> None:
        agreement = self.ctx.agreements.current
        agreed = agreement.version if agreement else None
        plan = logic.plan(self.nodes.values(), agreed=agreed, policy=self.policy)
        self.plan = plan
        now = self._loop.time()
        for change in plan.changes:
            if agreed is None or change.node in self.in_flight:
                continue
            if self.retry_at.get(change.node, (0, 0.0))[1] > now:
                continue
            if self.ctx.config.dry_run:
                if (change.node, change.taint) not in self.reported:
                    self.reported.add((change.node, change.taint))
                    log.info("dry-run: would %s node %s (%s)", change.action, change.node, change.taint)
                continue
            self.in_flight.add(change.node)
            self._group.create_task(self._apply(self.nodes[change.node], change, agreed=agreed))
        metrics.observe_plan(self.tainter.metrics, plan, in_flight=len(self.in_flight))

    async def _apply(self, node: logic.NodeView, change: logic.Change, *, agreed: version.Version) -> None:
        try:
            async with self.semaphore:
                result = await self.tainter.apply(node, change, agreed=agreed)
            if result is not None:
                self.retry_at.pop(change.node, None)
                if result.node is not None:
                    self._remember(result.node)
            else:
                failures = self.retry_at.get(change.node, (0, 0.0))[0] + 1
                delay = NODE_RETRY.delay(failures - 1)
                self.retry_at[change.node] = (failures, self._loop.time() + delay)
        finally:
            self.in_flight.discard(change.node)
            self.wake.set()


def _newer(candidate: str, *, than: str) -> bool:
    """Whether resourceVersion ``candidate`` is newer. They are etcd revisions (integers) on every real
    apiserver; when either is not, the one received last wins."""
    try:
        return int(candidate) >= int(than)
    except ValueError:
        return True
