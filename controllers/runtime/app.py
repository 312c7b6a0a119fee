"""The life of a controller process: config → logging → client → metrics/health → leadership → work.

A controller is a :class:`reconciler.Reconciler` subclass. Everything around it — flags, env, exit code 2
on bad config, JSON logs, the one ApiClient, /metrics, /healthz, /readyz, /status, the Lease, SIGTERM,
"any task ends → the process ends" — lives here, once. ``main`` runs one controller (its console script);
``main_combined`` runs several in one process: one client and one server, each controller still with its
own config, agreement feed, state ConfigMap, Lease and metric prefix.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
import uuid
from collections.abc import Coroutine, Sequence
from typing import Any, Literal

import prometheus_client

from controllers.kube import auth, client, election, retry
from controllers.runtime import config as config_module
from controllers.runtime import context, exits, logs, reconciler, secure, server
from controllers.structs import leases

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
        return exits.USAGE
    logs.setup(controller=controller.name, fmt=cfg.log_format, level=cfg.log_level)
    return _run([(controller, cfg)], process=cfg)


def main_combined(
    controllers: Sequence[Controller], argv: Sequence[str], *, prog: str = f"{COMBINED} run", description: str
) -> int:
    """Several controllers in one process. ``argv`` holds options every controller has (they apply to each);
    each controller reads the rest from its own environment variables and config file (``<PREFIX>_CONFIG``).
    The process's own settings (client, bind addresses, logs) come from ``argv`` and
    ``KUBE_UPGRADE_CONTROLLERS_*``."""
    try:
        process = config_module.load(
            config_module.BaseConfig,
            argv,
            prog=prog,
            prefix=config_module.env_prefix(COMBINED),
            description=description,
            omit=frozenset({"config"}),  # each controller reads its own file from <PREFIX>_CONFIG
        )
        chosen = [(controller, load(controller, argv)) for controller in controllers]
    except config_module.ConfigError as error:
        print(f"{prog}: configuration error: {error}", file=sys.stderr)
        return exits.USAGE
    logs.setup(controller=COMBINED, fmt=process.log_format, level=process.log_level)
    return _run(chosen, process=process)


def _run(
    chosen: Sequence[tuple[Controller, config_module.BaseConfig]], *, process: config_module.BaseConfig
) -> int:
    try:
        return asyncio.run(_serve(chosen, process=process))
    except KeyboardInterrupt:
        return exits.OK
    except client.KubeconfigError as error:
        log.error("configuration error: %s", error)
        return exits.USAGE


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
    electing = [cfg for _, cfg in chosen if cfg.leader_elect and not cfg.once]
    lease_kube = None
    if electing:  # its own connections and deadlines, as kube-controller-manager's leader-election client
        lease_kube = await client.connect(
            kubeconfig=process.kubeconfig or None,
            request_timeout=lease_request_timeout(min(cfg.renew_deadline_seconds for cfg in electing)),
            fresh_connections=True,
            policy=retry.ONCE,  # the elector tries again itself, every retry period
        )
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
            metrics_address=process.metrics_bind_address,
            secure=secure.serving(
                address=process.metrics_bind_address,
                cert_dir=process.metrics_cert_dir,
                authorizer=auth.Authorizer(kube),
            )
            if process.metrics_secure
            else None,
        )
        await live_all(
            [
                *(life(each, lease_kube=lease_kube) for each in running),
                *(served for each in running for served in each.servers()),
            ]
        )
        return exits.BLOCKED  # not reached: a controller's life ends only when cancelled
    except asyncio.CancelledError:
        if stopping:
            return exits.OK
        raise
    except Exception:
        log.exception("stopping after a failure")
        return exits.BLOCKED
    finally:
        if runner is not None:
            await runner.cleanup()
        if lease_kube is not None:
            await lease_kube.close()
        await kube.close()


def routes(running: Sequence[reconciler.Reconciler[Any]]) -> dict[str, Any]:
    """``/status/<name>`` per controller; ``/status`` is the one controller's, or all of them by name."""
    found: dict[str, Any] = {f"/status/{each.name}": each.status for each in running}
    found["/status"] = (
        running[0].status if len(running) == 1 else lambda: {each.name: each.status() for each in running}
    )
    return found


