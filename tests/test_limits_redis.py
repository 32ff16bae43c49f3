"""The Redis limiter: replicas sharing one Redis, the script against its Python twin,
one call for many requests, and a Redis that dies, hangs and comes back.

The outage tests run a redis-server of their own on a free port, kill it, stop it and
start it again on the same port; the rest use the server at 127.0.0.1:6379.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from prodgate.limits import Demand, Rate, RedisLimiter, Slot
from prodgate.limits.script import rate_key, slot_key
from prodgate.limits.verdict import NEVER, OK, OVER
from prodgate.limits.window import Window
from test_limits_behaviour import REDIS_URL, SLACK, heaviest, prefix, saturate

pytestmark = pytest.mark.anyio

__all__ = ["prefix"]  # the fixture, shared with the behaviour tests
T = TypeVar("T")


class RedisServer:
    """A redis-server process of the test's own, without persistence."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Callable[..., RedisLimiter]]:
    """Build Redis limiters (under the test's prefix unless told), all closed at the end."""
    made: list[RedisLimiter] = []

    def make(url: str = REDIS_URL, **options: Any) -> RedisLimiter:
        options.setdefault("prefix", prefix)
        made.append(RedisLimiter(url, **options))
        return made[-1]

    yield make
    for lim in made:
        await lim.close()


@pytest.fixture
def client() -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(REDIS_URL)
    yield c
    c.close()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    srv = RedisServer()
    srv.start()
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.resume()
        srv.kill()


# -- replicas -----------------------------------------------------------------------

REPLICA = """
import asyncio, json, sys, time
from prodgate.limits import Demand, Rate, RedisLimiter
url, prefix, start, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
async def main():
    lim = RedisLimiter(url, prefix=prefix)
    d = Demand("key:shared", Rate("rps", 60, 1.0), 1)
    got = []
    while time.monotonic() < start:
        await asyncio.sleep(0.005)
    async def worker():
        while time.monotonic() < start + seconds:
            if (await lim.check([d])).allowed:
                got.append(time.monotonic())
            else:
                await asyncio.sleep(0.002)
    await asyncio.gather(*(worker() for _ in range(8)))
    await lim.close()
    print(json.dumps(got))
asyncio.run(main())
"""


async def test_replicas_in_processes_threads_and_one_loop_share_one_limit(
    prefix: str, make: Callable[..., RedisLimiter]
) -> None:
    seconds = 2.3
    start = time.monotonic() + 1.5  # the processes need a moment to import
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REPLICA, REDIS_URL, prefix, str(start), str(seconds)],
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    demand = Demand("key:shared", Rate("rps", 60, 1.0), 1)
    admitted: list[tuple[float, int]] = []

    def thread_replica() -> None:
        async def run() -> None:
            lim = RedisLimiter(REDIS_URL, prefix=prefix)
            await asyncio.sleep(max(0.0, start - time.monotonic()))
            _, got = await saturate(lim, demand, seconds, workers=8)
            admitted.extend(got)
            await lim.close()

        asyncio.run(run())

    threads = [threading.Thread(target=thread_replica) for _ in range(2)]
    for t in threads:
        t.start()
    local = [make() for _ in range(3)]
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    results = await asyncio.gather(*(saturate(lim, demand, seconds, workers=8) for lim in local))
    for _, got in results:
        admitted.extend(got)
    await asyncio.to_thread(lambda: [t.join() for t in threads])
    for p in procs:
        out, _ = await asyncio.to_thread(p.communicate)
        assert p.returncode == 0
        admitted.extend((t, 1) for t in json.loads(out))
    sources = 2 + 2 + 3
    assert len(admitted) >= 2 * 60  # every replica ran, the window slid once at least
    assert heaviest(admitted, 1.0 - SLACK) <= 60, f"{sources} replicas let too many through"
    assert sum(1 for t, _ in admitted if t < start + 1.0) >= 0.99 * 60


# -- the script and its Python twin -------------------------------------------------


def _twin(client: redis.Redis, key: str, period: float) -> Window:
    """The Python window holding what Redis holds under *key*."""
    w = Window(period)
    fields = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
    if fields:
        w.used, w.lo, w.hi = fields.pop("u"), fields.pop("lo"), fields.pop("hi")
        w.buckets = {int(k): v for k, v in fields.items() if v}
    return w


