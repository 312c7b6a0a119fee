"""The one way tests run a controller in process, and the one way they wait for a condition.

``running`` starts a controller as the runtime does (its agreement feed and the shared skeleton; no Lease,
no HTTP server) so that a test can read its metrics, state and ``/status``; ``eventually`` polls a condition
with a deadline; ``scrape`` and ``sample`` read a controller process's HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import pathlib
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NamedTuple, TypeVar

from controllers.kube import client, resources
from controllers.runtime import config, context, reconciler
from e2e import controlplane

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
        *(asyncio.create_task(served, name=f"{controller.name} serving") for served in instance.servers()),
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


async def state_events(controller: reconciler.Reconciler[Any]) -> list[client.JSON]:
    """The Events recorded so far on the controller's state ConfigMap. /status shows a new status before its
    Events are written (they go out beside the loop): wait for the one a test needs with ``eventually``."""
    ctx = controller.ctx
    listed = await ctx.kube.list_items(resources.EVENTS.path(namespace=ctx.config.namespace))
    return [e for e in listed if e["regarding"]["name"] == ctx.state_name]


def scrape(
    port: int, path: str = "/metrics", *, tls: ssl.SSLContext | None = None, token: str = ""
) -> tuple[int, str]:
    """GET ``path`` from a controller process on localhost: (status, body); (0, "") when nothing answers.
    With ``tls`` over HTTPS, with ``token`` as a bearer token."""
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}{path}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5, context=tls) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def sample(text: str, name: str) -> float | None:
    """The value of the first sample of ``name`` in Prometheus text."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Served(NamedTuple):
    process: subprocess.Popen[str]
    port: int  # of /metrics, /healthz, /readyz and /status


@contextlib.contextmanager
def serve(
    *argv: str,
    env: dict[str, str] | None = None,
    probe_port: int | None = None,
    cwd: pathlib.Path | None = None,
) -> Iterator[Served]:
    """A controller process (``argv``) serving on a free localhost port (the probes on ``probe_port`` when
    given); killed at the end, its output then printed (pytest shows it when the test failed)."""
    port = controlplane.free_port()
    bind = f"127.0.0.1:{port}"
    probes = f"127.0.0.1:{probe_port}" if probe_port else bind
    process = subprocess.Popen(
        [
            *argv,
            f"--metrics-bind-address={bind}",
            f"--health-probe-bind-address={probes}",
            "--log-format=text",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        yield Served(process, port)
    finally:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate(timeout=10)
        print(f"--- {' '.join(argv[:3])} on :{port} (exit {process.returncode}) ---\n{output}")
