"""What every limiter promises, proved on the memory limiter and on the Redis one.

The Redis tests use the server at 127.0.0.1:6379 (PRODGATE_TEST_REDIS_URL to change
it), each under a prefix of its own that is deleted afterwards.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from prodgate.limits import Demand, Limiter, MemoryLimiter, Rate, RedisLimiter, Slot

pytestmark = pytest.mark.anyio

REDIS_URL = os.environ.get("PRODGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted at the end."""
    prefix = f"prodgate-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Limiter]:
    lim: Limiter
    lim = MemoryLimiter() if request.param == "memory" else RedisLimiter(REDIS_URL, prefix=prefix)
    yield lim
    await lim.close()


async def saturate(
    lim: Limiter, demand: Demand, seconds: float, workers: int = 16
) -> tuple[float, list[tuple[float, int]]]:
    """Ask far more than the limit for *seconds*: the start and each admission's time."""
    admitted: list[tuple[float, int]] = []
    start = time.monotonic()
    end = start + seconds

    async def worker() -> None:
        while time.monotonic() < end:
            v = await lim.check([demand])
            if v.allowed:
                admitted.append((time.monotonic(), demand.cost))
            else:
                await asyncio.sleep(0.001)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return start, admitted


def heaviest(events: list[tuple[float, int]], width: float) -> int:
    """The most units admitted within any span shorter than *width* (two pointers)."""
    events = sorted(events)
    best = total = lo = 0
    for t, units in events:
        total += units
        while events[lo][0] <= t - width:
            total -= events[lo][1]
            lo += 1
        best = max(best, total)
    return best


# Admission times are taken by the caller, up to a few milliseconds after the limiter
# decided; a window this much shorter than the period surely lies within a true one.
# A fixed window or a token bucket would still show close to twice the limit in it.
SLACK = 0.15


async def test_never_more_than_the_limit_in_any_window(limiter: Limiter) -> None:
    rate = Rate("rps", 40, 1.0)
    start, admitted = await saturate(limiter, Demand("key:a", rate, 1), 2.3)
    assert heaviest(admitted, 1.0 - SLACK) <= 40
    # A fresh period admits (at least 99% of) the whole limit at once.
    assert sum(u for t, u in admitted if t < start + 1.0) >= 0.99 * 40
    # And the window slides: the limit again once the first burst has aged out.
    assert sum(u for t, u in admitted) >= 2 * 40
    assert sum(u for t, u in admitted if t < start + 1.0 - SLACK) <= 40


async def test_costs_above_one_count_as_units(limiter: Limiter) -> None:
    rows = Rate("rows_per_second", 100, 1.0, unit="rows")
    start, admitted = await saturate(limiter, Demand("service:claims", rows, 7), 1.4)
    assert heaviest(admitted, 1.0 - SLACK) <= 100
    assert sum(u for t, u in admitted if t < start + 0.5) == 98  # 14 requests of 7
    v = await limiter.check([Demand("service:claims", rows, 3)])
    assert v.remaining >= 0
    assert v.binding is not None


async def test_a_request_bigger_than_the_limit_can_never_pass(limiter: Limiter) -> None:
    rows = Rate("rows_per_minute", 100, 60.0, unit="rows")
    d = Demand("key:k_3f9a1c2b", rows, 101)
    v = await limiter.check([d])
    assert not v.allowed
    assert v.retry_after_s == 60.0
    assert v.binding == d
    assert "can never pass" in v.reason
    assert v.headers()["Retry-After"] == "60"
    # Nothing was charged: the whole limit is still there.
    ok = await limiter.check([Demand("key:k_3f9a1c2b", rows, 100)])
    assert ok.allowed
    assert ok.remaining == 0


async def test_all_or_nothing(limiter: Limiter) -> None:
    small = Rate("rpm", 3, 60.0)
    big = Rate("rows_per_minute", 1000, 60.0, unit="rows")
    for _ in range(3):
        assert (await limiter.check([Demand("key:a", small, 1)])).allowed
    # The key is full: the service's rows are not charged and the slot is not taken.
    v = await limiter.check(
        [Demand("service:s", big, 50), Demand("key:a", small, 1)], [Slot("service:s", 1)]
    )
    assert not v.allowed
    assert v.binding == Demand("key:a", small, 1)
    assert v.reason == "key a is over its limit of 3 requests per 60 s"
    assert v.lease is None
    probe = await limiter.check([Demand("service:s", big, 0)], [Slot("service:s", 1)])
    assert probe.allowed
    assert probe.remaining == 1000
    assert probe.lease is not None
    # Now the slot is taken: the rows are not charged either.
    v = await limiter.check([Demand("service:s", big, 50)], [Slot("service:s", 1)])
    assert not v.allowed
    assert v.binding == Slot("service:s", 1)
    await limiter.release(probe.lease)
    v = await limiter.check([Demand("service:s", big, 50)], [Slot("service:s", 1)])
    assert v.allowed
    assert v.usage[0].remaining == 950


