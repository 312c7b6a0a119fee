"""The failure vocabulary (runtime/failure.py): what each kind of failure means, and the per-item backoff."""

from __future__ import annotations

import aiohttp
import pytest

from controllers.kube import retry
from controllers.runtime import failure
from tests import clocks


def test_kinds_of_failure() -> None:
    assert failure.kind(failure.TemporaryError("later")) == "temporary"
    assert failure.kind(failure.PermanentError("never")) == "permanent"
    assert failure.kind(retry.ApiError(status=503, body={"reason": "ServiceUnavailable"})) == "temporary"
    assert failure.kind(aiohttp.ServerDisconnectedError()) == "temporary"
    assert failure.kind(ValueError("bug")) == "bug"
    secret = retry.ApiError(status=422, body={"reason": "Invalid", "message": "data.password: s3cr3t"})
    assert failure.describe(secret) == "422 Invalid"  # never the message
    assert failure.describe(failure.PermanentError("bundle 1.37 is invalid")) == "bundle 1.37 is invalid"
    assert failure.delay_of(failure.TemporaryError("x", delay=7)) == 7
    assert failure.delay_of(retry.ApiError(status=429, body={}, retry_after=3.0)) == 3.0
    assert failure.delay_of(ValueError()) is None


def test_each_item_waits_its_own_capped_backoff_and_a_success_forgets_it() -> None:
    clock = clocks.Clock()
    items: failure.ItemBackoff[str] = failure.ItemBackoff(retry.RetryPolicy(base=2.0, cap=5.0), clock=clock)
    error = retry.ApiError(status=503, body={"reason": "ServiceUnavailable"})
    assert items.ready("a") and items.next_in() is None
    assert [items.failed("a", error, what="taint a") for _ in range(4)] == [2.0, 4.0, 5.0, 5.0]
    assert items.failed("b", error) == 2.0
    assert not items.ready("a") and not items.ready("b") and items.ready("c")
    assert items.next_in() == 2.0  # b first
    assert items.last_error == "b: 503 ServiceUnavailable" and items.failing == ["a", "b"]
    clock.now += 2.0
    assert items.ready("b") and not items.ready("a") and items.next_in() == 3.0
    items.succeeded("b")
    assert items.failing == ["a"] and items.last_error == "taint a: 503 ServiceUnavailable"
    items.keep(["b"])  # a is gone
    assert items.failing == [] and items.last_error == "" and items.next_in() is None


def test_what_a_failure_asks_for_wins_and_a_permanent_one_stops_the_item() -> None:
    clock = clocks.Clock()
    items: failure.ItemBackoff[str] = failure.ItemBackoff(retry.RetryPolicy(base=1.0, cap=60.0), clock=clock)
    assert items.failed("a", retry.ApiError(status=429, body={}, retry_after=9.0)) == 9.0
    assert items.failed("b", failure.TemporaryError("not yet", delay=0.5)) == 0.5
    assert items.failed("c", failure.PermanentError("cannot")) is None
    clock.now += 1000
    assert items.ready("a") and items.ready("b") and not items.ready("c")
    assert items.next_in() is None  # a stopped item wakes nobody
    assert items.last_error == "c: cannot"


@pytest.mark.parametrize("delay", [None, 0.0])
def test_temporary_error_keeps_its_reason(delay: float | None) -> None:
    error = failure.TemporaryError("waiting for the CRD", delay=delay)
    assert str(error) == "waiting for the CRD" and error.delay == delay


def test_what_a_server_asks_is_bounded_and_many_failures_do_not_overflow() -> None:
    items: failure.ItemBackoff[str] = failure.ItemBackoff(
        retry.RetryPolicy(base=1.0, cap=60.0), clock=clocks.Clock()
    )
    assert items.failed("a", retry.ApiError(status=429, body={}, retry_after=1e9)) == retry.RETRY_AFTER_CAP
    assert items.failed("b", failure.TemporaryError("x", delay=-5)) == 0.0
    assert [items.failed("c", failure.TemporaryError("x")) for _ in range(2000)][-1] == 60.0
