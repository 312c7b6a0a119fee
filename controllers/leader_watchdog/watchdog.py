"""The watchdog's effects: watch Leases, Nodes and ``default/kubernetes``; evaluate; report.

It observes only. The one thing it writes is Events (Warning when a finding appears, Normal when it
clears or a leader changes). Evaluation runs after every burst of watch events and on a timer, because
staleness is time passing, not an event.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from controllers.agreement import masters as agreement_masters
from controllers.kube import events, resources, watch
from controllers.kube.client import JSON, Kube
from controllers.leader_watchdog import logic
from controllers.leader_watchdog import metrics as metrics_module
from controllers.runtime import app, config
from controllers.structs import refs

log = logging.getLogger(__name__)

DEFAULT_LEADER_LEASES = ("kube-system/kube-controller-manager", "kube-system/kube-scheduler")
APISERVER_IDENTITY_SELECTOR = "apiserver.kubernetes.io/identity=kube-apiserver"
MIN_GAP = 0.2  # seconds between two evaluations triggered by watch events


def _lease_keys(values: tuple[str, ...]) -> str | None:
    for value in values:
        namespace, slash, name = value.partition("/")
        if not (slash and namespace and name) or "/" in name:
            return f"{value!r} is not NAMESPACE/NAME"
    return None


def _check_groups(values: tuple[str, ...]) -> str | None:
    unknown = sorted(set(values) - set(logic.CHECK_GROUPS))
    return (
        f"unknown check(s) {', '.join(unknown)} (known: {', '.join(logic.CHECK_GROUPS)})" if unknown else None
    )


@dataclasses.dataclass(frozen=True)
class WatchdogConfig(config.BaseConfig):
    leader_leases: tuple[str, ...] = config.option(
        list(DEFAULT_LEADER_LEASES), "Leader Leases to watch, as NAMESPACE/NAME.", check=_lease_keys
    )
    checks: tuple[str, ...] = config.option(
        list(logic.CHECK_GROUPS),
        f"Checks to run: any of {', '.join(logic.CHECK_GROUPS)} (turn off apiservers and endpoints where "
        "masters are not Nodes, e.g. managed control planes).",
        check=_check_groups,
    )
    apiserver_namespace: str = config.option(
        "kube-system", "Namespace of the kube-apiserver identity Leases."
    )
    apiserver_selector: str = config.option(
        APISERVER_IDENTITY_SELECTOR,
        "Label selector of the kube-apiserver identity Leases.",
        check=config.label_selector,
    )
    node_lease_namespace: str = config.option("kube-node-lease", "Namespace of the node heartbeat Leases.")
    heartbeat_stale_seconds: float = config.option(
        40.0, "A node whose heartbeat Lease is older than this counts as NotReady.", check=config.positive
    )
    outage_window_seconds: float = config.option(
        300.0,
        "A jump of NotReady workers within this long after the master set changed is the outage pattern.",
        check=config.positive,
    )
    notready_jump_min: int = config.option(
        3, "Smallest rise of NotReady workers that counts as a jump.", check=config.positive
    )
    notready_jump_fraction: float = config.option(
        0.1,
        "Rise of NotReady workers, as a fraction of all workers, that counts as a jump (the larger wins).",
        check=config.fraction,
    )
    evaluate_interval_seconds: float = config.option(
        5.0, "Re-evaluate at least this often, even without watch events.", check=config.positive
    )

    @property
    def rules(self) -> logic.Rules:
        return logic.Rules(
            heartbeat_stale_seconds=self.heartbeat_stale_seconds,
            outage_window_seconds=self.outage_window_seconds,
            notready_jump_min=self.notready_jump_min,
            notready_jump_fraction=self.notready_jump_fraction,
        )


@dataclasses.dataclass(frozen=True, slots=True)
class Stream:
    resource: resources.Resource
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    @property
    def query(self) -> dict[str, str | int | bool]:
        query: dict[str, str | int | bool] = {}
        if self.label_selector:
            query["labelSelector"] = self.label_selector
        if self.field_selector:
            query["fieldSelector"] = self.field_selector
        return query


def streams(cfg: WatchdogConfig) -> dict[str, Stream]:
    """What to watch, by store key; only what the enabled checks need (Nodes always: masters come from them)."""
    wanted: dict[str, Stream] = {"nodes": Stream(resources.NODES)}
    if "leaders" in cfg.checks:
        for key in cfg.leader_leases:
            namespace, _, name = key.partition("/")
            wanted[f"leader:{key}"] = Stream(
                resources.LEASES, namespace, field_selector=f"metadata.name={name}"
            )
    if "apiservers" in cfg.checks:
        wanted["apiservers"] = Stream(
            resources.LEASES, cfg.apiserver_namespace, label_selector=cfg.apiserver_selector
        )
    if "endpoints" in cfg.checks:
        wanted["endpoints"] = Stream(
            resources.ENDPOINT_SLICES,
            logic.KUBERNETES_SERVICE.namespace,
            label_selector=logic.KUBERNETES_SLICES,
        )
    if "heartbeats" in cfg.checks:
        wanted["heartbeats"] = Stream(resources.LEASES, cfg.node_lease_namespace)
    return wanted


T = TypeVar("T")


def _apply(target: dict[str, T], parse: Callable[[JSON], T], event: watch.WatchEvent) -> None:
    if event.type == "SYNC":
        target.clear()
        target.update({refs.object_key(obj): parse(obj) for obj in event.objects})
    elif event.object is not None:
        if event.type == "DELETED":
            target.pop(refs.object_key(event.object), None)
        else:
            target[refs.object_key(event.object)] = parse(event.object)


class Records:
    """The watched objects, parsed once when they change (not at every evaluation: a large cluster's
    heartbeat Leases change hundreds of times a second)."""

    def __init__(self, cfg: WatchdogConfig) -> None:
        self.cfg = cfg
        self.selectors = cfg.master_selector_list
        self.nodes: dict[str, logic.NodeRecord] = {}
        self.leases: dict[str, dict[str, logic.LeaseRecord]] = {}
        self.endpoints: dict[str, frozenset[str]] = {}  # EndpointSlice key → its addresses

    def apply(self, key: str, event: watch.WatchEvent) -> None:
        if key == "nodes":
            _apply(self.nodes, lambda raw: logic.node_record(raw, selectors=self.selectors), event)
        elif key == "endpoints":
            _apply(self.endpoints, logic.endpoint_slice_ips, event)
        else:
            _apply(self.leases.setdefault(key, {}), logic.lease_record, event)

    def snapshot(
        self, *, observation: agreement_masters.Observation | None, agreed_version: str | None
    ) -> logic.Snapshot:
        cfg = self.cfg
        nodes = sorted(self.nodes.values(), key=lambda node: node.name)
        if cfg.version_source == "apiserver":
            reported = {m.name: m.reported for m in observation.masters} if observation else {}
            nodes = [
                dataclasses.replace(node, version=reported.get(node.name, "")) if node.master else node
                for node in nodes
            ]
        leaders: dict[str, logic.LeaseRecord | None] = {}
        if "leaders" in cfg.checks:
            leaders = {key: self.leases.get(f"leader:{key}", {}).get(key) for key in cfg.leader_leases}
        return logic.Snapshot(
            leaders=leaders,
            apiservers=tuple(self.leases.get("apiservers", {}).values()),
            heartbeats={lease.name: lease for lease in self.leases.get("heartbeats", {}).values()},
            nodes=tuple(nodes),
            endpoint_ips=logic.service_endpoint_ips(self.endpoints.values()),
            agreed_version=agreed_version,
            checks=frozenset(c for c in logic.CHECK_GROUPS if c in cfg.checks),
        )


class Watchdog:
    """One per process: the stores, the history, the last evaluation and its ``/status``."""

    def __init__(self, ctx: app.Context[WatchdogConfig], *, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.cfg = ctx.config
        self.clock = clock
        self.streams = streams(self.cfg)
        self.metrics = metrics_module.Metrics(
            ctx.exporter,
            leader_leases=self.cfg.leader_leases if "leaders" in self.cfg.checks else (),
        )
        self.records = Records(self.cfg)
        self.history = logic.History()
        self.findings: dict[tuple[str, str], logic.Finding] = {}
        self.events: asyncio.Queue[tuple[refs.ObjectRef, dict[str, Any]]] = asyncio.Queue()
        self.emit_events = True
        self.status: dict[str, Any] = {"time": None, "critical": False, "findings": [], "reason": "starting"}
        ctx.routes["/status"] = lambda: self.status

    def _agreed(self) -> str | None:
        current = self.ctx.agreements.current
        return current.version.raw if current else None

    def evaluate(
        self,
        *,
        agreed_version: str | None,
        observation: agreement_masters.Observation | None,
    ) -> logic.Evaluation:
        """Run every check now; update metrics, ``/status``, logs and (unless ``--once``) Events."""
        now = self.clock()
        shot = self.records.snapshot(observation=observation, agreed_version=agreed_version)
        evaluation = logic.evaluate(shot, now=now, rules=self.cfg.rules, history=self.history)
        self.history = evaluation.history
        current = {finding.key: finding for finding in evaluation.findings}
        raised = [finding for key, finding in current.items() if key not in self.findings]
        cleared = [finding for key, finding in self.findings.items() if key not in current]
        self.findings = current
        self.status = logic.status_json(evaluation, shot, now=now)
        metrics_module.observe_evaluation(self.metrics, evaluation, shot, raised=raised, now=now)
        if evaluation.master_set_changed:
            log.info("master set changed to %s", sorted(m.name for m in shot.masters))
        for finding in raised:
            log.warning(
                "%s: %s: %s",
                finding.check,
                finding.object,
                finding.evidence,
                extra={"finding": finding.to_json()},
            )
            self._event(
                finding.ref,
                reason=logic.REASON[finding.check],
                note=f"{finding.object}: {finding.evidence}",
                type="Warning",
            )
        for finding in cleared:
            log.info("cleared %s: %s", finding.check, finding.object)
            self._event(
                finding.ref,
                reason=f"{logic.REASON[finding.check]}Cleared",
                note=f"{finding.object}: cleared",
                type="Normal",
            )
        for change in evaluation.transitions:
            log.info("leader of %s changed from %r to %r", change.lease, change.previous, change.holder)
            namespace, _, name = change.lease.partition("/")
            ref = refs.ObjectRef(
                kind="Lease", name=name, namespace=namespace, api_version="coordination.k8s.io/v1"
            )
            self._event(
                ref,
                reason="LeaderChanged",
                note=f"leader changed from {change.previous!r} to {change.holder!r}",
                type="Normal",
            )
        return evaluation

    def _event(self, ref: refs.ObjectRef, *, reason: str, note: str, type: events.EventType) -> None:
        if self.emit_events:  # not in --once: a one-shot check reports on stdout only
            self.events.put_nowait((ref, {"reason": reason, "note": note, "type": type, "action": "Observe"}))

    async def run(self) -> None:
        """Watch and evaluate until cancelled."""
        queue: asyncio.Queue[tuple[str, watch.WatchEvent | BaseException]] = asyncio.Queue()

        async def pump(key: str, stream: Stream) -> None:
            try:
                async for event in watch.watch(
                    self.ctx.kube,
                    stream.resource,
                    namespace=stream.namespace,
                    label_selector=stream.label_selector,
                    field_selector=stream.field_selector,
                ):
                    await queue.put((key, event))
            except Exception as error:  # a bug, not an API error (watch retries those): surface it
                await queue.put((key, error))

        tasks = [asyncio.create_task(pump(key, s), name=f"watch {key}") for key, s in self.streams.items()]
        synced: set[str] = set()

        def take(item: tuple[str, watch.WatchEvent | BaseException] | None) -> None:
            """Apply ``item`` and everything queued behind it."""
            while item is not None:
                key, event = item
                if isinstance(event, BaseException):
                    raise event
                self.records.apply(key, event)
                if event.type == "SYNC":
                    synced.add(key)
                item = None if queue.empty() else queue.get_nowait()

        loop = asyncio.get_running_loop()
        last = -math.inf
        # A getter task kept across rounds (not asyncio.wait_for, which on Python 3.11 can swallow a
        # cancellation when the queue is busy), and Events sent by their own task so that /status never
        # waits on the API.
        getter: asyncio.Task[tuple[str, watch.WatchEvent | BaseException]] | None = None
        sender = asyncio.create_task(self._send_events(), name="events")
        tasks.append(sender)
        try:
            while True:
                getter = getter or asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, sender},
                    timeout=self.cfg.evaluate_interval_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if sender in done:
                    sender.result()
                    raise RuntimeError("the Event sender ended")
                if getter in done:
                    item, getter = getter.result(), None
                    take(item)
                if len(synced) < len(self.streams):
                    continue
                # Events come in floods (every heartbeat): evaluate at most every MIN_GAP, on everything so far.
                if (wait := last + MIN_GAP - loop.time()) > 0:
                    await asyncio.sleep(wait)
                    take(None if queue.empty() else queue.get_nowait())
                self.evaluate(agreed_version=self._agreed(), observation=self.ctx.agreements.observation)
                last = loop.time()
                self.ctx.health.ready, self.ctx.health.reason = True, "watching"
        finally:
            for task in [*tasks, *([getter] if getter else [])]:
                task.cancel()
            await asyncio.gather(*tasks, *([getter] if getter else []), return_exceptions=True)

    async def _send_events(self) -> None:
        while True:
            ref, kwargs = await self.events.get()
            await self.ctx.recorder.emit(ref, **kwargs)

    async def once(self) -> int:
        """List everything once, evaluate, print the ``/status`` JSON; 1 when a finding is critical."""
        self.emit_events = False
        for key, stream in self.streams.items():
            listed = await list_objects(self.ctx.kube, stream)
            self.records.apply(key, watch.WatchEvent("SYNC", objects=tuple(listed)))
        observation = await self.ctx.agreements.now()
        evaluation = self.evaluate(
            agreed_version=observation.version.raw if observation.version else None,
            observation=observation,
        )
        print(json.dumps(self.status, indent=2))
        return app.EXIT_FAILED if evaluation.critical else app.EXIT_OK


async def list_objects(kube: Kube, stream: Stream) -> list[JSON]:
    path = stream.resource.path(namespace=stream.namespace)
    return [
        item async for page in kube.list_pages(path, query=stream.query) for item in page.get("items", [])
    ]


class LeaderWatchdog:
    name = "leader-watchdog"
    description = (
        "Watches leader Leases, kube-apiserver identity Leases, the default/kubernetes endpoints and node "
        "heartbeats; reports stale leaders, stale masters and nodes going NotReady after a master change. "
        "It observes only: it writes nothing but Events."
    )
    config_type = WatchdogConfig

    async def run(self, ctx: app.Context[WatchdogConfig]) -> None:
        await Watchdog(ctx).run()

    async def once(self, ctx: app.Context[WatchdogConfig]) -> int:
        return await Watchdog(ctx).once()
