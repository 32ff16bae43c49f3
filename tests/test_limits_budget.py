"""The ledger of budgets and token limits: reserve all or nothing, settle the truth,
calendar periods in UTC; in memory and on Redis (the server at 127.0.0.1:6379, each test
under a prefix of its own; the outage tests run a redis-server of their own)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
import redis

from prodgate.exceptions import UnavailableError
from prodgate.limits.budget import (
    GRACE_S,
    Allowance,
    BudgetRefusal,
    Calendar,
    Claim,
    Ledger,
    MemoryLedger,
    RedisLedger,
    Reservation,
    build_ledger,
    explain,
    period_key,
)
from prodgate.settings import Settings
from test_limits_behaviour import REDIS_URL, prefix
from test_limits_redis import RedisServer

pytestmark = pytest.mark.anyio

__all__ = ["prefix"]  # the fixture
T = TypeVar("T")
#: The timeout of tests that are not about timeouts: a busy machine is not an outage.
SLOW_MS = 5000

DAY = Allowance("key:k1", "budget_day", 5_000_000, "day", "usd_micros")
MONTH = Allowance("key:k1", "budget_month", 100_000_000, "month", "usd_micros")
TPM = Allowance("key:k1", "tokens_per_minute", 10_000, "minute", "tokens")
SERVICE_DAY = Allowance("service:claims-letter", "budget_day", 10_000_000, "day", "usd_micros")


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.UTC).timestamp()  # type: ignore[misc]


class Clock:
    """A wall clock the test moves. Redis keys expire at absolute times, so tests on
    Redis start it in the future, never the past."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def future(year: int = 2091) -> float:
    """One second before midnight UTC at the end of the 31st of January of *year*."""
    return utc(year, 1, 31, 23, 59, 59)


@pytest.fixture
def clock() -> Clock:
    return Clock(future())


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Callable[..., RedisLedger]]:
    made: list[RedisLedger] = []

    def make(url: str = REDIS_URL, **options: Any) -> RedisLedger:
        options.setdefault("prefix", prefix)
        options.setdefault("timeout_ms", SLOW_MS)
        made.append(RedisLedger(url, **options))
        return made[-1]

    yield make
    for led in made:
        await led.close()


@pytest.fixture(params=["memory", "redis"])
async def ledger(
    request: pytest.FixtureRequest, prefix: str, clock: Clock
) -> AsyncIterator[Ledger]:
    led: Ledger
    if request.param == "memory":
        led = MemoryLedger(prefix=prefix, clock=clock)
    else:
        led = RedisLedger(REDIS_URL, prefix=prefix, clock=clock, timeout_ms=SLOW_MS)
    yield led
    await led.close()


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


def taken(result: Reservation | BudgetRefusal) -> Reservation:
    assert isinstance(result, Reservation), result
    return result


def refused(result: Reservation | BudgetRefusal) -> BudgetRefusal:
    assert isinstance(result, BudgetRefusal), result
    return result


# -- what every ledger promises -------------------------------------------------------


async def test_reserve_within_the_limit_then_refuse(ledger: Ledger) -> None:
    r = taken(await ledger.reserve([Claim(DAY, 3_000_000)]))
    assert r.claims == (Claim(DAY, 3_000_000),)
    assert not r.degraded
    assert await ledger.spent(DAY) == 3_000_000
    taken(await ledger.reserve([Claim(DAY, 2_000_000)]))  # exactly the limit fits
    no = refused(await ledger.reserve([Claim(DAY, 1)]))
    assert no.allowance == DAY
    assert (no.spent, no.amount) == (5_000_000, 1)
    assert no.reason == (
        "key k1's day budget of $5.00: $5.00 spent, and this request may cost up to $0.000001"
    )
    assert not no.degraded
    assert await ledger.spent(DAY) == 5_000_000


async def test_all_or_nothing(ledger: Ledger) -> None:
    taken(await ledger.reserve([Claim(TPM, 9_000)]))
    no = refused(await ledger.reserve([Claim(DAY, 1_000_000), Claim(TPM, 2_000)]))
    assert no.allowance == TPM
    assert no.reason == (
        "key k1's limit of 10000 tokens per minute: 9000 tokens used, and this request "
        "may use up to 2000 tokens"
    )
    assert await ledger.spent(DAY) == 0  # the claim that fitted was not taken either
    assert await ledger.spent(TPM) == 9_000
    taken(await ledger.reserve([Claim(DAY, 1_000_000), Claim(TPM, 1_000)]))
    assert (await ledger.spent(DAY), await ledger.spent(TPM)) == (1_000_000, 10_000)


