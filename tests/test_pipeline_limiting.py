"""The limit stage through the gateway: keys' and services' limits, with Redis and in
memory, answered as 429 with Retry-After and the RateLimit fields, recorded and counted."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from gateway_support import GOOD, SPEC, bearer, make_key, running, write_spec
from prodgate.audit import log
from prodgate.settings import Settings
from prodgate.store.engine import open_store

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["memory", "redis"])
def limited(request: pytest.FixtureRequest, deployed: Settings) -> Settings:
    """The deployed gateway's settings, limits in memory or in Redis (a fresh prefix)."""
    if request.param == "memory":
        return deployed.with_(controller=False)
    return deployed.with_(
        controller=False, redis_url=REDIS, redis_prefix=f"test:{uuid.uuid4().hex}:"
    )


async def test_a_key_over_its_rate_gets_429_with_the_fields(limited: Settings) -> None:
    token = make_key(limited, "app", "predict:claims", rpm=3)
    async with running(limited, token=token) as client:
        answers = [await client.post(PREDICT, json={"inputs": GOOD}) for _ in range(5)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429, 429]
        first, refused = answers[0], answers[3]
        assert first.headers["ratelimit-policy"] == '"rpm";q=3;w=60'
        assert first.headers["ratelimit"].startswith('"rpm";r=2;t=')
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 61
        assert refused.headers["ratelimit"].startswith('"rpm";r=0;t=')
        problem = refused.json()
        assert problem["status"] == 429
        assert "3 requests per 60 s" in problem["detail"]
        metrics = (await client.get("/metrics", headers={})).text
    assert 'prodgate_rate_limited_total{limit="rpm",subject="key"} 2.0' in metrics
    store = open_store(limited)
    with store.read() as conn:
        record = log.get(conn, problem["id"])
    store.dispose()
    assert record is not None
    assert record["status"] == 429
    assert record["key"] == token.split("_")[1]


async def test_rows_are_counted_as_rows(limited: Settings) -> None:
    token = make_key(limited, "batch", "predict:claims", rows_per_minute=5)
    async with running(limited, token=token) as client:
        r = await client.post(PREDICT, json={"instances": [GOOD] * 4})
        assert r.status_code == 200
        r = await client.post(PREDICT, json={"instances": [GOOD] * 2})
        assert r.status_code == 429  # 6 rows would pass 5: all or nothing
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200


async def test_a_service_limit_holds_across_keys(limited: Settings) -> None:
    spec = SPEC.replace("    batching:\n", "    limits: {rpm: 2}\n    batching:\n", 1)
    write_spec(limited, spec)
    one, two = make_key(limited, "one", "predict:claims"), make_key(limited, "two", "predict:*")
    async with running(limited, token=None) as client:
        codes = [
            (await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer(t))).status_code
            for t in (one, two, one, two)
        ]
        assert codes == [200, 200, 429, 429]
        metrics = (await client.get("/metrics")).text
    assert 'prodgate_rate_limited_total{limit="rpm",subject="service"} 2.0' in metrics


async def test_concurrency_is_held_until_the_answer(limited: Settings) -> None:
    token = make_key(limited, "serial", "predict:claims", concurrency=1)
    async with running(limited, token=token) as client:
        answers = await asyncio.gather(
            *(client.post(PREDICT, json={"instances": [GOOD] * 50}) for _ in range(4))
        )
        codes = sorted(r.status_code for r in answers)
        assert codes[0] == 200
        assert 429 in codes
        # Every slot came back: one at a time is always admitted.
        for _ in range(3):
            assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200


async def test_requests_without_limits_carry_no_fields(limited: Settings) -> None:
    token = make_key(limited, "free", "predict:claims")
    async with running(limited, token=token) as client:
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200
        assert "ratelimit" not in r.headers


async def test_redis_unreachable_takes_the_fail_mode(deployed: Settings) -> None:
    dead = deployed.with_(controller=False, redis_url="redis://127.0.0.1:1/0")
    limited = make_key(dead, "limited", "predict:claims", rpm=1000)
    free = make_key(dead, "free", "predict:claims")
    async with running(dead, token=limited) as client:
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"
        assert "unreachable" in r.json()["detail"]
        # A key without limits never asks Redis.
        assert (await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer(free))).is_success
        metrics = (await client.get("/metrics")).text
        assert "prodgate_limits_store_up 0.0" in metrics
    async with running(dead.with_(limit_fail="open"), token=limited) as client:
        assert (await client.post(PREDICT, json={"inputs": GOOD})).status_code == 200


async def test_a_keys_rate_holds_on_other_routes_too(limited: Settings) -> None:
    token = make_key(limited, "auditor", "audit:read", "predict:claims", rpm=3)
    async with running(limited, token=token) as client:
        record_id = (await client.post(PREDICT, json={"inputs": GOOD})).json()["id"]
        codes = [(await client.get(f"/v1/inferences/{record_id}")).status_code for _ in range(3)]
        assert codes == [200, 200, 429]  # the predict counted too: one key, one budget
        refused = await client.get(f"/v1/inferences/{record_id}")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.headers["ratelimit-policy"] == '"rpm";q=3;w=60'
    store = open_store(limited)
    with store.read() as conn:
        limited_records = [r for r in log.tail(conn, 20) if r["action"] == "rate_limited"]
    store.dispose()
    assert len(limited_records) == 2
    assert limited_records[0]["actor"] == token.split("_")[1]


async def test_token_limits_and_budgets_are_not_rates_here(limited: Settings) -> None:
    """A key's tokens per minute and budgets are the LLM path's (reserved per call):
    on a classic service they charge nothing, and a key with only those skips the stage."""
    spec = SPEC.replace("    batching:\n", "    limits: {tokens_per_minute: 1}\n    batching:\n", 1)
    write_spec(limited, spec)
    llm_only = make_key(
        limited, "chat", "predict:claims", tokens_per_minute=1, budget_day=1, budget_month=1
    )
    mixed = make_key(limited, "mixed", "predict:claims", rpm=3, tokens_per_minute=1, budget_day=1)
    async with running(limited, token=None) as client:
        for _ in range(5):
            r = await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer(llm_only))
            assert r.status_code == 200
            assert "ratelimit" not in r.headers
        codes = []
        for _ in range(4):
            r = await client.post(PREDICT, json={"inputs": GOOD}, headers=bearer(mixed))
            codes.append(r.status_code)
        assert codes == [200, 200, 200, 429]
        assert r.headers["ratelimit-policy"] == '"rpm";q=3;w=60'
