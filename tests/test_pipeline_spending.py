"""The spending stage: a key's and a service's token limits and budgets, reserved before
an LLM call and settled after, in memory and on Redis (127.0.0.1:6379)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from prodgate.exceptions import BudgetExceededError
from prodgate.identity.keyring import ANONYMOUS_PRINCIPAL, Principal
from prodgate.limits.budget import (
    Allowance,
    BudgetRefusal,
    Claim,
    Ledger,
    MemoryLedger,
    RedisLedger,
    Reservation,
)
from prodgate.llm.prices import cost_usd, worst_case_usd
from prodgate.llm.tokens import Usage
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.spending import Spending
from prodgate.server.problems import error_response
from prodgate.spec.llm import LlmService, Price
from prodgate.spec.service import Owner, ServiceSpec
from test_limits_behaviour import REDIS_URL, prefix

pytestmark = pytest.mark.anyio

__all__ = ["prefix"]  # the fixture

NOON = dt.datetime(2091, 3, 10, 12, 0, 0, tzinfo=dt.UTC).timestamp()
TO_MIDNIGHT = 12 * 3600
PRICE = Price(input=2.0, output=8.0, cached_input=0.5)


def service(name: str, *, tokens: int | None = None, **budgets: float) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        owner=Owner("alice", "alice@example.com"),
        kind="llm",
        contract={},
        limits={"rpm": 600, **({"tokens_per_minute": tokens} if tokens else {})},
        llm=LlmService(budgets=dict(budgets)),
    )


SERVICES = {
    "letters": service("letters", tokens=50_000, day=10.0, month=200.0),
    "free": service("free"),
}


def key(key_id: str = "3f9a1c2b0d4e", **limits: int) -> Principal:
    return Principal(key_id, "alice", "alice", ("predict:*",), False, dict(limits))


@pytest.fixture(params=["memory", "redis"])
async def ledger(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[Ledger]:
    led: Ledger
    if request.param == "memory":
        led = MemoryLedger(clock=lambda: NOON)
    else:
        led = RedisLedger(REDIS_URL, prefix=prefix, clock=lambda: NOON, timeout_ms=5000)
    yield led
    await led.close()


class Untouchable:
    """A ledger that must not be asked."""

    healthy = True

    async def reserve(self, claims: Sequence[Claim]) -> Reservation | BudgetRefusal:
        raise AssertionError("the ledger was asked")

    async def settle(self, reservation: Reservation, actual: Sequence[int]) -> None:
        raise AssertionError("the ledger was asked")

    async def spent(self, allowance: Allowance) -> int:
        raise AssertionError("the ledger was asked")

    async def close(self) -> None:
        pass


def test_allowances_of_the_key_then_the_service() -> None:
    stage = Spending(MemoryLedger(), SERVICES)
    caller = key(tokens_per_minute=9_000, budget_day=5_000_000, budget_month=50_000_000, rpm=60)
    got = stage.allowances(caller, "letters")
    assert got == [
        Allowance("key:3f9a1c2b0d4e", "tokens_per_minute", 9_000, "minute", "tokens"),
        Allowance("key:3f9a1c2b0d4e", "budget_day", 5_000_000, "day", "usd_micros"),
        Allowance("key:3f9a1c2b0d4e", "budget_month", 50_000_000, "month", "usd_micros"),
        Allowance("service:letters", "tokens_per_minute", 50_000, "minute", "tokens"),
        Allowance("service:letters", "budget_day", 10_000_000, "day", "usd_micros"),
        Allowance("service:letters", "budget_month", 200_000_000, "month", "usd_micros"),
    ]
    assert stage.allowances(caller, "free") == got[:3]
    assert stage.allowances(key(), "free") == []
    assert stage.allowances(ANONYMOUS_PRINCIPAL, "letters") == got[3:]
    assert stage.allowances(key(), "unknown") == []


def test_allowances_are_kept_until_the_key_changes() -> None:
    stage = Spending(MemoryLedger(), SERVICES)
    caller = key(budget_day=5_000_000)
    first = stage._plan(caller, "free")
    assert stage._plan(caller, "free") is first
    changed = key(budget_day=1_000_000)  # the keyring's new principal for the same key
    assert stage.allowances(changed, "free")[0].limit == 1_000_000


async def test_nothing_applies_so_the_ledger_is_not_asked() -> None:
    stage = Spending(Untouchable(), SERVICES)
    assert await stage.reserve(key(rpm=5), "free", 1.0, 1000) is None
    assert await stage.reserve(ANONYMOUS_PRINCIPAL, "free", 1.0, 1000) is None
    await stage.settle(None, 1.0, 1000)


async def test_a_keys_day_budget(ledger: Ledger) -> None:
    metrics = Metrics()
    stage = Spending(ledger, SERVICES, metrics)
    caller = key(budget_day=5_000_000)
    first = await stage.reserve(caller, "free", 3.0, 1000)
    assert first is not None
    with pytest.raises(BudgetExceededError) as caught:
        await stage.reserve(caller, "free", 2.5, 1000)
    exc = caught.value
    assert exc.status == 429
    assert exc.detail == (
        "key 3f9a1c2b0d4e's day budget of $5.00: $3.00 spent, and this request may cost up to $2.50"
    )
    assert exc.retry_after == TO_MIDNIGHT
    assert exc.headers == {"Retry-After": str(TO_MIDNIGHT)}
    problem = exc.problem("/v1/services/free/chat")
    assert problem["type"] == "urn:prodgate:problem:budget-exceeded"
    assert (problem["status"], problem["limit"], problem["subject"]) == (429, "budget_day", "key")
    sample = metrics.registry.get_sample_value(
        "prodgate_rate_limited_total", {"subject": "key", "limit": "budget_day"}
    )
    assert sample == 1.0
    # The call cost less than its worst case: the rest is free again at once.
    await stage.settle(first, 0.42, 300)
    again = await stage.reserve(caller, "free", 4.5, 1000)
    assert again is not None
    assert await ledger.spent(again.claims[0].allowance) == 4_920_000


async def test_a_service_budget_holds_across_keys(ledger: Ledger) -> None:
    stage = Spending(ledger, SERVICES)
    one, two = key("aaaaaaaaaaaa"), key("bbbbbbbbbbbb")
    assert await stage.reserve(one, "letters", 6.0, 100) is not None
    with pytest.raises(BudgetExceededError) as caught:
        await stage.reserve(two, "letters", 6.0, 100)
    assert caught.value.detail.startswith("service letters's day budget of $10.00: $6.00 spent")
    assert (caught.value.limit, caught.value.subject) == ("budget_day", "service")


async def test_token_limits_count_tokens(ledger: Ledger) -> None:
    stage = Spending(ledger, SERVICES)
    caller = key(tokens_per_minute=1_000)
    r = await stage.reserve(caller, "letters", 0.01, 800)
    with pytest.raises(BudgetExceededError) as caught:
        await stage.reserve(caller, "letters", 0.01, 800)
    assert caught.value.detail == (
        "key 3f9a1c2b0d4e's limit of 1000 tokens per minute: 800 tokens used, and this "
        "request may use up to 800 tokens"
    )
    assert caught.value.retry_after == 60  # noon: a whole minute to go
    await stage.settle(r, 0.001, 150)
    assert await stage.reserve(caller, "letters", 0.01, 800) is not None


async def test_more_than_the_whole_budget_can_never_pass(ledger: Ledger) -> None:
    stage = Spending(ledger, SERVICES)
    with pytest.raises(BudgetExceededError, match="so it can never pass"):
        await stage.reserve(key(budget_month=1_000_000), "free", 1.5, 10)


async def test_a_call_from_its_prices(ledger: Ledger) -> None:
    """As the LLM path will use it: the worst case from the prompt and max_tokens, the
    truth from the upstream's usage."""
    stage = Spending(ledger, SERVICES)
    caller = key(budget_day=1_000_000, tokens_per_minute=100_000)
    worst = worst_case_usd(PRICE, 1_000, 1_024)
    r = await stage.reserve(caller, "letters", worst, 1_000 + 1_024)
    assert r is not None
    used = Usage(1_000, 200, 400)
    await stage.settle(r, cost_usd(PRICE, used), used.total_tokens)
    day, tpm = r.claims[1].allowance, r.claims[0].allowance
    assert await ledger.spent(day) == 3_000  # (600*2 + 400*0.5 + 200*8) / 1e6 USD
    assert await ledger.spent(tpm) == 1_200


