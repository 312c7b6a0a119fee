"""node-tainter's metrics; the rest of the package calls its ``observe_*`` methods, never prometheus_client."""

from __future__ import annotations

from controllers.node_tainter import logic
from controllers.runtime import metrics

OUTCOMES = ("applied", "failed")
SKEW_REASONS = ("too_old", "too_new")


class Metrics:
    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.outdated = gauge(
            "outdated_nodes",
            "Workers whose kubelet is below the agreed control-plane version (0 without an agreement).",
        )
        self.tainted = gauge("tainted_nodes", "Nodes carrying the node-tainter taint now.")
        self.waiting = gauge(
            "waiting_nodes", "Outdated workers left untainted because of the NoSchedule cap."
        )
        self.pending = gauge(
            "pending_changes", "Nodes whose taint must still change (in dry-run: the changes it would make)."
        )
        self.unknown = gauge(
            "unknown_version_nodes", "Nodes whose kubelet version cannot be parsed (never tainted)."
        )
        self.skew = gauge(
            "skew_policy_violations",
            "Nodes outside the version skew policy: kubelet more than 3 minors behind the agreed version "
            "(too_old) or on a newer minor (too_new).",
            "reason",
        )
        self.operations = counter(
            "operations_total",
            "Taint changes made on nodes, by operation (taint, untaint, update) and outcome.",
            "operation",
            "outcome",
        )
        self.conflicts = counter(
            "conflicts_total",
            "Node updates refused with 409 Conflict (someone else wrote the node); re-read and retried.",
        )
        self.last_reconcile = gauge(
            "last_reconcile_timestamp_seconds",
            "When node-tainter last had every node as the plan wants it (Unix time).",
        )
        for reason in SKEW_REASONS:
            self.skew.labels(reason)
        for operation in logic.ACTIONS:
            for outcome in OUTCOMES:
                self.operations.labels(operation, outcome)

    def observe_plan(self, plan: logic.TaintPlan, *, in_flight: int = 0) -> None:
        self.outdated.set(plan.outdated)
        self.tainted.set(plan.tainted)
        self.waiting.set(len(plan.waiting))
        self.pending.set(len(plan.changes))
        self.unknown.set(len(plan.unknown))
        self.skew.labels("too_old").set(plan.too_old)
        self.skew.labels("too_new").set(plan.too_new)
        if not plan.changes and not in_flight and plan.agreed is not None:
            self.last_reconcile.set_to_current_time()

    def observe_operation(self, action: logic.TaintAction, *, ok: bool) -> None:
        self.operations.labels(action, "applied" if ok else "failed").inc()

    def observe_conflicts(self, count: int) -> None:
        if count:
            self.conflicts.inc(count)
