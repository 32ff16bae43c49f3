"""The mock LLM, through real HTTP and the official openai SDK: answers, streams, faults."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import openai
import pytest
from pydantic import BaseModel

from prodgate.exceptions import UsageError
from prodgate.llm.mock import Faults, MockHandle, MockLLM, load_config, running_mock
from prodgate.llm.mock_answers import MockConfig, instance

CONFIG: dict[str, Any] = {
    "models": {
        "large": {},
        "small": {"misses": ["fraud_signal"]},
        "bare": {"usage": False},
        "cache": {"cached_tokens": 8},
    },
    "rules": [
        {"contains": ["fraud", "staged", "same injury"], "label": "fraud_signal"},
        {"contains": ["status", "update"], "label": "status_question"},
    ],
    "default_label": "new_claim",
}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def served() -> Iterator[MockHandle]:
    with running_mock(CONFIG) as handle:
        yield handle


@pytest.fixture
def mock(served: MockHandle) -> MockHandle:
    served.reset()
    return served


@pytest.fixture
def client(mock: MockHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0, timeout=5) as c:
        yield c


@pytest.fixture(scope="module")
def echo() -> Iterator[MockHandle]:
    """A mock with no configuration: every model, no rules, so answers echo."""
    with running_mock() as handle:
        yield handle


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def post(http: httpx.Client, url: str, body: Any, **kwargs: Any) -> httpx.Response:
    return http.post(f"{url}/chat/completions", json=body, **kwargs)


# -- answers ------------------------------------------------------------------------


def test_a_completion_through_the_sdk_carries_the_rule_label_and_countable_usage(
    client: openai.OpenAI,
) -> None:
    messages = [
        {"role": "system", "content": "Triage the claim."},
        {"role": "user", "content": "This accident looks staged to me"},
    ]
    done = client.chat.completions.create(model="large", messages=messages, temperature=0.7)  # type: ignore[arg-type]
    assert done.id.startswith("chatcmpl-")
    assert done.object == "chat.completion"
    assert done.model == "large"
    assert done.choices[0].message.content == "fraud_signal"
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert done.usage.prompt_tokens == (3 + 3) + (6 + 3) + 3
    assert done.usage.completion_tokens == 1
    assert done.usage.total_tokens == 19


def test_rules_take_the_first_match_a_model_misses_labels_and_the_default_applies(
    client: openai.OpenAI,
) -> None:
    def label(model: str, text: str) -> str | None:
        done = client.chat.completions.create(model=model, messages=user(text))  # type: ignore[arg-type]
        return done.choices[0].message.content

    assert label("large", "A STATUS update on the staged crash?") == "fraud_signal"
    assert label("small", "A STATUS update on the staged crash?") == "status_question"
    assert label("small", "the same injury as last year") == "new_claim"
    assert label("large", "my car was hit") == "new_claim"


def test_only_the_last_user_message_decides(client: openai.OpenAI) -> None:
    messages = [
        {"role": "user", "content": "fraud"},
        {"role": "assistant", "content": "fraud_signal"},
        {"role": "user", "content": [{"type": "text", "text": "any update?"}]},
    ]
    done = client.chat.completions.create(model="large", messages=messages)  # type: ignore[arg-type]
    assert done.choices[0].message.content == "status_question"


def test_without_rules_the_answer_echoes_the_last_user_message(echo: MockHandle) -> None:
    with openai.OpenAI(base_url=echo.url, api_key="k", max_retries=0) as client:
        done = client.chat.completions.create(model="anything", messages=user("hello there"))
        assert done.choices[0].message.content == "Echo: hello there"
        long = client.chat.completions.create(model="other", messages=user("x" * 1000))
        assert long.choices[0].message.content == "Echo: " + "x" * 400


def test_identical_requests_get_identical_answers(client: openai.OpenAI) -> None:
    body: dict[str, Any] = {"model": "large", "messages": user("status of my staged claim")}
    one = client.chat.completions.create(**body, seed=1)
    two = client.chat.completions.create(**body, seed=2)
    assert one.choices[0].message == two.choices[0].message
    assert one.usage == two.usage


def test_a_stream_through_the_sdk_gives_word_chunks_and_the_usage_chunk(
    echo: MockHandle,
) -> None:
    with openai.OpenAI(base_url=echo.url, api_key="k", max_retries=0) as client:
        chunks = list(
            client.chat.completions.create(
                model="m",
                messages=user("one two  three"),
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    assert chunks[0].choices[0].delta.role == "assistant"
    words = [c.choices[0].delta.content for c in chunks[1:-2]]
    assert words == ["Echo: ", "one ", "two  ", "three"]
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    assert chunks[-1].usage.prompt_tokens == 3 + 3 + 3
    assert {c.id for c in chunks} == {chunks[0].id}


def test_a_stream_without_include_usage_ends_with_the_finish_chunk(
    mock: MockHandle, http: httpx.Client
) -> None:
    body = {"model": "large", "messages": user("update"), "stream": True}
    response = post(http, mock.url, body)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = response.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    last = json.loads(events[-3].removeprefix("data: "))
    assert last["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert "usage" not in last


def test_the_async_sdk_streams_and_completes() -> None:
    async def main() -> tuple[str | None, str, int]:
        mock = MockLLM(CONFIG)
        url = await mock.start()
        try:
            async with openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0) as client:
                done = await client.chat.completions.create(model="cache", messages=user("hi"))
                stream = await client.chat.completions.create(
                    model="cache",
                    messages=user("status of my claim please?"),
                    stream=True,
                    stream_options={"include_usage": True},
                )
                text, cached = "", -1
                async for chunk in stream:
                    if chunk.choices:
                        text += chunk.choices[0].delta.content or ""
                    elif chunk.usage and chunk.usage.prompt_tokens_details:
                        cached = chunk.usage.prompt_tokens_details.cached_tokens or 0
                return done.choices[0].message.content, text, cached
        finally:
            await mock.stop()

    assert asyncio.run(main()) == ("new_claim", "status_question", 8)


def test_usage_can_be_left_out_and_cached_tokens_reported(client: openai.OpenAI) -> None:
    bare = client.chat.completions.create(model="bare", messages=user("hi"))
    assert bare.usage is None
    stream = client.chat.completions.create(
        model="bare", messages=user("hi"), stream=True, stream_options={"include_usage": True}
    )
    assert all(chunk.choices for chunk in stream)
    cache = client.chat.completions.create(model="cache", messages=user("hi"))
    assert cache.usage is not None
    assert cache.usage.prompt_tokens == 7
    assert cache.usage.prompt_tokens_details is not None
    assert cache.usage.prompt_tokens_details.cached_tokens == 7  # never above the prompt


def test_max_tokens_cuts_the_answer_to_that_many_words(echo: MockHandle) -> None:
    with openai.OpenAI(base_url=echo.url, api_key="k", max_retries=0) as client:
        text = "alpha beta gamma delta epsilon"
        cut = client.chat.completions.create(model="m", messages=user(text), max_tokens=3)
        assert cut.choices[0].message.content == "Echo: alpha beta"
        assert cut.choices[0].finish_reason == "length"
        assert cut.usage is not None
        assert cut.usage.completion_tokens == 3
        whole = client.chat.completions.create(
            model="m", messages=user(text), max_completion_tokens=6
        )
        assert whole.choices[0].finish_reason == "stop"
        stream = client.chat.completions.create(
            model="m", messages=user(text), max_tokens=2, stream=True
        )
        chunks = list(stream)
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: alpha"
        assert chunks[-1].choices[0].finish_reason == "length"


# -- structured output --------------------------------------------------------------

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["new_claim", "fraud_signal", "status_question"]},
        "priority": {"enum": ["low", "high"]},
        "reply": {"type": "string", "minLength": 10},
        "confidence": {"type": "number", "minimum": 0.5, "maximum": 1},
        "count": {"type": "integer", "exclusiveMinimum": 2},
        "urgent": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "when": {"type": "string", "format": "date"},
        "owner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Person"}]},
        "note": {"type": ["string", "null"], "maxLength": 5},
    },
    "additionalProperties": False,
    "$defs": {
        "Person": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
        }
    },
}
SCHEMA["required"] = list(SCHEMA["properties"])  # strict: every property


def test_json_schema_answers_satisfy_the_schema_and_carry_the_label(
    client: openai.OpenAI,
) -> None:
    done = client.chat.completions.create(
        model="large",
        messages=user("Is this fraud? Same injury again."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "triage", "schema": SCHEMA, "strict": True},
        },
    )
    content = done.choices[0].message.content
    assert content is not None
    value = json.loads(content)
    jsonschema_rs.validator_for(SCHEMA).validate(value)
    assert value["label"] == "fraud_signal"
    assert value["priority"] == "low"
    assert value["reply"].startswith("Dear claimant, thank you for your message about Is this")
    assert set(value) == set(SCHEMA["properties"])


def test_the_sdk_parses_a_pydantic_response_format(client: openai.OpenAI) -> None:
    class Owner(BaseModel):
        name: str
        zip: int | None = None

    class Triage(BaseModel):
        label: str
        answer: str
        owner: Owner
        tags: list[str]

    done = client.chat.completions.parse(
        model="small", messages=user("Any update?"), response_format=Triage
    )
    parsed = done.choices[0].message.parsed
    assert parsed is not None
    assert parsed.label == "status_question"
    assert parsed.answer.startswith("Dear claimant")
    assert parsed.owner.zip == 0


def test_json_object_answers_wrap_the_text(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="large", messages=user("status"), response_format={"type": "json_object"}
    )
    assert json.loads(done.choices[0].message.content or "") == {"answer": "status_question"}


def test_instance_resolves_refs_and_stops_on_recursion() -> None:
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
                    "parent": {"$ref": "#/$defs/Node"},
                },
            }
        },
    }
    value = instance(tree, label="x")
    assert value["name"] == "x"
    assert value["children"] == []
    depth = 0
    while isinstance(value, dict):
        value, depth = value["parent"], depth + 1
    assert value is None
    assert depth < 20
    assert instance({"allOf": [{"properties": {"a": {"const": 1}}}, {"type": "object"}]}) == {
        "a": 1
    }
    assert instance({"type": "integer", "minimum": 5, "maximum": 9}) == 5
    assert instance({"type": "number", "exclusiveMaximum": -1}) == -2


# -- tools --------------------------------------------------------------------------

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "lookup_claim",
            "parameters": {
                "type": "object",
                "properties": {"claim_id": {"type": "string"}, "year": {"type": "integer"}},
                "required": ["claim_id", "year"],
            },
        },
    },
    {"type": "function", "function": {"name": "escalate"}},
]


def test_call_toolname_gives_a_tool_call(client: openai.OpenAI) -> None:
    done = client.chat.completions.create(
        model="large",
        messages=user("Please call lookup_claim for me"),
        tools=TOOLS,  # type: ignore[arg-type]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Calling lookup_claim."
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "lookup_claim"
    assert json.loads(call.function.arguments) == {"claim_id": "new_claim", "year": 0}
    assert call.id.startswith("call_")
    again = client.chat.completions.create(
        model="large",
        messages=user("Please call lookup_claim for me"),
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert again.choices[0].message.tool_calls == choice.message.tool_calls
    plain = client.chat.completions.create(model="large", messages=user("call escalate"))
    assert plain.choices[0].message.tool_calls is None
    unknown = client.chat.completions.create(
        model="large",
        messages=user("call nothing"),
        tools=TOOLS,  # type: ignore[arg-type]
    )
    assert unknown.choices[0].message.tool_calls is None


def test_a_tool_result_gets_an_answer_in_words(client: openai.OpenAI) -> None:
    messages: list[dict[str, Any]] = [
        *user("call escalate"),
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "escalate", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "escalated"},
    ]
    done = client.chat.completions.create(model="large", messages=messages, tools=TOOLS)  # type: ignore[arg-type]
    assert done.choices[0].finish_reason == "stop"
    assert done.choices[0].message.content == "new_claim"


def test_a_streamed_tool_call_assembles_as_openai_sends_it(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="large",
        messages=user("call lookup_claim"),
        tools=TOOLS,  # type: ignore[arg-type]
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += delta.id or ""
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
    assert finish == "tool_calls"
    assert calls[0]["name"] == "lookup_claim"
    assert calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"claim_id": "new_claim", "year": 0}


# -- errors -------------------------------------------------------------------------


def test_bad_bodies_are_400_in_openai_shape(mock: MockHandle, http: httpx.Client) -> None:
    not_json = http.post(
        f"{mock.url}/chat/completions", content=b"{nope", headers={"content-type": "x"}
    )
    assert not_json.status_code == 400
    assert set(not_json.json()["error"]) == {"message", "type", "param", "code"}
    no_messages = post(http, mock.url, {"model": "large"})
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    no_model = post(http, mock.url, {"messages": user("hi")})
    assert no_model.json()["error"]["param"] == "model"
    bad_limit = post(http, mock.url, {"model": "large", "messages": user("x"), "max_tokens": 0})
    assert bad_limit.status_code == 400
    assert mock.stats()["by_model"] == {"-": {"400": 2}, "large": {"400": 2}}


def test_a_model_not_served_is_404_model_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-x", messages=user("hi"))
    assert caught.value.code == "model_not_found"


def test_models_are_listed(client: openai.OpenAI, echo: MockHandle, http: httpx.Client) -> None:
    assert [m.id for m in client.models.list()] == ["bare", "cache", "large", "small"]
    assert http.get(f"{echo.url}/models").json() == {"object": "list", "data": []}


def test_an_api_key_is_required_when_set(http: httpx.Client) -> None:
    with running_mock(api_key="sk-right") as mock:
        for key in ("sk-wrong", None):
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            response = post(http, mock.url, {"model": "m", "messages": user("hi")}, headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "invalid_api_key"
        with (
            openai.OpenAI(base_url=mock.url, api_key="sk-wrong", max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError),
        ):
            bad.models.list()
        with openai.OpenAI(base_url=mock.url, api_key="sk-right", max_retries=0) as good:
            done = good.chat.completions.create(model="m", messages=user("hi"))
        assert done.choices[0].message.content == "Echo: hi"
        assert http.get(f"{mock.url.removesuffix('/v1')}/_mock/stats").status_code == 200


# -- faults -------------------------------------------------------------------------


def test_a_429_carries_retry_after(mock: MockHandle, client: openai.OpenAI) -> None:
    mock.set_faults(error_rate=1, errors=["429"], retry_after_s=2.5)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="large", messages=user("hi"))
    assert caught.value.response.headers["retry-after"] == "2.5"
    assert caught.value.code == "rate_limit_exceeded"


def test_a_500_is_a_server_error(mock: MockHandle, client: openai.OpenAI) -> None:
    mock.set_faults(error_rate=1, errors=["500"])
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="large", messages=user("hi"))
    assert caught.value.type == "server_error"


def test_drop_before_closes_the_connection_without_an_answer(
    mock: MockHandle, client: openai.OpenAI, http: httpx.Client
) -> None:
    mock.set_faults(error_rate=1, errors=["drop_before"])
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="large", messages=user("hi"))
    with pytest.raises(httpx.RemoteProtocolError):
        post(http, mock.url, {"model": "large", "messages": user("hi"), "stream": True})
    assert mock.stats()["by_model"]["large"] == {"drop_before": 2}


def test_drop_after_ends_a_stream_after_n_chunks(
    mock: MockHandle, client: openai.OpenAI, http: httpx.Client
) -> None:
    mock.set_faults(error_rate=1, errors=["drop_after"], drop_after_chunks=3)
    received = []
    with pytest.raises(openai.APIConnectionError):  # noqa: PT012
        for chunk in client.chat.completions.create(
            model="large", messages=user("one two three four five six"), stream=True
        ):
            received.append(chunk)
    assert len(received) == 3
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="large", messages=user("hi"))
    mock.set_faults(error_rate=1, errors=["drop_after"], drop_after_chunks=99)
    lines: list[str] = []
    with (
        http.stream(
            "POST",
            f"{mock.url}/chat/completions",
            json={"model": "large", "messages": user("x"), "stream": True},
        ) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        lines.extend(response.iter_lines())  # the lines before the drop stay
    assert lines[-2].endswith('"finish_reason":"stop"}]}')  # all but [DONE]
    with http.stream(
        "POST", f"{mock.url}/chat/completions", json={"model": "large", "messages": user("x")}
    ) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            response.read()


def test_a_stall_is_seen_as_a_client_timeout(mock: MockHandle) -> None:
    mock.set_faults(error_rate=1, errors=["stall"], stall_s=30)
    with openai.OpenAI(base_url=mock.url, api_key="k", max_retries=0, timeout=0.3) as client:
        received = []
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):  # noqa: PT012
            for chunk in client.chat.completions.create(
                model="large", messages=user("hi there"), stream=True
            ):
                received.append(chunk)
        assert len(received) == 1
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="large", messages=user("hi"))
        assert time.perf_counter() - started < 3
    assert mock.stats()["by_model"]["large"] == {"stall": 2}


def test_stopping_the_server_drops_a_stalled_stream_at_once() -> None:
    async def main() -> tuple[int, float]:
        mock = MockLLM(faults={"error_rate": 1, "errors": ["stall"]})
        url = await mock.start()
        received = 0

        async def consume() -> None:
            nonlocal received
            async with (
                httpx.AsyncClient() as http,
                http.stream(
                    "POST",
                    f"{url}/chat/completions",
                    json={"model": "m", "messages": user("x"), "stream": True},
                ) as response,
            ):
                async for line in response.aiter_lines():
                    received += line.startswith("data: ")

        task = asyncio.create_task(consume())
        for _ in range(500):
            if received:
                break
            await asyncio.sleep(0.01)
        started = time.perf_counter()
        await mock.stop()
        with pytest.raises(httpx.RemoteProtocolError):
            await task
        return received, time.perf_counter() - started

    received, took = asyncio.run(main())
    assert received == 1
    assert took < 1


def test_a_short_stall_answers_late(mock: MockHandle, client: openai.OpenAI) -> None:
    mock.set_faults(error_rate=1, errors=["stall"], stall_s=0.2)
    started = time.perf_counter()
    done = client.chat.completions.create(model="large", messages=user("status"))
    assert time.perf_counter() - started >= 0.2
    assert done.choices[0].message.content == "status_question"


def test_error_rate_fails_an_exact_share_rotating_the_kinds(
    mock: MockHandle, http: httpx.Client
) -> None:
    mock.set_faults(error_rate=0.3, errors=["429", "500"], retry_after_s=0)
    statuses = [
        post(http, mock.url, {"model": "large", "messages": user("hi")}).status_code
        for _ in range(100)
    ]
    failed = [n for n, s in enumerate(statuses) if s != 200]
    assert failed == [n for n in range(100) if math.floor((n + 1) * 0.3) > math.floor(n * 0.3)]
    assert [statuses[n] for n in failed[:4]] == [429, 500, 429, 500]
    assert mock.stats() == {
        "requests": 100,
        "by_model": {"large": {"ok": 70, "429": 15, "500": 15}},
    }


def test_faults_can_hit_only_some_models(mock: MockHandle, client: openai.OpenAI) -> None:
    mock.set_faults(error_rate=1, errors=["500"], models=["large"])
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="large", messages=user("hi"))
    done = client.chat.completions.create(model="small", messages=user("hi"))
    assert done.choices[0].message.content == "new_claim"
    assert mock.stats()["by_model"] == {"large": {"500": 1}, "small": {"ok": 1}}


def test_latency_and_chunk_delay_slow_the_answer(mock: MockHandle, client: openai.OpenAI) -> None:
    mock.set_faults(latency_ms=100)
    started = time.perf_counter()
    client.chat.completions.create(model="large", messages=user("hi"))
    assert time.perf_counter() - started >= 0.1
    mock.set_faults(chunk_delay_ms=30)
    started = time.perf_counter()
    list(client.chat.completions.create(model="large", messages=user("hi"), stream=True))
    assert time.perf_counter() - started >= 0.06  # role, label, finish, [DONE]: 3 pauses


def test_the_control_endpoints_set_faults_count_and_reset(
    mock: MockHandle, http: httpx.Client
) -> None:
    control = mock.url.removesuffix("/v1") + "/_mock"
    set_ = http.post(f"{control}/faults", json={"error_rate": 1, "errors": ["500"]})
    assert set_.json()["errors"] == ["500"]
    assert set_.json()["latency_ms"] == 0
    assert http.get(f"{control}/faults").json() == set_.json()
    assert post(http, mock.url, {"model": "large", "messages": user("hi")}).status_code == 500
    stats = http.get(f"{control}/stats").json()
    assert stats == {"requests": 1, "by_model": {"large": {"500": 1}}}
    assert http.get(f"{control}/requests").json()[-1]["model"] == "large"
    bad = http.post(f"{control}/faults", json={"error_rate": 2})
    assert bad.status_code == 400
    assert "error_rate" in bad.json()["error"]["message"]
    assert http.post(f"{control}/faults", json={"errors": ["boom"]}).status_code == 400
    assert http.post(f"{control}/faults", json={"speed": 1}).status_code == 400
    assert http.post(f"{control}/reset").json() == {"requests": 0, "by_model": {}}
    assert post(http, mock.url, {"model": "large", "messages": user("hi")}).status_code == 200
    assert http.get(f"{control}/nothing").status_code == 404
    assert http.delete(f"{control}/stats").status_code == 405


def test_fault_settings_are_checked() -> None:
    with pytest.raises(UsageError, match="error_rate"):
        Faults.from_mapping({"error_rate": -0.1})
    with pytest.raises(UsageError, match="unknown kind"):
        Faults.from_mapping({"errors": "429,oops"})
    assert Faults.from_mapping({"errors": "429, stall", "models": "a"}).as_dict()["models"] == ["a"]
    with pytest.raises(UsageError, match="latency_ms"):
        MockLLM(faults={"latency_ms": "slow"})


# -- configuration ------------------------------------------------------------------


def test_load_config_reads_yaml_and_json(tmp_path: Path) -> None:
    yaml_file = tmp_path / "mock.yaml"
    yaml_file.write_text(
        "models:\n  small: {misses: [fraud_signal]}\n"
        "rules:\n  - {contains: fraud, label: fraud_signal}\ndefault_label: other\n"
    )
    config = MockConfig.from_mapping(load_config(yaml_file))
    assert config.models is not None
    assert config.models["small"].misses == frozenset({"fraud_signal"})
    assert config.rules[0].keywords == ("fraud",)
    json_file = tmp_path / "mock.json"
    json_file.write_text(json.dumps(CONFIG))
    assert load_config(json_file) == CONFIG
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: [a\n", "not valid YAML/JSON"),
        ("- a\n", "expected a mapping"),
        ("rulez: []\n", "unknown key 'rulez'"),
        ("models: {a: {misses: 3}}\n", "models.a.misses"),
        ("models: {a: {speed: 3}}\n", "unknown option 'speed'"),
        ("rules: [{contains: [x]}]\n", "rules[0]"),
        ("rules: [{contains: [], label: a}]\n", "rules[0].contains"),
    ],
)
def test_load_config_errors_are_one_readable_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "mock.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[")) as caught:
        load_config(path)
    assert "\n" not in caught.value.detail
    with pytest.raises(UsageError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
