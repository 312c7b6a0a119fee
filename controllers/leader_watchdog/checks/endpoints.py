"""endpoints: every endpoint of the ``default/kubernetes`` Service is an address of a current master."""

from __future__ import annotations

from collections.abc import Sequence

from controllers.leader_watchdog.checks import interface

STALE = interface.Kind("stale-endpoint", "critical", "StaleEndpoint")


def find(situation: interface.Situation) -> list[interface.Finding]:
    snapshot = situation.snapshot
    return check_endpoints(snapshot.endpoint_ips, masters=snapshot.masters, now=situation.now)


def check_endpoints(
    ips: Sequence[str] | None, *, masters: Sequence[interface.NodeRecord], now: float
) -> list[interface.Finding]:
    """Every endpoint of the ``default/kubernetes`` Service must be an address of a current master."""
    if ips is None:
        return []
    known = {address for master in masters for address in master.addresses}
    ref = interface.KUBERNETES_SERVICE
    return [
        interface.Finding(
            STALE,
            f"{ref} endpoint {ip}",
            f"clients of the kubernetes Service are sent to {ip}, which no current master has "
            f"(master addresses: {', '.join(sorted(known)) or 'none'})",
            now,
            ref,
        )
        for ip in ips
        if ip not in known
    ]


CHECK = interface.WatchdogCheck(name="endpoints", needs=frozenset({"endpoints"}), judge=find, kinds=(STALE,))
