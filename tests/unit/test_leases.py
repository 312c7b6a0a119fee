"""Leader election's two pure parts: a holder's claim judged by locally observed time, and the timings
client-go's elector refuses (exit code 2 at config time)."""

from __future__ import annotations

from typing import Any

import pytest

from controllers.runtime import config
from controllers.structs import leases, times

DURATION = 15


def lease(
    *, holder: str = "other_1", renew: str = "2020-01-01T00:00:00.000000Z", **spec: Any
) -> dict[str, Any]:
    return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": DURATION, "renewTime": renew, **spec}}


def test_an_unchanged_record_keeps_the_time_it_was_first_seen() -> None:
    first = leases.observe(None, lease(), now=100.0)
    again = leases.observe(first, lease(), now=110.0)
    assert again is first and again.at == 100.0
    assert again.live(now=114.9)
    assert not again.live(now=115.0)  # 15 s after it was seen, whatever renewTime says


def test_a_renewal_restarts_the_local_clock() -> None:
    first = leases.observe(None, lease(renew="2020-01-01T00:00:00.000000Z"), now=100.0)
    renewed = leases.observe(first, lease(renew="2020-01-01T00:00:02.000000Z"), now=113.0)
    assert renewed.at == 113.0 and renewed.live(now=127.0)


@pytest.mark.parametrize("skew_seconds", [-3600.0, -2 * DURATION, 2 * DURATION, 3600.0])
def test_the_holders_clock_does_not_matter(skew_seconds: float) -> None:
    """A holder whose renewTime is far in the past (its clock behind: judged by renewTime it looked expired,
    and a replica took a live Lease) or far in the future (clock ahead: a dead holder blocked the Lease for
    the skew) is judged the same: live for leaseDurationSeconds after its record was seen to change."""
    wall = 1_900_000_000.0
    renew = times.iso(wall + skew_seconds)
    assert renew is not None
    assert leases.expired(leases.renewed_at(lease(renew=renew)), DURATION, now=wall) == (skew_seconds < 0)
    seen = leases.observe(None, lease(renew=renew), now=50.0)
    assert seen.live(now=50.0 + DURATION - 0.1)
    assert not seen.live(now=50.0 + DURATION)


def test_a_live_holder_with_a_clock_behind_keeps_its_lease() -> None:
    """It renews every 2 s, each renewTime an hour in the past: every renewal is a change, so it stays live."""
    seen = None
    for second in range(0, 120, 2):
        renew = times.iso(1_900_000_000.0 - 3600 + second)
        assert renew is not None
        seen = leases.observe(seen, lease(renew=renew), now=float(second))
        assert seen.live(now=second + 1.9)


@pytest.mark.parametrize(
    "spec",
    [{"holderIdentity": ""}, {"holderIdentity": None}, {"leaseDurationSeconds": 0}, {"leaseDurationSeconds": "x"},
     {"leaseDurationSeconds": float("nan")}, {"leaseDurationSeconds": 2**40}],
)  # fmt: skip
def test_no_holder_or_an_invalid_duration_is_no_live_claim(spec: dict[str, Any]) -> None:
    seen = leases.observe(None, lease(**spec), now=10.0)
    assert not seen.live(now=10.0)


def test_garbage_is_observed_without_raising() -> None:
    for body in ({}, {"spec": None}, {"spec": "x"}, {"spec": {"holderIdentity": 3, "renewTime": ["x"]}}):
        assert not leases.observe(None, body, now=0.0).live(now=0.0)  # no valid duration: no claim


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period", "problem"),
    [
        (15, 10, 2, ""),  # the defaults (client-go's 15/10/2)
        (10, 10, 2, "--lease-duration-seconds 10 must be greater than --renew-deadline-seconds 10"),
        (10, 20, 2, "must be greater than --renew-deadline-seconds 20"),
        (15, 2.4, 2, "--renew-deadline-seconds 2.4 must be greater than --retry-period-seconds 2 x 1.2"),
        (15, 2.41, 2, ""),
        (0, 10, 2, "--lease-duration-seconds 0 must be > 0"),
        (15, -1, 2, "--renew-deadline-seconds -1 must be > 0"),
        (15, 10, float("nan"), "--retry-period-seconds nan must be > 0"),
        (2**31, 10, 2, "must be at most 2147483647"),
    ],
)
def test_lease_timings_are_refused_as_client_go_refuses_them(
    lease_duration: float, renew_deadline: float, retry_period: float, problem: str
) -> None:
    found = config.lease_timing_problem(
        lease_duration=lease_duration, renew_deadline=renew_deadline, retry_period=retry_period
    )
    assert (problem in found and bool(found)) if problem else found == ""


def test_a_config_with_bad_timings_is_a_config_error_naming_them() -> None:
    with pytest.raises(config.ConfigError, match="must be greater than --renew-deadline-seconds 30"):
        config.load(
            config.BaseConfig,
            ["--renew-deadline-seconds=30"],
            prog="test",
            prefix="TEST",
            description="",
            environ={"TEST_LEASE_DURATION_SECONDS": "20"},
        )
