"""coordination.k8s.io Leases: reading them, and taking, renewing and releasing one for leader election."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, NamedTuple

from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube
from controllers.structs import leases, times

RoundOutcome = Literal["acquired", "renewed", "held-by-other", "conflict"]


class Round(NamedTuple):
    """One round's outcome, and the Lease's record as this replica now knows it (for the next round)."""

    outcome: RoundOutcome
    observed: leases.Observed | None


async def get(kube: Kube, *, namespace: str, name: str) -> JSON | None:
    try:
        return await kube.get(resources.LEASES.path(namespace=namespace, name=name))
    except ApiError as error:
        if error.not_found:
            return None
        raise


async def try_acquire_or_renew(
    kube: Kube,
    *,
    namespace: str,
    name: str,
    identity: str,
    duration_seconds: float,
    observed: leases.Observed | None,
    clock: Callable[[], float] = time.monotonic,
) -> Round:
    """One round of leader election, as client-go's leaderelection does it (optimistic concurrency). Another
    holder's claim is judged by ``observed`` (what the previous rounds saw, on ``clock``), never by its
    renewTime against this machine's wall clock: clock skew cannot let this replica take a live Lease."""
    stamp = times.micro_time()
    spec = {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration_seconds)),
        "renewTime": stamp,
    }
    lease = await get(kube, namespace=namespace, name=name)
    seen = None if lease is None else leases.observe(observed, lease, now=clock())
    try:
        if lease is None:
            body: JSON = {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {**spec, "acquireTime": stamp, "leaseTransitions": 0},
            }
            await kube.create(resources.LEASES.path(namespace=namespace), body)
            return Round("acquired", seen)
        if leases.holder(lease) == identity:
            lease["spec"].update(spec)
            await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
            return Round("renewed", seen)
        if seen is not None and seen.live(now=clock()):
            return Round("held-by-other", seen)
        transitions = leases.transitions(lease) + 1
        lease["spec"] = {
            **lease.get("spec", {}),
            **spec,
            "acquireTime": stamp,
            "leaseTransitions": transitions,
        }
        await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
        return Round("acquired", seen)
    except ApiError as error:
        if error.conflict:
            return Round("conflict", seen)
        raise


async def release(kube: Kube, *, namespace: str, name: str, identity: str) -> None:
    """Give the Lease up at once so another replica takes over without waiting for it to expire (a 409 is
    raised: the caller reads again and decides again; a Lease that is gone or someone else's is left alone)."""
    lease = await get(kube, namespace=namespace, name=name)
    if lease is None or leases.holder(lease) != identity:
        return
    lease["spec"].update({"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": times.micro_time()})
    try:
        await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
    except ApiError as error:
        if not error.not_found:
            raise
