"""node-tainter's metrics; the rest of the package calls the ``observe_*`` functions, never prometheus_client."""

from __future__ import annotations

import prometheus_client

from controllers.node_tainter import logic

PREFIX = "node_tainter"
OUTCOMES = ("applied", "failed")
SKEW_REASONS = ("too_old", "too_new")


class Metrics:
    def __init__(self, registry: prometheus_client.CollectorRegistry) -> None:
        self.outdated = prometheus_client.Gauge(
            f"{PREFIX}_outdated_nodes",
            "Workers whose kubelet is below the agreed control-plane version (0 without an agreement).",
            registry=registry,
        )
        self.tainted = prometheus_client.Gauge(
            f"{PREFIX}_tainted_nodes", "Nodes carrying the node-tainter taint now.", registry=registry
        )
        self.waiting = prometheus_client.Gauge(
            f"{PREFIX}_waiting_nodes",
            "Outdated workers left untainted because of the NoSchedule cap.",
            registry=registry,
        )
        self.pending = prometheus_client.Gauge(
            f"{PREFIX}_pending_changes",
            "Nodes whose taint must still change (in dry-run: the changes it would make).",
            registry=registry,
        )
        self.unknown = prometheus_client.Gauge(
            f"{PREFIX}_unknown_version_nodes",
            "Nodes whose kubelet version cannot be parsed (never tainted).",
            registry=registry,
        )
        self.skew = prometheus_client.Gauge(
            f"{PREFIX}_skew_policy_violations",
            "Nodes outside the version skew policy: kubelet more than 3 minors behind the agreed version "
            "(too_old) or on a newer minor (too_new).",
            ["reason"],
            registry=registry,
        )
        self.operations = prometheus_client.Counter(
            f"{PREFIX}_operations_total",
            "Taint changes made on nodes, by operation (taint, untaint, update) and outcome.",
            ["operation", "outcome"],
            registry=registry,
        )
        self.conflicts = prometheus_client.Counter(
            f"{PREFIX}_conflicts_total",
            "Node updates refused with 409 Conflict (someone else wrote the node); re-read and retried.",
            registry=registry,
        )
        self.last_reconcile = prometheus_client.Gauge(
            f"{PREFIX}_last_reconcile_timestamp_seconds",
            "When node-tainter last had every node as the plan wants it (Unix time).",
            registry=registry,
        )
        for reason in SKEW_REASONS:
            self.skew.labels(reason)
        for operation in logic.ACTIONS:
            for outcome in OUTCOMES:
                self.operations.labels(operation, outcome)


def observe_plan(metrics: Metrics, plan: logic.Plan, *, in_flight: int = 0) -> None:
    metrics.outdated.set(plan.outdated)
    metrics.tainted.set(plan.tainted)
    metrics.waiting.set(len(plan.waiting))
    metrics.pending.set(len(plan.changes))
    metrics.unknown.set(len(plan.unknown))
    metrics.skew.labels("too_old").set(plan.too_old)
    metrics.skew.labels("too_new").set(plan.too_new)
    if not plan.changes and not in_flight and plan.agreed is not None:
        metrics.last_reconcile.set_to_current_time()


def observe_operation(metrics: Metrics, action: logic.Action, *, ok: bool) -> None:
    metrics.operations.labels(action, "applied" if ok else "failed").inc()


def observe_conflicts(metrics: Metrics, count: int) -> None:
    if count:
        metrics.conflicts.inc(count)
