"""Liveness (server.Probes) on a fake clock: a loop that promised to come round and did not is wedged."""

from __future__ import annotations

from controllers.kube import retry
from controllers.runtime import server
from tests import clocks


def test_a_loop_waiting_for_a_change_without_a_deadline_is_alive_forever() -> None:
    clock = clocks.Clock()
    health = server.Probes(clock=clock, grace=60)
    health.expect(within=None)
    clock.now += 10_000
    assert health.wedged() == ""


def test_a_loop_is_wedged_only_after_its_promise_and_the_grace() -> None:
    clock = clocks.Clock()
    health = server.Probes(clock=clock, grace=60)
    health.expect(within=30)
    clock.now += 89
    assert health.wedged() == ""
    clock.now += 2
    assert health.wedged() == "its loop is 1 s overdue"
    health.expect(within=30)  # it came round: alive again
    assert health.wedged() == ""


def test_down_is_wedged_whatever_the_loop_says() -> None:
    health = server.Probes(clock=clocks.Clock())
    health.down = "failed 5 times in a row: KeyError: 'spec'"
    assert health.wedged() == "failed 5 times in a row: KeyError: 'spec'"


def test_backoff_takes_retry_after_as_asked_and_counts_it() -> None:
    backoff = retry.Backoff(retry.RetryPolicy(base=0.5, cap=60.0))
    assert backoff.next_delay(retry_after=7.0) == 7.0
    assert backoff.attempt == 1
    assert 0 <= backoff.next_delay() <= 1.0  # the second try's window: [0, 0.5 * 2]
    backoff.reset()
    assert backoff.attempt == 0
