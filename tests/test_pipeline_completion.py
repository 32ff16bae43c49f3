"""The LLM request path through the gateway app: predict and chat, streamed and not,
fallbacks, tools, budgets, the output contract, and what every call records."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway_support import make_key, running, write_spec
from llm_support import (
    MOCK_CONFIG,
    inference_records,
    llm_spec,
    register_prompt,
    verified,
    write_prompt,
)
from prodgate.llm.mock import MockHandle, running_mock
from prodgate.settings import Settings
from prodgate.store.engine import open_store

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def mock() -> Iterator[MockHandle]:
    with running_mock(MOCK_CONFIG) as handle:
        yield handle


@pytest.fixture
def llm(settings: Settings, mock: MockHandle, tmp_path: Path) -> Settings:
    mock.reset()
    write_spec(settings, llm_spec(mock.url))
    register_prompt(settings, write_prompt(tmp_path, "v1"))
    return settings


async def test_predict_fills_the_template_and_records_tokens_and_cost(llm: Settings) -> None:
    async with running(llm) as client:
        r = await client.post(
            "/v1/services/letter/predict", json={"inputs": {"message": "It was staged fraud"}}
        )
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 200, r.text
    answer = r.json()
    labels = 'key="bootstrap",model="small",provider="primary",service="letter",version="1"'
    cost = re.search(r"prodgate_llm_cost_usd_total\{" + labels + r"\} (\S+)", metrics)
    assert cost is not None
    assert float(cost.group(1)) == pytest.approx(answer["cost_usd"])
    tokens = labels.replace('key="bootstrap",', 'key="bootstrap",kind="output",')
    assert f"prodgate_llm_tokens_total{{{tokens}}} {answer['usage']['output_tokens']}.0" in metrics
    # The small model misses fraud signals (the mock's rule): it says new_claim.
    assert answer["output"]["category"] == "new_claim"
    assert answer["model"] == "primary/small"
    usage = answer["usage"]
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert not usage["estimated"]
    expected = (usage["input_tokens"] * 0.6 + usage["output_tokens"] * 1.8) / 1e6
    assert answer["cost_usd"] == pytest.approx(expected, abs=1e-9)
    (record,) = inference_records(llm)
    assert record["id"] == answer["id"]
    llm_part = record["payload"]["llm"]
    assert (llm_part["provider"], llm_part["model"]) == ("primary", "small")
    assert llm_part["usage"] == usage
    assert llm_part["cost_usd"] == answer["cost_usd"]
    assert record["payload"]["input"] == {"message": "It was staged fraud"}
    assert record["payload"]["output"]["parsed"] == answer["output"]
    # The upstream was asked for the service's output contract.
    sent = mock_request(llm)
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["messages"][1]["content"] == "It was staged fraud"
    verified(llm)


def mock_request(settings: Settings) -> dict[str, Any]:
    import httpx

    from prodgate import spec as spec_module

    base = spec_module.load(settings.config).providers["primary"].base_url
    root = base.rsplit("/v1", 1)[0]
    bodies = httpx.get(root + "/_mock/requests").json()
    return bodies["requests"][-1] if isinstance(bodies, dict) else bodies[-1]


async def test_a_broken_contract_never_reaches_the_model(llm: Settings, mock: MockHandle) -> None:
    async with running(llm) as client:
        r = await client.post("/v1/services/letter/predict", json={"inputs": {"msg": "x"}})
    assert r.status_code == 422
    assert mock.stats()["requests"] == 0


async def test_chat_answers_in_openais_shape(llm: Settings) -> None:
    async with running(llm) as client:
        r = await client.post(
            "/v1/chat/completions",
            json={"model": "letter", "messages": [{"role": "user", "content": "status update?"}]},
        )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert orjson.loads(body["choices"][0]["message"]["content"])["category"] == "status_question"
    assert body["usage"]["total_tokens"] > 0
    assert body["prodgate"]["inference_id"] == body["id"]
    (record,) = inference_records(llm)
    assert record["id"] == body["id"]
    assert record["payload"]["llm"]["mode"] == "chat"
    # The version's system message goes first, then the caller's messages.
    assert record["payload"]["input"]["messages"][0]["role"] == "system"


async def test_chat_refuses_a_service_that_is_not_an_llm(llm: Settings) -> None:
    async with running(llm) as client:
        r = await client.post(
            "/v1/chat/completions", json={"model": "nope", "messages": [{"role": "user"}]}
        )
        assert r.status_code == 404
        r = await client.post("/v1/chat/completions", json={"model": "letter", "messages": []})
        assert r.status_code == 422
        assert r.json()["errors"][0]["path"] == "/messages"
        r = await client.post(
            "/v1/chat/completions",
            content=b"{nope",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400


async def test_a_failing_model_falls_back_and_says_so(llm: Settings, mock: MockHandle) -> None:
    mock.set_faults(error_rate=1.0, errors=["500", "429", "drop_before"], models=["small"])
    async with running(llm) as client:
        for _ in range(6):
            r = await client.post(
                "/v1/services/letter/predict", json={"inputs": {"message": "a new claim"}}
            )
            assert r.status_code == 200, r.text
            assert r.json()["model"] == "backup/large"
        metrics = (await client.get("/metrics")).text
    records = inference_records(llm)
    first = records[0]["payload"]["llm"]
    assert first["fallback"] is True
    assert [a["model"] for a in first["attempts"]][-1] == "large"
    assert first["attempts"][0]["outcome"] != "ok"
    # After three failures the primary's breaker opened: later calls skip it.
    last = records[-1]["payload"]["llm"]["attempts"]
    assert last[0]["outcome"] == "breaker_open"
    assert 'prodgate_llm_breaker_state{model="small",provider="primary"} 2.0' in metrics


async def test_a_stream_arrives_in_chunks_and_ends_with_done(llm: Settings) -> None:
    async with (
        running(llm) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "letter",
                "messages": [{"role": "user", "content": "I am angry"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        ) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [orjson.loads(e[6:]) for e in events[:-1]]
    usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == []
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert orjson.loads(text)["category"] == "complaint"
    (record,) = inference_records(llm)
    assert record["id"] == chunks[0]["id"]
    assert record["payload"]["llm"]["stream"] is True
    assert record["payload"]["output"]["text"] == text
    assert record["payload"]["llm"]["usage"]["output_tokens"] == usage["completion_tokens"]
    assert record["payload"]["llm"]["ttft_ms"] is not None


async def test_a_stream_that_breaks_after_it_began_ends_with_an_error_event(
    llm: Settings, mock: MockHandle
) -> None:
    mock.set_faults(error_rate=1.0, errors=["drop_after"], drop_after_chunks=2)
    async with (
        running(llm) as client,
        client.stream(
            "POST",
            "/v1/chat/completions",
            json={
                "model": "letter",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            },
        ) as r,
    ):
        assert r.status_code == 200
        events = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert "data: [DONE]" not in events
    error = orjson.loads(events[-1][6:])["error"]
    assert error["code"] == 502
    (record,) = inference_records(llm)
    assert record["status"] == 502
    assert record["payload"]["problem"] == "upstream-failed"
    assert error["inference_id"] == record["id"]


async def test_tools_need_the_keys_tool_scopes(llm: Settings) -> None:
    agent = make_key(llm, "agent", "predict:letter", "tool:lookup_policy", agent=True, owner="ops")
    tools = [
        {
            "type": "function",
            "function": {"name": "lookup_policy", "parameters": {"type": "object"}},
        },
        {"type": "function", "function": {"name": "pay_claim", "parameters": {"type": "object"}}},
    ]
    body = {
        "model": "letter",
        "messages": [{"role": "user", "content": "call lookup_policy please"}],
        "tools": tools,
        "response_format": {"type": "text"},
    }
    async with running(llm, token=agent) as client:
        r = await client.post("/v1/chat/completions", json=body)
        assert r.status_code == 403
        assert "pay_claim" in r.json()["detail"]
        r = await client.post("/v1/chat/completions", json={**body, "tools": tools[:1]})
    assert r.status_code == 200, r.text
    call = r.json()["choices"][0]["message"]["tool_calls"][0]
    assert call["function"]["name"] == "lookup_policy"
    records = inference_records(llm)
    assert records[0]["status"] == 403
    assert records[-1]["payload"]["output"]["tool_calls"][0]["function"]["name"] == "lookup_policy"
    assert records[-1]["actor"] == "agent"


async def test_an_answer_that_breaks_the_output_contract_is_an_error(
    llm: Settings, tmp_path: Path
) -> None:
    register_prompt(llm, write_prompt(tmp_path, "v2", fmt="json_object"))
    async with running(llm) as client:
        r = await client.post(
            "/v1/services/letter/predict", json={"inputs": {"message": "a new claim"}}
        )
        metrics = (await client.get("/metrics")).text
    assert r.status_code == 502
    assert r.json()["type"].endswith("output-contract")
    (record,) = inference_records(llm)
    assert record["status"] == 502
    assert record["payload"]["errors"]
    assert record["payload"]["llm"]["cost_usd"] > 0  # the call was made, and paid for
    assert 'outcome="output_contract"' in metrics


async def test_a_budget_refuses_what_it_cannot_cover(llm: Settings, mock: MockHandle) -> None:
    write_spec(
        llm,
        llm_spec(mock.url).replace(
            "max_tokens: 64", "max_tokens: 64\n      budgets: {day: 0.0001}"
        ),
    )
    async with running(llm) as client:
        answers = [
            await client.post(
                "/v1/services/letter/predict", json={"inputs": {"message": "a new claim"}}
            )
            for _ in range(5)
        ]
    statuses = [r.status_code for r in answers]
    assert 429 in statuses
    refusal = next(r for r in answers if r.status_code == 429)
    assert refusal.json()["limit"] == "budget_day"
    assert int(refusal.headers["retry-after"]) > 0
    refused = next(rec for rec in inference_records(llm) if rec["status"] == 429)
    assert "budget" in refused["payload"]["detail"]


async def test_a_caller_may_pin_an_approved_version(llm: Settings, tmp_path: Path) -> None:
    # v2, the large model, approved but not deployed: callers may still name it.
    register_prompt(llm, write_prompt(tmp_path, "v2", model="backup/large"), deploy=False)
    body = {"model": "letter@2", "messages": [{"role": "user", "content": "It was staged"}]}
    async with running(llm) as client:
        pinned = await client.post("/v1/chat/completions", json=body)
        production = await client.post("/v1/chat/completions", json={**body, "model": "letter"})
        unknown = await client.post("/v1/chat/completions", json={**body, "model": "letter@7"})
    assert pinned.status_code == 200, pinned.text
    assert pinned.json()["prodgate"]["version"] == 2
    assert orjson.loads(pinned.json()["choices"][0]["message"]["content"])["category"] == (
        "fraud_signal"  # the large model does not miss it
    )
    assert production.json()["prodgate"]["version"] == 1
    assert unknown.status_code == 404
    assert "letter version 7 is not being served" in unknown.json()["detail"]


async def test_a_shadow_prompt_version_sees_copies_and_answers_nobody(
    llm: Settings, tmp_path: Path
) -> None:
    from prodgate import spec as spec_module
    from prodgate.rollout import split

    v2 = register_prompt(llm, write_prompt(tmp_path, "v2", model="backup/large"), deploy=False)
    store = open_store(llm)
    try:
        split.set_shadow(store, spec_module.load(llm.config).service("letter"), v2, actor="t")
    finally:
        store.dispose()
    async with running(llm) as client:
        r = await client.post(
            "/v1/services/letter/predict", json={"inputs": {"message": "It was staged"}}
        )
    assert r.status_code == 200
    assert r.json()["output"]["category"] == "new_claim"  # production's answer
    records = inference_records(llm)
    shadow = [rec for rec in records if rec["payload"]["llm"]["model"] == "large"]
    assert len(records) == 2
    assert shadow[0]["payload"]["output"]["parsed"]["category"] == "fraud_signal"


async def test_a_misconfigured_model_falls_back_and_alone_is_a_502(
    llm: Settings, mock: MockHandle, tmp_path: Path
) -> None:
    # "ghost" is in the spec's price table but the provider does not serve it (404).
    spec = llm_spec(mock.url).replace(
        "      bare: {input: 1.0, output: 2.0}",
        "      bare: {input: 1.0, output: 2.0}\n      ghost: {input: 1.0, output: 2.0}",
    )
    write_spec(llm, spec)
    register_prompt(llm, write_prompt(tmp_path, "v2", model="primary/ghost"))
    async with running(llm) as client:
        answered = await client.post(
            "/v1/services/letter/predict", json={"inputs": {"message": "a new claim"}}
        )
        write_spec(llm, spec.replace("      fallbacks: [backup/large]\n", ""))
    assert answered.status_code == 200, answered.text
    assert answered.json()["model"] == "backup/large"
    async with running(llm) as client:
        alone = await client.post(
            "/v1/services/letter/predict", json={"inputs": {"message": "a new claim"}}
        )
    assert alone.status_code == 502
    assert alone.json()["type"].endswith("upstream-failed")
