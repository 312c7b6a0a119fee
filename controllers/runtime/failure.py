"""What a failure means: said by the controller, kept by the skeleton (after kopf's ``TemporaryError(delay=)``
and ``PermanentError``, and client-go's per-item rate limiter).

A controller's ``sync``, an item's work and long work beside the loop may raise:

- :class:`TemporaryError` ``(reason, delay=N)``: try again after ``N`` seconds (None: the skeleton's backoff);
- :class:`PermanentError` ``(reason)``: stop; no timed retry (a change that wakes the controller tries again,
  an item stays stopped until its failures are cleared); the reason is the status's last error;
- an API or connection failure (:func:`retry.classify`): temporary, with the skeleton's backoff (or what a
  429's Retry-After asks);
- anything else: a bug.

:class:`ItemBackoff` is the skeleton's memory of failed items (nodes, resources): each key waits
``base * 2**failures`` seconds (capped) before it is tried again, exactly, so that items that failed together
are retried together in one sync.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, Literal, TypeVar

from controllers.kube import retry

K = TypeVar("K", bound=Hashable)

FailureKind = Literal["temporary", "permanent", "bug"]


class TemporaryError(Exception):
    """Not done yet, try again: after ``delay`` seconds, or the skeleton's backoff when None."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.delay = delay


class PermanentError(Exception):
    """Cannot be done as things are: no timed retry; ``reason`` is shown as the last error."""


def kind(error: BaseException) -> FailureKind:
    if isinstance(error, PermanentError):
        return "permanent"
    if isinstance(error, TemporaryError) or retry.classify(error) is not None:
        return "temporary"
    return "bug"


def describe(error: BaseException) -> str:
    """One line for logs and the status: the controller's own reason, an API failure without its message (a
    422 message may quote Secret data), or a bug's type."""
    if isinstance(error, TemporaryError | PermanentError):
        return str(error)
    return retry.describe(error)


def delay_of(error: BaseException) -> float | None:
    """The delay the failure itself asks for (TemporaryError's, a 429's Retry-After), if any, within
    [0, a minute] (``retry.clamp_retry_after``: what a server says is bounded)."""
    asked = error.delay if isinstance(error, TemporaryError) else getattr(error, "retry_after", None)
    return retry.clamp_retry_after(float(asked)) if isinstance(asked, int | float) else None


@dataclasses.dataclass(frozen=True, slots=True)
class ItemFailure:
    what: str  # "taint node w1: 503 ServiceUnavailable"
    failures: int  # in a row
    due: float | None  # clock time of the next try (None: stopped by a permanent failure)


@dataclasses.dataclass
class ItemBackoff(Generic[K]):
    """Failed items and when each may be tried again: ``policy.base * 2**n`` seconds after its n-th failure
    in a row, at most ``policy.cap``, or what the failure asks for. A success forgets the item."""

    policy: retry.RetryPolicy
    clock: Callable[[], float] = time.monotonic  # the event loop's clock
    items: dict[K, ItemFailure] = dataclasses.field(default_factory=dict)

    def failed(self, key: K, error: BaseException, *, what: str = "") -> float | None:
        """Record a failure of ``key``; returns the delay before it is tried again (None: stopped)."""
        shown = f"{what or key}: {describe(error)}"
        previous = self.items.pop(key, None)  # re-inserted: the last to fail comes last
        failures = previous.failures + 1 if previous else 1
        if kind(error) == "permanent":
            self.items[key] = ItemFailure(shown, failures, None)
            return None
        asked = delay_of(error)
        exponent = min(failures - 1, 64)  # 2**64 steps outlast any cap; more only risks an overflow
        delay = asked if asked is not None else min(self.policy.cap, self.policy.base * 2.0**exponent)
        self.items[key] = ItemFailure(shown, failures, self.clock() + delay)
        return delay

    def succeeded(self, key: K) -> None:
        self.items.pop(key, None)

    def ready(self, key: K) -> bool:
        """Whether ``key`` may be tried now: it has not failed, or its delay is over (never when stopped)."""
        failure = self.items.get(key)
        return failure is None or (failure.due is not None and failure.due <= self.clock())

    def keep(self, keys: Iterable[K]) -> None:
        """Forget the items not in ``keys`` (gone: never tried again)."""
        alive = set(keys)
        for key in [k for k in self.items if k not in alive]:
            del self.items[key]

    def next_in(self) -> float | None:
        """Seconds until the next item is due (None: none waits); the skeleton syncs again then."""
        now = self.clock()
        waits = [f.due - now for f in self.items.values() if f.due is not None and f.due > now]
        return min(waits, default=None)

    @property
    def failing(self) -> list[K]:
        return list(self.items)

    @property
    def last_error(self) -> str:
        """What the item that failed last said ("" when none is failing)."""
        return next(reversed(self.items.values())).what if self.items else ""