# A controller that failed is started again in its process after about 1 s, 2 s, 4 s, … up to a minute;
# after DOWN_AFTER failures in a row /healthz reports it down (the kubelet then restarts the pod), until a
# run of it has lasted STEADY_SECONDS.
RESTART = retry.RetryPolicy(base=1.0, cap=60.0)
DOWN_AFTER = 5
# Giving the Lease up when stopping: a few quick tries, transient failures and conflicts (read again).
RELEASE = retry.RetryPolicy(base=0.2, cap=1.0, attempts=3, on=retry.TRANSIENT | {"conflict"})
STEADY_SECONDS = 300.0


def lease_request_timeout(renew_deadline: float) -> float:
    """The deadline of one Lease call: a renewal that hangs on an apiserver going away is given up early
    enough to try again (on a fresh connection, likely to another apiserver) within the renew deadline."""
    return min(5.0, max(1.0, renew_deadline / 3))


async def live_all(lives: Sequence[Coroutine[Any, Any, None]]) -> None:
    """Every controller's life, until cancelled; then each is cancelled and waited for, so that every one
    gives its Lease up before the process closes its connections (``gather`` returned at the first that
    ended, and a second controller's release was cut off: its Lease was left to expire)."""
    async with asyncio.TaskGroup() as group:
        for each in lives:
            group.create_task(each)


async def life(
    controller: reconciler.Reconciler[Any],
    *,
    lease_kube: client.Kube | None,
    restart: retry.RetryPolicy = RESTART,
) -> None:
    """One controller for as long as the process lives: standby until it leads (``--leader-elect``), then
    its work until leadership ends (back to standby, to compete again) or something fails (started again
    after a backoff). Only cancellation ends it; a failure never reaches the other controllers."""
    ctx = controller.ctx
    loop = asyncio.get_running_loop()
    backoff = retry.Backoff(restart)
    elector = None
    if ctx.config.leader_elect:
        assert lease_kube is not None
        elector = Elector(ctx, kube=lease_kube, name=f"{ctx.config.release}-{controller.name}")

    def steady() -> None:
        backoff.reset()
        ctx.health.down = ""

    while True:
        calm = loop.call_later(STEADY_SECONDS, steady)
        try:
            await _term(controller, elector=elector)
        except LostLeadership as lost:
            ctx.loop_metrics.leadership_lost.inc()
            log.warning("%s; back to standby", lost)
        except Exception as error:
            delay = backoff.next_delay()
            ctx.loop_metrics.restarts.inc()
            log.exception("%s stopped after a failure; starting it again in %.1f s", controller.name, delay)
            if backoff.attempt >= DOWN_AFTER:
                cause = root_cause(error)
                ctx.health.down = f"failed {backoff.attempt} times in a row: {type(cause).__name__}: {cause}"
            await asyncio.sleep(delay)
        finally:
            calm.cancel()


