"""apiservers: an unexpired kube-apiserver identity Lease whose host is no current master is a stale master."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from controllers.leader_watchdog.checks import interface

STALE = interface.Kind("stale-apiserver", "critical", "StaleApiserver")
# kube-apiserver renews its identity Lease every 10 s (--identity-lease-renew-interval-seconds); three
# renewals missed and it is silent, not live.
APISERVER_SILENT_SECONDS = 30.0


def find(situation: interface.Situation) -> list[interface.Finding]:
    snapshot = situation.snapshot
    return check_apiservers(snapshot.apiservers, masters=snapshot.masters, now=situation.now)


def check_apiservers(
    apiservers: Iterable[interface.LeaseRecord], *, masters: Sequence[interface.NodeRecord], now: float
) -> list[interface.Finding]:
    """An unexpired kube-apiserver identity Lease whose hostname is no current master is a stale master."""
    findings = []
    for lease in apiservers:
        if lease.expired(now=now):
            continue  # that apiserver is gone; the apiserver's own GC removes its Lease
        hostname = lease.labels.get(interface.HOSTNAME_LABEL, "")
        if interface.master_of(hostname, masters) is not None:
            continue
        ref = interface.lease_ref(lease.key)
        findings.append(
            interface.Finding(
                STALE,
                str(ref),
                f"{_apiserver_on(hostname, lease, now=now)} is not a current master (masters: {interface.names(masters)})",
                now,
                ref,
            )
        )
    return findings


def _apiserver_on(hostname: str, lease: interface.LeaseRecord, *, now: float) -> str:
    """A kube-apiserver renews its identity Lease every 10 s but lets it live an hour: one silent for a few
    renewals is not known to be running (lost without shutting down, or cut off from etcd)."""
    host = hostname or "<unlabelled>"
    if lease.renew_time is not None and now - lease.renew_time <= APISERVER_SILENT_SECONDS:
        return f"a live kube-apiserver on host {host!r} (renewed {interface.age(now, lease.renew_time)})"
    expires = lease.expires_at
    until = f"; its Lease expires in {expires - now:.0f}s" if expires is not None else ""
    return (
        f"a kube-apiserver on host {host!r}, silent since its identity Lease was renewed "
        f"{interface.age(now, lease.renew_time)} (lost without shutting down, or cut off from etcd{until}),"
    )


CHECK = interface.WatchdogCheck(
    name="apiservers", needs=frozenset({"apiservers"}), judge=find, kinds=(STALE,)
)