async def test_one_rate_named_twice_in_a_check_counts_both_costs(limiter: Limiter) -> None:
    rate = Rate("rows_per_minute", 5, 60.0, unit="rows")
    v = await limiter.check([Demand("key:a", rate, 3), Demand("key:a", rate, 3)])
    assert not v.allowed
    v = await limiter.check([Demand("key:a", rate, 2), Demand("key:a", rate, 3)])
    assert v.allowed
    assert v.remaining == 0


async def test_allowed_verdict_names_the_rate_with_least_room(limiter: Limiter) -> None:
    rps = Rate("rps", 10, 1.0)
    rpm = Rate("rpm", 100, 60.0)
    v = await limiter.check([Demand("key:a", rps, 1), Demand("key:a", rpm, 1)])
    assert v.allowed
    assert v.binding == Demand("key:a", rps, 1)
    assert v.remaining == 9
    assert 1.0 <= v.reset_s <= 1.03
    headers = v.headers()
    assert headers["RateLimit-Policy"] == '"rps";q=10;w=1,"rpm";q=100;w=60'
    assert headers["RateLimit"] == '"rps";r=9;t=2,"rpm";r=99;t=61'
    assert "Retry-After" not in headers


async def test_refused_until_retry_after_then_allowed(limiter: Limiter) -> None:
    rate = Rate("rps", 5, 1.0)
    d = Demand("key:a", rate, 1)
    for _ in range(5):
        assert (await limiter.check([d])).allowed
    refused = await limiter.check([d])
    assert not refused.allowed
    assert 0.9 <= refused.retry_after_s <= 1.03
    assert refused.remaining == 0
    assert refused.headers()["Retry-After"] == str(math.ceil(refused.retry_after_s))
    await asyncio.sleep(refused.retry_after_s + 0.02)
    assert (await limiter.check([d])).allowed


async def test_charge_after_the_fact_pushes_over_the_limit(limiter: Limiter) -> None:
    tokens = Rate("tokens_per_minute", 1000, 60.0, unit="tokens")
    before = await limiter.check([Demand("key:a", tokens, 0)])  # check only: room left?
    assert before.allowed
    assert before.remaining == 1000
    await limiter.charge([Demand("key:a", tokens, 1500)])  # the answer was long
    after = await limiter.check([Demand("key:a", tokens, 0)])
    assert not after.allowed
    assert after.remaining == 0
    assert 59.0 <= after.retry_after_s <= 61.0
    assert after.headers()["RateLimit"].startswith('"tokens_per_minute";r=0;t=6')


async def test_cost_zero_asks_for_any_room(limiter: Limiter) -> None:
    rate = Rate("rpm", 2, 60.0)
    assert (await limiter.check([Demand("key:a", rate, 2)])).allowed
    v = await limiter.check([Demand("key:a", rate, 0)])
    assert not v.allowed
    assert v.reason == "key a is over its limit of 2 requests per 60 s"


async def test_concurrency_slots_are_taken_and_given_back(limiter: Limiter) -> None:
    slot = Slot("key:a", 3)
    verdicts = await asyncio.gather(*(limiter.check([], [slot]) for _ in range(5)))
    assert [v.allowed for v in verdicts] == [True, True, True, False, False]
    refused = verdicts[3]
    assert refused.binding == slot
    assert refused.retry_after_s == 1.0
    assert refused.headers()["RateLimit"] == '"concurrency";r=0'
    leases = [v.lease for v in verdicts if v.lease]
    assert len(leases) == 3
    await limiter.release(leases[0])
    await limiter.release(leases[0])  # twice: no second slot comes back
    ok = await limiter.check([], [slot])
    assert ok.allowed
    assert not (await limiter.check([], [slot])).allowed
    for lease in [*leases[1:], ok.lease]:
        assert lease is not None
        await limiter.release(lease)
    again = await limiter.check([], [slot, slot])  # one request holds one slot per subject
    assert again.allowed
    assert again.usage[0].remaining == 2


async def test_odd_subjects_and_names_stay_apart(limiter: Limiter) -> None:
    rate = Rate("per minute: ünïcode ✓", 1, 60.0)
    subjects = ["key:a b", "key:a:b", "key:a", "a:b", "ключ:💡", "key:a\nb", "x" * 5000, ""]
    for s in subjects:
        assert (await limiter.check([Demand(s, rate, 1)], [Slot(s, 1)])).allowed, s
    for s in subjects:
        v = await limiter.check([Demand(s, rate, 1)])
        assert not v.allowed, s
    other = Rate("per minute: ünïcode ✗", 1, 60.0)
    assert (await limiter.check([Demand("key:a b", other, 1)])).allowed
    if isinstance(limiter, RedisLimiter):
        client = redis.Redis.from_url(REDIS_URL)
        keys = [k.decode() for k in client.scan_iter(match=limiter.prefix + "*")]
        client.close()
        assert len(keys) == 2 * len(subjects) + 1
        assert all(k.isascii() and k.isprintable() and len(k) < 80 for k in keys)


async def test_no_limits_is_allowed_without_headers(limiter: Limiter) -> None:
    v = await limiter.check([])
    assert v.allowed
    assert v.headers() == {}
    assert limiter.healthy
