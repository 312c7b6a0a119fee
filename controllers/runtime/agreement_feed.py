"""The master agreement as a live feed: watch the masters, apply the settle window, export the metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from controllers.agreement import masters
from controllers.kube import master_stores, watch
from controllers.kube.client import Kube
from controllers.runtime import metrics
from controllers.runtime.config import BaseConfig

log = logging.getLogger(__name__)

Listener = Callable[[masters.Agreement | None], None]


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
    """Feeds master statuses through :class:`masters.Tracker`. Every listener hears each change of the
    settled agreement in force (a broadcast: any number of controllers may listen)."""

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
        self.tracker = masters.Tracker(settle_seconds=config.settle_window)
        self.observation: masters.Observation | None = None
        self.synced = asyncio.Event()  # set once the masters were observed
        self._clock = clock or asyncio.get_running_loop().time
        self._listeners: list[Listener] = []
        self._in_force: masters.Agreement | None = None  # what the listeners last heard of
        self._pulse = asyncio.Event()  # set (and replaced) after every observation and tick

    @property
    def current(self) -> masters.Agreement | None:
        return self.tracker.current

    def listen(self, listener: Listener) -> None:
        """``listener(change)`` runs whenever the agreement in force changes (appears, goes, moves);
        ``change`` is the agreement when its version is new (reported once), else None. Listening twice
        with the same listener (a controller restarted in its process) is listening once."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    async def now(self) -> masters.Observation:
        """The agreement right now, from one list (``--once``: the settle window is 0 then, so it is in
        force at once)."""
        statuses = await master_stores.current_masters(
            self.kube, selectors=self.config.master_selector_list, source=self.config.version_source
        )
        observation = masters.evaluate(statuses, rules=self.rules)
        self._observe(observation)
        return observation

    async def wait_until(
        self, predicate: Callable[[masters.Agreement | None], bool]
    ) -> masters.Agreement | None:
        """Wait until ``predicate`` holds for the settled agreement in force (None while the masters do not
        agree); returns that agreement. Needs ``run()`` to be running."""
        while not predicate(self.current):
            await self._pulse.wait()
        return self.current

    async def run(self) -> None:
        """Watch forever (cancel to stop)."""
        selectors, source = self.config.master_selector_list, self.config.version_source
        stores = master_stores.stores(selectors=selectors, source=source)
        changed = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            for store in stores:
                group.create_task(watch.follow(self.kube, store, changed=changed.set))
            while True:
                deadline = self.tracker.deadline()
                timeout = None if deadline is None else max(0.0, deadline - self._clock())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await changed.wait()
                if not changed.is_set():
                    self._report(self.tracker.tick(now=self._clock()))
                    continue
                changed.clear()
                if all(store.synced for store in stores):  # report only once every watch has listed
                    statuses = master_stores.statuses(stores, selectors=selectors, source=source)
                    self._observe(masters.evaluate(statuses, rules=self.rules))

    def _observe(self, observation: masters.Observation) -> None:
        if observation.reason != (self.observation.reason if self.observation else None):
            if observation.agreed:
                log.info(
                    "masters agree on %s; settling for %.0f s",
                    observation.version,
                    self.tracker.settle_seconds,
                )
            else:
                log.info("masters do not agree: %s", observation.reason)
        self.observation = observation
        self._report(self.tracker.observe(observation, now=self._clock()))
        self.synced.set()

    def _report(self, change: masters.Agreement | None) -> None:
        previous, self._in_force = self._in_force, self.tracker.current
        if self.observation is not None:
            self.metrics.observe(self.observation, self.tracker)
        if change is not None:
            log.info("agreement: all %d master(s) run %s", len(change.masters), change.version)
            self.metrics.changed()
        if change is not None or self._in_force != previous:
            for listener in self._listeners:
                listener(change)
        pulse, self._pulse = self._pulse, asyncio.Event()
        pulse.set()
