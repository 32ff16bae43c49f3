"""The upstream client: requests as a provider expects them, answers and chunks parsed,
every way a call can fail mapped to a kind, and the API key kept out of every message.

The server here is a small scripted aiohttp app (each request takes the next step of
its script), real HTTP on a real socket, so that drops and stalls happen as on a
network. :class:`FakeLLM` is also used by ``test_llm_route.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web

from prodgate.llm.sse import Event, SseParser
from prodgate.llm.tokens import Usage
from prodgate.llm.upstream import (
    Upstream,
    UpstreamError,
    Upstreams,
    retry_after,
    usage_of,
)
from prodgate.spec.llm import Provider, Timeouts

pytestmark = pytest.mark.anyio

KEY = "sk-test-5f2e9a0c7b1d4e38"
FAST = Timeouts(connect_ms=1000, first_token_ms=2000, total_ms=5000)
BODY = {"messages": [{"role": "user", "content": "hello"}]}


def answer(model: str, text: str = "Hello there") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 3,
            "total_tokens": 12,
            "prompt_tokens_details": {"cached_tokens": 4},
        },
    }


def chunks(model: str, words: list[str], usage: bool = True) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": model}
    out = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    out += [{**base, "choices": [{"index": 0, "delta": {"content": w}}]} for w in words]
    out.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        out.append({**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}})
    return out


class FakeLLM:
    """A scripted OpenAI-compatible server. Each request to ``/v1/chat/completions``
    takes the next step of :attr:`script` (then ``ok`` when it runs out):

    ``ok``; ``429`` / ``429:SECONDS`` (with Retry-After); ``503``; ``400``; ``401``;
    ``garbage`` (200, not JSON); ``drop_before`` (the connection closes before any
    answer); ``drop_after`` (a streamed answer cut after two chunks); ``stall``
    (nothing for a long time); ``stall_after`` (two chunks, then nothing);
    ``slow`` (a stream of a chunk every 100 ms); ``429_slow_body`` (a 429 whose body
    never ends); ``error_event`` (a stream whose
    second event is an error); ``no_done`` (a whole
    stream without the closing ``[DONE]``).
    """

    def __init__(self) -> None:
        self.script: list[str] = []
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.peers: list[Any] = []  # the client's address of each request
        self.disconnected = 0  # streams whose client went away
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        assert request.transport is not None
        self.peers.append(request.transport.get_extra_info("peername"))
        step = self.script.pop(0) if self.script else "ok"
        model = body.get("model", "?")
        if step == "429_slow_body":  # the status at once, the body never
            resp = web.StreamResponse(status=429, headers={"Retry-After": "1"})
            resp.content_length = 100
            await resp.prepare(request)
            await resp.write(b'{"error": ')
            await asyncio.sleep(30)
            return resp
        if step.startswith("429"):
            headers = {"Retry-After": step.partition(":")[2]} if ":" in step else {}
            return web.json_response(
                {"error": {"message": "Rate limit reached", "type": "rate_limit"}},
                status=429,
                headers=headers,
            )
        if step in ("503", "400"):
            return web.json_response({"error": {"message": f"failure {step}"}}, status=int(step))
        if step == "401":
            return web.json_response(
                {"error": {"message": f"Incorrect API key provided: {KEY}."}}, status=401
            )
        if step == "garbage":
            return web.Response(text="<html>oops</html>", content_type="text/html")
        if step == "drop_before":
            assert request.transport is not None
            request.transport.close()
            return web.Response()  # never sent
        if step == "stall":
            await asyncio.sleep(30)
        if not body.get("stream"):
            return web.json_response(answer(model))
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        events = chunks(model, ["Hel", "lo", " there"])
        try:
            for n, chunk in enumerate(events):
                if n == 2 and step == "drop_after":
                    assert request.transport is not None
                    request.transport.close()
                    return resp
                if n == 2 and step == "stall_after":
                    for _ in range(3000):  # 30 s, or until the client goes away
                        transport = request.transport
                        if transport is None or transport.is_closing():
                            self.disconnected += 1
                            return resp
                        await asyncio.sleep(0.01)
                if n == 1 and step == "error_event":
                    chunk = {"error": {"message": "overloaded", "type": "server_error"}}
                await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
                await asyncio.sleep(0.1 if step == "slow" else 0)
            if step != "no_done":
                await resp.write(b"data: [DONE]\n\n")
            await asyncio.sleep(0.02)  # the end of the body in a later packet, as may happen
        except (ConnectionError, asyncio.CancelledError):
            self.disconnected += 1
            raise
        return resp


@pytest.fixture
async def fake() -> AsyncIterator[FakeLLM]:
    server = FakeLLM()
    await server.start()
    yield server
    await server.stop()


async def call(up: Upstream, streamed: bool, timeouts: Timeouts = FAST) -> object:
    """A plain call, or a streamed one read to its end."""
    if streamed:
        return [c async for c in up.stream("m", BODY, timeouts)]
    return await up.complete("m", BODY, timeouts)


async def drain(stream: AsyncIterator[dict[str, Any]], into: list[dict[str, Any]]) -> None:
    async for chunk in stream:
        into.append(chunk)


@contextlib.asynccontextmanager
async def upstream_of(url: str, key: str | None = KEY, env: str | None = "FAKE_KEY"):
    up = Upstream(Provider("fake", url, api_key_env=env), api_key=key)
    try:
        yield up
    finally:
        await up.close()


# -- SSE --------------------------------------------------------------------------------


def test_sse_events_whole_and_cut_anywhere() -> None:
    stream = (
        b": keep-alive\n\n"
        b'data: {"a": 1}\n\n'
        b'event: error\r\ndata: {"b":\r\ndata: 2}\r\n\r\n'
        b'data:{"c": "\xc3\xa9"}\r\rdata: [DONE]\n\ndata: after\n\n'
    )
    expected = [Event(b'{"a": 1}'), Event(b'{"b":\n2}', "error"), Event('{"c": "é"}'.encode())]
    for size in (1, 2, 3, 7, len(stream)):
        parser = SseParser()
        got = []
        for i in range(0, len(stream), size):
            got += parser.feed(stream[i : i + size])
        assert got == expected, size
        assert parser.done


def test_sse_field_forms() -> None:
    parser = SseParser()
    got = parser.feed(b"data\ndata:x\nid: 7\nretry: 10\nevent:ping\n\ndata: y\n\n")
    assert got == [Event(b"\nx", "ping"), Event(b"y")]


def test_sse_partial_says_whether_an_event_was_cut() -> None:
    parser = SseParser()
    assert parser.feed(b'data: {"a"') == []
    assert parser.partial
    assert parser.feed(b": 1}\n") == []
    assert parser.partial  # the data line is whole, its blank line is not
    assert parser.feed(b"\n") == [Event(b'{"a": 1}')]
    assert not parser.partial


# -- small pieces ----------------------------------------------------------------------


def test_retry_after_in_seconds_milliseconds_or_as_a_date() -> None:
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after": "0.5"}) == 0.5
    assert retry_after({"retry-after-ms": "250", "retry-after": "1"}) == 0.25
    now = time.time()
    date = email.utils.formatdate(now + 20, usegmt=True)
    assert 18.0 < retry_after({"retry-after": date}, now=now) <= 20.0
    past = email.utils.formatdate(now - 20, usegmt=True)
    assert retry_after({"retry-after": past}, now=now) == 0.0
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-1"}) is None
    assert retry_after({}) is None


def test_usage_of_an_answer_or_a_chunk() -> None:
    assert usage_of(answer("m")) == Usage(9, 3, 4)
    assert usage_of({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}) == Usage(1, 2)
    assert usage_of({"usage": None}) is None
    assert usage_of({}) is None


def test_error_kinds_say_what_may_follow() -> None:
    assert UpstreamError("rate_limited", "x", status=429).retryable
    assert UpstreamError("dropped", "x").retryable
    assert not UpstreamError("dropped", "x", after_first_chunk=True).retryable
    assert not UpstreamError("stalled", "x", after_first_chunk=True).retryable
    bad = UpstreamError("client", "x", status=400)
    assert not bad.retryable
    assert not bad.fallback
    wrong_key = UpstreamError("client", "x", status=401)
    assert not wrong_key.retryable
    assert wrong_key.fallback
    assert not UpstreamError("bad_response", "x").retryable
    assert UpstreamError("bad_response", "x").fallback
    late = UpstreamError("server", "x", status=None).replace(after_first_chunk=True)
    assert late.after_first_chunk
    assert not late.retryable
    assert late.kind == "server"


def test_upstreams_read_keys_from_the_environment_when_built() -> None:
    providers = {
        "a": Provider("a", "http://a/v1", api_key_env="A_KEY"),
        "b": Provider("b", "http://b/v1", api_key_env="B_KEY"),
        "local": Provider("local", "http://c/v1"),
    }
    ups = Upstreams.from_spec(providers, environ={"A_KEY": KEY, "B_KEY": ""})
    assert set(ups) == {"a", "b", "local"}
    assert ups["a"]._headers["Authorization"] == f"Bearer {KEY}"
    assert "Authorization" not in ups["b"]._headers  # empty: as good as missing
    assert "Authorization" not in ups["local"]._headers
    assert KEY not in repr(ups["a"])


# -- calls -----------------------------------------------------------------------------


async def test_complete_sends_the_model_the_key_and_json(fake: FakeLLM) -> None:
    async with upstream_of(fake.url) as up:
        got = await up.complete("gpt-4.1", {**BODY, "stream": True}, FAST)
        await up.complete("gpt-4.1", BODY, FAST)
    assert got == answer("gpt-4.1")
    assert fake.requests[0] == {**BODY, "model": "gpt-4.1"}  # never streamed
    assert fake.headers[0]["Authorization"] == f"Bearer {KEY}"
    assert fake.headers[0]["Content-Type"] == "application/json"


async def test_one_session_and_kept_alive_connections(fake: FakeLLM) -> None:
    async with upstream_of(fake.url) as up:
        await up.complete("m", BODY, FAST)
        session = up._session
        await asyncio.gather(*(up.complete("m", BODY, FAST) for _ in range(20)))
        assert up._session is session
        assert session is not None
        assert session.connector is not None
        assert session.connector.limit == 256


@pytest.mark.parametrize("streamed", [False, True])
async def test_a_connection_is_reused_after_a_whole_answer(fake: FakeLLM, streamed: bool) -> None:
    async with upstream_of(fake.url) as up:
        for _ in range(3):
            await call(up, streamed)
    assert len(set(fake.peers)) == 1


async def test_stream_yields_parsed_chunks_and_asks_for_usage(fake: FakeLLM) -> None:
    async with upstream_of(fake.url) as up:
        got = [c async for c in up.stream("m", BODY, FAST)]
    assert got == chunks("m", ["Hel", "lo", " there"])
    sent = fake.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert fake.headers[0]["Accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("step", "kind", "status", "retryable"),
    [
        ("429:2", "rate_limited", 429, True),
        ("503", "server", 503, True),
        ("400", "client", 400, False),
        ("401", "client", 401, False),
        ("garbage", "bad_response", 200, False),
        ("drop_before", "dropped", None, True),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_failures_map_to_kinds(
    fake: FakeLLM, step: str, kind: str, status: int | None, retryable: bool, streamed: bool
) -> None:
    fake.script = [step]
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await call(up, streamed)
    err = caught.value
    if streamed and step == "garbage":  # an event stream that is not one: no events
        assert (err.kind, err.status) == ("dropped", None)
        return
    assert (err.kind, err.status, err.retryable) == (kind, status, retryable)
    assert not err.after_first_chunk
    assert err.message.startswith("fake/m: ")
    if step == "429:2":
        assert err.retry_after_s == 2.0
        assert "Rate limit reached" in err.message


async def test_the_key_never_appears_in_an_error(fake: FakeLLM) -> None:
    fake.script = ["401", "401"]
    async with upstream_of(fake.url) as up:
        for call in (up.complete("m", BODY, FAST), anext(up.stream("m", BODY, FAST))):
            with pytest.raises(UpstreamError) as caught:
                await call
            assert KEY not in str(caught.value)
            assert KEY not in repr(caught.value)
            assert "Incorrect API key provided: ***" in caught.value.message


async def test_a_missing_key_fails_the_call_naming_the_variable(fake: FakeLLM) -> None:
    async with upstream_of(fake.url, key=None, env="FAKE_PROVIDER_KEY") as up:
        with pytest.raises(UpstreamError) as caught:
            await up.complete("m", BODY, FAST)
    err = caught.value
    assert err.kind == "client"
    assert err.fallback
    assert not err.retryable
    assert "FAKE_PROVIDER_KEY" in err.message
    assert fake.requests == []


async def test_a_provider_without_a_key_sends_none(fake: FakeLLM) -> None:
    async with upstream_of(fake.url, key=None, env=None) as up:
        await up.complete("m", BODY, FAST)
    assert "Authorization" not in fake.headers[0]


async def test_connect_failure() -> None:
    async with upstream_of("http://127.0.0.1:9/v1") as up:
        with pytest.raises(UpstreamError) as caught:
            await up.complete("m", BODY, FAST)
    assert caught.value.kind == "connect"
    assert caught.value.retryable


async def test_no_answer_within_the_first_token_timeout_is_stalled(fake: FakeLLM) -> None:
    fake.script = ["stall", "stall"]
    short = Timeouts(connect_ms=1000, first_token_ms=200, total_ms=5000)
    async with upstream_of(fake.url) as up:
        for streamed in (False, True):
            t0 = time.perf_counter()
            with pytest.raises(UpstreamError) as caught:
                await call(up, streamed, short)
            assert 0.15 < time.perf_counter() - t0 < 1.0
            assert (caught.value.kind, caught.value.retryable) == ("stalled", True)


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_error_whose_body_never_ends_is_reported_in_time(
    fake: FakeLLM, streamed: bool
) -> None:
    fake.script = ["429_slow_body"]
    short = Timeouts(connect_ms=1000, first_token_ms=300, total_ms=5000)
    t0 = time.perf_counter()
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await call(up, streamed, short)
    assert time.perf_counter() - t0 < 2.0
    # The status says what failed; the body that never ends only lacks the reason.
    assert (caught.value.kind, caught.value.retry_after_s) == ("rate_limited", 1.0)


async def test_the_total_timeout(fake: FakeLLM) -> None:
    fake.script = ["stall"]
    short = Timeouts(connect_ms=1000, first_token_ms=5000, total_ms=200)
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await up.complete("m", BODY, short)
    assert caught.value.kind == "timeout"


async def test_a_stream_cut_after_chunks_is_dropped_after_the_first_chunk(fake: FakeLLM) -> None:
    fake.script = ["drop_after"]
    got: list[dict[str, Any]] = []
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await drain(up.stream("m", BODY, FAST), got)
    assert len(got) == 2
    err = caught.value
    assert (err.kind, err.after_first_chunk, err.retryable) == ("dropped", True, False)


async def test_a_stream_past_the_total_timeout(fake: FakeLLM) -> None:
    fake.script = ["slow"]
    short = Timeouts(connect_ms=1000, first_token_ms=1000, total_ms=250)
    got: list[dict[str, Any]] = []
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await drain(up.stream("m", BODY, short), got)
    assert 1 <= len(got) <= 3
    assert (caught.value.kind, caught.value.after_first_chunk) == ("timeout", True)


async def test_a_slow_reader_is_not_a_stalled_upstream(fake: FakeLLM) -> None:
    short = Timeouts(connect_ms=1000, first_token_ms=200, total_ms=5000)
    got: list[dict[str, Any]] = []
    async with upstream_of(fake.url) as up:
        async for chunk in up.stream("m", BODY, short):
            got.append(chunk)
            await asyncio.sleep(0.3)  # the caller's own client is slow
    assert got == chunks("m", ["Hel", "lo", " there"])


async def test_a_stream_silent_after_chunks_is_stalled(fake: FakeLLM) -> None:
    fake.script = ["stall_after"]
    short = Timeouts(connect_ms=1000, first_token_ms=300, total_ms=5000)
    got: list[dict[str, Any]] = []
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            await drain(up.stream("m", BODY, short), got)
    assert len(got) == 2
    assert (caught.value.kind, caught.value.after_first_chunk) == ("stalled", True)


async def test_a_whole_stream_without_done_is_accepted(fake: FakeLLM) -> None:
    fake.script = ["no_done"]
    async with upstream_of(fake.url) as up:
        got = [c async for c in up.stream("m", BODY, FAST)]
    assert got == chunks("m", ["Hel", "lo", " there"])


async def test_an_error_event_in_a_stream(fake: FakeLLM) -> None:
    fake.script = ["error_event"]
    async with upstream_of(fake.url) as up:
        with pytest.raises(UpstreamError) as caught:
            [c async for c in up.stream("m", BODY, FAST)]
    assert caught.value.kind == "server"
    assert caught.value.after_first_chunk
    assert "overloaded" in caught.value.message


async def test_closing_a_stream_early_closes_the_connection(fake: FakeLLM) -> None:
    fake.script = ["stall_after"]
    async with upstream_of(fake.url) as up:
        stream = up.stream("m", BODY, FAST)
        assert (await anext(stream))["choices"][0]["delta"]["role"] == "assistant"
        await stream.aclose()
        for _ in range(100):
            if fake.disconnected:
                break
            await asyncio.sleep(0.01)
    assert fake.disconnected == 1


async def test_an_upstream_is_bound_to_one_loop_until_closed(fake: FakeLLM) -> None:
    up = Upstream(Provider("fake", fake.url), api_key=None)
    await up.complete("m", BODY, FAST)
    await up.close()
    await up.close()  # idempotent
    await up.complete("m", BODY, FAST)  # a new session after close
    await up.close()