def root_cause(error: BaseException) -> BaseException:
    """The first error inside task groups' ExceptionGroups (what a person needs to read)."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def _term(controller: reconciler.Reconciler[Any], *, elector: Elector | None) -> None:
    """One term: wait for leadership (with an elector), then run the agreement feed and the skeleton until
    leadership is lost (raises :class:`LostLeadership`) or a task fails (raises what it raised). The Lease
    is released only when the process stops (on a loss it is either someone else's or out of reach)."""
    ctx = controller.ctx
    is_leader = ctx.loop_metrics.leader
    if elector is not None:
        ctx.health.ready, ctx.health.reason = True, "waiting for leadership"  # a standby replica is ready
        ctx.health.expect(within=None)
        await elector.acquire()
        log.info("became leader of %s/%s as %s", ctx.config.namespace, elector.name, elector.identity)
    is_leader.set(1)
    tasks = {
        asyncio.create_task(ctx.agreements.run(), name=f"{controller.name} agreement"),
        asyncio.create_task(reconciler.run(controller), name=controller.name),
    }
    if elector is not None:
        tasks.add(asyncio.create_task(elector.keep(), name=f"{controller.name} lease"))
    try:
        await supervise(tasks)
    except asyncio.CancelledError:
        if elector is not None:
            try:
                await asyncio.shield(elector.release())
            except Exception:  # a bug while stopping: shown, and the stop goes on
                log.exception("releasing %s/%s failed", ctx.config.namespace, elector.name)
        raise
    finally:
        is_leader.set(0)


async def supervise(tasks: set[asyncio.Task[Any]]) -> None:
    """Run root tasks until one ends; then cancel the rest and raise what it raised (a root task that ends by
    itself is a failure too: no half-alive controller)."""
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error
    names = ", ".join(sorted(task.get_name() for task in done))
    raise RuntimeError(f"task {names} ended by itself")


@dataclasses.dataclass
class Elector:
    """Leader election on one Lease, as client-go's leaderelection does it, through its own client: every
    call has a short deadline and a fresh connection, so that a renewal that met an apiserver going away (a
    control plane being upgraded) is tried again at once, likely on another one. Another holder's claim is
    judged by the time this replica saw its record change (clock skew cannot make a live Lease look free);
    the timings were validated with the config (leaseDuration > renewDeadline > retryPeriod * 1.2)."""

    ctx: context.Context[Any]
    kube: client.Kube
    name: str
    identity: str = dataclasses.field(
        default_factory=lambda: f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4()}"
    )
    # The Lease's record as this replica last saw it change, and when: another holder's claim runs out
    # leaseDurationSeconds after that, by this replica's clock (never by the holder's renewTime).
    observed: leases.Observed | None = None

    async def acquire(self) -> None:
        while True:
            if await self._round() in ("acquired", "renewed"):
                return
            await asyncio.sleep(self.ctx.config.retry_period_seconds)

    async def keep(self) -> None:
        """Renew every retry period; raise :class:`LostLeadership` when another replica holds the Lease or no
        renewal succeeded within the renew deadline."""
        cfg = self.ctx.config
        loop = asyncio.get_running_loop()
        last_renewed = loop.time()
        while True:
            await asyncio.sleep(cfg.retry_period_seconds)
            outcome = await self._round()
            if outcome == "held-by-other":
                raise LostLeadership(f"lost the lease {cfg.namespace}/{self.name} to another replica")
            if outcome in ("acquired", "renewed"):
                last_renewed = loop.time()
            elif loop.time() - last_renewed > cfg.renew_deadline_seconds:
                raise LostLeadership(
                    f"could not renew {cfg.namespace}/{self.name} for {cfg.renew_deadline_seconds} s"
                )

    async def release(self) -> None:
        """Give the Lease up (a few quick tries: each has the elector's short deadline, and a busy or
        restarting apiserver must not leave a stopping replica's Lease to expire); a failure is logged."""
        namespace = self.ctx.config.namespace
        try:
            await retry.call(
                lambda: election.release(
                    self.kube, namespace=namespace, name=self.name, identity=self.identity
                ),
                policy=RELEASE,
            )
        except Exception as error:
            if retry.classify(error) is None:
                raise
            log.warning(
                "could not release %s/%s (%s): it expires by itself",
                namespace,
                self.name,
                retry.describe(error),
            )
            return
        log.info("released leadership of %s/%s", namespace, self.name)

    async def _round(self) -> election.RoundOutcome | Literal["failed"]:
        """One try; an API or connection failure is "failed" (a bug is raised)."""
        cfg = self.ctx.config
        try:
            outcome, self.observed = await election.try_acquire_or_renew(
                self.kube,
                namespace=cfg.namespace,
                name=self.name,
                identity=self.identity,
                duration_seconds=cfg.lease_duration_seconds,
                observed=self.observed,
            )
            return outcome
        except Exception as error:
            if retry.classify(error) is None:
                raise
            log.warning("lease %s/%s: %s", cfg.namespace, self.name, retry.describe(error))
            return "failed"
