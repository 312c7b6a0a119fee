"""uso-runner's self-pacing (pure): a simulated apiserver whose latency rises with the writes in flight.

The simulated apiserver serves ``knee`` writes at once at its idle latency; past that they share it, so each
takes ``idle * in_flight / knee`` (a CPU-bound apiserver: more writes in flight add latency, not
throughput), times log-normal noise. The pacer holding writes at ``budget`` times the idle latency should so
settle near ``budget * knee`` writes in flight.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import statistics
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controllers.uso_runner import logic

IDLE = 0.008  # the simulated apiserver's idle write latency (s)


@dataclasses.dataclass
class Apiserver:
    """``knee(now)`` writes at once at ``idle(now)`` each; more share it."""

    knee: Callable[[float], float] = lambda now: 4.0
    idle: Callable[[float], float] = lambda now: IDLE
    noise: float = 0.2

    def latency(self, in_flight: int, now: float, rng: random.Random) -> float:
        crowd = max(1.0, in_flight / self.knee(now))
        return self.idle(now) * crowd * rng.lognormvariate(0, self.noise)


@dataclasses.dataclass(frozen=True)
class Sample:
    at: float  # when a write was answered
    limit: int  # the pacer's limit then
    in_flight: int  # writes in flight when it started (itself included)
    latency: float


def simulate(
    pacer: logic.Pacer,
    server: Apiserver,
    *,
    seconds: float,
    seed: int = 1,
    throttle: Callable[[float], bool] = lambda now: False,
) -> tuple[list[Sample], list[logic.PaceChange]]:
    """Writes as the migrator issues them (as many as the limit allows, each reporting when answered), on a
    virtual clock; every answered write and every change of limit."""
    rng = random.Random(seed)
    answers: list[tuple[float, int, int, bool, float, int]] = []
    now, in_flight, started = 0.0, 0, 0
    samples: list[Sample] = []
    changes: list[logic.PaceChange] = []
    while now < seconds:
        while in_flight < pacer.limit:
            in_flight += 1
            started += 1
            latency = server.latency(in_flight, now, rng)
            alone = in_flight == 1 and pacer.limit == 1
            heapq.heappush(answers, (now + latency, started, pacer.epoch, alone, latency, in_flight))
            assert in_flight <= pacer.settings.ceiling
        now, _, epoch, alone, latency, crowd = heapq.heappop(answers)
        in_flight -= 1
        if throttle(now):
            change = pacer.throttled(epoch=epoch, now=now)
        else:
            change = pacer.observe(latency=latency, epoch=epoch, alone=alone, now=now)
        if change is not None:
            changes.append(change)
        samples.append(Sample(at=now, limit=pacer.limit, in_flight=crowd, latency=latency))
    return samples, changes


def between(samples: list[Sample], start: float, end: float) -> list[Sample]:
    return [s for s in samples if start <= s.at < end]


def median_ratio(samples: list[Sample], *, idle: float = IDLE) -> float:
    return statistics.median(s.latency for s in samples) / idle


def new_pacer(budget: float, ceiling: int = 16, **kwargs: float) -> logic.Pacer:
    return logic.Pacer(logic.PaceSettings(budget=budget, ceiling=ceiling, **kwargs), now=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("budget", [1.25, 1.5, 2.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_converges_near_the_budget(budget: float, seed: int) -> None:
    pacer = new_pacer(budget)
    samples, _ = simulate(pacer, Apiserver(), seconds=60, seed=seed)
    steady = between(samples, 5, 60)
    ratio = median_ratio(steady)
    # Near the budget, and not far below it: the writes in flight settle around budget * knee.
    assert 1 + (budget - 1) * 0.5 <= ratio <= budget * 1.1, ratio
    assert pacer.idle == pytest.approx(IDLE, rel=0.15)
    assert abs(statistics.mean(s.limit for s in steady) - budget * 4) <= 1.5
    assert max(s.limit for s in samples) < 16  # it never went to --workers: that would overrun the budget


def test_it_starts_alone_and_learns_the_idle_latency_before_pacing() -> None:
    pacer = new_pacer(1.5)
    samples, changes = simulate(pacer, Apiserver(), seconds=2)
    first = changes[0]
    assert first.why == "learned" and (first.before, first.after) == (1, 1)
    learned_at = next(i for i, s in enumerate(samples) if s.at >= 0 and s.limit > 1)
    assert all(s.in_flight == 1 for s in samples[:learned_at])
    assert learned_at >= pacer.settings.probe_samples
    assert [c.why for c in changes[1:4]] == ["slow_start"] * 3  # 1 -> 2 -> 4 -> 8 while far below budget


def test_it_backs_off_on_a_step_and_settles_again() -> None:
    """At 30 s the apiserver serves half as many writes at once (an apiserver lost, a heavy client came):
    the latency at the same concurrency doubles. The pacer lowers its limit at once and holds the budget."""
    budget = 1.5
    pacer = new_pacer(budget)
    server = Apiserver(knee=lambda now: 4.0 if now < 30 else 2.0)
    samples, changes = simulate(pacer, server, seconds=60)
    before = between(samples, 10, 30)
    assert abs(statistics.mean(s.limit for s in before) - 6) <= 1.5
    step = next(c for c in changes if c.why in logic.PACE_BACKOFFS and between(samples, 30, 30.5))
    assert step is not None
    within = [s.limit for s in between(samples, 30.5, 31)]
    assert max(within) <= 4, within  # within half a second, about budget * 2 = 3 in flight
    after = between(samples, 32, 60)
    assert median_ratio(after) <= budget * 1.1
    assert abs(statistics.mean(s.limit for s in after) - 3) <= 1


def test_it_never_exceeds_workers_where_latency_never_rises() -> None:
    pacer = new_pacer(1.5, ceiling=5)
    samples, _ = simulate(pacer, Apiserver(knee=lambda now: 100.0), seconds=20)
    assert max(s.limit for s in samples) == 5 and max(s.in_flight for s in samples) == 5
    assert statistics.mean(s.limit for s in between(samples, 2, 20)) > 4.9


def test_it_relearns_the_idle_latency() -> None:
    """The cluster's own load doubles every write's latency at 20 s: measured against the old idle latency
    every window would be far over budget; the idle latency re-learned by 20 + relearn_seconds, the pacer
    goes back to the same concurrency (the budget is relative to what a write alone takes now)."""
    pacer = new_pacer(1.5, relearn_seconds=10)
    server = Apiserver(idle=lambda now: IDLE if now < 20 else 2 * IDLE)
    samples, changes = simulate(pacer, server, seconds=60)
    assert pacer.idle == pytest.approx(2 * IDLE, rel=0.15)
    assert any(c.why == "relearned" for c in changes)
    assert abs(statistics.mean(s.limit for s in between(samples, 35, 60)) - 6) <= 1.5
    assert median_ratio(between(samples, 35, 60), idle=2 * IDLE) <= 1.5 * 1.1


def test_a_hard_spike_halves_the_limit_and_is_announced_once_a_minute() -> None:
    """Far over budget (here: each write 20 times slower from 10 s, for 1 s, every 5 s) halves the limit
    at once; the announcements (log warning, Event) come at most once per announce_seconds."""
    pacer = new_pacer(1.5)
    server = Apiserver(idle=lambda now: 20 * IDLE if now >= 10 and now % 5 < 1 else IDLE)
    _, changes = simulate(pacer, server, seconds=90)
    hard = [c for c in changes if c.why == "hard"]
    assert len(hard) >= 5
    assert all(c.after == max(1, c.before // 2) for c in hard)
    assert 1 <= sum(c.announce for c in hard) <= 2  # 80 s of spikes: at most one announcement a minute
    assert "budget 1.5x" in hard[0].describe(budget=1.5)


def test_a_throttled_write_halves_the_limit() -> None:
    pacer = new_pacer(1.5)
    simulate(pacer, Apiserver(), seconds=5)
    before = pacer.limit
    change = pacer.throttled(epoch=pacer.epoch, now=5.0)
    assert change is not None and change.why == "throttled" and change.after == max(1, before // 2)
    assert change.announce and "throttled" in change.describe(budget=1.5)
    # Writes of the same (now old) epoch throttled too do not halve it again.
    assert pacer.throttled(epoch=pacer.epoch - 1, now=5.0) is None


def test_off_keeps_workers_and_still_reports_the_latency() -> None:
    pacer = new_pacer(0.0, ceiling=16)
    samples, changes = simulate(pacer, Apiserver(), seconds=5)
    assert changes == [] and {s.limit for s in samples} == {16}
    assert pacer.phase == "off" and pacer.idle == 0
    assert pacer.latency == pytest.approx(IDLE * 4, rel=0.2)  # 16 in flight over a knee of 4


@settings(max_examples=200, deadline=None)
@given(
    ceiling=st.integers(1, 64),
    budget=st.sampled_from([0.0, 1.1, 1.5, 3.0]),
    events=st.lists(
        st.tuples(
            st.one_of(st.floats(-1.0, 10.0), st.sampled_from([float("nan"), float("inf"), 0.0])),
            st.booleans(),
            st.booleans(),
            st.integers(-2, 3),
        ),
        max_size=300,
    ),
)
def test_the_limit_stays_between_1_and_workers_whatever_is_reported(
    ceiling: int, budget: float, events: list[tuple[float, bool, bool, int]]
) -> None:
    pacer = new_pacer(budget, ceiling=ceiling)
    now = 0.0
    for latency, alone, throttled, epoch_shift in events:
        now += 0.5
        epoch = pacer.epoch + epoch_shift
        if throttled:
            pacer.throttled(epoch=epoch, now=now)
        else:
            pacer.observe(latency=latency, epoch=epoch, alone=alone, now=now)
        assert 1 <= pacer.limit <= ceiling
        assert pacer.idle >= 0 and pacer.latency >= 0
