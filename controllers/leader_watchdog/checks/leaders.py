"""leaders: each leader Lease (kube-controller-manager's, kube-scheduler's) is present, led, and held from a
current Ready master on the agreed version."""

from __future__ import annotations

import math
from collections.abc import Sequence

from controllers.agreement import version
from controllers.leader_watchdog.checks import interface

STALE = interface.Kind("stale-leader", "critical", "StaleLeader", silence_based=True)
MISSING = interface.Kind("leader-missing", "warning", "LeaderLeaseMissing")
UNKNOWN_MASTER = interface.Kind("leader-on-unknown-master", "critical", "LeaderOnUnknownMaster")
NOTREADY_MASTER = interface.Kind("leader-on-notready-master", "warning", "LeaderOnNotReadyMaster")
VERSION_SKEW = interface.Kind("leader-version-skew", "warning", "LeaderVersionSkew")


def find(situation: interface.Situation) -> list[interface.Finding]:
    snapshot = situation.snapshot
    found = (
        check_leader(
            key,
            lease,
            masters=snapshot.masters,
            agreed_version=snapshot.agreed_version,
            failover_seconds=situation.rules.leader_failover_seconds,
            now=situation.now,
        )
        for key, lease in sorted(snapshot.leaders.items())
    )
    return [finding for finding in found if finding is not None]


def check_leader(
    key: str,
    lease: interface.LeaseRecord | None,
    *,
    masters: Sequence[interface.NodeRecord],
    agreed_version: str | None,
    failover_seconds: float,
    now: float,
) -> interface.Finding | None:
    """One leader Lease: present, led (a leaderless gap up to ``failover_seconds`` is a failover), held from a
    current Ready master on the agreed version."""
    ref = interface.lease_ref(key)

    def finding(kind: interface.Kind, evidence: str, since: float = now) -> interface.Finding:
        return interface.Finding(kind, str(ref), evidence, since, ref)

    if lease is None:
        return finding(MISSING, "the Lease does not exist: no component has ever led here")
    leaderless = lease.leaderless_for(now=now)
    if leaderless is not None and leaderless > failover_seconds:
        return finding(
            STALE,
            f"holder {lease.holder or '<none>'!r} last renewed {interface.age(now, lease.renew_time)}; "
            f"leaseDurationSeconds {lease.duration_seconds:g}",
            now - leaderless if math.isfinite(leaderless) else now,
        )
    if leaderless is not None:
        return None  # a failover under way: whoever takes the Lease next is checked then
    master = interface.master_of(lease.holder_hostname, masters)
    if master is None:
        return finding(
            UNKNOWN_MASTER,
            f"holder {lease.holder!r}: host {lease.holder_hostname!r} is not a current master "
            f"(masters: {interface.names(masters)})",
        )
    if not master.ready:
        return finding(
            NOTREADY_MASTER,
            f"holder {lease.holder!r} runs on master {master.name}, which is not Ready",
        )
    agreed = version.parse_version(agreed_version)
    runs = version.parse_version(master.version)
    if agreed is not None and runs is not None and runs.key != agreed.key:
        return finding(
            VERSION_SKEW,
            f"holder {lease.holder!r} runs on master {master.name} at {master.version}; the masters agree on {agreed_version}",
        )
    return None


CHECK = interface.WatchdogCheck(
    name="leaders",
    needs=frozenset({"leaders"}),
    judge=find,
    kinds=(STALE, MISSING, UNKNOWN_MASTER, NOTREADY_MASTER, VERSION_SKEW),
)
