"""What a controller gets from the runtime: its config, the client, the agreement feed, metrics, health,
Events, its state ConfigMap, and a way to wake its loop."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Generic, TypeVar

import prometheus_client

from controllers.kube import client, events, retry, state
from controllers.runtime import config as config_module
from controllers.runtime import metrics, server
from controllers.runtime.agreement_feed import AgreementFeed, AgreementMetrics
from controllers.structs import refs

C = TypeVar("C", bound=config_module.BaseConfig)


@dataclasses.dataclass
class Context(Generic[C]):
    name: str
    config: C
    kube: client.Kube
    registry: prometheus_client.CollectorRegistry
    health: server.Probes
    agreements: AgreementFeed
    recorder: events.Recorder
    loop_metrics: metrics.LoopMetrics
    # Set by whatever should make the controller sync again: a watch event, the agreement, its own work.
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake(self, *_: object) -> None:
        """Make the controller sync again soon (takes and ignores what a callback passes)."""
        self.changed.set()

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

    async def record(self, changes: dict[str, str]) -> state.State:
        """Merge ``changes`` into the state ConfigMap as it is now."""
        return await self.update_state(await self.read_state(), changes)

    async def event(self, reason: str, note: str, *, action: str, warning: bool = False) -> None:
        """An Event on the state ConfigMap, where a controller reports what it did to the cluster as a
        whole (best effort: an Event never fails a controller; none in dry-run)."""
        uid = ""
        if self.recorder.enabled:
            try:
                uid = (await self.read_state()).uid or ""
            except Exception as error:  # an Event without the uid still says what happened
                if retry.classify(error) is None:
                    raise
        ref = refs.ObjectRef(kind="ConfigMap", name=self.state_name, namespace=self.config.namespace, uid=uid)
        await self.recorder.emit(
            ref, reason=reason, note=note, action=action, type="Warning" if warning else "Normal"
        )


def build(
    *, name: str, config: C, kube: client.Kube, registry: prometheus_client.CollectorRegistry | None = None
) -> Context[C]:
    """A controller's Context: a metrics registry (its own unless one is shared), the agreement feed, the
    Event recorder (off in dry-run). The process builds one per controller; tests build one the same way."""
    registry = registry or prometheus_client.CollectorRegistry()
    exporter = metrics.Exporter(prefix=name.replace("-", "_"), registry=registry)
    return Context(
        name=name,
        config=config,
        kube=kube,
        registry=registry,
        health=server.Probes(),
        agreements=AgreementFeed(kube=kube, config=config, metrics=AgreementMetrics(exporter)),
        recorder=events.Recorder(kube=kube, controller=name, enabled=not config.dry_run),
        loop_metrics=metrics.LoopMetrics(exporter),
    )
