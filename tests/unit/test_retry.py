"""The one retry policy and error classifier of kube/: backoff bounds, Retry-After, what is retried."""

from __future__ import annotations

import math

import aiohttp
import pytest

from controllers.kube import client, retry


def api_error(status: int, *, message: str = "", retry_after: float | None = None) -> retry.ApiError:
    return retry.ApiError(status=status, body={"message": message}, retry_after=retry_after)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (409, "conflict"),
        (404, "not_found"),
        (410, "gone"),
        (429, "throttled"),
        (500, "server_error"),
        (503, "server_error"),
        (401, "forbidden"),
        (403, "forbidden"),
        (400, "invalid"),
        (422, "invalid"),
        (418, "client_error"),
    ],
)
def test_classifier_names_each_status(status: int, reason: str) -> None:
    assert retry.classify(api_error(status)) == reason


def test_classifier_server_side_apply_schema_rejection_is_invalid_not_a_server_error() -> None:
    error = api_error(500, message="failed to create typed patch object (/v1, Kind=Service): .spec.x")
    assert retry.classify(error) == "invalid"


def test_classifier_connection_errors_and_bugs() -> None:
    assert retry.classify(aiohttp.ServerDisconnectedError()) == "connection"
    assert retry.classify(TimeoutError()) == "connection"
    assert retry.classify(ConnectionResetError()) == "connection"
    assert retry.classify(KeyError("a bug")) is None
    assert retry.describe(api_error(422, message="secret value")) == "422"
    assert retry.describe(TimeoutError()) == "TimeoutError"


def test_backoff_is_jittered_exponential_and_capped() -> None:
    policy = retry.RetryPolicy(base=0.5, cap=4.0)
    for attempt, bound in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays)
        assert max(delays) > bound / 2  # spread over the range, not stuck at the bottom
        assert len(set(delays)) > 100  # jittered: many replicas do not retry in step


def test_retry_after_wins_over_the_backoff() -> None:
    assert retry.RetryPolicy(base=0.1, cap=0.2).delay(5, retry_after=7.0) == 7.0


@pytest.mark.parametrize(
    ("header", "waited"),
    [
        ("inf", retry.RETRY_AFTER_CAP),  # would hang the request for ever
        ("1e999", retry.RETRY_AFTER_CAP),  # parses as inf
        ("31536000", retry.RETRY_AFTER_CAP),  # a year
        ("-5", 0.0),  # would spin (asyncio.sleep of a negative number returns at once, for ever)
        ("-inf", 0.0),
        ("0", 0.0),
        ("3", 3.0),
    ],
)
async def test_a_servers_retry_after_is_clamped_to_zero_and_the_cap(header: str, waited: float) -> None:
    """What the client makes of the header (client._api_error) through the one retry loop."""
    flaky = Flaky(client._api_error(429, b"{}", header))
    assert await retry.call(flaky, policy=retry.THROTTLED, sleep=flaky.sleep) == "ok"
    assert flaky.slept == [waited]


@pytest.mark.parametrize("header", ["nan", "NaN", "soon", "Wed, 21 Oct 2015 07:28:00 GMT", None])
async def test_a_retry_after_that_is_no_number_leaves_the_policys_own_backoff(header: str | None) -> None:
    flaky = Flaky(client._api_error(429, b"{}", header))
    assert await retry.call(
        flaky, policy=retry.RetryPolicy(base=0.1, on=frozenset({"throttled"})), sleep=flaky.sleep
    )
    assert len(flaky.slept) == 1 and 0 <= flaky.slept[0] <= 0.1


def test_a_policys_own_retry_after_cap() -> None:
    policy = retry.RetryPolicy(retry_after_cap=5.0)
    assert policy.delay(0, retry_after=math.inf) == 5.0
    assert policy.delay(0, retry_after=4.0) == 4.0


def test_backoff_never_overflows_whatever_the_number_of_failures() -> None:
    """base * 2**1024 overflowed a float: about 8 h of a persistent 403 at a minute's cap ended the loop."""
    policy = retry.RetryPolicy(base=0.5, cap=60.0)
    for attempt in (1023, 1024, 1025, 10**6, 10**18):
        assert 0 <= policy.delay(attempt) <= 60.0
    backoff = retry.Backoff(policy)
    delays = [backoff.next_delay() for _ in range(3000)]
    assert backoff.attempt == 3000
    assert all(0 <= d <= 60.0 for d in delays)
    assert max(delays[-100:]) > 30.0  # still jittered over the whole capped range


def test_backoff_counts_and_resets() -> None:
    backoff = retry.Backoff(retry.RetryPolicy(base=1.0, cap=100.0))
    assert all(backoff.next_delay() <= 2**n for n in range(5))
    assert backoff.attempt == 5
    backoff.reset()
    assert backoff.next_delay() <= 1.0


class Flaky:
    """Fails with ``errors`` in turn, then returns "ok"; records the sleeps asked for."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.slept: list[float] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_call_retries_transient_failures_honouring_retry_after() -> None:
    flaky = Flaky(api_error(503), api_error(429, retry_after=2.0), aiohttp.ServerDisconnectedError())
    seen: list[str] = []
    result = await retry.call(
        flaky, policy=retry.RetryPolicy(base=0.1), on_error=lambda r, _: seen.append(r), sleep=flaky.sleep
    )
    assert result == "ok" and flaky.calls == 4
    assert seen == ["server_error", "throttled", "connection"]
    assert flaky.slept[1] == 2.0
    assert 0 <= flaky.slept[0] <= 0.1 and 0 <= flaky.slept[2] <= 0.4


async def test_call_gives_up_after_the_attempts() -> None:
    flaky = Flaky(*(api_error(500) for _ in range(5)))
    with pytest.raises(retry.ApiError):
        await retry.call(flaky, policy=retry.RetryPolicy(attempts=2), sleep=flaky.sleep)
    assert flaky.calls == 3 and len(flaky.slept) == 2


@pytest.mark.parametrize("error", [api_error(422), api_error(403), api_error(409), KeyError("bug")])
async def test_call_does_not_retry_what_another_try_cannot_fix(error: BaseException) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        await retry.call(flaky, policy=retry.RetryPolicy(), sleep=flaky.sleep)
    assert flaky.calls == 1 and flaky.slept == []


async def test_conflicts_are_retried_only_by_the_conflict_policy() -> None:
    flaky = Flaky(api_error(409), api_error(409))
    assert await retry.call(flaky, policy=retry.CONFLICTS, sleep=flaky.sleep) == "ok"
    assert flaky.calls == 3
    throttled = Flaky(api_error(409))
    with pytest.raises(retry.ApiError):
        await retry.call(throttled, policy=retry.THROTTLED, sleep=throttled.sleep)