async def test_the_script_keeps_the_same_window_as_its_python_twin(
    prefix: str, make: Callable[..., RedisLimiter], client: redis.Redis
) -> None:
    rng = random.Random(11)
    period, limit = 1.0, 40
    rate = Rate("rps", limit, period)
    lim = make()
    key = rate_key(prefix, "key:twin", rate.name, period)
    model = Window(period)
    b = model.b
    outcomes: set[int] = set()
    straddled = 0

    def redis_us() -> int:
        sec, us = client.time()
        return sec * 1_000_000 + us

    compared = 0
    end = time.monotonic() + 2.6  # more than two periods: the window slides
    while time.monotonic() < end:
        await asyncio.sleep(rng.uniform(0, 0.006))
        if redis_us() % b > b - 3000:  # keep the call inside one sub-bucket
            await asyncio.sleep(0.004)
        cost = rng.choice([0, 1, 1, 2, 3, 5, 45])
        charge = rng.random() < 0.1
        before = redis_us()
        if charge:
            await lim.charge([Demand("key:twin", rate, cost)])
        else:
            v = await lim.check([Demand("key:twin", rate, cost)])
        after = redis_us()
        if before // b != after // b:  # straddled two buckets: start again from Redis
            model = _twin(client, key, period)
            straddled += 1
            continue
        i = model.advance(before)
        need = max(1, cost)
        if charge:
            model.add(i, cost)
        elif need > limit:
            assert not v.allowed
            assert v.retry_after_s == period
            outcomes.add(NEVER)
        elif model.used + need > limit:
            assert not v.allowed, (model.used, need)
            wait = model.wait_us(model.used + need - limit, before) / 1e6
            assert abs(v.retry_after_s - wait) <= (after - before) / 1e6 + 1e-6
            outcomes.add(OVER)
        else:
            assert v.allowed, (model.used, need)
            model.add(i, cost)
            assert v.remaining == limit - model.used
            reset = model.reset_us(before) / 1e6
            assert abs(v.reset_s - reset) <= (after - before) / 1e6 + 1e-6
            outcomes.add(OK)
        compared += 1
        held = _twin(client, key, period)
        if client.exists(key):
            assert (held.used, held.lo, held.buckets) == (model.used, model.lo, model.buckets)
            assert held.hi == model.hi or model.used == 0
        else:
            assert model.used == 0
    assert outcomes == {OK, OVER, NEVER}
    assert compared >= 100
    assert compared > straddled


async def test_time_comes_from_redis_and_keys_expire(
    prefix: str, make: Callable[..., RedisLimiter], client: redis.Redis
) -> None:
    lim = make(lease_ttl_s=30)
    rate = Rate("rps", 10, 2.0)
    sec, us = client.time()
    before = sec * 1_000_000 + us
    v = await lim.check([Demand("key:a", rate, 1)], [Slot("key:a", 2)])
    sec, us = client.time()
    after = sec * 1_000_000 + us
    assert v.allowed
    assert v.lease is not None
    key = rate_key(prefix, "key:a", "rps", 2.0)
    held = _twin(client, key, 2.0)
    # The bucket is the one of Redis's clock (Unix time), not of this process's.
    assert before // held.b <= held.hi <= after // held.b
    assert 2000 < client.pttl(key) <= 2000 + 2 * held.b / 1000 + 1000
    leases = slot_key(prefix, "key:a")
    assert 30_000 < client.pttl(leases) <= 31_000
    [(member, expires)] = client.zrange(leases, 0, -1, withscores=True)
    assert member.decode() == v.lease.id
    assert before // 1000 + 30_000 <= expires <= after // 1000 + 30_000


# -- one call for many requests -------------------------------------------------------


async def test_concurrent_checks_share_one_script_call_in_arrival_order(
    prefix: str, make: Callable[..., RedisLimiter]
) -> None:
    rows = Rate("rows_per_minute", 100, 60.0, unit="rows")
    costs = [random.Random(3).choice([1, 5, 9, 13, 40]) for _ in range(64)]
    for coalesce in (True, False):
        lim = make(prefix=f"{prefix}{coalesce}:", coalesce=coalesce)
        calls = 0
        real = lim._eval

        async def counting(keys: list[str], args: list[str | int], real=real) -> list[int]:
            nonlocal calls
            calls += 1
            return await real(keys, args)

        lim._eval = counting  # type: ignore[method-assign]
        verdicts = await asyncio.gather(
            *(lim.check([Demand("service:s", rows, c)], [Slot("service:s", 50)]) for c in costs)
        )
        if coalesce:
            assert calls <= 2  # the first goes alone, the other 63 in the next call
            # Each request decided in arrival order, all or nothing, first fit.
            used, expected = 0, []
            for c in costs:
                fits = used + c <= 100
                expected.append(fits)
                used += c if fits else 0
            assert [v.allowed for v in verdicts] == expected
        else:
            assert calls == 64
        assert sum(c for c, v in zip(costs, verdicts) if v.allowed) <= 100
        for v in verdicts:
            if v.lease:
                await lim.release(v.lease)


