"""verdict-relay's sync: mirror each Cluster API workload cluster's verdict into its Cluster's namespace; and
the Runtime Extension that answers Cluster API's upgrade hooks from those mirrors.

Woken by Cluster changes and every poll interval. Each workload cluster's verdict is read beside the loop
(one item per Cluster, at most ``--concurrency`` at once, each at most every ``--poll-interval-seconds``):
through the Cluster's ``<cluster>-kubeconfig`` Secret, a GET of one ConfigMap, nothing else. A verdict
changes rarely and a watch per workload cluster would hold a connection and a client per cluster, so it is
read on a period; an acknowledgement's expiry, known in advance, turns the mirror at its time without a read.
The mirrors are written when they change; the extension reads them at every hook call, so every replica
answers the same, leader or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

from aiohttp import web

from controllers.kube import state, watch
from controllers.runtime import config, context, reconciler, secure
from controllers.structs import gate, refs
from controllers.structs import status as status_module
from controllers.verdict_relay import effects, logic
from controllers.verdict_relay import metrics as metrics_module

log = logging.getLogger(__name__)

NAME = "verdict-relay"
DESCRIPTION = (
    "The upgrade gate in a Cluster API management cluster: read each workload cluster's verdict (its "
    "upgrade-readiness verdict ConfigMap) through the Cluster's <cluster>-kubeconfig Secret, read-only, and "
    "mirror it into the Cluster's namespace, where the chart's admission policies read it; optionally serve "
    "Cluster API's Runtime Extension (BeforeClusterUpgrade, BeforeControlPlaneUpgrade) that holds an upgrade "
    "while the gate refuses it."
)
MAX_HOOK_BODY = 4 * 1024 * 1024  # a hook request carries the whole Cluster object
HOOK_TIMEOUT_SECONDS = 10  # what discovery tells Cluster API to wait for an answer


@dataclasses.dataclass(frozen=True)
class VerdictRelayConfig(config.BaseConfig):
    verdict_namespace: str = config.option(
        "kube-upgrade", "Namespace of upgrade-readiness (its verdict ConfigMap) in the workload clusters."
    )
    verdict_config_map: str = config.option(
        "kube-upgrade-controllers-upgrade-readiness-verdict",
        "Name of the verdict ConfigMap in the workload clusters (<release>-upgrade-readiness-verdict of the "
        "chart installed there).",
    )
    mirror_config_map: str = config.option(
        "",
        "Name of the mirror ConfigMap written in each Cluster's namespace; empty: <release>-upgrade-verdicts.",
    )
    cluster_namespaces: tuple[str, ...] = config.option(
        [], "Relay only the Clusters in these namespaces (where its RBAC lets it read Secrets); empty: all."
    )
    poll_interval_seconds: float = config.option(
        30.0, "Read each workload cluster's verdict at least this often.", check=config.positive
    )
    read_timeout_seconds: float = config.option(
        10.0, "Give up on a workload cluster that has not answered after this long.", check=config.positive
    )
    concurrency: int = config.option(8, "Workload clusters read at once.", check=config.positive)
    extension_bind_address: str = config.option(
        "0",
        "HOST:PORT of the HTTPS Runtime Extension (Cluster API's BeforeClusterUpgrade and "
        "BeforeControlPlaneUpgrade hooks); '0': not served.",
        check=config.bind_address,
    )
    extension_cert_dir: str = config.option(
        "",
        "Directory with tls.crt and tls.key of the extension (the ExtensionConfig's caBundle must trust it); "
        "empty: a self-signed certificate made at start. Read when the extension starts.",
    )
    retry_after_seconds: int = config.option(
        30,
        "How long Cluster API waits before asking again while the gate holds an upgrade.",
        check=config.positive,
    )

    @property
    def mirror_name(self) -> str:
        return self.mirror_config_map or f"{self.release}-upgrade-verdicts"


class VerdictRelay(reconciler.Reconciler[VerdictRelayConfig]):
    name = NAME
    description = DESCRIPTION
    config_type = VerdictRelayConfig
    event_action = "Relay"

    def __init__(
        self, ctx: context.Context[VerdictRelayConfig], *, wall_clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(ctx)
        self.cfg = ctx.config
        self.wall_clock = wall_clock  # an acknowledgement expires at a wall-clock time
        self.metrics = metrics_module.Metrics(ctx.exporter)
        self.clusters = watch.Store(watch.Stream(effects.CLUSTERS), logic.cluster_ref)
        self.readings: dict[str, logic.Reading] = {}
        self.read_at: dict[str, float] = {}  # the loop's clock
        self._mirrors: dict[str, dict[str, str]] = {}

    def wakes(self) -> reconciler.Wakes:
        return reconciler.Wakes(
            stores=(self.clusters,), agreement=False, every=self.cfg.poll_interval_seconds
        )

    async def sync(self) -> reconciler.Synced:
        loop_now, now = asyncio.get_running_loop().time(), self.wall_clock()
        chosen = set(self.cfg.cluster_namespaces)
        clusters = {c.key: c for c in self.clusters.items.values() if not chosen or c.namespace in chosen}
        for key in set(self.readings) - set(clusters):  # a Cluster that went
            self.readings.pop(key, None)
            self.read_at.pop(key, None)
        due = sorted(
            (
                c
                for key, c in clusters.items()
                if loop_now - self.read_at.get(key, -1e18) >= self.cfg.poll_interval_seconds
            ),
            key=lambda c: self.read_at.get(c.key, -1e18),
        )
        if self.cfg.once:  # one pass: every verdict read before the mirrors are written
            limit = asyncio.Semaphore(self.cfg.concurrency)

            async def read(cluster: logic.ClusterRef) -> None:
                async with limit:
                    await self._read(cluster)

            await asyncio.gather(*(read(cluster) for cluster in due))
            due = []
        for cluster in due:
            if len(self.working) >= self.cfg.concurrency:
                break
            if cluster.key not in self.working:
                self.read_at[cluster.key] = loop_now
                self.run_item(
                    cluster.key, self._read(cluster), what=f"read the verdict of cluster {cluster.key}"
                )
        mirrors, skipped = logic.mirrors(clusters.values(), self.readings, now=now)
        for namespace, data in mirrors.items():
            if self._mirrors.get(namespace) != data:
                await self._write_mirror(namespace, data)
        for namespace in set(self._mirrors) - set(mirrors):  # no Cluster left there: the mirror says none
            await self._write_mirror(namespace, {})
        states = [logic.state_of(self.readings.get(key), now=now) for key in clusters]
        self.metrics.observe_states(states)
        for news in await self.publish(self._status(clusters.values(), skipped, now=now)):
            log.info("%s", news.note)
        again = min(
            [self.cfg.poll_interval_seconds]
            + [
                r.verdict.expires - now
                for r in self.readings.values()
                if r.verdict and r.verdict.expires and r.verdict.expires > now
            ]
        )
        return reconciler.Synced(ok=True, again_in=max(again, 0.0) + 0.2)

    async def _read(self, cluster: logic.ClusterRef) -> None:
        reading = await effects.read_verdict(
            self.ctx.kube,
            cluster=cluster,
            verdict_namespace=self.cfg.verdict_namespace,
            verdict_name=self.cfg.verdict_config_map,
            request_timeout=self.cfg.read_timeout_seconds,
        )
        self.metrics.observe_read(reading)
        if reading.verdict is None and reading != self.readings.get(cluster.key):
            log.warning("cluster %s: no verdict: %s", cluster.key, reading.problem)
        self.readings[cluster.key] = reading

    async def _write_mirror(self, namespace: str, data: dict[str, str]) -> None:
        if not self.cfg.dry_run:
            await state.replace_data(
                self.ctx.kube, namespace=namespace, name=self.cfg.mirror_name, data=data, controller=NAME
            )
        self._mirrors[namespace] = data

    def _status(
        self, clusters: Iterable[logic.ClusterRef], skipped: list[str], *, now: float
    ) -> status_module.Status:
        """A condition per Cluster (an Event on the Cluster when its verdict changes)."""
        conditions = []
        counts = dict.fromkeys(logic.STATES, 0)
        for cluster in sorted(clusters, key=lambda c: c.key):
            reading = self.readings.get(cluster.key)
            state_now = logic.state_of(reading, now=now)
            counts[state_now] += 1
            mirrored = logic.mirrored(cluster, reading, now=now)
            conditions.append(
                status_module.Condition(
                    "verdict",
                    state_now,
                    {
                        "upgradeable": "UpgradeGateOpen",
                        "blocked": "UpgradeGateClosed",
                        "unread": "UpgradeGateNoVerdict",
                    }[state_now],
                    gate.bounded(mirrored.summary if reading and reading.verdict else mirrored.reasons)[
                        :1024
                    ],
                    subject=f"Cluster {cluster.key}",
                    ref=refs.ObjectRef(
                        kind="Cluster",
                        name=cluster.name,
                        namespace=cluster.namespace,
                        api_version=f"{effects.CLUSTERS.group}/{effects.CLUSTERS.version}",
                        uid=cluster.uid,
                    ),
                    warning=state_now != "upgradeable",
                )
            )
        progress = ", ".join(f"{n} {s}" for s, n in counts.items()) + (
            f"; not mirrored (names that cannot be keys): {', '.join(skipped)}" if skipped else ""
        )
        return status_module.Status(phase="Relaying", progress=progress, conditions=tuple(conditions))

    # --- the Runtime Extension -------------------------------------------------------------------------

    def servers(self) -> Sequence[Coroutine[Any, Any, None]]:
        if self.cfg.extension_bind_address in ("0", "") or self.cfg.once:
            return ()
        return (self._serve_extension(),)

    async def _serve_extension(self) -> None:
        """Cluster API's Runtime Extension over HTTPS, for as long as the process lives (on every replica)."""
        app = web.Application(client_max_size=MAX_HOOK_BODY)
        prefix = f"/{logic.HOOKS_API_VERSION}"
        app.router.add_post(f"{prefix}/discovery", self._discovery)
        for handler, hook in logic.HANDLERS.items():
            app.router.add_post(f"{prefix}/{hook.lower()}/{handler}", self._hook(hook))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, _, port = self.cfg.extension_bind_address.rpartition(":")
        tls = secure.tls_context(cert_dir=self.cfg.extension_cert_dir)
        await web.TCPSite(runner, host or "0.0.0.0", int(port), ssl_context=tls).start()
        log.info("serving the Runtime Extension on %s", self.cfg.extension_bind_address)
        try:
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()

    async def _discovery(self, _: web.Request) -> web.Response:
        return web.json_response(logic.discovery(timeout_seconds=HOOK_TIMEOUT_SECONDS))

    def _hook(self, hook: str) -> Callable[[web.Request], Coroutine[Any, Any, web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
            parsed = logic.hook_request(hook, body)
            if isinstance(parsed, str):
                self.metrics.observe_answer(hook, "failure")
                return web.json_response(logic.hook_failure(hook, parsed))
            data = await effects.read_mirror(
                self.ctx.kube, namespace=parsed.cluster.namespace, name=self.cfg.mirror_name
            )
            prefix = gate.cluster_prefix(parsed.cluster.name)
            verdict: gate.GateVerdict | str
            if isinstance(data, str):
                verdict = data
            elif prefix is None:
                verdict = "the cluster's name cannot be a key of the mirror"
            else:
                verdict = gate.read(data, prefix=prefix)
            answer, response = logic.hook_answer(
                parsed, verdict, now=self.wall_clock(), retry_after_seconds=self.cfg.retry_after_seconds
            )
            self.metrics.observe_answer(hook, answer)
            log.info("%s %s: %s", hook, parsed.cluster.key, response["message"])
            return web.json_response(response)

        return handle
