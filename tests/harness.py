"""The one way tests run a controller in process, and the one way they wait for a condition.

``running`` starts a controller as the runtime does (its agreement feed and the shared skeleton; no Lease,
no HTTP server) so that a test can read its metrics, state and ``/status``; ``eventually`` polls a condition
with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from controllers.kube import client
from controllers.runtime import config, context, reconciler

R = TypeVar("R", bound=reconciler.Reconciler[Any])


def build(controller: type[R], kube: client.Kube, cfg: config.BaseConfig) -> R:
    """The controller with a fresh Context (its own metrics registry), not running."""
    return controller(context.build(name=controller.name, config=cfg, kube=kube))


@contextlib.asynccontextmanager
async def running(controller: type[R], kube: client.Kube, cfg: config.BaseConfig) -> AsyncIterator[R]:
    """The controller running in this process, once it is ready (it has observed the cluster), until the
    block ends; fails the test if it died meanwhile."""
    instance = build(controller, kube, cfg)
    tasks = {
        asyncio.create_task(instance.ctx.agreements.run(), name="agreement"),
        asyncio.create_task(reconciler.run(instance), name=controller.name),
    }

    def ready() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # raises what ended it
        return instance.ctx.health.ready

    try:
        await eventually(ready, timeout=20, what=f"{controller.name} to be ready")
        yield instance
        for task in tasks:
            assert not task.done(), task.exception() if not task.cancelled() else "cancelled"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def metric(controller: reconciler.Reconciler[Any], name: str, **labels: str) -> float | None:
    """One sample of the controller's metrics (None when it does not exist)."""
    return controller.ctx.registry.get_sample_value(name, labels)


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "",
) -> float:
    """Poll ``check`` (sync or async) until it holds; returns the seconds it took. Fails the test after
    ``timeout``."""
    started = time.monotonic()
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, (
            f"timed out after {timeout} s waiting for {what or check}"
        )
        await asyncio.sleep(interval)
