"""uso-runner's metrics (``uso_runner_…``); the rest of the package calls only the observe_* methods."""

from __future__ import annotations

import prometheus_client

from controllers.runtime import metrics
from controllers.uso_runner import logic

OUTCOMES = ("migrated", "conflict", "not_found")
# The reasons (kube.retry.classify) a failed request can have here: conflicts and 404s end a rewrite.
ERROR_REASONS = ("connection", "throttled", "server_error", "forbidden", "invalid", "client_error")
RESOURCE_STATES = ("pending", "done", "failed")
# How a StorageVersionMigration ended, as read from its status: its verdict, or how it stalled.
BUILTIN_OUTCOMES = ("succeeded", "failed", "not_picked_up", "timeout")
REFUSED_FALLBACKS = ("not_served", "not_picked_up", "timeout")
# Label values of the per-resource counter are bounded: past this many resources, the rest count as "other".
MAX_RESOURCE_LABELS = 200


class Metrics:
    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.objects = counter(
            "objects_total",
            "Objects rewritten (migrated), or found rewritten (conflict) or deleted (not_found) meanwhile.",
            "resource",
            "outcome",
        )
        self.errors = counter(
            "errors_total",
            "Failed requests by reason (each retry counts; a resource fails when retries run out).",
            "reason",
        )
        self.resources = gauge("resources", "Resources of the current or last run by state.", "state")
        self.duration = gauge("run_duration_seconds", "Duration of the last finished run.")
        self.last_success = gauge(
            "last_success_timestamp_seconds",
            "When a run last finished with every resource migrated (Unix time).",
        )
        self.in_progress = gauge("run_in_progress", "1 while a migration run is in progress.")
        self.paused = gauge(
            "run_paused",
            "1 while a run waits for the masters to agree again on its target version (no writes).",
        )
        self.builtin_running = gauge(
            "builtin_migrations_running",
            "StorageVersionMigrations the current run waits for; their objects are not counted.",
        )
        self.builtin_outcomes = counter(
            "builtin_migrations_total",
            "StorageVersionMigrations followed to their end: succeeded or failed (their status), or stalled "
            "(not_picked_up, timeout).",
            "outcome",
        )
        self.fallbacks = counter(
            "builtin_fallbacks_total",
            "Resources rewritten by uso-runner itself because their StorageVersionMigration stalled (auto).",
            "reason",
        )
        self.fallbacks_refused = counter(
            "rewrite_fallback_refused_total",
            "Resources left unmigrated because kube-controller-manager's migrator could not do them (not_served, "
            "not_picked_up, timeout) and the rewrite fallback is off (--rewrite-fallback=false).",
            "reason",
        )
        for reason in REFUSED_FALLBACKS:
            self.fallbacks_refused.labels(reason)

        self.pacing_concurrency = gauge(
            "pacing_concurrency",
            "Object writes the migration may have in flight now: the pacer's limit (--workers when pacing is off).",
        )
        self.pacing_latency = gauge(
            "pacing_latency_seconds", "Median latency of the migration's last window of object writes."
        )
        self.pacing_idle_latency = gauge(
            "pacing_idle_latency_seconds",
            "The object writes' idle latency the pacer learned (a write alone; 0 before it is, or unpaced).",
        )
        self.pacing_budget = gauge(
            "pacing_latency_budget_ratio",
            "--latency-budget: the object writes' latency allowed, as a multiple of their idle latency (0: off).",
        )
        self.pacing_backoffs = counter(
            "pacing_backoffs_total",
            "Times the pacer lowered the writes in flight: over_budget (latency above the budget), hard (far "
            "above it: halved), throttled (a 429, 5xx or dropped connection: halved).",
            "reason",
        )
        for why in logic.PACE_BACKOFFS:
            self.pacing_backoffs.labels(why)
        for outcome in BUILTIN_OUTCOMES:
            self.builtin_outcomes.labels(outcome)
        for stall in BUILTIN_OUTCOMES[2:]:
            self.fallbacks.labels(stall)
        for reason in ERROR_REASONS:
            self.errors.labels(reason)
        for state in RESOURCE_STATES:
            self.resources.labels(state).set(0)
        self._labelled: set[str] = set()

    def _resource_label(self, group_resource: str) -> str:
        if group_resource in self._labelled:
            return group_resource
        if len(self._labelled) >= MAX_RESOURCE_LABELS:
            return "other"
        self._labelled.add(group_resource)
        return group_resource

    def object_counters(self, group_resource: str) -> dict[str, prometheus_client.Counter]:
        """The per-outcome counters of one resource (looked up once per resource, not per object)."""
        label = self._resource_label(group_resource)
        return {outcome: self.objects.labels(label, outcome) for outcome in OUTCOMES}

    def observe_error(self, reason: str) -> None:
        self.errors.labels(reason).inc()

    def observe_resources(self, *, pending: int, done: int, failed: int) -> None:
        self.resources.labels("pending").set(pending)
        self.resources.labels("done").set(done)
        self.resources.labels("failed").set(failed)

    def observe_pacing(self, *, budget: float, limit: int, latency: float, idle: float) -> None:
        self.pacing_budget.set(budget)
        self.pacing_concurrency.set(limit)
        self.pacing_latency.set(latency)
        self.pacing_idle_latency.set(idle)

    def observe_backoff(self, reason: str) -> None:
        self.pacing_backoffs.labels(reason).inc()

    def observe_run_started(self) -> None:
        self.in_progress.set(1)

    def observe_builtin(self, *, running: int) -> None:
        self.builtin_running.set(running)

    def observe_builtin_outcome(self, outcome: str) -> None:
        self.builtin_outcomes.labels(outcome).inc()

    def observe_fallback(self, reason: str) -> None:
        self.fallbacks.labels(reason).inc()

    def observe_fallback_refused(self, reason: str) -> None:
        self.fallbacks_refused.labels(reason).inc()

    def observe_paused(self, paused: bool) -> None:
        self.paused.set(1 if paused else 0)

    def observe_run_finished(self, *, duration_seconds: float, succeeded: bool) -> None:
        self.in_progress.set(0)
        self.paused.set(0)
        self.duration.set(duration_seconds)
        if succeeded:
            self.last_success.set_to_current_time()
