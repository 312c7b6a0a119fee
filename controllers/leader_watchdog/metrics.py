"""The watchdog's metrics (``leader_watchdog_…``); the rest of the package calls ``observe_*`` only.

Labels stay low-cardinality: ``check`` and ``severity`` come from a fixed list, ``lease`` from the
configured leader Leases, ``phase``/``from``/``to`` of the upgrade signal from the one upgrade under way
(its series is removed when the upgrade ends or moves on). No node, holder or address appears as a label
(they are in ``/status``).
"""

from __future__ import annotations

from collections.abc import Iterable

from controllers.leader_watchdog import checks, logic
from controllers.leader_watchdog.checks import interface
from controllers.runtime import metrics


class Metrics:
    def __init__(self, exporter: metrics.Exporter, *, leader_leases: Iterable[str]) -> None:
        gauge, counter = exporter.gauge, exporter.counter
        self.findings = gauge("findings", "Findings present now, per check.", "check", "severity")
        self.raised = counter(
            "findings_raised_total", "Findings that appeared, per check.", "check", "severity"
        )
        for kind in checks.KINDS.values():
            self.findings.labels(kind.name, kind.severity).set(0)
            self.raised.labels(kind.name, kind.severity)
        self.renewed = gauge(
            "leader_renew_timestamp_seconds",
            "Last renewTime of each leader Lease (Unix time; 0 when missing).",
            "lease",
        )
        self.duration = gauge(
            "leader_lease_duration_seconds", "leaseDurationSeconds of each leader Lease.", "lease"
        )
        self.transitions = counter(
            "leader_transitions_total", "Holder changes of each leader Lease seen by this process.", "lease"
        )
        for lease in leader_leases:
            self.renewed.labels(lease).set(0)
            self.duration.labels(lease).set(0)
            self.transitions.labels(lease)
        self.apiservers = gauge("apiservers", "Live kube-apiserver identity Leases.")
        self.endpoint_addresses = gauge(
            "endpoint_addresses", "Endpoint addresses of the default/kubernetes Service (its EndpointSlices)."
        )
        self.masters = gauge("watched_masters", "Master Nodes seen by the watchdog.")
        self.master_changes = counter("master_set_changes_total", "Changes of the set of master Nodes seen.")
        self.master_changed = gauge(
            "master_set_last_change_timestamp_seconds",
            "When the set of master Nodes last changed (Unix time; 0 when not seen to change).",
        )
        self.workers = gauge("worker_nodes", "Non-master Nodes.")
        self.not_ready = gauge(
            "worker_nodes_not_ready", "Workers NotReady by their Ready condition or a stale heartbeat Lease."
        )
        self.heartbeat_stale = gauge(
            "node_heartbeats_stale", "Workers whose heartbeat Lease is older than the threshold."
        )
        self.evaluated = gauge("last_evaluation_timestamp_seconds", "When the checks last ran (Unix time).")
        self.upgrade = gauge(
            "upgrade_in_progress",
            "1 while an upgrade is under way: phase control-plane (a master reports another version than the "
            "one agreed, until the masters agree again), then workers (a worker's kubelet is below the newly "
            "agreed version); from/to as vMAJOR.MINOR.PATCH. No series otherwise.",
            "phase",
            "from",
            "to",
        )
        self.upgrade_started = gauge(
            "upgrade_started_timestamp_seconds",
            "When the upgrade phase under way began (Unix time); no series outside that phase.",
            "phase",
        )
        self.rules_rounds = counter(
            "alert_rules_rounds_total",
            "Rounds of blind-alert-rules' questions to Prometheus, by outcome (ok: the rules were read; failed).",
            "outcome",
        )
        for outcome in ("ok", "failed"):
            self.rules_rounds.labels(outcome)
        self.rules_asked = gauge(
            "alert_rules_last_round_timestamp_seconds",
            "When blind-alert-rules last read Prometheus's alerting rules (Unix time; 0: never).",
        )
        self.rules_unanswered = gauge(
            "alert_rules_unevaluated",
            "Problems of the last round: rules or selectors that could not be read or asked about.",
        )
        self._upgrade: logic.Upgrade | None = None

    def observe_evaluation(
        self,
        evaluation: logic.Evaluation,
        snapshot: interface.Snapshot,
        *,
        raised: Iterable[interface.Finding],
        now: float,
    ) -> None:
        counts = dict.fromkeys(checks.KINDS, 0)
        for finding in evaluation.findings:
            counts[finding.check] += 1
        for name, count in counts.items():
            self.findings.labels(name, checks.KINDS[name].severity).set(count)
        for finding in raised:
            self.raised.labels(finding.check, finding.severity).inc()
        for key, lease in snapshot.leaders.items():
            self.renewed.labels(key).set((lease.renew_time or 0) if lease else 0)
            self.duration.labels(key).set(lease.duration_seconds if lease else 0)
        for transition in evaluation.transitions:
            self.transitions.labels(transition.lease).inc()
        self.apiservers.set(sum(1 for lease in snapshot.apiservers if not lease.expired(now=now)))
        self.endpoint_addresses.set(len(snapshot.endpoint_ips or ()))
        self.masters.set(len(snapshot.masters))
        if evaluation.master_set_changed:
            self.master_changes.inc()
        self.master_changed.set(evaluation.history.masters_changed_at or 0)
        self.workers.set(evaluation.nodes.workers)
        self.not_ready.set(len(evaluation.nodes.not_ready))
        self.heartbeat_stale.set(evaluation.nodes.heartbeat_stale)
        self.evaluated.set(now)
        self.observe_upgrade(evaluation.upgrade)

    def observe_upgrade(self, upgrade: logic.Upgrade | None) -> None:
        """Exactly one series at 1 while an upgrade is under way, none otherwise."""
        previous, self._upgrade = self._upgrade, upgrade
        if previous == upgrade:
            return
        if previous is not None:
            self.upgrade.remove(previous.phase, previous.from_version, previous.to_version)
            self.upgrade_started.remove(previous.phase)
        if upgrade is not None:
            self.upgrade.labels(upgrade.phase, upgrade.from_version, upgrade.to_version).set(1)
            self.upgrade_started.labels(upgrade.phase).set(upgrade.started)

    def observe_rules_round(self, probe: interface.RulesProbe | None) -> None:
        """A round of blind-alert-rules ended: with the rules read (``probe``), or not (None)."""
        self.rules_rounds.labels("ok" if probe is not None else "failed").inc()
        if probe is not None:
            self.rules_asked.set(probe.at)
            self.rules_unanswered.set(len(probe.problems))
