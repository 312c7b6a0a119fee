"""One error classifier and one retry policy for every API call (after kopf's ``api.request`` and the
storage-version-migrator's ``interpret()``).

``classify`` names what went wrong (a bounded label for logs and metrics); a :class:`RetryPolicy` says which
kinds are worth another try and how long to wait: exponential backoff with full jitter, or exactly what the
apiserver asked for in ``Retry-After``. :func:`call` is the one retry loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar

import aiohttp

from controllers.structs import redact

T = TypeVar("T")

Reason = Literal[
    "conflict",
    "not_found",
    "gone",
    "throttled",
    "server_error",
    "connection",
    "forbidden",
    "invalid",
    "client_error",
]
# The apiserver or the network was busy or failing, not the request: another try may succeed.
TRANSIENT: frozenset[Reason] = frozenset({"throttled", "server_error", "connection"})


class ApiError(Exception):
    """A non-2xx answer from the apiserver, with its Status body."""

    def __init__(self, *, status: int, body: dict[str, Any], retry_after: float | None = None) -> None:
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.reason: str = str(body.get("reason") or "")
        super().__init__(f"{status} {self.reason}: {body.get('message', '')}".strip())

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"


def classify(error: BaseException) -> Reason | None:
    """What kind of failure ``error`` is; None when it is neither an API answer nor a connection problem
    (a bug: let it propagate)."""
    if isinstance(error, ApiError):
        return status_reason(error.status, message=str(error.body.get("message", "")))
    if isinstance(error, aiohttp.ClientError | TimeoutError | OSError):
        return "connection"
    return None


_BY_STATUS: dict[int, Reason] = {
    400: "invalid", 401: "forbidden", 403: "forbidden", 404: "not_found", 409: "conflict", 410: "gone",
    422: "invalid", 429: "throttled",
}  # fmt: skip


def status_reason(status: int, *, message: str = "") -> Reason:
    # Server-side apply answers 500 for a field the schema does not declare or a value of the wrong type,
    # and for data it cannot decode (bad base64): the object is wrong, not the server (the apiserver gives
    # no other sign of it than these messages).
    if status == 500 and message.startswith(("failed to create typed patch object", "failed to convert new")):
        return "invalid"
    return "server_error" if status >= 500 else _BY_STATUS.get(status, "client_error")


# The one way an error becomes text for a log line, an Event, a state field or /status: the apiserver's
# message only where the request's object holds no data values (controllers/structs/redact.py).
describe = redact.describe


# The longest wait a server's Retry-After may ask for: the apiserver's priority and fairness asks for 1 s;
# "inf" would hang the caller for ever, a negative number would spin it, a year would wedge it.
RETRY_AFTER_CAP = 60.0
# 2**64 half-seconds outlast any cap; a larger exponent only risks an OverflowError (base * 2**1024).
_MAX_EXPONENT = 64


def clamp_retry_after(seconds: float | None, *, cap: float = RETRY_AFTER_CAP) -> float | None:
    """What a server's ``Retry-After`` may make a caller wait: within [0, ``cap``]; None (the caller's own
    backoff) when there is none or it is not a number (NaN)."""
    if seconds is None or math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), cap)


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry the ``on`` kinds of failure at most ``attempts`` times (None: forever); wait a random delay in
    [0, min(cap, base * 2**attempt)] between tries, or what ``Retry-After`` asks for (at most
    ``retry_after_cap``)."""

    base: float = 0.5
    cap: float = 30.0
    attempts: int | None = None
    on: frozenset[Reason] = TRANSIENT
    retry_after_cap: float = RETRY_AFTER_CAP

    def delay(self, attempt: int, *, retry_after: float | None = None) -> float:
        asked = clamp_retry_after(retry_after, cap=self.retry_after_cap)
        if asked is not None:
            return asked
        return random.uniform(0, min(self.cap, self.base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT)))

    def retries(self, reason: Reason, *, attempt: int) -> bool:
        return reason in self.on and (self.attempts is None or attempt < self.attempts)


# One try, no retry.
ONCE = RetryPolicy(attempts=0)
# What every request does by itself: wait as long as the apiserver's priority and fairness asks.
THROTTLED = RetryPolicy(base=1.0, attempts=8, on=frozenset({"throttled"}))
# Read-modify-write after a 409: read again and decide again at once (client-go's RetryOnConflict).
CONFLICTS = RetryPolicy(base=0.01, cap=0.5, attempts=10, on=frozenset({"conflict"}))


@dataclasses.dataclass(slots=True)
class Backoff:
    """A policy's delays for a loop that keeps its own count (a watch: reset after every success)."""

    policy: RetryPolicy = RetryPolicy()
    attempt: int = 0

    def next_delay(self, *, retry_after: float | None = None) -> float:
        delay = self.policy.delay(self.attempt, retry_after=retry_after)
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


async def call(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    on_error: Callable[[Reason, BaseException], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """``await attempt()`` until it succeeds or fails in a way ``policy`` does not retry (then raises);
    ``on_error`` sees every classified failure, retried or not."""
    tries = 0
    while True:
        try:
            return await attempt()
        except Exception as error:
            reason = classify(error)
            if reason is None:
                raise
            if on_error is not None:
                on_error(reason, error)
            if not policy.retries(reason, attempt=tries):
                raise
            await sleep(policy.delay(tries, retry_after=getattr(error, "retry_after", None)))
            tries += 1
