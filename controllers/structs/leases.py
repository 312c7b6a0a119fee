"""coordination.k8s.io Lease bodies: who holds one and when the holder's claim runs out."""

from __future__ import annotations

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