async def test_subjects_and_names_are_apart(ledger: Ledger) -> None:
    other = Allowance("key:k2", "budget_day", 5_000_000, "day", "usd_micros")
    taken(await ledger.reserve([Claim(DAY, 5_000_000)]))
    taken(await ledger.reserve([Claim(other, 5_000_000), Claim(MONTH, 1)]))
    assert await ledger.spent(SERVICE_DAY) == 0


async def test_a_claim_of_nothing_still_needs_room(ledger: Ledger) -> None:
    taken(await ledger.reserve([Claim(DAY, 0)]))
    taken(await ledger.reserve([Claim(DAY, 5_000_000)]))
    refused(await ledger.reserve([Claim(DAY, 0)]))
    assert await ledger.spent(DAY) == 5_000_000


async def test_the_same_allowance_twice_counts_twice(ledger: Ledger) -> None:
    refused(await ledger.reserve([Claim(DAY, 3_000_000), Claim(DAY, 3_000_000)]))
    assert await ledger.spent(DAY) == 0
    taken(await ledger.reserve([Claim(DAY, 2_000_000), Claim(DAY, 3_000_000)]))
    assert await ledger.spent(DAY) == 5_000_000


async def test_nothing_to_reserve(ledger: Ledger) -> None:
    r = taken(await ledger.reserve([]))
    assert r.claims == r.keys == ()
    await ledger.settle(r, [])


async def test_settle_replaces_the_reserved_amount(ledger: Ledger) -> None:
    r = taken(await ledger.reserve([Claim(DAY, 3_000_000), Claim(TPM, 5_000)]))
    await ledger.settle(r, [1_250_000, 1_200])
    assert (await ledger.spent(DAY), await ledger.spent(TPM)) == (1_250_000, 1_200)
    # an actual beyond the reservation (a low estimate) is counted whole
    r = taken(await ledger.reserve([Claim(DAY, 1_000_000)]))
    await ledger.settle(r, [4_000_000])
    assert await ledger.spent(DAY) == 5_250_000  # past the limit: the next must wait
    no = refused(await ledger.reserve([Claim(DAY, 1)]))
    assert no.spent == 5_250_000


async def test_settle_never_goes_below_zero(ledger: Ledger) -> None:
    r = taken(await ledger.reserve([Claim(DAY, 1_000)]))
    await ledger.settle(r, [-50])  # nonsense in: counted as nothing
    assert await ledger.spent(DAY) == 0


async def test_settle_needs_one_amount_per_claim(ledger: Ledger) -> None:
    r = taken(await ledger.reserve([Claim(DAY, 1_000)]))
    with pytest.raises(ValueError, match="one amount per claim"):
        await ledger.settle(r, [1, 2])


async def test_a_refusal_waits_for_the_period_to_end(ledger: Ledger, clock: Clock) -> None:
    taken(await ledger.reserve([Claim(DAY, 5_000_000)]))
    clock.now -= 3600  # 22:59:59
    no = refused(await ledger.reserve([Claim(DAY, 1)]))
    assert no.retry_after_s == pytest.approx(3601)
    # Over both the day and the month: it fits again only when the month is over.
    taken(await ledger.reserve([Claim(MONTH, 95_000_000)]))
    no = refused(await ledger.reserve([Claim(DAY, 6_000_000), Claim(MONTH, 6_000_000)]))
    assert no.allowance == MONTH
    assert no.retry_after_s == pytest.approx(3601)  # the 31st of January: both end now
    clock.now = utc(2091, 1, 15, 12, 0, 0)
    no = refused(await ledger.reserve([Claim(DAY, 6_000_000), Claim(MONTH, 6_000_000)]))
    assert no.allowance == MONTH
    assert no.retry_after_s == pytest.approx(16.5 * 86400)


async def test_more_than_the_whole_limit_can_never_pass(ledger: Ledger) -> None:
    no = refused(await ledger.reserve([Claim(DAY, 6_000_000)]))
    assert no.reason == (
        "key k1's day budget of $5.00 is less than this request may cost ($6.00), "
        "so it can never pass"
    )
    assert await ledger.spent(DAY) == 0


