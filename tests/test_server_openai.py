"""The official ``openai`` SDK against a real ``prodgate serve`` in front of the mock LLM:
sync and async, streamed and not; faults absorbed by the route; breakers that open and
close as the faults start and stop; every call in a verified audit chain."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from gateway_support import make_key, write_spec
from llm_support import MOCK_CONFIG, llm_spec, register_prompt, write_prompt
from prodgate.audit import verify
from prodgate.llm.mock import MockHandle, running_mock
from prodgate.llm.prices import cost_usd
from prodgate.llm.tokens import Usage
from prodgate.settings import Settings
from prodgate.spec.llm import Price
from prodgate.store.engine import open_store
from server_process import serving

#: The key of the served settings that may call another service only.
OTHER: dict[str, str] = {}
PRICES = {"small": Price(0.6, 1.8), "large": Price(5.0, 15.0, 2.5), "bare": Price(1.0, 2.0)}


@pytest.fixture
def mock() -> Iterator[MockHandle]:
    with running_mock(MOCK_CONFIG) as handle:
        yield handle


@pytest.fixture
def served(settings: Settings, mock: MockHandle, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real server with ``letter`` deployed; yields its base URL and a key for it."""
    write_spec(settings, llm_spec(mock.url))
    register_prompt(settings, write_prompt(tmp_path, "v1"))
    token = make_key(settings, "portal", "predict:letter")
    OTHER[settings.database_url] = make_key(settings, "other", "predict:nothing")
    with serving(settings, env_extra={"PRODGATE_AUTH": "keys"}) as (_, base):
        yield base, token


def _inferences(settings: Settings) -> list[dict]:
    store = open_store(settings)
    try:
        assert verify.verify(store).ok
        with store.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, status, payload FROM audit_log WHERE kind = 'inference' ORDER BY seq"
            ).all()
    finally:
        store.dispose()
    return [{"id": r[0], "status": r[1], **orjson.loads(r[2])} for r in rows]


MESSAGES = [{"role": "user", "content": "Is there a status update on my claim?"}]


def test_the_sdk_gets_answers_sync_and_async_streamed_and_not(
    settings: Settings, served: tuple[str, str], request: pytest.FixtureRequest
) -> None:
    base, token = served
    client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
    request.addfinalizer(client.close)
    plain = client.chat.completions.create(model="letter", messages=MESSAGES)
    assert orjson.loads(plain.choices[0].message.content)["category"] == "status_question"
    assert plain.usage is not None
    assert plain.usage.total_tokens > 0

    stream = client.chat.completions.create(
        model="letter", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert orjson.loads(text) == orjson.loads(plain.choices[0].message.content)
    assert chunks[-1].usage is not None

    async def both() -> tuple[str, str]:
        aclient = openai.AsyncOpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
        answer = await aclient.chat.completions.create(model="letter", messages=MESSAGES)
        streamed = await aclient.chat.completions.create(
            model="letter", messages=MESSAGES, stream=True
        )
        parts = [c.choices[0].delta.content or "" async for c in streamed if c.choices]
        await aclient.close()
        return answer.choices[0].message.content or "", "".join(parts)

    async_plain, async_streamed = asyncio.run(both())
    assert async_plain == async_streamed == plain.choices[0].message.content

    # A pinned version; and a key without the scope is refused as the SDK expects.
    pinned = client.chat.completions.create(model="letter@1", messages=MESSAGES)
    assert pinned.choices[0].message.content == plain.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="letter@9", messages=MESSAGES)
    other = OTHER[settings.database_url]
    with (
        openai.OpenAI(base_url=base + "/v1", api_key=other, max_retries=0) as refused,
        pytest.raises(openai.PermissionDeniedError),
    ):
        refused.chat.completions.create(model="letter", messages=MESSAGES)

    records = [r for r in _inferences(settings) if r["status"] == 200]
    assert len(records) == 5
    assert records[0]["id"] == plain.id
    for record in records:
        llm = record["llm"]
        usage = Usage(
            llm["usage"]["input_tokens"],
            llm["usage"]["output_tokens"],
            llm["usage"]["cached_tokens"],
        )
        # The recorded cost is the cost of the recorded usage at the model's price.
        assert llm["cost_usd"] == cost_usd(PRICES[llm["model"]], usage)
        assert usage.input_tokens > 0
    assert [r["llm"]["stream"] for r in records] == [False, True, False, True, False]


def test_thirty_percent_faults_are_absorbed_by_the_route(
    settings: Settings,
    served: tuple[str, str],
    mock: MockHandle,
    request: pytest.FixtureRequest,
) -> None:
    base, token = served
    mock.set_faults(error_rate=0.3, errors=["429", "500", "drop_before"], retry_after_s=0)
    client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
    request.addfinalizer(client.close)
    for i in range(40):
        if i % 2:
            answer = client.chat.completions.create(model="letter", messages=MESSAGES)
            assert answer.choices[0].message.content
        else:
            parts = client.chat.completions.create(model="letter", messages=MESSAGES, stream=True)
            assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices)
    outcomes = mock.stats()["by_model"]
    failed = sum(n for m in outcomes.values() for k, n in m.items() if k != "ok")
    assert failed >= 10  # the faults were real
    records = _inferences(settings)
    assert [r["status"] for r in records] == [200] * 40
    assert any(len(r["llm"]["attempts"]) > 1 for r in records)


def _breaker(base: str) -> float:
    text = httpx.get(base + "/metrics").text
    found = re.search(r'prodgate_llm_breaker_state\{model="small",provider="primary"\} (\S+)', text)
    assert found is not None
    return float(found.group(1))


def test_the_breaker_opens_while_the_faults_last_and_closes_after(
    settings: Settings,
    served: tuple[str, str],
    mock: MockHandle,
    request: pytest.FixtureRequest,
) -> None:
    base, token = served
    client = openai.OpenAI(base_url=base + "/v1", api_key=token, max_retries=0)
    request.addfinalizer(client.close)
    assert _breaker(base) == 0
    mock.set_faults(error_rate=1.0, errors=["500"], models=["small"])
    for _ in range(4):  # answered by the fallback while the primary fails
        client.chat.completions.create(model="letter", messages=MESSAGES)
    assert _breaker(base) == 2
    before = mock.stats()["by_model"]["small"]
    client.chat.completions.create(model="letter", messages=MESSAGES)
    assert mock.stats()["by_model"]["small"] == before  # open: the primary is not called
    mock.set_faults()  # the outage ends
    time.sleep(0.4)  # the cooldown (0.3 s) passes: the next call is the probe
    answer = client.chat.completions.create(model="letter", messages=MESSAGES)
    assert answer.model == "small"
    assert _breaker(base) == 0
    states = [
        r["payload"]
        for r in _actions(settings)
        if r["action"] == "breaker" and r["payload"]["model"] == "small"
    ]
    assert [s["state"] for s in states] == ["open", "half_open", "closed"]


def _actions(settings: Settings) -> list[dict]:
    store = open_store(settings)
    try:
        with store.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT action, payload FROM audit_log WHERE kind = 'action' ORDER BY seq"
            ).all()
    finally:
        store.dispose()
    return [{"action": a, "payload": orjson.loads(p)} for a, p in rows]
