"""The one skeleton every controller runs on (after kube-controller-manager's controllers and kopf's reactor).

A controller declares what wakes it (:meth:`Reconciler.wakes`: the objects it watches, the masters'
agreement, a period) and implements :meth:`Reconciler.sync`, which decides and acts on what its stores and
the agreement show now. The skeleton keeps the stores current, runs ``sync`` whenever something it declared
changes (coalescing bursts), reports ready once it has observed the cluster, and runs ``sync`` exactly once
for ``--once``. Leader election and the process around it are :mod:`controllers.runtime.app`'s.

The error contract (controller-runtime's ``Reconcile → (Result, error)``, kopf's error kinds; the vocabulary
is :mod:`controllers.runtime.failure`): ``sync`` may raise. The skeleton then syncs again after a jittered
backoff (0.5 s doubling up to a minute, or what a 429's Retry-After or a ``TemporaryError(delay=)`` asks),
reset by the next sync that returns; a change that arrives meanwhile waits for it. A transient failure (a
connection refused or reset, a timeout, a 5xx, a 429, a ``TemporaryError``) is one warning line; a
``PermanentError`` is one error line and no timed retry (the next change wakes it); anything else is a bug,
logged once with its traceback, then one line per repeat. Nothing a sync raises ends the controller. The
skeleton then hands the failure to :meth:`Reconciler.failed` (by default: ``/status`` shows it as the last
error; a controller may report it more, as addon-updater does).
``sync`` returns ``Synced(ok=False)`` when it could not act but has nothing to retry (the masters do not
agree).

Per item (a node, a resource): :meth:`Reconciler.run_item` works on one item beside the loop; a temporary
failure makes that item wait out its own backoff (``self.retries``, keyed and capped; the skeleton syncs again
when the next one is due), a permanent one stops it, a bug stops the controller. Long work (a migration run):
:meth:`Reconciler.beside` runs it beside the loop and hands its result, or what it raised, to the sync that
asks (where a failure meets the backoff above).

Status: a controller hands :meth:`Reconciler.publish` its :class:`controllers.structs.status.Status`; the
skeleton renders it for ``/status`` and ``--once``, writes it to the state ConfigMap when it changed, and
records an Event for each condition that changed.

Liveness: the skeleton tells :class:`server.Probes` when the loop must come round next (a sync may take
``Wakes.sync_seconds``; a wait ends by its timeout), so ``/healthz`` fails only for a wedged loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from controllers.kube import retry, state, watch
from controllers.runtime import config as config_module
from controllers.runtime import context, exits, failure, metrics
from controllers.structs import status as status_module

log = logging.getLogger(__name__)

C = TypeVar("C", bound=config_module.BaseConfig)
T = TypeVar("T")
# A failed sync is tried again after a random delay in [0, min(60, 0.5 * 2**n)] s (reset by a success).
SYNC_RETRY = retry.RetryPolicy(base=0.5, cap=60.0)
# A failed item is tried again after 1 s, 2 s, 4 s, … up to a minute (reset by its success).
ITEM_RETRY = retry.RetryPolicy(base=1.0, cap=60.0)


@dataclasses.dataclass(frozen=True)
class Wakes:
    """What makes a controller sync: a change in any of ``stores``, of the agreement in force, and at
    least every ``every`` seconds; never more often than every ``pace`` seconds (bursts coalesce)."""

    stores: Sequence[watch.Store[Any]] = ()
    agreement: bool = True
    every: float | None = None
    pace: float = 0.0
    # The longest a sync may take before the controller counts as wedged (None: no bound; such a sync must
    # show progress some other way).
    sync_seconds: float | None = 300.0


@dataclasses.dataclass(frozen=True, slots=True)
class Synced:
    """What one sync tells the skeleton. ``ok`` False: it could not act (the masters do not agree, or
    something failed): ``--once`` exits 1. ``again_in``: sync again after this long even if nothing wakes
    it (a retry). ``pace``: the least time to the next sync, when not the declared one (busy)."""

    ok: bool = True
    again_in: float | None = None
    pace: float | None = None


class Reconciler(Generic[C]):
    """A controller: its name, config type and description, what wakes it, and its ``sync``."""

    name: ClassVar[str]
    description: ClassVar[str]
    config_type: ClassVar[type[config_module.BaseConfig]]
    # How long a failed item waits before it is tried again (:meth:`run_item`).
    item_retry: ClassVar[retry.RetryPolicy] = ITEM_RETRY
    # Whether its status goes to its state ConfigMap (the watchdog writes nothing but Events).
    writes_state: ClassVar[bool] = True
    # The action of the Events its conditions' transitions record ("Evaluate", "Observe").
    event_action: ClassVar[str] = "Reconcile"

    def __init__(self, ctx: context.Context[C]) -> None:
        self.ctx = ctx
        self._work: asyncio.TaskGroup | None = None
        self.retries: failure.ItemBackoff[str] = failure.ItemBackoff(self.item_retry)
        self.working: set[str] = set()  # the items whose work is in flight (run_item)
        self.published = status_module.Status()
        self._written: dict[str, str] = {}
        self._state: state.State | None = None
        self._news: asyncio.Queue[status_module.Transition] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def wakes(self) -> Wakes:
        raise NotImplementedError

    async def sync(self) -> Synced:
        raise NotImplementedError

    def servers(self) -> Sequence[Coroutine[Any, Any, None]]:
        """What the controller serves for as long as its process lives, on every replica, leader or not (a
        Runtime Extension's HTTPS server): run beside every controller's life; one that ends ends the process.
        None by default."""
        return ()

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (and what ``--once`` prints): the status last published."""
        return self.published.to_json()

    async def publish(
        self, status: status_module.Status, *, settled: bool = True, record: bool = True
    ) -> list[status_module.Transition]:
        """Make ``status`` the controller's status: ``/status`` and ``--once`` show it at once; the state
        ConfigMap gets it when it says something new (not before it has a phase; while not ``settled``, in
        the middle of a burst of work, only a new phase is written); an Event is recorded for each condition
        that changed (none for ``--once``, which reports on stdout): on the state ConfigMap before the state is
        written, in order with it; on other objects in the background, so that a slow API never holds the
        loop. ``record`` False: the controller writes its state ConfigMap itself (uso-runner: its checkpoint
        changes with it, atomically). Returns those transitions (for the controller's logs)."""
        news = status_module.transitions(self.published.conditions, status.conditions)
        self.published = status
        if news and not self.ctx.config.once:
            for each in news:
                if each.ref is None:
                    await self.ctx.event(
                        each.reason, each.note, action=self.event_action, warning=each.warning
                    )
                else:
                    self._news.put_nowait(each)
            if not self._news.empty() and (self._sender is None or self._sender.done()):
                self._sender = self.spawn(self._send_news(), wake=False)  # one (again after a restart)
        if not (record and self.writes_state and status.phase):
            return news
        data = status.state_data()
        if data == self._written or (not settled and data["phase"] == self._written.get("phase")):
            return news
        if self._state is None:
            self._state = await self.ctx.read_state()
        self._state = await self.ctx.update_state(self._state, data)
        self._written = data
        return news

    async def _send_news(self) -> None:
        while True:
            news = await self._news.get()
            assert news.ref is not None
            await self.ctx.recorder.emit(
                news.ref,
                reason=news.reason,
                note=news.note,
                type="Warning" if news.warning else "Normal",
                action=self.event_action,
            )

    def spawn(self, work: Coroutine[Any, Any, T], *, wake: bool = True) -> asyncio.Task[T]:
        """Run ``work`` beside the loop; the controller syncs again when it ends (unless ``wake`` is
        False). It is cancelled when the controller stops, and a failure stops the controller."""
        assert self._work is not None, "spawn() works while the skeleton runs"
        task = self._work.create_task(work)
        if wake:
            task.add_done_callback(lambda _: self.ctx.wake())
        return task

    async def failed(self, error: Exception) -> None:
        """What a failed sync leaves behind (the skeleton calls it once the failure is logged, before the
        retry): by default ``/status`` shows it as the last error and nothing is written. A controller that
        reports a failure more (addon-updater: a metric, an Event, its state) says so here; a failure to
        report is logged, never raised (the API may be what failed)."""
        self.published = dataclasses.replace(self.published, last_error=failure.describe(error))

    def ready(self, key: str) -> bool:
        """Whether item ``key`` may be worked on now: not in flight, not waiting out a failure's backoff."""
        return key not in self.working and self.retries.ready(key)

    def run_item(self, key: str, work: Coroutine[Any, Any, None], *, what: str = "") -> asyncio.Task[None]:
        """Work on item ``key`` beside the loop (it is in ``self.working`` meanwhile; start it only when
        :meth:`ready`); the controller syncs again when it ends. A temporary failure makes the item wait out
        its backoff (the skeleton syncs again when it is due), a permanent one stops it, a success forgets its
        failures; a bug stops the controller. ``what`` names the work in logs and the last error ("taint node
        w1")."""
        assert key not in self.working, f"{key} is already in flight"
        self.working.add(key)

        async def attempt() -> None:
            try:
                await work
            except Exception as error:
                if failure.kind(error) == "bug":
                    raise
                delay = self.retries.failed(key, error, what=what)
                again = "not again until it is reset" if delay is None else f"again in {delay:.1f} s"
                log.warning("%s: %s failed (%s); %s", self.name, what or key, failure.describe(error), again)
                return
            finally:
                self.working.discard(key)
            self.retries.succeeded(key)

        return self.spawn(attempt())

    def beside(self, work: Coroutine[Any, Any, T]) -> Work[T]:
        """Run long ``work`` beside the loop (sync never waits for it); the controller syncs again when it
        ends, and the sync that collects it gets its result or what it raised (:meth:`Work.result`). It is
        cancelled when the controller stops (a later term does not collect it: :attr:`Work.abandoned`)."""
        return Work(self.spawn(_capture(work)))


@dataclasses.dataclass(frozen=True, slots=True)
class _Ended(Generic[T]):
    value: T | None = None
    error: Exception | None = None


async def _capture(work: Coroutine[Any, Any, T]) -> _Ended[T]:
    try:
        return _Ended(value=await work)
    except Exception as error:  # not swallowed: the sync that collects it raises it
        return _Ended(error=error)


@dataclasses.dataclass(frozen=True, slots=True)
class Work(Generic[T]):
    """Long work beside the loop (:meth:`Reconciler.beside`)."""

    task: asyncio.Task[_Ended[T]]

    @property
    def running(self) -> bool:
        return not self.task.done()

    @property
    def abandoned(self) -> bool:
        """Cancelled (the controller stopped, or lost its term): it has no result."""
        return self.task.cancelled()

    def result(self) -> T:
        """What the finished work returned; raises what it raised (through ``sync``: the skeleton's backoff)."""
        ended = self.task.result()
        if ended.error is not None:
            raise ended.error
        return ended.value  # type: ignore[return-value]  # T: a work that returned None had T None

    async def wait(self) -> T:
        """Wait for the work to end (``--once``); its result, or what it raised."""
        await asyncio.wait({self.task})
        return self.result()


async def run(controller: Reconciler[Any]) -> None:
    """Sync whenever something the controller declared changes, until cancelled. Raises only what a watch of
    its stores raises for a bug (then the process restarts the controller)."""
    ctx, wakes = controller.ctx, controller.wakes()
    if wakes.agreement:
        ctx.agreements.listen(ctx.wake)
    loop = asyncio.get_running_loop()
    failures = Failures(name=controller.name, metrics=ctx.loop_metrics)
    async with asyncio.TaskGroup() as group:
        controller._work = group
        for store in wakes.stores:
            group.create_task(watch.follow(ctx.kube, store, changed=ctx.wake))
        ctx.health.reason = "waiting for the first list of the masters and every watched kind"
        await ctx.agreements.synced.wait()
        while not all(store.synced for store in wakes.stores):
            await ctx.changed.wait()
            ctx.changed.clear()
        ctx.health.ready, ctx.health.reason = True, "observed the cluster"
        while True:
            ctx.changed.clear()
            started = loop.time()
            ctx.health.expect(within=wakes.sync_seconds)
            timeout: float | None
            try:
                result = await controller.sync()
            except Exception as error:
                delay = failures.record(error)
                await report_failure(controller, error)
                # Nothing wakes it sooner: a change waits for the retry (a permanent failure: for a change).
                timeout, pace = delay, (wakes.pace if delay is None else delay)
            else:
                failures.reset()
                due = (result.again_in, wakes.every, controller.retries.next_in())
                timeout = min((t for t in due if t is not None), default=None)
                pace = wakes.pace if result.pace is None else result.pace
            ctx.health.expect(within=None if timeout is None else max(timeout, pace))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await ctx.changed.wait()
            if (rest := started + pace - loop.time()) > 0:
                await asyncio.sleep(rest)


@dataclasses.dataclass
class Failures:
    """A controller's failing syncs: the backoff before the next try, and the bugs already shown."""

    name: str
    metrics: metrics.LoopMetrics
    backoff: retry.Backoff = dataclasses.field(default_factory=lambda: retry.Backoff(SYNC_RETRY))
    seen: dict[str, int] = dataclasses.field(default_factory=dict)  # bug signature → times

    def record(self, error: Exception) -> float | None:
        """Count and log ``error``; returns how long to wait before the next sync (None: until a change)."""
        if isinstance(error, failure.PermanentError):
            self.metrics.sync_errors.labels(metrics.PERMANENT).inc()
            log.error("%s: sync failed for good: %s; again on the next change", self.name, error)
            return None
        reason = retry.classify(error) or (metrics.TEMPORARY if failure.kind(error) == "temporary" else None)
        delay = self.backoff.next_delay(retry_after=failure.delay_of(error))
        self.metrics.sync_errors.labels(reason or metrics.UNEXPECTED).inc()
        if reason is not None:
            log.warning(
                "%s: sync failed (%s: %s); again in %.1f s", self.name, reason, failure.describe(error), delay
            )
            return delay
        signature = f"{type(error).__qualname__}: {error}"[:300]
        self.seen[signature] = times = self.seen.get(signature, 0) + 1
        if times == 1:
            log.exception("%s: sync failed unexpectedly; again in %.1f s", self.name, delay)
        else:
            log.error(
                "%s: sync failed again (%d times): %s; again in %.1f s", self.name, times, signature, delay
            )
        return delay

    def reset(self) -> None:
        self.backoff.reset()


async def once(controller: Reconciler[Any]) -> int:
    """``--once``: list what the controller watches and the masters, sync once (waiting for the work it
    started), print its status; the exit code says whether it could act."""
    ctx, wakes = controller.ctx, controller.wakes()
    try:
        for store in wakes.stores:
            await watch.list_into(ctx.kube, store)
        await ctx.agreements.now()
    except Exception as error:
        if retry.classify(error) is None:
            raise
        shown = (
            retry.describe(error) if isinstance(error, retry.ApiError) else f"{type(error).__name__}: {error}"
        )
        log.error("%s: could not read the cluster: %s", controller.name, shown)
        return exits.UNCHECKED
    code = exits.BLOCKED
    async with asyncio.TaskGroup() as group:
        controller._work = group
        try:
            code = exits.OK if (await controller.sync()).ok else exits.BLOCKED
        except Exception as error:  # a bug with its traceback
            reason, bug = retry.classify(error), failure.kind(error) == "bug"
            shown = repr(error) if bug else failure.describe(error)
            log.error("%s: sync failed: %s", controller.name, shown, exc_info=bug)
            code = exits.UNCHECKED if reason in UNCHECKED else exits.BLOCKED
            await report_failure(controller, error)
    print(json.dumps(controller.status(), sort_keys=True, default=str))  # one line: the last one is it
    return code


async def report_failure(controller: Reconciler[Any], error: Exception) -> None:
    """The controller's :meth:`Reconciler.failed`; what keeps it from reporting is logged (a bug raised)."""
    try:
        await controller.failed(error)
    except Exception as failing:
        if failure.kind(failing) == "bug":
            raise
        log.warning("%s: could not report the failure: %s", controller.name, failure.describe(failing))


# The failures of --once that mean "could not check" (exit 3) rather than "could not act" (exit 1).
UNCHECKED: frozenset[retry.Reason] = retry.TRANSIENT | {"forbidden"}


def no_agreement(ctx: context.Context[Any]) -> str:
    """Why no agreement is in force (for logs, ``/status`` and ``--once``)."""
    observation = ctx.agreements.observation
    if observation is None:
        return "the masters were not observed yet"
    if observation.agreed:
        return f"masters agree on {observation.version}, settling"
    return f"masters do not agree: {observation.reason}"
