"""The addon-updater's metrics (``addon_updater_…``); the rest of the package calls ``observe_*`` only."""

from __future__ import annotations

from controllers.bundles import model
from controllers.runtime import metrics

RESULTS = ("success", "failed")


class Metrics:
    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.bundle_info = gauge(
            "bundle_info",
            "The active add-on bundle (value 1): its minor and content digest.",
            "minor",
            "digest",
        )
        self.bundle_missing = gauge(
            "bundle_missing", "1 while no bundle fits the agreed minor (nothing was changed), else 0."
        )
        self.switches = counter("switches_total", "Bundle switches attempted, by result.", "result")
        self.last_switch = gauge(
            "last_switch_timestamp_seconds", "When the last successful bundle switch finished (Unix time)."
        )
        self.applied = counter("objects_applied_total", "Objects applied (server-side apply).")
        self.pruned = counter(
            "objects_pruned_total",
            "Objects deleted because they carry the bundle label but are not in the new bundle.",
        )
        self.validation_failures = counter(
            "validation_failures_total", "Bundles rejected before switching, by reason.", "reason"
        )
        self.healthy = gauge(
            "bundle_healthy",
            "1 when every Deployment and DaemonSet of the active bundle is available, 0 when not, "
            "-1 when unknown (directory target, or nothing applied yet).",
        )
        self.unavailable = gauge(
            "workloads_unavailable", "Deployments and DaemonSets of the active bundle that are not available."
        )
        for result in RESULTS:
            self.switches.labels(result)
        for reason in model.FAILURE_REASONS:
            self.validation_failures.labels(reason)
        self.healthy.set(-1)
        self._active: tuple[str, str] | None = None

    def observe_active(self, *, minor: str, digest: str) -> None:
        active = (minor, model.short_digest(digest))
        if active == self._active:
            return
        if self._active is not None:
            self.bundle_info.remove(*self._active)
        self.bundle_info.labels(*active).set(1)
        self._active = active

    def observe_missing(self, missing: bool) -> None:
        self.bundle_missing.set(1 if missing else 0)

    def observe_invalid(self, reason: model.FailureReason) -> None:
        self.validation_failures.labels(reason).inc()
        self.switches.labels("failed").inc()

    def observe_failed(self) -> None:
        self.switches.labels("failed").inc()

    def observe_switched(self, *, applied: int, pruned: int) -> None:
        self.switches.labels("success").inc()
        self.applied.inc(applied)
        self.pruned.inc(pruned)
        self.last_switch.set_to_current_time()

    def observe_health(self, *, unavailable: int | None) -> None:
        if unavailable is None:
            self.healthy.set(-1)
            self.unavailable.set(0)
            return
        self.healthy.set(0 if unavailable else 1)
        self.unavailable.set(unavailable)
