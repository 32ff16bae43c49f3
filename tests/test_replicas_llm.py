"""A service's LLM budget across two real replicas on one store and one Redis, under 64
concurrent streamed calls: spend passes the budget by at most one call's worst case,
and every recorded cost is the cost of its recorded usage."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import orjson

from gateway_support import write_spec
from llm_support import MOCK_CONFIG, llm_spec, register_prompt, write_prompt
from prodgate.llm.mock import running_mock
from prodgate.llm.prices import cost_usd, worst_case_usd
from prodgate.llm.tokens import Usage, count_messages
from prodgate.settings import Settings
from prodgate.spec.llm import Price
from prodgate.store.engine import open_store
from test_replicas import _replicas

#: Two calls' worst case (about $0.0009 each) fit at once; about 40 real calls spend it.
BUDGET_USD = 0.002
PRICES = {"small": Price(0.6, 1.8), "large": Price(5.0, 15.0, 2.5)}


async def _storm(bases: list[str], n: int) -> list[int]:
    body = {
        "model": "letter",
        "messages": [{"role": "user", "content": "A new claim: my roof is gone."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }

    async def one(i: int, client: httpx.AsyncClient) -> int:
        async with client.stream(
            "POST", bases[i % len(bases)] + "/v1/chat/completions", json=body
        ) as r:
            await r.aread()
            return r.status_code

    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=n)) as client:
        return list(await asyncio.gather(*(one(i, client) for i in range(n))))


def test_a_budget_holds_across_replicas_under_concurrent_streams(
    settings: Settings, tmp_path: Path
) -> None:
    with running_mock(MOCK_CONFIG, latency_ms=20) as mock:
        spec = llm_spec(mock.url).replace(
            "max_tokens: 64", f"max_tokens: 64\n      budgets: {{day: {BUDGET_USD}}}"
        )
        write_spec(settings, spec)
        register_prompt(settings, write_prompt(tmp_path, "v1"))
        env = {
            "PRODGATE_REDIS_URL": "redis://127.0.0.1:6379/0",
            "PRODGATE_REDIS_PREFIX": f"test:{uuid.uuid4().hex}:",
        }
        statuses: list[int] = []
        with _replicas(settings, 2, env) as stack:
            for _ in range(80):  # storms of 64 until one gets nothing: the budget is spent
                storm = asyncio.run(_storm(stack.bases, 64))  # type: ignore[attr-defined]
                statuses += storm
                if 200 not in storm:
                    break
    assert 200 in statuses
    assert 429 in statuses
    assert set(statuses) <= {200, 429}
    store = open_store(settings)
    try:
        with store.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT status, payload FROM audit_log WHERE kind = 'inference'"
            ).all()
    finally:
        store.dispose()
    spent = 0.0
    worst = 0.0
    answered = 0
    for status, text in rows:
        payload = orjson.loads(text)
        if status != 200:
            assert "budget" in payload["detail"]
            continue
        answered += 1
        llm = payload["llm"]
        usage = Usage(**{k: llm["usage"][k] for k in ("input_tokens", "output_tokens")})
        assert llm["cost_usd"] == cost_usd(PRICES[llm["model"]], usage)
        spent += llm["cost_usd"]
        # What the gateway reserved for it: the prompt's tokens as it counts them, and
        # every one of max_tokens, at the dearest prices of the route.
        prompt = count_messages(payload["input"]["messages"])
        worst = max(worst, worst_case_usd(Price(5.0, 15.0), prompt, 48) + 1e-6)
    assert answered == statuses.count(200)
    assert spent <= BUDGET_USD + worst
    # Once every reservation has settled the budget is spent, not left idle: what is
    # left is less than one call's worst case (the ledger counts whole micro-dollars,
    # each settled cost rounded up).
    assert spent >= BUDGET_USD - worst - answered * 1e-6