async def test_periods_roll_over_at_midnight_utc(ledger: Ledger, clock: Clock) -> None:
    taken(await ledger.reserve([Claim(DAY, 5_000_000), Claim(TPM, 10_000)]))
    refused(await ledger.reserve([Claim(DAY, 1)]))
    clock.now += 1  # midnight: a new minute, a new day, a new month
    assert await ledger.spent(DAY) == 0
    assert await ledger.spent(TPM) == 0
    taken(await ledger.reserve([Claim(DAY, 5_000_000), Claim(TPM, 10_000)]))


async def test_a_call_across_midnight_settles_on_the_day_it_reserved(
    ledger: Ledger, clock: Clock
) -> None:
    before = taken(await ledger.reserve([Claim(DAY, 4_000_000)]))
    clock.now += 2  # 00:00:01 the next day
    after = taken(await ledger.reserve([Claim(DAY, 4_000_000)]))
    await ledger.settle(before, [1_000_000])  # the old day gives back 3 000 000
    assert await ledger.spent(DAY) == 4_000_000  # today's untouched
    await ledger.settle(after, [500_000])
    assert await ledger.spent(DAY) == 500_000
    clock.now -= 2
    assert await ledger.spent(DAY) == 1_000_000


async def test_many_at_once_admit_exactly_what_fits(ledger: Ledger) -> None:
    allowance = Allowance("service:s", "budget_day", 1_000_000, "day", "usd_micros")
    got = await asyncio.gather(*(ledger.reserve([Claim(allowance, 7_000)]) for _ in range(200)))
    assert sum(isinstance(g, Reservation) for g in got) == 1_000_000 // 7_000
    assert await ledger.spent(allowance) == (1_000_000 // 7_000) * 7_000


# -- Redis ------------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [True, False])
@pytest.mark.parametrize("amount", [7_000, 1_000_000, 3])
async def test_two_replicas_admit_exactly_floor_of_limit_over_amount(
    make: Callable[..., RedisLedger], amount: int, coalesce: bool
) -> None:
    """200 reserves at once through two ledgers (two connection pools, as two replicas
    have) against one limit: exactly floor(limit / amount) are taken, never one more."""
    limit = 2_500_000 if amount > 3 else 400
    a, b = (make(coalesce=coalesce) for _ in "ab")
    allowance = Allowance("key:shared", "budget_day", limit, "day", "usd_micros")
    other = Allowance("key:shared", "tokens_per_minute", 10**9, "minute", "tokens")
    claims = [Claim(allowance, amount), Claim(other, 100)]
    got = await asyncio.gather(*((a if i % 2 else b).reserve(claims) for i in range(200)))
    admitted = sum(isinstance(g, Reservation) for g in got)
    assert admitted == min(200, limit // amount)
    assert await a.spent(allowance) == admitted * amount
    assert await b.spent(other) == admitted * 100  # all or nothing, there too
    assert all(not g.degraded for g in got)


async def test_a_burst_goes_in_one_call(
    make: Callable[..., RedisLedger], monkeypatch: pytest.MonkeyPatch
) -> None:
    led = make()
    calls = 0
    evalsha = led._client.evalsha

    async def counted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return await evalsha(*args)

    monkeypatch.setattr(led._client, "evalsha", counted)
    got = await asyncio.gather(*(led.reserve([Claim(DAY, 10_000)]) for _ in range(600)))
    assert sum(isinstance(g, Reservation) for g in got) == 500
    assert calls <= 3  # 512 a call at most
    calls = 0
    await asyncio.gather(*(led.settle(g, [0]) for g in got if isinstance(g, Reservation)))
    assert calls <= 1
    assert await led.spent(DAY) == 0


@pytest.mark.parametrize("turns", range(6))
async def test_a_reserve_whose_caller_left_is_given_back(
    make: Callable[..., RedisLedger], turns: int
) -> None:
    """Cancelled before its call, or while the call is in flight: either way nothing
    stays reserved."""
    led = make()
    task = asyncio.create_task(led.reserve([Claim(DAY, 1_000_000), Claim(TPM, 100)]))
    for _ in range(turns):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for _ in range(50):
        if led._drainer is None:
            break
        await asyncio.sleep(0.01)
    assert (await led.spent(DAY), await led.spent(TPM)) == (0, 0)


async def test_keys_expire_an_hour_after_their_period(
    make: Callable[..., RedisLedger], client: redis.Redis, prefix: str, clock: Clock
) -> None:
    led = make(clock=clock)
    r = taken(await led.reserve([Claim(DAY, 1), Claim(MONTH, 1), Claim(TPM, 1)]))
    assert r.keys == (
        f"{prefix}budget_day:20910131:key:k1",
        f"{prefix}budget_month:209101:key:k1",
        f"{prefix}tokens_per_minute:209101312359:key:k1",
    )
    end = utc(2091, 2, 1) + GRACE_S
    for key in r.keys:
        assert client.expiretime(key) == end
        assert client.get(key) == b"1"
    await led.settle(r, [5, 0, 2])
    assert [client.get(k) for k in r.keys] == [b"5", b"0", b"2"]
    assert all(client.expiretime(k) == end for k in r.keys)


async def test_a_settle_after_the_period_is_gone_leaves_nothing(
    make: Callable[..., RedisLedger], client: redis.Redis
) -> None:
    now = time.time()
    clock = Clock(now - 2 * 86400)  # a reservation made the day before yesterday
    led = make(clock=clock)
    r = taken(await led.reserve([Claim(DAY, 10)]))
    assert client.exists(*r.keys) == 0  # expired already: its day ended more than 1 h ago
    await led.settle(r, [30])
    assert client.exists(*r.keys) == 0


async def test_the_scripts_are_loaded_again_after_a_flush(
    make: Callable[..., RedisLedger], client: redis.Redis
) -> None:
    led = make()
    r = taken(await led.reserve([Claim(DAY, 10)]))
    client.script_flush()
    await led.settle(r, [4])
    assert await led.spent(DAY) == 4
    client.script_flush()
    taken(await led.reserve([Claim(DAY, 10)]))
    assert await led.spent(DAY) == 14


async def test_odd_subjects_are_harmless(make: Callable[..., RedisLedger]) -> None:
    led = make()
    odd = Allowance("service:a b:c\n{x}*", "budget_day", 10, "day", "usd_micros")
    taken(await led.reserve([Claim(odd, 10)]))
    assert await led.spent(odd) == 10
    assert await led.spent(DAY) == 0


async def _clock(aw: Awaitable[T]) -> tuple[float, T]:
    t0 = time.monotonic()
    out = await aw
    return time.monotonic() - t0, out


async def reachable(led: RedisLedger) -> None:
    """Wait (3 s at most) until *led* has reached its Redis."""
    t0 = time.monotonic()
    while True:
        try:
            await led.spent(DAY)
            return
        except UnavailableError:
            assert time.monotonic() - t0 < 3.0, "Redis not reached"
            await asyncio.sleep(0.05)


async def test_unreachable_fail_closed_refuses_at_once(make: Callable[..., RedisLedger]) -> None:
    led = make("redis://127.0.0.1:9/0", timeout_ms=100, fail="closed")
    took, no = await _clock(led.reserve([Claim(DAY, 1), Claim(TPM, 1)]))
    assert took < 0.5
    no = refused(no)
    assert no.degraded
    assert no.retry_after_s == 1.0
    assert "unreachable" in no.reason
    assert not led.healthy
    took, many = await _clock(asyncio.gather(*(led.reserve([Claim(DAY, 1)]) for _ in range(50))))
    assert took < 0.3  # in the back-off: answered without a call
    assert all(isinstance(x, BudgetRefusal) and x.degraded for x in many)
    with pytest.raises(UnavailableError, match="unreachable"):
        await led.spent(DAY)
    await led.settle(Reservation((Claim(DAY, 1),), ("k",), (time.time(),)), [1])  # no raise


async def test_unreachable_fail_open_lets_through_and_settles_when_back(
    server: RedisServer, make: Callable[..., RedisLedger]
) -> None:
    led = make(server.url, timeout_ms=250, fail="open", backoff_s=0.1)
    await reachable(led)
    assert not taken(await led.reserve([Claim(DAY, 1_000_000)])).degraded
    server.kill()
    r = taken(await led.reserve([Claim(DAY, 4_500_000)]))
    assert r.degraded
    assert not led.healthy
    server.start()
    await reachable(led)
    # Redis is back (empty: a new process without persistence); what the call in
    # flight spent is counted when it settles.
    await led.settle(r, [3_000_000])
    assert led.healthy
    assert await led.spent(DAY) == 3_000_000
    refused(await led.reserve([Claim(DAY, 2_000_001)]))


async def test_a_hung_redis_times_out(
    server: RedisServer, make: Callable[..., RedisLedger]
) -> None:
    led = make(server.url, timeout_ms=250, fail="closed", backoff_s=0.1)
    await reachable(led)
    r = taken(await led.reserve([Claim(DAY, 1)]))
    server.pause()
    took, no = await _clock(led.reserve([Claim(DAY, 1)]))
    assert took < 0.6
    assert refused(no).degraded
    took, _ = await _clock(led.settle(r, [2]))
    assert took < 0.6
    server.resume()
    t0 = time.monotonic()
    while isinstance(res := await led.reserve([Claim(DAY, 1)]), BudgetRefusal):
        assert time.monotonic() - t0 < 3.0, "budgets not kept again after Redis answered"
        await asyncio.sleep(0.05)
    assert not res.degraded
    assert led.healthy


def test_fail_mode_is_checked() -> None:
    with pytest.raises(ValueError, match="closed"):
        RedisLedger(REDIS_URL, fail="maybe")


# -- parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "period", "ident", "end"),
    [
        (utc(2024, 2, 29, 13, 45, 30), "minute", "202402291345", utc(2024, 2, 29, 13, 46)),
        (utc(2024, 2, 29, 13, 45, 30), "day", "20240229", utc(2024, 3, 1)),
        (utc(2024, 2, 29, 13, 45, 30), "month", "202402", utc(2024, 3, 1)),
        (utc(2023, 2, 10), "month", "202302", utc(2023, 3, 1)),
        (utc(2025, 12, 31, 23, 59, 59), "month", "202512", utc(2026, 1, 1)),
        (utc(2025, 12, 31, 23, 59, 59), "day", "20251231", utc(2026, 1, 1)),
        (utc(2025, 4, 30, 23, 59, 59), "month", "202504", utc(2025, 5, 1)),
        (utc(2025, 5, 1), "month", "202505", utc(2025, 6, 1)),
    ],
)
def test_calendar_periods(when: float, period: str, ident: str, end: float) -> None:
    cal = Calendar()
    assert cal.period(period, when) == (ident, end)
    assert cal.period(period, when) == (ident, end)  # from its cache
    assert cal.period(period, end) != (ident, end)  # the next one


def test_allowances_and_claims_are_checked() -> None:
    with pytest.raises(ValueError, match="period"):
        Allowance("key:a", "budget_week", 1, "week", "usd_micros")
    with pytest.raises(ValueError, match="unit"):
        Allowance("key:a", "budget_day", 1, "day", "usd")
    with pytest.raises(ValueError, match="limit"):
        Allowance("key:a", "budget_day", -1, "day", "usd_micros")
    with pytest.raises(ValueError, match="colon"):
        Allowance("key:a", "budget:day", 1, "day", "usd_micros")
    with pytest.raises(ValueError, match="amount"):
        Claim(DAY, -1)


def test_period_keys_cannot_collide() -> None:
    a = Allowance("service:x:budget_day", "budget_day", 1, "day", "usd_micros")
    assert period_key("p:", a, "20250101") == "p:budget_day:20250101:service:x:budget_day"
    assert period_key("p:", DAY, "20250101") == "p:budget_day:20250101:key:k1"


def test_explain_names_whoever_the_caller_says() -> None:
    assert explain(DAY, 4_990_000, 30_000, "key app") == (
        "key app's day budget of $5.00: $4.99 spent, and this request may cost up to $0.03"
    )
    assert explain(SERVICE_DAY, 0, 11_000_000).startswith(
        "service claims-letter's day budget of $10.00 is less than"
    )


def test_build_ledger_follows_the_limiter(tmp_path: Any) -> None:
    memory = build_ledger(Settings.load({"home": str(tmp_path)}, env={}))
    assert isinstance(memory, MemoryLedger)
    shared = build_ledger(
        Settings.load(
            {
                "home": str(tmp_path),
                "redis_url": REDIS_URL,
                "redis_prefix": "pg1:",
                "redis_timeout_ms": 50,
                "limit_fail": "open",
            },
            env={},
        )
    )
    assert isinstance(shared, RedisLedger)
    assert (shared.prefix, shared.fail) == ("pg1:ledger:", "open")


async def test_many_reads_at_once_share_calls(make: Callable[..., RedisLedger]) -> None:
    """Reads go in the batches too: a dashboard asking hundreds at once takes no more
    connections than one, and leaves reserves alone."""
    led = make()
    taken(await led.reserve([Claim(DAY, 7), Claim(TPM, 9)]))
    got = await asyncio.gather(*(led.spent(a) for _ in range(300) for a in (DAY, TPM, MONTH)))
    assert got == [7, 9, 0] * 300
    assert led.healthy
