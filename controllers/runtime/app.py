"""The life of a controller process: config → logging → client → metrics/health → leadership → work.

A controller is a :class:`Controller`: its name, its config dataclass, and two coroutines — ``run`` (the
daemon, until cancelled) and ``once`` (``--once``: reconcile against the agreement now, return an exit
code). Everything else — flags, env, exit code 2 on bad config, JSON logs, the one ApiClient, /metrics,
/healthz, /readyz, the Lease, SIGTERM, "any task ends → the process ends" — lives here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

import prometheus_client

from controllers.kube import client, events, leases, state
from controllers.runtime import config as config_module
from controllers.runtime import logs, metrics, server
from controllers.runtime.agreement_feed import AgreementFeed, AgreementMetrics

log = logging.getLogger(__name__)

C = TypeVar("C", bound=config_module.BaseConfig)
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class LostLeadership(Exception):
    pass


@dataclasses.dataclass
class Context(Generic[C]):
    """What a controller gets: its config, the client, the agreement feed, metrics, health, Events."""

    name: str
    config: C
    kube: client.Kube
    registry: prometheus_client.CollectorRegistry
    health: server.Health
    agreements: AgreementFeed
    recorder: events.Recorder
    routes: dict[str, Callable[[], Any]] = dataclasses.field(default_factory=dict)

    @property
    def metric_prefix(self) -> str:
        return self.name.replace("-", "_")

    @property
    def exporter(self) -> metrics.Exporter:
        return metrics.Exporter(prefix=self.metric_prefix, registry=self.registry)

    @property
    def state_name(self) -> str:
        return state.state_name(release=self.config.release, controller=self.name)

    async def read_state(self) -> state.State:
        return await state.read(self.kube, namespace=self.config.namespace, name=self.state_name)

    async def update_state(self, current: state.State, changes: dict[str, str]) -> state.State:
        """Merge ``changes`` into the state ConfigMap (not in dry-run: then ``current`` comes back)."""
        if self.config.dry_run:
            return current
        return await state.update(self.kube, current, changes, controller=self.name)


def build_context(*, name: str, config: C, kube: client.Kube) -> Context[C]:
    """A controller's Context: a fresh metrics registry, the agreement feed, the Event recorder (off in
    dry-run). The process builds one in ``main``; tests build one in process the same way."""
    registry = prometheus_client.CollectorRegistry()
    exporter = metrics.Exporter(prefix=name.replace("-", "_"), registry=registry)
    return Context(
        name=name,
        config=config,
        kube=kube,
        registry=registry,
        health=server.Health(),
        agreements=AgreementFeed(kube=kube, config=config, metrics=AgreementMetrics(exporter)),
        recorder=events.Recorder(kube=kube, controller=name, enabled=not config.dry_run),
    )


class Controller(Protocol[C]):
    name: str
    description: str
    config_type: type[C]

    async def run(self, ctx: Context[C]) -> None: ...

    async def once(self, ctx: Context[C]) -> int: ...


def main(controller: Controller[Any], argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: returns the exit code."""
    prefix = config_module.env_prefix(controller.name)
    try:
        cfg = config_module.load(
            controller.config_type,
            sys.argv[1:] if argv is None else argv,
            prog=controller.name,
            prefix=prefix,
            description=controller.description,
        )
    except config_module.ConfigError as error:
        print(f"{controller.name}: configuration error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logs.setup(controller=controller.name, fmt=cfg.log_format, level=cfg.log_level)
    try:
        return asyncio.run(_serve(controller, cfg))
    except KeyboardInterrupt:
        return EXIT_OK


async def _serve(controller: Controller[Any], cfg: config_module.BaseConfig) -> int:
    main_task = asyncio.current_task()
    assert main_task is not None
    loop = asyncio.get_running_loop()
    stopping = False

    def on_signal() -> None:
        nonlocal stopping
        log.info("signal received, stopping")
        stopping = True
        main_task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)

    kube = await client.connect(kubeconfig=cfg.kubeconfig or None)
    ctx = build_context(name=controller.name, config=cfg, kube=kube)
    runner = None
    try:
        if cfg.once:
            return await controller.once(ctx)
        runner = await server.start(
            addresses={cfg.metrics_bind_address, cfg.health_probe_bind_address},
            registry=ctx.registry,
            health=ctx.health,
            routes=ctx.routes,
        )
        return await _run_daemon(controller, ctx)
    except asyncio.CancelledError:
        if stopping:
            return EXIT_OK
        raise
    except LostLeadership as error:
        log.error("%s", error)
        return EXIT_FAILED
    except Exception:
        log.exception("%s failed", controller.name)
        return EXIT_FAILED
    finally:
        if runner is not None:
            await runner.cleanup()
        await kube.close()


