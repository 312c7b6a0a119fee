"""The watchdog's judgement, pure: a :class:`interface.Snapshot` → every enabled check of ``checks/`` → findings,
the upgrade signal, and the status.

``evaluate(snapshot, now=…, rules=…, history=…)`` is the whole decision. Time is an explicit Unix timestamp
(staleness is time passing, so the caller re-evaluates on a timer as well as on every watch event), and the
little the watchdog must remember between evaluations — when the master set last changed, how many nodes
were NotReady just before, since when each finding has been seen — travels in an immutable :class:`History`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from controllers.agreement import version
from controllers.leader_watchdog import checks
from controllers.leader_watchdog.checks import heartbeats, interface
from controllers.structs import status, times


def needs_confirmation(findings: Iterable[interface.Finding], *, known: Iterable[tuple[str, str]]) -> bool:
    """Whether ``findings`` holds a silence-based finding that is not among the ``known`` ones yet."""
    seen = set(known)
    return any(f.kind.silence_based and f.key not in seen for f in findings)


Phase = Literal["control-plane", "workers"]

PHASES: tuple[Phase, ...] = get_args(Phase)


@dataclasses.dataclass(frozen=True, slots=True)
class Upgrade:
    """An upgrade under way: the ``leader_watchdog_upgrade_in_progress`` series at 1.

    ``from_version``/``to_version`` are written ``v1.36.1`` (see :func:`version_label`)."""

    phase: Phase
    from_version: str
    to_version: str
    started: float  # Unix time the phase began (or was first seen, after a restart of the watchdog)

    def to_json(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "from": self.from_version,
            "to": self.to_version,
            "started": times.iso(self.started),
        }


@dataclasses.dataclass(frozen=True, slots=True)
class History:
    """What one evaluation hands to the next."""

    masters: frozenset[str] | None = None  # None: no master set seen yet
    masters_changed_at: float | None = None
    notready_before_change: int = 0
    pattern_since: float | None = None
    since: Mapping[tuple[str, str], float] = dataclasses.field(default_factory=dict)
    holders: Mapping[str, str] = dataclasses.field(default_factory=dict)  # leader Lease → holder
    agreed: version.Version | None = None  # the version the masters last agreed on (None: none seen yet)
    upgrade: Upgrade | None = None  # the upgrade under way (None: none)
    began: float | None = None  # when the last upgrade seen began: its first phase's start (None: none seen)


@dataclasses.dataclass(frozen=True, slots=True)
class HolderChange:
    lease: str
    previous: str
    holder: str


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[interface.Finding, ...]
    history: History
    transitions: tuple[HolderChange, ...]
    nodes: interface.NodeHealth
    master_set_changed: bool

    @property
    def upgrade(self) -> Upgrade | None:
        return self.history.upgrade

    @property
    def critical(self) -> bool:
        return any(finding.severity == "critical" for finding in self.findings)


def transitions(
    previous: Mapping[str, str], leaders: Mapping[str, interface.LeaseRecord | None]
) -> tuple[HolderChange, ...]:
    """Leader Leases whose holder changed since the last evaluation (a first sight is no transition)."""
    return tuple(
        HolderChange(lease=key, previous=previous[key], holder=lease.holder)
        for key, lease in sorted(leaders.items())
        if lease is not None and key in previous and lease.holder != previous[key]
    )


# --- the upgrade signal ----------------------------------------------------------------------------------


def version_label(parsed: version.Version) -> str:
    """How the signal writes a version: ``v<major>.<minor>.<patch>``, the form ``kubeadm upgrade apply`` takes
    and release notes use. A vendor suffix (``-eks-…``, ``+k3s1``) is dropped: versions compare by (major,
    minor, patch), so a suffix alone is no upgrade and must not make a new series."""
    return f"v{parsed.major}.{parsed.minor}.{parsed.patch}"


def _target(reported: Iterable[version.Version], *, base: version.Version) -> version.Version | None:
    """The version the masters move to from ``base``: the highest reported above it, else (a downgrade) the
    lowest below it; None while every master reports ``base``."""
    others = [v for v in reported if v.key != base.key]
    above = [v for v in others if v.key > base.key]
    return max(above) if above else min(others, default=None)


def upgrade_progress(
    *,
    masters: Sequence[interface.NodeRecord],
    workers: Sequence[interface.NodeRecord],
    agreed: version.Version | None,
    history: History,
    now: float,
) -> Upgrade | None:
    """The upgrade under way at ``now``, given the settled agreement of the masters (``agreed``; None while
    they do not agree) and what the last evaluation saw (``history.agreed``, ``history.upgrade``).

    - ``control-plane``: from the moment a master reports another version than the one last agreed, until
      the masters agree again. A master that reports no parseable version neither starts nor ends it.
    - ``workers``: then, while a worker's kubelet is below the newly agreed version (a worker whose version
      cannot be parsed does not count). A downgrade has no workers phase: its workers are above, not below.
    - Neither: no upgrade. A watchdog started mid-upgrade has no agreed version yet: masters on different
      versions are a control-plane phase from the lowest to the highest, and once they agree, workers below
      are a workers phase from the lowest of them.
    """
    current = history.upgrade
    reported = [v for m in masters if (v := version.parse_version(m.version)) is not None]
    if agreed is not None:
        behind = [
            v for w in workers if (v := version.parse_version(w.version)) is not None and v.key < agreed.key
        ]
        if not behind:
            return None
        to = version_label(agreed)
        if current is not None and current.phase == "workers" and current.to_version == to:
            return current
        if current is not None:
            start = current.from_version
        elif history.agreed is not None and history.agreed.key != agreed.key:
            start = version_label(history.agreed)  # the masters moved between two evaluations
        else:
            start = version_label(min(behind))
        return Upgrade("workers", from_version=start, to_version=to, started=now)
    if current is not None and current.phase == "control-plane":
        base = version.parse_version(current.from_version)
        target = _target(reported, base=base) if base is not None else None
        return current if target is None else dataclasses.replace(current, to_version=version_label(target))
    if history.agreed is None:
        if len({v.key for v in reported}) < 2:
            return current
        low, high = min(reported), max(reported)
        return Upgrade("control-plane", version_label(low), version_label(high), started=now)
    target = _target(reported, base=history.agreed)
    if target is None:
        return current  # no agreement for another reason (a master NotReady, too few): nothing moved
    return Upgrade("control-plane", version_label(history.agreed), version_label(target), started=now)


def evaluate(
    snapshot: interface.Snapshot, *, now: float, rules: interface.Thresholds, history: History
) -> Evaluation:
    """Every enabled check at ``now``; returns the findings and the history for the next evaluation."""
    masters = snapshot.masters
    master_names = frozenset(m.name for m in masters)
    health = heartbeats.node_health(snapshot.nodes, snapshot.heartbeats, rules=rules, now=now)

    changed = history.masters is not None and master_names != history.masters
    if changed:
        in_window = (
            history.masters_changed_at is not None
            and now - history.masters_changed_at <= rules.outage_window_seconds
        )
        # A replacement is often two changes (one master removed, one added): keep the baseline from the first.
        baseline = (
            min(history.notready_before_change, len(health.not_ready)) if in_window else len(health.not_ready)
        )
        history = dataclasses.replace(history, masters_changed_at=now, notready_before_change=baseline)
    history = dataclasses.replace(history, masters=master_names)

    situation = interface.Situation(
        snapshot=snapshot,
        now=now,
        rules=rules,
        health=health,
        masters_changed_at=history.masters_changed_at,
        notready_before_change=history.notready_before_change,
        pattern_since=history.pattern_since,
    )
    enabled = checks.TABLE.enabled(checks.TABLE.names if snapshot.checks is None else snapshot.checks)
    findings = [finding for check in enabled for finding in check.judge(situation)]
    pattern_since = next((f.since for f in findings if f.kind is heartbeats.OUTAGE), None)

    # A finding keeps the earliest "since" it has been seen with, so that /status says how long it has lasted.
    since = {f.key: min(f.since, history.since.get(f.key, f.since)) for f in findings}
    findings = [dataclasses.replace(f, since=since[f.key]) for f in findings]
    holders = {key: lease.holder for key, lease in snapshot.leaders.items() if lease is not None}
    agreed = version.parse_version(snapshot.agreed_version)
    upgrade = upgrade_progress(
        masters=masters,
        workers=[node for node in snapshot.nodes if not node.master],
        agreed=agreed,
        history=history,
        now=now,
    )
    return Evaluation(
        findings=tuple(findings),
        history=dataclasses.replace(
            history,
            since=since,
            holders=holders,
            pattern_since=pattern_since,
            agreed=agreed or history.agreed,
            upgrade=upgrade,
            began=upgrade.started if upgrade is not None and history.upgrade is None else history.began,
        ),
        transitions=transitions(history.holders, snapshot.leaders),
        nodes=health,
        master_set_changed=changed,
    )


def conditions(
    findings: Iterable[interface.Finding],
    leaders: Mapping[str, interface.LeaseRecord | None],
    *,
    holders: Mapping[str, str],
) -> tuple[status.Condition, ...]:
    """The conditions the skeleton turns into Events: one per finding (a Warning when it appears, Normal
    ``<Reason>Cleared`` when it clears), and one per leader Lease whose status is its holder (``LeaderChanged``
    when the holder changes from ``holders``, the last evaluation's; a first sight is no news)."""
    found = [
        status.Condition(
            f.check, "True", f.kind.reason, f"{f.object}: {f.evidence}", f.object, f.ref, warning=True
        )
        for f in findings
    ]
    found += [
        status.Condition(
            "leader",
            lease.holder,
            "LeaderChanged",
            f"leader changed from {holders.get(key, '')!r} to {lease.holder!r}",
            key,
            interface.lease_ref(key),
            quiet=True,
        )
        for key, lease in sorted(leaders.items())
        if lease is not None
    ]
    return tuple(found)


def to_status(
    evaluation: Evaluation, snapshot: interface.Snapshot, *, holders: Mapping[str, str], now: float
) -> status.Status:
    """The watchdog's status: Critical, Warning (findings, none critical) or Healthy; the upgrade under way as
    its progress; a condition per finding and per leader Lease; the rest of :func:`status_json` as its own."""
    count = len(evaluation.findings)
    critical = sum(1 for f in evaluation.findings if f.severity == "critical")
    upgrade = evaluation.upgrade
    return status.Status(
        phase="Critical" if critical else "Warning" if count else "Healthy",
        version=snapshot.agreed_version or "",
        reason=f"{count} finding(s), {critical} critical" if count else "",
        progress=f"{upgrade.phase} {upgrade.from_version} -> {upgrade.to_version}" if upgrade else "",
        conditions=conditions(evaluation.findings, snapshot.leaders, holders=holders),
        detail=status_json(evaluation, snapshot, now=now),
    )


def status_json(evaluation: Evaluation, snapshot: interface.Snapshot, *, now: float) -> dict[str, Any]:
    """The ``/status`` document (and ``--once`` output)."""
    history = evaluation.history
    masters = snapshot.masters
    return {
        "time": times.iso(now),
        "critical": evaluation.critical,
        "findings": [finding.to_json() for finding in evaluation.findings],
        "masters": [
            {"name": m.name, "ready": m.ready, "version": m.version or None, "addresses": sorted(m.addresses)}
            for m in masters
        ],
        "agreedVersion": snapshot.agreed_version,
        "upgrade": evaluation.upgrade.to_json() if evaluation.upgrade else None,
        "upgradeBegan": times.iso(history.began),
        "alertRules": {
            "lastRound": snapshot.rules_probe.to_json() if snapshot.rules_probe else None,
            "error": snapshot.rules_error or None,
        },
        "masterSetChangedAt": times.iso(history.masters_changed_at),
        "leaders": [
            {
                "lease": key,
                "holder": lease.holder if lease else None,
                "renewTime": times.iso(lease.renew_time) if lease else None,
                "leaseDurationSeconds": lease.duration_seconds if lease else None,
                "leaseTransitions": lease.transitions if lease else None,
            }
            for key, lease in sorted(snapshot.leaders.items())
        ],
        "apiservers": [
            {
                "lease": lease.key,
                "hostname": lease.labels.get(interface.HOSTNAME_LABEL, ""),
                "live": not lease.expired(now=now),
                "master": (
                    found.name
                    if (found := interface.master_of(lease.labels.get(interface.HOSTNAME_LABEL, ""), masters))
                    else None
                ),
                "renewTime": times.iso(lease.renew_time),
            }
            for lease in sorted(snapshot.apiservers, key=lambda lease: lease.key)
        ],
        "endpoints": list(snapshot.endpoint_ips) if snapshot.endpoint_ips is not None else None,
        "nodes": {
            "workers": evaluation.nodes.workers,
            "notReady": len(evaluation.nodes.not_ready),
            "notReadyByCondition": evaluation.nodes.condition_not_ready,
            "heartbeatStale": evaluation.nodes.heartbeat_stale,
            "notReadyBeforeMasterChange": history.notready_before_change
            if history.masters_changed_at
            else None,
        },
    }
