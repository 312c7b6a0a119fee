"""The migrator: list a resource page by page and PUT every object back exactly as listed.

A PUT with the listed resourceVersion makes the apiserver re-encode the object at the current storage
version. 409 means someone wrote it since the list: it is read again and the object read is PUT back (as
kube-storage-version-migrator does), which rewrites it if it is still stored at the old version (written
meanwhile through an apiserver of the old version) and changes nothing if it is not (the apiserver stores
an object only when its encoding changes: the answer keeps the resourceVersion read). 404 means it is gone:
done. Transient failures are retried (``kube.retry``), then counted as failed.
With ``bookmarks``, the continue token after which every object was rewritten is handed over as the list
goes, and a list starts from the one saved earlier (a new leader goes on where the last one was).
Writes in flight are bounded by a :class:`Window` whose limit the pacer (``logic.Pacer``) moves with
the writes' latency (``--latency-budget``; a fixed ``workers`` when pacing is off).
Nothing here logs object contents: errors are logged by status and reason only (a 422 message may quote
field values).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, ClassVar, Literal, Protocol

import prometheus_client

from controllers.kube import discovery, resources, retry
from controllers.kube.client import JSON, ApiError, Kube, RateLimiter
from controllers.uso_runner import logic
from controllers.uso_runner import metrics as metrics_module

log = logging.getLogger(__name__)

PageHook = Callable[[JSON], Awaitable[None]]
Announce = Callable[[str], Coroutine[Any, Any, None]]
# PUTs of one object that may meet a 409 (each followed by a read) before the object fails: a 409 every
# time means a writer changes it faster than a read and a write take.
CONFLICT_TRIES = 5
Gate = Callable[[], Awaitable[None]]


class Stop(Exception):
    """Raised by the gate: stop this resource now (what is in flight still lands)."""


class Bookmarks(Protocol):
    """Where a resource's list starts, and where to record how far it got (the run's checkpoint)."""

    def start(self, group_resource: str) -> str: ...

    async def reached(self, group_resource: str, token: str) -> None: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Ticket:
    """One write's place in the window: the pacer's epoch when it started, and whether it runs alone."""

    epoch: int
    alone: bool


class Window:
    """The writes in flight, at most the pacer's limit: :meth:`acquire` before a write (waits for room),
    :meth:`answered` or :meth:`throttled` as it goes, :meth:`release` when it is over. Every change of limit
    goes to ``on_change``."""

    def __init__(self, pacer: logic.Pacer, *, on_change: Callable[[logic.PaceChange | None], None]) -> None:
        self.pacer = pacer
        self.in_flight = 0
        self._on_change = on_change
        self._waiters: list[asyncio.Future[None]] = []

    async def acquire(self) -> Ticket:
        while self.in_flight >= self.pacer.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self.in_flight += 1
        # With a limit of one nothing else starts until this write is over: it runs alone.
        return Ticket(epoch=self.pacer.epoch, alone=self.in_flight == 1 and self.pacer.limit == 1)

    def answered(self, ticket: Ticket, *, latency: float) -> None:
        """The apiserver answered the write (2xx, or a 4xx such as 409) after ``latency`` s."""
        change = self.pacer.observe(
            latency=latency, epoch=ticket.epoch, alone=ticket.alone, now=time.monotonic()
        )
        self._changed(change)

    def throttled(self, ticket: Ticket) -> None:
        """The write was throttled or failed transiently (429, 5xx, a dropped connection)."""
        self._changed(self.pacer.throttled(epoch=ticket.epoch, now=time.monotonic()))

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _changed(self, change: logic.PaceChange | None) -> None:
        self._on_change(change)
        if change is not None:
            self._wake()

    def _wake(self) -> None:
        room = self.pacer.limit - self.in_flight
        for waiter in self._waiters[: max(0, room)]:
            if not waiter.done():
                waiter.set_result(None)


@dataclasses.dataclass
class Migrator:
    """Rewrites objects with at most ``workers`` PUTs in flight across every resource it migrates, fewer when
    ``latency_budget`` (a multiple of the writes' idle latency; 0: off) paces them."""

    kube: Kube
    metrics: metrics_module.Metrics
    workers: int = 16
    page_size: int = 500
    max_retries: int = 5
    qps: float = 0.0
    dry_run: bool = False
    on_page: PageHook | None = None  # test seam: awaited after each page is listed
    gate: Gate | None = None  # awaited before each write: may wait, or raise Stop
    bookmarks: Bookmarks | None = None  # resume a list part-way, and record how far it got
    latency_budget: float = 0.0
    announce: Announce | None = None  # awaited (beside the writes) with what a hard back-off says

    def __post_init__(self) -> None:
        settings = logic.PaceSettings(budget=self.latency_budget, ceiling=self.workers)
        self.pacer = logic.Pacer(settings, now=time.monotonic())
        self.hard_backoffs = 0
        self._window = Window(self.pacer, on_change=self._paced)
        self._announcing: set[asyncio.Task[None]] = set()
        self.metrics.observe_pacing(budget=self.latency_budget, limit=self.pacer.limit, latency=0.0, idle=0.0)
        self._limiter = RateLimiter(qps=self.qps)
        self._policy = retry.RetryPolicy(base=0.2, cap=5.0, attempts=self.max_retries)

    def _count(self, reason: retry.Reason, _: BaseException) -> None:
        if reason not in ("conflict", "not_found"):  # those are how a rewrite ends, not errors
            self.metrics.observe_error(reason)

    def _paced(self, change: logic.PaceChange | None) -> None:
        """After each answered write: the pacer's figures to the metrics; a change of limit to the log, and
        a hard back-off to the counters (and, at most once a minute, to a warning and an Event)."""
        pacer = self.pacer
        self.metrics.observe_pacing(
            budget=self.latency_budget, limit=pacer.limit, latency=pacer.latency, idle=pacer.idle
        )
        if change is None:
            return
        budget = self.latency_budget
        if change.why in logic.PACE_BACKOFFS:
            self.metrics.observe_backoff(change.why)
        if change.why in ("hard", "throttled"):
            self.hard_backoffs += 1
        if change.announce:
            note = f"backing off hard: {change.describe(budget=budget)}"
            log.warning("pacing: %s", note)
            if self.announce is not None:
                task = asyncio.create_task(self.announce(note))
                self._announcing.add(task)
                task.add_done_callback(self._announcing.discard)
        elif change.why == "learned":
            log.info(
                "pacing: idle write latency %.1f ms; writes may take up to %.1f ms (budget %gx)",
                change.idle * 1000, pacer.target * 1000, budget,
            )  # fmt: skip
        else:
            log.debug("pacing: %s (%s)", change.describe(budget=budget), change.why)

    def pacing_report(self) -> dict[str, float | int]:
        """What the pacer ended with, for the run's report."""
        return {
            "latencyBudget": self.latency_budget,
            "idleLatencySeconds": round(self.pacer.idle, 4),
            "latencySeconds": round(self.pacer.latency, 4),
            "concurrency": self.pacer.limit,
            "hardBackoffs": self.hard_backoffs,
        }

    name: ClassVar[str] = "rewrite"

    async def migrate(self, res: discovery.ApiResource, *, target: str) -> logic.ResourceResult:
        """List and rewrite every object; a failing page request is tried again where the list was (transient
        failures only: never the whole list again, which would rewrite and count every object twice)."""
        group_resource = res.group_resource
        result = logic.ResourceResult(group_resource)
        counters = self.metrics.object_counters(group_resource)
        try:
            await self._list_and_put(res, result, counters)
        except Stop as stop:
            result.error = f"stopped: {stop}"
        except Exception as error:
            if retry.classify(error) is None:
                raise
            result.error = f"list: {retry.describe(error)}"
            log.warning("%s: listing failed: %s", group_resource, result.error)
        return result

    async def tidy(self, *, target: str) -> list[str]:
        """After a successful run: nothing to clean up."""
        return []

    async def _list_and_put(
        self,
        res: discovery.ApiResource,
        result: logic.ResourceResult,
        counters: dict[str, prometheus_client.Counter],
    ) -> None:
        resource, group_resource = res.resource, res.group_resource
        in_flight: set[asyncio.Task[None]] = set()
        books = None if self.dry_run else self.bookmarks
        start = books.start(group_resource) if books is not None else ""
        if start:
            log.info("%s: going on from the last bookmark of this run", group_resource)
        ledger = logic.Pages()
        try:
            pages = self.kube.list_pages(
                resource.path(), limit=self.page_size, start=start, policy=self._policy, on_error=self._count
            )
            async for page in listed_ahead(pages):
                api_version = str(page.get("apiVersion") or resource.api_version)
                kind = str(page.get("kind") or "").removesuffix("List")
                items = page.get("items") or []
                result.listed += len(items)
                if self.on_page is not None:
                    await self.on_page(page)
                if self.dry_run:
                    continue
                index = ledger.add(
                    objects=len(items), token=str(page.get("metadata", {}).get("continue") or "")
                )
                for item in items:
                    # List items of built-in types lack apiVersion/kind; the PUT needs them.
                    item.setdefault("apiVersion", api_version)
                    item.setdefault("kind", kind)
                    if self.gate is not None:
                        await self.gate()
                    ticket = await self._window.acquire()
                    task = asyncio.create_task(self._put(resource, item, result, counters, ticket))
                    in_flight.add(task)
                    task.add_done_callback(self._done(in_flight, ledger=ledger, page=index))
                # A failed object keeps the bookmark where it is: a resumed list must come back to it.
                if books is not None and not result.failed and (token := ledger.advance()):
                    await books.reached(group_resource, token)
        finally:
            if in_flight:
                await asyncio.gather(*in_flight, return_exceptions=True)

    def _done(
        self, in_flight: set[asyncio.Task[None]], *, ledger: logic.Pages, page: int
    ) -> Callable[[asyncio.Task[None]], None]:
        def release(task: asyncio.Task[None]) -> None:
            in_flight.discard(task)
            ledger.done(page)
            self._window.release()

        return release

    async def _put(
        self,
        resource: resources.Resource,
        item: JSON,
        result: logic.ResourceResult,
        counters: dict[str, prometheus_client.Counter],
        ticket: Ticket,
    ) -> None:
        metadata = item.get("metadata") or {}
        path = resource.path(namespace=metadata.get("namespace"), name=str(metadata.get("name") or ""))
        try:
            outcome = await self._rewrite(path, item, ticket)
        except Exception as error:
            reason = retry.classify(error)
            if reason == "not_found":
                result.not_found += 1
                counters["not_found"].inc()
            elif reason is None:
                raise
            else:
                result.failed += 1
                if not result.error:
                    name = f"{metadata.get('namespace') or ''}/{metadata.get('name')}"
                    result.error = f"object {name}: {retry.describe(error)}"
                    log.warning("%s: rewriting an object failed: %s", result.group_resource, result.error)
            return
        if outcome == "conflict":
            result.conflicts += 1
        else:
            result.migrated += 1
        counters[outcome].inc()

    async def _rewrite(self, path: str, item: JSON, ticket: Ticket) -> Literal["migrated", "conflict"]:
        """PUT ``item`` back; after a 409, read the object again and PUT what was read: ``conflict`` when that
        write changed nothing (the resourceVersion read comes back: it was stored at the new version
        already), else ``migrated``. Raises what the last try met (a 409 after CONFLICT_TRIES)."""
        body, reread = item, False
        for tries in range(1, CONFLICT_TRIES + 1):
            await self._limiter.acquire()
            try:
                answer = await self._timed_put(path, body, ticket)
            except ApiError as error:
                if not error.conflict or tries == CONFLICT_TRIES:
                    raise
                body = await self.kube.request("GET", path, policy=self._policy, on_error=self._count)
                reread = True
                continue
            unchanged = reread and _resource_version(answer) == _resource_version(body)
            return "conflict" if unchanged else "migrated"
        raise AssertionError("unreachable: the last try returns or raises")

    async def _timed_put(self, path: str, body: JSON, ticket: Ticket) -> JSON:
        """One PUT (its transient failures retried), its latency reported to the window when it was
        answered at the first try, or its throttling when it was not."""
        troubled = False

        def noted(reason: retry.Reason, error: BaseException) -> None:
            nonlocal troubled
            self._count(reason, error)
            if reason in retry.TRANSIENT:
                troubled = True
                self._window.throttled(ticket)

        started = time.monotonic()
        try:
            answer = await self.kube.request("PUT", path, body=body, policy=self._policy, on_error=noted)
        except ApiError:
            if not troubled:
                self._window.answered(ticket, latency=time.monotonic() - started)
            raise
        if not troubled:
            self._window.answered(ticket, latency=time.monotonic() - started)
        return answer


async def listed_ahead(pages: AsyncGenerator[JSON]) -> AsyncIterator[JSON]:
    """Each page of ``pages`` while the next one is being listed: the writes of a page do not wait for the
    next list request (which would leave the window empty while it is answered)."""
    upcoming: asyncio.Task[JSON | None] = asyncio.create_task(anext(pages, None))
    try:
        while (page := await upcoming) is not None:
            upcoming = asyncio.create_task(anext(pages, None))
            yield page
    finally:
        if not upcoming.done():
            upcoming.cancel()
            await asyncio.gather(upcoming, return_exceptions=True)
        await pages.aclose()


def _resource_version(obj: JSON) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")
