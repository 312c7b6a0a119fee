"""coordination.k8s.io Leases: reading them, and taking, renewing and releasing one for leader election."""

from __future__ import annotations

from typing import Literal

from controllers.kube import resources
from controllers.kube.client import JSON, ApiError, Kube
from controllers.structs import leases as lease_bodies
from controllers.structs import times

Outcome = Literal["acquired", "renewed", "held-by-other", "conflict"]


def is_free(lease: JSON, *, now: float) -> bool:
    """No holder, or the holder's claim has run out."""
    renewed, duration = lease_bodies.renewed_at(lease), lease_bodies.duration_seconds(lease)
    return not lease_bodies.holder(lease) or lease_bodies.expired(renewed, duration, now=now)


async def get(kube: Kube, *, namespace: str, name: str) -> JSON | None:
    try:
        return await kube.get(resources.LEASES.path(namespace=namespace, name=name))
    except ApiError as error:
        if error.not_found:
            return None
        raise


async def try_acquire_or_renew(
    kube: Kube, *, namespace: str, name: str, identity: str, duration_seconds: float
) -> Outcome:
    """One round of leader election, as client-go's leaderelection does it (optimistic concurrency)."""
    now = times.now()
    stamp = times.micro_time(now)
    lease = await get(kube, namespace=namespace, name=name)
    spec = {
        "holderIdentity": identity,
        "leaseDurationSeconds": max(1, round(duration_seconds)),
        "renewTime": stamp,
    }
    try:
        if lease is None:
            body: JSON = {
                "metadata": {"name": name, "namespace": namespace},
                "spec": {**spec, "acquireTime": stamp, "leaseTransitions": 0},
            }
            await kube.create(resources.LEASES.path(namespace=namespace), body)
            return "acquired"
        if lease_bodies.holder(lease) == identity:
            lease["spec"].update(spec)
            await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
            return "renewed"
        if not is_free(lease, now=now.timestamp()):
            return "held-by-other"
        transitions = lease_bodies.transitions(lease) + 1
        lease["spec"] = {
            **lease.get("spec", {}),
            **spec,
            "acquireTime": stamp,
            "leaseTransitions": transitions,
        }
        await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
        return "acquired"
    except ApiError as error:
        if error.conflict:
            return "conflict"
        raise


async def release(kube: Kube, *, namespace: str, name: str, identity: str) -> None:
    """Give the Lease up at once so another replica takes over without waiting for it to expire (a 409 is
    raised: the caller reads again and decides again; a Lease that is gone or someone else's is left alone)."""
    lease = await get(kube, namespace=namespace, name=name)
    if lease is None or lease_bodies.holder(lease) != identity:
        return
    lease["spec"].update({"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": times.micro_time()})
    try:
        await kube.replace(resources.LEASES.path(namespace=namespace, name=name), lease)
    except ApiError as error:
        if not error.not_found:
            raise