async def _run_daemon(controller: Controller[Any], ctx: Context[Any]) -> int:
    cfg = ctx.config
    identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"
    is_leader = ctx.exporter.gauge("leader", "1 while this replica leads (always 1 without --leader-elect).")
    lease_name = f"{cfg.release}-{controller.name}"
    if cfg.leader_elect:
        ctx.health.ready, ctx.health.reason = True, "waiting for leadership"
        await _acquire(ctx, lease_name=lease_name, identity=identity)
        log.info("became leader of %s/%s as %s", cfg.namespace, lease_name, identity)
    is_leader.set(1)
    tasks = {
        asyncio.create_task(ctx.agreements.run(), name="agreement"),
        asyncio.create_task(controller.run(ctx), name=controller.name),
    }
    if cfg.leader_elect:
        tasks.add(
            asyncio.create_task(_keep_lease(ctx, lease_name=lease_name, identity=identity), name="lease")
        )
    try:
        return await supervise(tasks)
    finally:
        is_leader.set(0)
        if cfg.leader_elect:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    leases.release(ctx.kube, namespace=cfg.namespace, name=lease_name, identity=identity)
                )
                log.info("released leadership")


async def supervise(tasks: set[asyncio.Task[Any]]) -> int:
    """Run root tasks until one ends; then cancel the rest. A root task that ends is a failure: the process
    must not live on half-alive. Returns the exit code (raises what the first task raised)."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        log.error("task %s ended; stopping the process", task.get_name())
    return EXIT_FAILED


async def _acquire(ctx: Context[Any], *, lease_name: str, identity: str) -> None:
    cfg = ctx.config
    while True:
        outcome = await _lease_round(ctx, lease_name=lease_name, identity=identity)
        if outcome in ("acquired", "renewed"):
            return
        await asyncio.sleep(cfg.retry_period_seconds)


async def _keep_lease(ctx: Context[Any], *, lease_name: str, identity: str) -> None:
    """Renew every retry period; give up (raise) when no renewal succeeded within the renew deadline."""
    cfg = ctx.config
    loop = asyncio.get_running_loop()
    last_renewed = loop.time()
    while True:
        await asyncio.sleep(cfg.retry_period_seconds)
        try:
            outcome = await _lease_round(ctx, lease_name=lease_name, identity=identity)
        except Exception as error:
            log.warning("lease renewal failed: %s", error)
            outcome = "conflict"
        if outcome == "held-by-other":
            raise LostLeadership(f"lost the lease {cfg.namespace}/{lease_name} to another replica")
        if outcome in ("acquired", "renewed"):
            last_renewed = loop.time()
        elif loop.time() - last_renewed > cfg.renew_deadline_seconds:
            raise LostLeadership(
                f"could not renew {cfg.namespace}/{lease_name} for {cfg.renew_deadline_seconds} s"
            )


async def _lease_round(ctx: Context[Any], *, lease_name: str, identity: str) -> leases.Outcome:
    cfg = ctx.config
    try:
        return await leases.try_acquire_or_renew(
            ctx.kube,
            namespace=cfg.namespace,
            name=lease_name,
            identity=identity,
            duration_seconds=cfg.lease_duration_seconds,
        )
    except client.ApiError as error:
        log.warning("lease %s/%s: %s", cfg.namespace, lease_name, error)
        return "conflict"
