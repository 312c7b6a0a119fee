"""upgrade-readiness's metrics; the rest of the package calls ``observe_*``, never prometheus_client."""

from __future__ import annotations

from collections.abc import Sequence

from controllers.runtime import metrics
from controllers.upgrade_readiness import checks, logic
from controllers.upgrade_readiness.checks import interface

# At most this many finding series per check (the rest are counted in blockers, listed in /status).
MAX_FINDING_SERIES = 20
SCRAPE_OUTCOMES = ("ok", "failed")


class Metrics:
    def __init__(self, exporter: metrics.Exporter) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.blockers = gauge(
            "blockers",
            "Findings that block the upgrade to the target minor, per check (acknowledged ones not counted).",
            "check",
        )
        self.findings = gauge(
            "findings",
            "Findings per check and severity (blocker, warning: does not block unless strict, info), "
            "acknowledged or not.",
            "check",
            "severity",
        )
        self.status = gauge(
            "check_status",
            "1 for each check's current status (pass, warning, blocked, acknowledged or unknown: not "
            "evaluated).",
            "check",
            "status",
        )
        self.upgradeable = gauge(
            "upgradeable", "1 when nothing blocks the upgrade to the target minor (0 also without a target)."
        )
        self.target = gauge("target_info", "The minor the cluster is judged against (value 1).", "target")
        self.finding = gauge(
            "finding_info",
            f"One series per finding (value 1; at most {MAX_FINDING_SERIES} per check), acknowledged or not.",
            "check",
            "subject",
            "severity",
            "acknowledged",
        )
        self.scrapes = counter(
            "apiserver_scrapes_total", "Reads of an apiserver's /metrics, by outcome.", "outcome"
        )
        self.last_evaluation = gauge(
            "last_evaluation_timestamp_seconds", "When the checks were last evaluated (Unix time)."
        )
        self.acks = gauge(
            "acknowledgements",
            "Keys of the acknowledgements ConfigMap by state: active (waives its check for the target minor), "
            "expired, other-target, unknown (check or key), malformed (value, time, or the unscoped old key).",
            "state",
        )
        self.ack_expiry = gauge(
            "acknowledgement_expiry_timestamp_seconds",
            "When the active acknowledgement of a check for the target minor expires (Unix time; absent: none, "
            "or it never expires).",
            "check",
        )
        for state in logic.ACK_STATES:
            self.acks.labels(state)
        for check in checks.TABLE.names:
            self.blockers.labels(check)
            for severity in interface.SEVERITIES:
                self.findings.labels(check, severity)
            for status in logic.STATUSES:
                self.status.labels(check, status)
        for outcome in SCRAPE_OUTCOMES:
            self.scrapes.labels(outcome)

    def observe_report(self, report: logic.Report) -> None:
        self.upgradeable.set(1 if report.upgradeable else 0)
        self.target.clear()
        if report.target.version is not None:
            self.target.labels(report.target.version.minor_text).set(1)
        self.finding.clear()
        for result in report.results:
            self.blockers.labels(result.check).set(result.blockers)
            for severity in interface.SEVERITIES:
                count = sum(f.severity == severity for f in result.findings)
                self.findings.labels(result.check, severity).set(count)
            for status in logic.STATUSES:
                self.status.labels(result.check, status).set(1 if status == result.status else 0)
            acknowledged = "true" if result.status == "acknowledged" else "false"
            for finding in result.findings[:MAX_FINDING_SERIES]:
                self.finding.labels(result.check, finding.subject, finding.severity, acknowledged).set(1)
        self.last_evaluation.set_to_current_time()

    def observe_scrapes(self, samples: list[interface.ApiserverMetrics]) -> None:
        for sample in samples:
            self.scrapes.labels("failed" if sample.error else "ok").inc()

    def observe_acks(self, judged: Sequence[logic.Ack]) -> None:
        for state, count in logic.ack_counts(judged).items():
            self.acks.labels(state).set(count)
        self.ack_expiry.clear()
        for ack in judged:
            if ack.state == logic.ACK_WAIVES and ack.until is not None:
                self.ack_expiry.labels(ack.check).set(ack.until)
