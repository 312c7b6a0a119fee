"""A controller's metrics: every name under its prefix (``node_tainter_…``), in its own registry.

Each controller's ``metrics.py`` declares its metrics through an :class:`Exporter`, one line each, and
exposes ``observe_*`` methods; the rest of the package never touches prometheus_client.
"""

from __future__ import annotations

import dataclasses

import prometheus_client


@dataclasses.dataclass(frozen=True, slots=True)
class Exporter:
    prefix: str  # the controller's name with underscores: node_tainter
    registry: prometheus_client.CollectorRegistry

    def gauge(self, name: str, documentation: str, *labels: str) -> prometheus_client.Gauge:
        return prometheus_client.Gauge(f"{self.prefix}_{name}", documentation, labels, registry=self.registry)

    def counter(self, name: str, documentation: str, *labels: str) -> prometheus_client.Counter:
        return prometheus_client.Counter(
            f"{self.prefix}_{name}", documentation, labels, registry=self.registry
        )
