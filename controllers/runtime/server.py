"""One aiohttp server per process: ``/metrics``, ``/healthz``, ``/readyz`` (and extra JSON routes); with
several controllers in the process, ready and alive mean every one of them is."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from controllers.runtime.secure import PROBE_PATHS, Serving


@dataclasses.dataclass
class Probes:
    """``ready`` once the controller has observed the cluster (``reason`` says why not). Alive unless it is
    wedged: its loop did not come round by ``due`` (set by the skeleton from the controller's own wake-ups
    and its sync deadline; None while it waits for a change with no deadline), or it is ``down`` (failed
    again and again on restart). Times are ``time.monotonic()``, the event loop's clock."""

    ready: bool = False
    reason: str = "starting"
    due: float | None = None
    down: str = ""
    # How late a loop may come round before it counts as wedged: a busy event loop on a loaded node.
    grace: float = 60.0
    clock: Callable[[], float] = time.monotonic

    def expect(self, *, within: float | None) -> None:
        """The loop promises to come round within ``within`` seconds, plus the grace (None: no promise, it
        waits for a change)."""
        self.due = None if within is None else self.clock() + within + self.grace

    def wedged(self) -> str:
        """Why the controller is not alive; empty when it is."""
        if self.down:
            return self.down
        if self.due is not None and (late := self.clock() - self.due) > 0:
            return f"its loop is {late:.0f} s overdue"
        return ""


def _probe(health: Mapping[str, Probes], *, problem: Callable[[Probes], str], failing: int) -> web.Response:
    reasons = [f"{name}: {why}" for name, h in health.items() if (why := problem(h))]
    return web.Response(text="; ".join(reasons) or "ok", status=failing if reasons else 200)


def make_app(
    *,
    registry: prometheus_client.CollectorRegistry,
    health: Mapping[str, Probes],
    routes: dict[str, Callable[[], Any]] | None = None,
    metrics_port: int | None = None,
    secure: Serving | None = None,
) -> web.Application:
    async def metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return _probe(health, problem=Probes.wedged, failing=500)

    async def readyz(_: web.Request) -> web.Response:
        return _probe(health, problem=lambda h: "" if h.ready else h.reason, failing=503)

    split = [] if metrics_port is None else [_probes_only_elsewhere(metrics_port)]
    app = web.Application(middlewares=[*split, *([secure.guard] if secure else [])])
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    extra = routes if routes is not None else {}

    async def handler(request: web.Request) -> web.Response:
        produce = extra.get(request.path)
        if produce is None:
            raise web.HTTPNotFound()
        return web.Response(
            text=json.dumps(produce(), indent=2, default=str), content_type="application/json"
        )

    app.router.add_get("/{path:.+}", handler)
    return app


def _probes_only_elsewhere(metrics_port: int) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        local = request.transport.get_extra_info("sockname") if request.transport else None
        if request.path not in PROBE_PATHS and local is not None and local[1] != metrics_port:
            raise web.HTTPNotFound(text="only /healthz and /readyz on the probe address")
        return await handler(request)

    return middleware


async def start(
    *,
    addresses: set[str],
    registry: prometheus_client.CollectorRegistry,
    health: Mapping[str, Probes],
    routes: dict[str, Callable[[], Any]] | None = None,
    metrics_address: str | None = None,
    secure: Serving | None = None,
) -> web.AppRunner:
    """Serve the app on every address (metrics and probe addresses may differ); '0' addresses are skipped.
    Given ``metrics_address``, any other address serves only the probes (a NetworkPolicy may admit everyone
    to the probe port; '0': no metrics at all). With ``secure`` (--metrics-secure) the metrics address
    serves HTTPS behind its guard (runtime/secure.py)."""
    metrics_port = None if metrics_address is None else int(metrics_address.rpartition(":")[2] or 0)
    app = make_app(registry=registry, health=health, routes=routes, metrics_port=metrics_port, secure=secure)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for address in sorted(a for a in addresses if a not in ("0", "")):
        host, _, port = address.rpartition(":")
        tls = secure.context if secure and address == secure.address else None
        await web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=tls).start()
    return runner
