"""The life of a controller process: config → logging → client → metrics/health → leadership → work.

A controller is a :class:`reconciler.Reconciler` subclass. Everything around it — flags, env, exit code 2
on bad config, JSON logs, the one ApiClient, /metrics, /healthz, /readyz, /status, the Lease, SIGTERM,
"any task ends → the process ends" — lives here, once. ``main`` runs one controller (its console script);
``main_combined`` runs several in one process: one client and one server, each controller still with its
own config, agreement feed, state ConfigMap, Lease and metric prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from typing import Any

import prometheus_client

from controllers.kube import auth, client, leases
from controllers.runtime import config as config_module
from controllers.runtime import context, logs, reconciler, secure, server

log = logging.getLogger(__name__)

Controller = type[reconciler.Reconciler[Any]]
COMBINED = "kube-upgrade-controllers"  # the name of a combined process (its env prefix, its logs)


class LostLeadership(Exception):
    pass


def load(controller: Controller, argv: Sequence[str]) -> config_module.BaseConfig:
    """The controller's config from ``argv``, its environment variables and its config file."""
    return config_module.load(
        controller.config_type,
        argv,
        prog=controller.name,
        prefix=config_module.env_prefix(controller.name),
        description=controller.description,
    )


def main(controller: Controller, argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: returns the exit code."""
    try:
        cfg = load(controller, sys.argv[1:] if argv is None else argv)
    except config_module.ConfigError as error:
        print(f"{controller.name}: configuration error: {error}", file=sys.stderr)
        return reconciler.EXIT_CONFIG
    logs.setup(controller=controller.name, fmt=cfg.log_format, level=cfg.log_level)
    return _run([(controller, cfg)], process=cfg)


def main_combined(controllers: Sequence[Controller], argv: Sequence[str], *, description: str) -> int:
    """Several controllers in one process. ``argv`` holds options every controller has (they apply to each);
    each controller reads the rest from its own environment variables and config file (``<PREFIX>_CONFIG``).
    The process's own settings (client, bind addresses, logs) come from ``argv`` and
    ``KUBE_UPGRADE_CONTROLLERS_*``."""
    try:
        process = config_module.load(
            config_module.BaseConfig,
            argv,
            prog=f"{COMBINED} run",
            prefix=config_module.env_prefix(COMBINED),
            description=description,
        )
        if process.config:
            raise config_module.ConfigError(
                "--config: each controller reads its own file from <PREFIX>_CONFIG"
            )
        chosen = [(controller, load(controller, argv)) for controller in controllers]
    except config_module.ConfigError as error:
        print(f"{COMBINED} run: configuration error: {error}", file=sys.stderr)
        return reconciler.EXIT_CONFIG
    logs.setup(controller=COMBINED, fmt=process.log_format, level=process.log_level)
    return _run(chosen, process=process)


def _run(
    chosen: Sequence[tuple[Controller, config_module.BaseConfig]], *, process: config_module.BaseConfig
) -> int:
    try:
        return asyncio.run(_serve(chosen, process=process))
    except KeyboardInterrupt:
        return reconciler.EXIT_OK


async def _serve(
    chosen: Sequence[tuple[Controller, config_module.BaseConfig]], *, process: config_module.BaseConfig
) -> int:
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

    kube = await client.connect(kubeconfig=process.kubeconfig or None)
    registry = prometheus_client.CollectorRegistry()  # one per process: the prefixes keep them apart
    running = [
        controller(context.build(name=controller.name, config=cfg, kube=kube, registry=registry))
        for controller, cfg in chosen
    ]
    runner = None
    try:
        if process.once:
            return max([await reconciler.once(each) for each in running])
        runner = await server.start(
            addresses={process.metrics_bind_address, process.health_probe_bind_address},
            registry=registry,
            health={each.name: each.ctx.health for each in running},
            routes=routes(running),
            secure=secure.serving(
                address=process.metrics_bind_address,
                cert_dir=process.metrics_cert_dir,
                authorizer=auth.Authorizer(kube),
            )
            if process.metrics_secure
            else None,
        )
        return await supervise({asyncio.create_task(_life(each), name=each.name) for each in running})
    except asyncio.CancelledError:
        if stopping:
            return reconciler.EXIT_OK
        raise
    except LostLeadership as error:
        log.error("%s", error)
        return reconciler.EXIT_FAILED
    except Exception:
        log.exception("stopping after a failure")
        return reconciler.EXIT_FAILED
    finally:
        if runner is not None:
            await runner.cleanup()
        await kube.close()


def routes(running: Sequence[reconciler.Reconciler[Any]]) -> dict[str, Any]:
    """``/status/<name>`` per controller; ``/status`` is the one controller's, or all of them by name."""
    found: dict[str, Any] = {f"/status/{each.name}": each.status for each in running}
    found["/status"] = (
        running[0].status if len(running) == 1 else lambda: {each.name: each.status() for each in running}
    )
    return found


async def _life(controller: reconciler.Reconciler[Any]) -> int:
    """One controller: its Lease (with --leader-elect), then its agreement feed and its skeleton."""
    ctx = controller.ctx
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
        asyncio.create_task(ctx.agreements.run(), name=f"{controller.name} agreement"),
        asyncio.create_task(reconciler.run(controller), name=controller.name),
    }
    if cfg.leader_elect:
        keep = _keep_lease(ctx, lease_name=lease_name, identity=identity)
        tasks.add(asyncio.create_task(keep, name=f"{controller.name} lease"))
    try:
        return await supervise(tasks)
    finally:
        is_leader.set(0)
        if cfg.leader_elect:
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    leases.release(ctx.kube, namespace=cfg.namespace, name=lease_name, identity=identity)
                )
                log.info("released leadership of %s/%s", cfg.namespace, lease_name)


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
    return reconciler.EXIT_FAILED


async def _acquire(ctx: context.Context[Any], *, lease_name: str, identity: str) -> None:
    cfg = ctx.config
    while True:
        outcome = await _lease_round(ctx, lease_name=lease_name, identity=identity)
        if outcome in ("acquired", "renewed"):
            return
        await asyncio.sleep(cfg.retry_period_seconds)


async def _keep_lease(ctx: context.Context[Any], *, lease_name: str, identity: str) -> None:
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


async def _lease_round(ctx: context.Context[Any], *, lease_name: str, identity: str) -> leases.Outcome:
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
