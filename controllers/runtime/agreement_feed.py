"""The master agreement as a live feed: watch the masters, apply the settle window, export the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from controllers.agreement import masters
from controllers.kube import masters as kube_masters
from controllers.kube.client import Kube
from controllers.runtime import metrics
from controllers.runtime.config import BaseConfig

log = logging.getLogger(__name__)


class AgreementMetrics:
    """``<prefix>_masters``, ``<prefix>_masters_agreed``, ``<prefix>_agreed_version_info`` and friends."""

    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.masters = gauge("masters", "Master nodes found.")
        self.unknown = gauge("masters_unknown_version", "Masters whose version cannot be parsed.")
        self.agreed = gauge("masters_agreed", "1 when all masters agree on one version (settled), else 0.")
        self.version_info = gauge("agreed_version_info", "The agreed version (value 1).", "version")
        self.changes = counter("agreement_changes_total", "Changes of the agreed version seen.")
        self.last_change = gauge(
            "agreement_last_change_timestamp_seconds", "When the agreed version last changed (Unix time)."
        )
        self._version = ""

    def observe(self, observation: masters.Observation, tracker: masters.Tracker) -> None:
        self.masters.set(len(observation.masters))
        self.unknown.set(sum(1 for m in observation.masters if m.version is None))
        self.agreed.set(1 if tracker.current else 0)
        version = tracker.current.version.raw if tracker.current else ""
        if version != self._version:
            if self._version:
                self.version_info.remove(self._version)
            if version:
                self.version_info.labels(version).set(1)
            self._version = version

    def changed(self) -> None:
        self.changes.inc()
        self.last_change.set_to_current_time()


class AgreementFeed:
    """Feeds master statuses through :class:`masters.Tracker`; ``changes()`` yields each new agreement."""

    def __init__(
        self,
        *,
        kube: Kube,
        config: BaseConfig,
        metrics: AgreementMetrics,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        self.metrics = metrics
        self.rules = config.agreement_rules
        self.tracker = masters.Tracker(settle_seconds=self.rules.settle_seconds)
        self.observation: masters.Observation | None = None
        self.synced = asyncio.Event()
        self._clock = clock or asyncio.get_running_loop().time
        self._changes: asyncio.Queue[masters.Agreement] = asyncio.Queue()
        self._pulse = asyncio.Event()  # set (and replaced) after every observation and tick

    @property
    def current(self) -> masters.Agreement | None:
        return self.tracker.current

    async def now(self) -> masters.Observation:
        """The agreement right now, from one list (``--once``; no settle window)."""
        statuses = await kube_masters.current_masters(
            self.kube, selectors=self.config.master_selector_list, source=self.config.version_source
        )
        return masters.evaluate(statuses, rules=self.rules)

    async def wait_until(
        self, predicate: Callable[[masters.Agreement | None], bool]
    ) -> masters.Agreement | None:
        """Wait until ``predicate`` holds for the settled agreement in force (None while the masters do not
        agree); returns that agreement. Needs ``run()`` to be running."""
        while not predicate(self.current):
            await self._pulse.wait()
        return self.current

    async def changes(self) -> AsyncIterator[masters.Agreement]:
        while True:
            yield await self._changes.get()

    async def run(self) -> None:
        """Watch forever (cancel to stop)."""
        statuses: asyncio.Queue[tuple[masters.MasterStatus, ...]] = asyncio.Queue()

        async def pump() -> None:
            async for snapshot in kube_masters.watch_masters(
                self.kube, selectors=self.config.master_selector_list, source=self.config.version_source
            ):
                await statuses.put(snapshot)

        pumping = asyncio.create_task(pump(), name="watch masters")
        getter: asyncio.Task[tuple[masters.MasterStatus, ...]] | None = None
        try:
            while True:
                deadline = self.tracker.deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                getter = getter or asyncio.create_task(statuses.get())
                done, _ = await asyncio.wait(
                    {getter, pumping}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if pumping in done:
                    pumping.result()  # raises what ended the watch
                    raise RuntimeError("the master watch ended")
                if getter not in done:
                    self._report(self.tracker.tick(now=self._clock()))
                    continue
                snapshot, getter = getter.result(), None
                self._observe(masters.evaluate(snapshot, rules=self.rules))
        finally:
            for task in (pumping, getter):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    def _observe(self, observation: masters.Observation) -> None:
        if observation.reason != (self.observation.reason if self.observation else None):
            if observation.agreed:
                log.info(
                    "masters agree on %s; settling for %.0f s", observation.version, self.rules.settle_seconds
                )
            else:
                log.info("masters do not agree: %s", observation.reason)
        self.observation = observation
        self._report(self.tracker.observe(observation, now=self._clock()))
        self.synced.set()

    def _report(self, change: masters.Agreement | None) -> None:
        if self.observation is not None:
            self.metrics.observe(self.observation, self.tracker)
        if change is not None:
            log.info("agreement: all %d master(s) run %s", len(change.masters), change.version)
            self.metrics.changed()
            self._changes.put_nowait(change)
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()
