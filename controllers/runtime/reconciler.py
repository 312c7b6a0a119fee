"""The one skeleton every controller runs on (after kube-controller-manager's controllers and kopf's reactor).

A controller declares what wakes it (:meth:`Reconciler.wakes`: the objects it watches, the masters'
agreement, a period) and implements :meth:`Reconciler.sync`, which decides and acts on what its stores and
the agreement show now. The skeleton keeps the stores current, runs ``sync`` whenever something it declared
changes (coalescing bursts), reports ready once it has observed the cluster, and runs ``sync`` exactly once
for ``--once``. Leader election and the process around it are :mod:`controllers.runtime.app`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Coroutine, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from controllers.kube import watch
from controllers.runtime import config as config_module
from controllers.runtime import context

C = TypeVar("C", bound=config_module.BaseConfig)
T = TypeVar("T")
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class Wakes:
    """What makes a controller sync: a change in any of ``stores``, of the agreement in force, and at
    least every ``every`` seconds; never more often than every ``pace`` seconds (bursts coalesce)."""

    stores: Sequence[watch.Store[Any]] = ()
    agreement: bool = True
    every: float | None = None
    pace: float = 0.0


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

    def __init__(self, ctx: context.Context[C]) -> None:
        self.ctx = ctx
        self._work: asyncio.TaskGroup | None = None

    def wakes(self) -> Wakes:
        raise NotImplementedError

    async def sync(self) -> Synced:
        raise NotImplementedError

    def status(self) -> dict[str, Any]:
        """The ``/status`` document (and what ``--once`` prints)."""
        return {}

    def spawn(self, work: Coroutine[Any, Any, T], *, wake: bool = True) -> asyncio.Task[T]:
        """Run ``work`` beside the loop; the controller syncs again when it ends (unless ``wake`` is
        False). It is cancelled when the controller stops, and a failure stops the controller."""
        assert self._work is not None, "spawn() works while the skeleton runs"
        task = self._work.create_task(work)
        if wake:
            task.add_done_callback(lambda _: self.ctx.wake())
        return task


async def run(controller: Reconciler[Any]) -> None:
    """Sync whenever something the controller declared changes, until cancelled."""
    ctx, wakes = controller.ctx, controller.wakes()
    if wakes.agreement:
        ctx.agreements.listen(lambda _: ctx.wake())
    loop = asyncio.get_running_loop()
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
            result = await controller.sync()
            timeout = min((t for t in (result.again_in, wakes.every) if t is not None), default=None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await ctx.changed.wait()
            pace = wakes.pace if result.pace is None else result.pace
            if (rest := started + pace - loop.time()) > 0:
                await asyncio.sleep(rest)


async def once(controller: Reconciler[Any]) -> int:
    """``--once``: list what the controller watches and the masters, sync once (waiting for the work it
    started), print its status; the exit code says whether it could act."""
    ctx, wakes = controller.ctx, controller.wakes()
    for store in wakes.stores:
        await watch.list_into(ctx.kube, store)
    await ctx.agreements.now()
    async with asyncio.TaskGroup() as group:
        controller._work = group
        result = await controller.sync()
    print(json.dumps(controller.status(), sort_keys=True, default=str))  # one line: the last one is it
    return EXIT_OK if result.ok else EXIT_FAILED


def no_agreement(ctx: context.Context[Any]) -> str:
    """Why no agreement is in force (for logs, ``/status`` and ``--once``)."""
    observation = ctx.agreements.observation
    if observation is None:
        return "the masters were not observed yet"
    if observation.agreed:
        return f"masters agree on {observation.version}, settling"
    return f"masters do not agree: {observation.reason}"
