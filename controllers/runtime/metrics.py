"""A controller's metrics: every name under its prefix (``node_tainter_…``), in its own registry.

Each controller's ``metrics.py`` declares its metrics through an :class:`Exporter`, one line each, and
exposes ``observe_*`` methods; the rest of the package never touches prometheus_client.
"""

from __future__ import annotations

import dataclasses
import typing

import prometheus_client

from controllers.kube import retry


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


class LoopMetrics:
    """What the skeleton exports for every controller (``<prefix>_sync_errors_total{reason}``,
    ``<prefix>_restarts_total``, ``<prefix>_leader``, ``<prefix>_leadership_lost_total``); registered once per
    controller, so an in-process restart keeps counting."""

    def __init__(self, exporter: Exporter) -> None:
        self.sync_errors = exporter.counter(
            "sync_errors_total",
            "Syncs that failed and were requeued with backoff, by reason: a kind of API or connection "
            "failure, 'temporary' or 'permanent' (the controller said so), or 'unexpected' (a bug, logged "
            "with its traceback).",
            "reason",
        )
        for reason in (*typing.get_args(retry.Reason), TEMPORARY, PERMANENT, UNEXPECTED):
            self.sync_errors.labels(reason)
        self.restarts = exporter.counter(
            "restarts_total", "Times the controller was restarted inside its process after a failure."
        )
        self.leader = exporter.gauge(
            "leader", "1 while this replica leads (always 1 without --leader-elect)."
        )
        self.leadership_lost = exporter.counter(
            "leadership_lost_total",
            "Times this replica stopped leading (its Lease taken, or not renewable in time) and went back "
            "to standby.",
        )


# The reason label of a failure that is neither an API answer nor a connection problem.
UNEXPECTED = "unexpected"
# The reason labels of a controller's own TemporaryError and PermanentError (runtime/failure.py).
TEMPORARY, PERMANENT = "temporary", "permanent"
