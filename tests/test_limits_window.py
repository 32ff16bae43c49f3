"""The sliding window on a clock the test drives: exact in every window, 99% under
saturation, where fixed windows and token buckets let twice the limit through."""

from __future__ import annotations

import random

import pytest

from prodgate.limits import Demand, MemoryLimiter, Rate
from prodgate.limits.window import BUCKETS, Window, bucket_us

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def heaviest_window(events: list[tuple[float, int]], period: float) -> int:
    """The most units admitted in any window (t - period, t], by brute force."""
    best = 0
    for t, _ in events:
        best = max(best, sum(u for s, u in events if t - period < s <= t))
    return best


def test_bucket_width_covers_the_period() -> None:
    for period in (0.001, 0.5, 1.0, 1.2345678, 60.0, 86400.0):
        b = bucket_us(period)
        assert BUCKETS * b >= round(period * 1e6)
        assert b >= 1


async def test_never_more_than_the_limit_in_any_window_random_arrivals() -> None:
    rng = random.Random(7)
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    rate = Rate("rows_per_second", 50, 1.0, unit="rows")
    admitted: list[tuple[float, int]] = []
    for _ in range(6000):
        clock.now += rng.expovariate(1 / 0.002)  # far more demand than the limit
        cost = rng.choice([0, 1, 1, 2, 3, 7])
        v = await lim.check([Demand("key:a", rate, cost)])
        if v.allowed and cost:
            admitted.append((clock.now, cost))
    assert heaviest_window(admitted, 1.0) <= 50
    # Saturated, at least 99% of the limit over the run (after the first period).
    span = admitted[-1][0] - admitted[0][0]
    total = sum(u for _, u in admitted)
    assert total >= 0.99 * 50 * span - 50


async def test_a_fixed_window_boundary_burst_is_refused() -> None:
    # 600 per 60 s: all 600 at 59.9 s, then a burst just after the minute turns.
    clock = Clock(0.0)
    lim = MemoryLimiter(clock=clock)
    rpm = Rate("rpm", 600, 60.0)
    clock.now = 59.9
    allowed = [(await lim.check([Demand("key:a", rpm, 1)])).allowed for _ in range(700)]
    assert sum(allowed) == 600
    clock.now = 60.1
    late = [(await lim.check([Demand("key:a", rpm, 1)])).allowed for _ in range(600)]
    assert sum(late) == 0


async def test_a_token_bucket_pattern_gets_no_second_burst() -> None:
    # A bucket with burst = limit would admit 600 now and 600 more by refilling
    # over the next minute: 1,200 in one 60 s window. Here: 600 until the burst ages out.
    clock = Clock(0.0)
    lim = MemoryLimiter(clock=clock)
    rpm = Rate("rpm", 600, 60.0)
    events: list[tuple[float, int]] = []
    while clock.now < 150.0:
        if (await lim.check([Demand("key:a", rpm, 1)])).allowed:
            events.append((clock.now, 1))
        else:
            clock.now += 0.05
    assert sum(1 for t, _ in events if t < 60.0) == 600
    assert heaviest_window(events, 60.0) == 600
    # The whole limit again once the first burst has left (a bucket after 60 s).
    assert sum(1 for t, _ in events if t <= 61.0) == 1200
    assert sum(1 for t, _ in events if t < 60.5) == 600


async def test_saturation_admits_at_least_99_percent_per_period() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    rate = Rate("rps", 1000, 1.0)
    start = clock.now
    admitted = 0
    while clock.now < start + 20.0:
        for _ in range(3):  # three requests every millisecond: 3x the limit
            admitted += (await lim.check([Demand("s", rate, 1)])).allowed
        clock.now += 0.001
    assert admitted <= 1000 * 20
    assert admitted >= 0.99 * 1000 * 20


async def test_retry_after_is_when_the_request_fits() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    rate = Rate("rps", 10, 1.0)
    d = Demand("s", rate, 1)
    for _ in range(4):
        assert (await lim.check([d])).allowed
    clock.now += 0.3
    for _ in range(6):
        assert (await lim.check([d])).allowed
    refused = await lim.check([d])
    assert not refused.allowed
    # The oldest units (at +0) leave the span after just over a period.
    assert 0.7 <= refused.retry_after_s <= 0.7 + 2 * bucket_us(1.0) / 1e6
    clock.now += refused.retry_after_s - 0.002
    assert not (await lim.check([d])).allowed
    clock.now += 0.002
    assert (await lim.check([d])).allowed
    # A cost of 5 needs the +0.3 units to leave too.
    big = await lim.check([Demand("s", rate, 5)])
    assert not big.allowed
    assert 0.3 - 0.02 <= big.retry_after_s <= 0.3 + 0.02


def test_window_drops_what_left_the_span_and_forgets_idle_state() -> None:
    w = Window(1.0)
    b = w.b
    i = w.advance(0)
    w.add(i, 3)
    w.add(w.advance(50 * b), 2)
    assert w.used == 5
    w.advance((BUCKETS + 1) * b)  # bucket 0 has left
    assert w.used == 2
    assert w.reset_us((BUCKETS + 1) * b) == (50 + BUCKETS + 1) * b - (BUCKETS + 1) * b
    w.advance(10_000 * b)  # long idle: everything goes at once
    assert w.used == 0
    assert not w.buckets
    assert w.idle(10_000 * b)


async def test_idle_subjects_are_swept_from_memory() -> None:
    clock = Clock()
    lim = MemoryLimiter(clock=clock)
    rate = Rate("rps", 5, 1.0)
    for n in range(100):
        await lim.check([Demand(f"key:{n}", rate, 1)])
    assert len(lim._windows) == 100
    clock.now += 31.0
    await lim.check([Demand("key:new", rate, 1)])
    assert len(lim._windows) == 1
