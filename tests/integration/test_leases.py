"""Leader election on the real apiserver judges another holder's claim by the time this replica saw its record
change, never by the holder's renewTime against the local wall clock (client-go's elector): a holder whose
clock is an hour behind keeps its live Lease, and a dead holder whose clock was an hour ahead loses it one
lease duration after it stopped renewing. Rounds run on a fake monotonic clock; the Lease is real."""

from __future__ import annotations

import datetime

from controllers.kube import client, election, resources
from controllers.structs import leases, times

NAME = "skewed"
DURATION = 15


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def holder_renews(kube: client.Kube, namespace: str, *, skew: float) -> None:
    """The other replica renews, stamping renewTime with its own clock, ``skew`` seconds off."""
    path = resources.LEASES.path(namespace=namespace, name=NAME)
    lease = await kube.get(path)
    moment = times.now() + datetime.timedelta(seconds=skew)
    lease["spec"]["renewTime"] = times.micro_time(moment)
    await kube.replace(path, lease)


async def create_held(kube: client.Kube, namespace: str, *, skew: float) -> None:
    stamp = times.micro_time(times.now() + datetime.timedelta(seconds=skew))
    body = {
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {"holderIdentity": "other_1", "leaseDurationSeconds": DURATION, "renewTime": stamp,
                 "acquireTime": stamp, "leaseTransitions": 3},
    }  # fmt: skip
    await kube.create(resources.LEASES.path(namespace=namespace), body)


class Candidate:
    def __init__(self, kube: client.Kube, namespace: str, clock: Clock) -> None:
        self.kube, self.namespace, self.clock = kube, namespace, clock
        self.observed: leases.Observed | None = None

    async def round(self) -> election.RoundOutcome:
        outcome, self.observed = await election.try_acquire_or_renew(
            self.kube, namespace=self.namespace, name=NAME, identity="me_2", duration_seconds=DURATION,
            observed=self.observed, clock=self.clock,
        )  # fmt: skip
        return outcome


async def test_a_live_holder_whose_clock_is_an_hour_behind_keeps_its_lease(
    kube: client.Kube, namespace: str
) -> None:
    await create_held(kube, namespace, skew=-3600)
    lease = await election.get(kube, namespace=namespace, name=NAME)
    assert lease is not None
    # Judged by renewTime against the wall clock (what the elector did before), it looks expired long ago.
    assert leases.expired(leases.renewed_at(lease), DURATION, now=times.now().timestamp())
    clock = Clock()
    candidate = Candidate(kube, namespace, clock)
    for _ in range(20):  # 20 retry periods of 2 s = 40 s, more than twice the lease duration
        assert await candidate.round() == "held-by-other"
        await holder_renews(kube, namespace, skew=-3600)
        clock.now += 2
    lease = await election.get(kube, namespace=namespace, name=NAME)
    assert lease is not None and leases.holder(lease) == "other_1"
    # The holder stops renewing: the Lease is taken one lease duration after its last renewal was seen.
    assert await candidate.round() == "held-by-other"
    seen_at = clock.now
    clock.now = seen_at + DURATION - 0.5
    assert await candidate.round() == "held-by-other"
    clock.now = seen_at + DURATION
    assert await candidate.round() == "acquired"
    lease = await election.get(kube, namespace=namespace, name=NAME)
    assert lease is not None and leases.holder(lease) == "me_2" and leases.transitions(lease) == 4


async def test_a_dead_holder_whose_clock_was_an_hour_ahead_loses_its_lease_after_one_duration(
    kube: client.Kube, namespace: str
) -> None:
    await create_held(kube, namespace, skew=3600)
    lease = await election.get(kube, namespace=namespace, name=NAME)
    assert lease is not None
    # Judged by renewTime, it would stay live for another hour.
    assert not leases.expired(leases.renewed_at(lease), DURATION, now=times.now().timestamp())
    clock = Clock()
    candidate = Candidate(kube, namespace, clock)
    assert await candidate.round() == "held-by-other"
    clock.now += DURATION - 0.1
    assert await candidate.round() == "held-by-other"
    clock.now += 0.1
    assert await candidate.round() == "acquired"
    # Now the leader: it renews, whatever anyone's clock says.
    clock.now += 2
    assert await candidate.round() == "renewed"


async def test_a_released_lease_is_free_at_once(kube: client.Kube, namespace: str) -> None:
    await create_held(kube, namespace, skew=0)
    clock = Clock()
    candidate = Candidate(kube, namespace, clock)
    assert await candidate.round() == "held-by-other"
    await election.release(kube, namespace=namespace, name=NAME, identity="other_1")
    assert await candidate.round() == "acquired"
