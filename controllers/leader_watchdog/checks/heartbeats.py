"""heartbeats: workers NotReady (by their Ready condition or a stale heartbeat Lease), and a jump of them soon
after the master set changed: the outage pattern of nodes still talking to a removed master."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controllers.leader_watchdog.checks import interface
from controllers.structs import refs

NOT_READY = interface.Kind("nodes-not-ready", "warning", "NodesNotReady", silence_based=True)
OUTAGE = interface.Kind("outage-pattern", "critical", "NotReadyAfterMasterChange", silence_based=True)


def node_health(
    nodes: Iterable[interface.NodeRecord],
    heartbeats: Mapping[str, interface.LeaseRecord],
    *,
    rules: interface.Thresholds,
    now: float,
) -> interface.NodeHealth:
    """Workers (non-masters) NotReady by their Ready condition or by a heartbeat Lease older than the
    threshold — the node lifecycle controller marks the second kind NotReady only after its grace period."""
    workers = [node for node in nodes if not node.master]
    not_ready: list[str] = []
    by_condition = stale = 0
    for node in workers:
        lease = heartbeats.get(node.name)
        heartbeat_stale = (
            lease is not None
            and lease.renew_time is not None
            and now - lease.renew_time > rules.heartbeat_stale_seconds
        )
        by_condition += not node.ready
        stale += heartbeat_stale
        if heartbeat_stale or not node.ready:
            not_ready.append(node.name)
    return interface.NodeHealth(
        workers=len(workers),
        not_ready=tuple(sorted(not_ready)),
        condition_not_ready=by_condition,
        heartbeat_stale=stale,
    )


def find(situation: interface.Situation) -> list[interface.Finding]:
    """NotReady workers; a jump of them within the window after the master set changed is the outage
    pattern (its ``since`` is when the pattern began: the next evaluation carries it on)."""
    health, rules, now = situation.health, situation.rules, situation.now
    ref = refs.ObjectRef(kind="Namespace", name="kube-node-lease")
    findings: list[interface.Finding] = []
    count = len(health.not_ready)
    if count:
        findings.append(
            interface.Finding(
                NOT_READY,
                "Nodes",
                f"{count} of {health.workers} worker(s) NotReady ({health.condition_not_ready} by Ready condition, "
                f"{health.heartbeat_stale} with a heartbeat older than {rules.heartbeat_stale_seconds:g}s): "
                f"{interface.quote(health.not_ready)}",
                now,
                ref,
            )
        )
    jump = count - situation.notready_before_change
    threshold = rules.jump_threshold(health.workers)
    changed_at = situation.masters_changed_at
    pattern_since = situation.pattern_since if jump >= threshold else None
    if (
        pattern_since is None
        and jump >= threshold
        and changed_at is not None
        and now - changed_at <= rules.outage_window_seconds
    ):
        pattern_since = now
    if pattern_since is not None and changed_at is not None:
        findings.append(
            interface.Finding(
                OUTAGE,
                "Nodes",
                f"NotReady workers jumped from {situation.notready_before_change} to {count} (threshold "
                f"+{threshold}) {pattern_since - changed_at:.0f}s after the master set changed to "
                f"{sorted(m.name for m in situation.snapshot.masters)}: nodes may still talk to a removed master; "
                f"{interface.quote(health.not_ready)}",
                pattern_since,
                ref,
            )
        )
    return findings


CHECK = interface.WatchdogCheck(
    name="heartbeats", needs=frozenset({"heartbeats"}), judge=find, kinds=(NOT_READY, OUTAGE)
)