async def test_many_calls_at_once_never_overspend(ledger: Ledger) -> None:
    stage = Spending(ledger, SERVICES)
    caller = key(budget_day=1_000_000)

    async def one() -> bool:
        try:
            r = await stage.reserve(caller, "letters", 0.03, 500)
        except BudgetExceededError:
            return False
        await asyncio.sleep(0.01)
        await stage.settle(r, 0.03, 500)
        return True

    got = await asyncio.gather(*(one() for _ in range(100)))
    assert sum(got) == 33
    allowance = stage.allowances(caller, "letters")[0]
    assert await ledger.spent(allowance) == 990_000


async def test_an_unreachable_store_refuses_when_closed(prefix: str) -> None:
    metrics = Metrics()
    dead = RedisLedger("redis://127.0.0.1:9/0", prefix=prefix, fail="closed")
    stage = Spending(dead, SERVICES, metrics)
    with pytest.raises(BudgetExceededError) as caught:
        await stage.reserve(key(budget_day=5_000_000), "free", 0.1, 10)
    assert "unreachable" in caught.value.detail
    assert (caught.value.retry_after, caught.value.limit) == (1, "unavailable")
    labels = {"subject": "-", "limit": "unavailable"}
    assert metrics.registry.get_sample_value("prodgate_rate_limited_total", labels) == 1.0
    await dead.close()
    dead = RedisLedger("redis://127.0.0.1:9/0", prefix=prefix, fail="open")
    stage = Spending(dead, SERVICES)
    r = await stage.reserve(key(budget_day=5_000_000), "free", 0.1, 10)
    assert r is not None
    assert r.degraded
    await stage.settle(r, 0.1, 10)  # lost, and said so in the log: never raised
    await dead.close()


async def test_settle_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(MemoryLedger):
        async def settle(self, reservation: Reservation, actual: Sequence[int]) -> None:
            raise RuntimeError("boom")

    stage = Spending(Broken(), SERVICES)
    r = await stage.reserve(key(budget_day=5_000_000), "free", 0.1, 10)
    await stage.settle(r, 0.1, 10)
    assert "settling a reservation" in caplog.text


def test_the_server_answers_429_with_retry_after() -> None:
    exc = BudgetExceededError("over", 42, limit="budget_month", subject="service")
    response: Any = error_response(exc)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "42"
    assert response.headers["content-type"] == "application/problem+json"