@pytest.mark.parametrize("when", ["queued", "in flight"])
async def test_a_caller_that_leaves_gives_its_slot_back(
    make: Callable[..., RedisLimiter], when: str
) -> None:
    lim = make(timeout_ms=500)
    real = lim._eval

    async def slow(keys: list[str], args: list[str | int]) -> list[int]:
        await asyncio.sleep(0.05)
        return await real(keys, args)

    lim._eval = slow  # type: ignore[method-assign]
    slot = Slot("key:a", 1)
    callers = [asyncio.ensure_future(lim.check([], [slot])) for _ in range(2)]
    await asyncio.sleep(0 if when == "queued" else 0.02)
    for c in callers:
        c.cancel()
    for c in callers:
        with pytest.raises(asyncio.CancelledError):
            await c
    lim._eval = real  # type: ignore[method-assign]
    t0 = time.monotonic()
    while not (v := await lim.check([], [slot])).allowed:
        assert time.monotonic() - t0 < 2.0, "the slot of a caller that left was kept"
        await asyncio.sleep(0.01)
    assert v.lease is not None
    await lim.release(v.lease)


async def test_unreleased_leases_expire(make: Callable[..., RedisLimiter]) -> None:
    lim = make(lease_ttl_s=0.3)
    slot = Slot("key:crashed", 1)
    assert (await lim.check([], [slot])).allowed  # never released: its replica "crashed"
    assert not (await lim.check([], [slot])).allowed
    await asyncio.sleep(0.35)
    assert (await lim.check([], [slot])).allowed


async def test_close_sends_queued_releases_and_release_after_close_is_quiet(
    prefix: str, make: Callable[..., RedisLimiter], client: redis.Redis
) -> None:
    lim = make()
    slot = Slot("key:a", 1)
    v = await lim.check([], [slot])
    assert v.lease is not None
    task = asyncio.ensure_future(lim.release(v.lease))  # fire and forget
    await asyncio.sleep(0)
    await lim.close()
    await task
    assert client.zcard(slot_key(prefix, "key:a")) == 0
    await lim.release(v.lease)
    closed = await lim.check([Demand("key:a", Rate("rps", 1, 1.0), 1)])
    assert closed.degraded


# -- outages --------------------------------------------------------------------------


async def _clock(aw: Awaitable[T]) -> tuple[float, T]:
    """How long *aw* took, and its result."""
    t0 = time.monotonic()
    result = await aw
    return time.monotonic() - t0, result


async def test_a_dead_redis_fails_closed_fast_then_enforces_again(
    server: RedisServer, make: Callable[..., RedisLimiter]
) -> None:
    lim = make(server.url, timeout_ms=100, fail="closed")
    rate = Rate("rps", 3, 1.0)
    d = Demand("key:a", rate, 1)
    assert (await lim.check([d])).allowed
    assert lim.healthy
    server.kill()
    calls = 0
    real = lim._eval

    async def counting(keys: list[str], args: list[str | int]) -> list[int]:
        nonlocal calls
        calls += 1
        return await real(keys, args)

    lim._eval = counting  # type: ignore[method-assign]
    worst = 0.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.2:
        took, v = await _clock(asyncio.gather(*(lim.check([d]) for _ in range(20))))
        worst = max(worst, took)
        for each in v:
            assert not each.allowed
            assert each.degraded
            assert each.retry_after_s == 1.0
            assert "unreachable" in each.reason
            assert each.headers()["Retry-After"] == "1"
        assert not lim.healthy
        await asyncio.sleep(0.01)
    assert worst < 0.3
    assert calls <= 4  # one probe per back-off, not one call per request
    # Charges and releases while down are dropped without raising.
    await lim.charge([d])
    server.start()  # same port, empty, and without the script
    t0 = time.monotonic()
    while not (await lim.check([d])).allowed:
        assert time.monotonic() - t0 < 3.0, "limits not enforced again after Redis returned"
        await asyncio.sleep(0.05)
    assert lim.healthy
    results = [await lim.check([d]) for _ in range(3)]
    assert [r.allowed for r in results] == [True, True, False]
    assert not results[-1].degraded


async def test_a_hung_redis_times_out_and_fails_open(
    server: RedisServer, make: Callable[..., RedisLimiter]
) -> None:
    lim = make(server.url, timeout_ms=100, fail="open")
    d = Demand("key:a", Rate("rps", 1, 1.0), 1)
    slot = Slot("key:a", 1)
    assert (await lim.check([d], [slot])).allowed
    server.pause()  # accepts nothing, answers nothing
    took, v = await _clock(lim.check([d], [slot]))
    assert took < 0.3
    assert v.allowed
    assert v.degraded
    assert v.lease is None
    assert v.headers() == {
        "RateLimit-Policy": '"rps";q=1;w=1,"concurrency";q=1;qu="concurrent-requests"'
    }
    took, many = await _clock(asyncio.gather(*(lim.check([d]) for _ in range(50))))
    assert took < 0.3
    assert all(x.allowed and x.degraded for x in many)
    assert not lim.healthy
    server.resume()
    fresh = Demand("key:b", Rate("rps", 1, 1.0), 1)
    t0 = time.monotonic()
    while (v := await lim.check([fresh])).degraded:
        assert time.monotonic() - t0 < 3.0, "limits not enforced again after Redis answered"
        await asyncio.sleep(0.05)
    assert v.allowed
    assert lim.healthy
    again = await lim.check([fresh])
    assert not again.allowed
    assert not again.degraded
