"""coordination.k8s.io Lease bodies: who holds one and when the holder's claim runs out.

Two clocks, for two uses. An observer of other components' Leases (the leader-watchdog) reads the holder's
``renewTime`` against its own wall clock (:func:`expired`): a report, skewed by the clocks' difference. A
candidate in leader election must never take a live Lease, so it judges as client-go's elector does
(:class:`Observed`): by the time it saw the holder's record change on its own monotonic clock, plus
``leaseDurationSeconds``; the holder's timestamps are compared with nothing.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from controllers.structs import times


def _spec(lease: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def holder(lease: Mapping[str, Any]) -> str:
    return str(_spec(lease).get("holderIdentity") or "")


def renewed_at(lease: Mapping[str, Any]) -> float | None:
    """Unix time of the last renewal (the acquisition when never renewed); None when neither is set."""
    spec = _spec(lease)
    return times.parse_time(spec.get("renewTime")) or times.parse_time(spec.get("acquireTime"))


def duration_seconds(lease: Mapping[str, Any]) -> float:
    """leaseDurationSeconds; 0 when it is not what the API allows (an int32 > 0)."""
    duration = _number(_spec(lease).get("leaseDurationSeconds"))
    return duration if 0 < duration < 2**31 else 0.0


def transitions(lease: Mapping[str, Any]) -> int:
    return int(_number(_spec(lease).get("leaseTransitions")))


def _number(value: object) -> float:
    """A finite number from odd input (a string, a bool, NaN, garbage) without raising: 0 when it is none."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0.0
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def expires_at(renewed: float | None, duration: float) -> float | None:
    """When a claim renewed at ``renewed`` runs out (renewTime + leaseDurationSeconds)."""
    return None if renewed is None else renewed + duration


def expired(renewed: float | None, duration: float, *, now: float) -> bool:
    """Never renewed, or renewed longer than its duration ago."""
    expiry = expires_at(renewed, duration)
    return expiry is None or now > expiry


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """A Lease's record as this replica last saw it change, and when (``at``: its own monotonic clock)."""

    record: str  # the spec as read (holder, renewTime, acquireTime, duration, transitions...)
    at: float
    holder: str
    duration: float  # leaseDurationSeconds as read (0 when invalid: the claim runs out at once)

    def live(self, *, now: float) -> bool:
        """Someone holds the Lease and this replica saw the record change less than its duration ago
        (client-go's ``isLeaseValid``): a holder whose clock is wrong by any amount is judged the same."""
        return bool(self.holder) and now < self.at + self.duration


def observe(previous: Observed | None, lease: Mapping[str, Any], *, now: float) -> Observed:
    """The observation after reading ``lease`` at ``now``: the previous one while the record is unchanged
    (its clock keeps running), else a new one starting now."""
    record = json.dumps(dict(_spec(lease)), sort_keys=True, default=str)
    if previous is not None and previous.record == record:
        return previous
    return Observed(record=record, at=now, holder=holder(lease), duration=duration_seconds(lease))
