"""A local OpenAI-compatible LLM for tests, examples and benchmarks.

No paid API runs here, yet the LLM path must be tested against real HTTP: a real
server that speaks the Chat Completions protocol (JSON and server-sent events), answers
deterministically (see :mod:`prodgate.llm.mock_answers`), and fails on demand in the
ways real providers fail: 429 with Retry-After, 500, a connection dropped before or in
the middle of a stream, a stream that stalls. Faults hit an exact, deterministic share
of calls (see :mod:`prodgate.llm.mock_faults`), so a test can count on them, and can be
limited to some models so that a primary fails while its fallback answers.

It is built on aiohttp's low-level server, with no router or middleware, so that a
benchmark measures the gateway in front of it rather than the mock: a small answer
costs about a tenth of a millisecond of server time.

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models``; control:
``GET|POST /_mock/faults``, ``GET /_mock/stats``, ``POST /_mock/reset``,
``GET /_mock/requests`` (the last bodies received, newest last).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from prodgate.exceptions import UsageError
from prodgate.llm.mock_answers import Answer, MockConfig, ModelOptions, answer
from prodgate.llm.mock_faults import FAULT_KINDS, Faults, FaultSchedule

__all__ = [
    "FAULT_KINDS",
    "Faults",
    "MockHandle",
    "MockLLM",
    "load_config",
    "running_mock",
    "serve",
]

#: Request bodies kept for ``GET /_mock/requests``.
KEPT_REQUESTS = 100
_JSON = "application/json"


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a mock configuration from a YAML or JSON file, checked; :class:`UsageError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read mock LLM config {path}: {exc.strerror or exc}") from None
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise UsageError(f"mock LLM config {path} is not valid YAML/JSON: {reason}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise UsageError(f"mock LLM config {path}: expected a mapping of models, rules, ...")
    MockConfig.from_mapping(raw)  # fail now, with the file's name in sight
    return raw


def _error(
    status: int,
    message: str,
    kind: str,
    param: str | None = None,
    code: Any = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    """An error in OpenAI's shape, which its SDK turns into the matching exception."""
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.Response(status=status, body=orjson.dumps(body), content_type=_JSON, headers=headers)


def _json(obj: Any) -> web.Response:
    return web.Response(body=orjson.dumps(obj), content_type=_JSON)


class MockLLM:
    """The mock server. ``url = await mock.start()``, then ``await mock.stop()``.

    *config* is a mapping (see :func:`load_config`): ``models`` (only these are served,
    each with options ``misses``, ``latency_ms``, ``usage``, ``cached_tokens``),
    ``rules`` (keyword lists to labels), ``default_label``. With *api_key*, requests to
    ``/v1`` need ``Authorization: Bearer <api_key>``. *faults* are the starting
    :class:`Faults` settings.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        faults: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = MockConfig.from_mapping(config)
        self._auth = f"Bearer {api_key}" if api_key else None
        self._schedule = FaultSchedule(Faults.from_mapping(faults))
        self._requests = 0
        self._by_model: dict[str, dict[str, int]] = {}
        self._bodies: collections.deque[Any] = collections.deque(maxlen=KEPT_REQUESTS)
        self._seq = 0
        self._runner: web.ServerRunner | None = None
        self._closing: asyncio.Event | None = None
        self.url: str | None = None
        self.port: int | None = None
        self._routes: dict[tuple[str, str], Callable[[web.BaseRequest], Awaitable[Any]]] = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("GET", "/v1/models"): self._models,
            ("GET", "/_mock/faults"): self._get_faults,
            ("POST", "/_mock/faults"): self._post_faults,
            ("GET", "/_mock/stats"): self._get_stats,
            ("POST", "/_mock/reset"): self._post_reset,
            ("GET", "/_mock/requests"): self._get_requests,
        }

    # -- control ------------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        return self._schedule.faults

    def set_faults(self, **faults: Any) -> None:
        """Replace the fault settings (missing ones take their defaults); counting
        restarts, so the exact share of failures holds from the next call."""
        self._schedule = FaultSchedule(Faults.from_mapping(faults))

    def stats(self) -> dict[str, Any]:
        """``{"requests": N, "by_model": {model: {outcome: count}}}``."""
        return {
            "requests": self._requests,
            "by_model": {m: dict(o) for m, o in self._by_model.items()},
        }

    def requests(self) -> list[Any]:
        """The last request bodies received (up to :data:`KEPT_REQUESTS`), newest last."""
        return list(self._bodies)

    def reset(self) -> None:
        """Zero the statistics and clear the faults."""
        self._requests = 0
        self._by_model.clear()
        self._bodies.clear()
        self.set_faults()

    # -- life ---------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on *host*:*port* (0: any free port); return the base URL, ending in /v1."""
        if self._runner is not None:
            raise RuntimeError("the mock LLM is running already")
        self._closing = asyncio.Event()
        server = web.Server(self._handle, handler_cancellation=True, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/v1"
        return self.url

    async def stop(self) -> None:
        """Stop listening; stalled answers end at once."""
        if self._closing is not None:
            self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    # -- requests -----------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = self._routes.get((request.method, request.path))
        if route is None:
            if any(path == request.path for _, path in self._routes):
                return _error(405, f"Method {request.method} not allowed", "invalid_request_error")
            return _error(404, f"Unknown path {request.path}", "invalid_request_error")
        if (
            self._auth is not None
            and request.path.startswith("/v1/")
            and request.headers.get("Authorization") != self._auth
        ):
            if route == self._chat:
                self._requests += 1
                self._record("-", "401")
            return _error(
                401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
            )
        result = await route(request)
        if isinstance(result, web.StreamResponse):
            return result
        return _json(result)

    async def _models(self, request: web.BaseRequest) -> Any:
        names = sorted(self.config.models) if self.config.models is not None else []
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "prodgate-mock"}
                for n in names
            ],
        }

    async def _get_faults(self, request: web.BaseRequest) -> Any:
        return self.faults.as_dict()

    async def _post_faults(self, request: web.BaseRequest) -> Any:
        try:
            raw = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            return _error(400, "faults: the body is not JSON", "invalid_request_error")
        if not isinstance(raw, dict):
            return _error(400, "faults: expected a JSON object", "invalid_request_error")
        try:
            self.set_faults(**raw)
        except UsageError as exc:
            return _error(400, exc.detail, "invalid_request_error")
        return self.faults.as_dict()

    async def _get_stats(self, request: web.BaseRequest) -> Any:
        return self.stats()

    async def _post_reset(self, request: web.BaseRequest) -> Any:
        self.reset()
        return self.stats()

    async def _get_requests(self, request: web.BaseRequest) -> Any:
        return self.requests()

    def _record(self, model: str, outcome: str) -> None:
        outcomes = self._by_model.get(model)
        if outcomes is None:
            outcomes = self._by_model[model] = {}
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    async def _chat(self, request: web.BaseRequest) -> Any:
        self._requests += 1
        raw = await request.read()
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self._record("-", "400")
            return _error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
        self._bodies.append(body)
        problem = _check(body)
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) and model else "-"
        if problem is not None:
            self._record(model, "400")
            return _error(400, problem[1], "invalid_request_error", problem[0])
        options = self.config.options(model)
        if options is None:
            self._record(model, "404")
            return _error(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model",
                "model_not_found",
            )
        try:
            reply = answer(self.config, options, body)
        except ValueError as exc:
            self._record(model, "400")
            return _error(400, str(exc), "invalid_request_error", str(exc).split(":")[0])
        delay, kind = self._schedule.next(model)
        delay += options.latency_ms / 1000
        # A fault counts at once (a stalled call is seen while it stalls); an answer
        # counts when it is sent, or as client_closed when the client left first.
        outcome = "ok"
        if kind is not None:
            self._record(model, kind)
            outcome = ""
        try:
            if delay:
                await asyncio.sleep(delay)
            stream = body.get("stream") is True
            if kind is None or (kind == "stall" and not stream):
                if kind == "stall" and not await self._stall():
                    _abort(request)
                    return web.Response()
                if stream:
                    return await self._stream(request, model, options, body, reply, None)
                return self._completion(model, options, reply)
            if kind == "429":
                retry = self.faults.retry_after_s
                return _error(
                    429,
                    "Rate limit reached for requests. Please try again later.",
                    "requests",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": f"{retry:g}"},
                )
            if kind == "500":
                return _error(
                    500, "The server had an error while processing your request.", "server_error"
                )
            if kind == "drop_before":
                _abort(request)
                return web.Response()
            if stream:
                return await self._stream(request, model, options, body, reply, kind)
            return await self._drop_body(request, self._completion(model, options, reply))
        except asyncio.CancelledError:
            if outcome:
                outcome = "client_closed"
            raise
        finally:
            if outcome:
                self._record(model, outcome)

    def _next_id(self) -> str:
        self._seq += 1
        return f"chatcmpl-mock{self._seq:012d}"

    def _completion(self, model: str, options: ModelOptions, reply: Answer) -> web.Response:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = list(reply.tool_calls)
        out: dict[str, Any] = {
            "id": self._next_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
        }
        if options.usage:
            out["usage"] = _usage(options, reply)
        return _json(out)

    async def _drop_body(self, request: web.BaseRequest, full: web.Response) -> web.StreamResponse:
        """Send the headers and half the body of *full*, then close the connection."""
        body = full.body
        assert isinstance(body, bytes)
        response = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
        response.content_length = len(body)
        await response.prepare(request)
        await response.write(body[: len(body) // 2])
        _abort(request)
        return response

    async def _stream(
        self,
        request: web.BaseRequest,
        model: str,
        options: ModelOptions,
        body: Mapping[str, Any],
        reply: Answer,
        kind: str | None,
    ) -> web.StreamResponse:
        stream_options = body.get("stream_options")
        include_usage = (
            isinstance(stream_options, Mapping) and stream_options.get("include_usage") is True
        )
        chunks = _chunks(
            self._next_id(),
            int(time.time()),
            model,
            reply,
            _usage(options, reply) if include_usage and options.usage else None,
        )
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        faults = self.faults
        if kind == "drop_after":  # never the [DONE] that would end the stream properly
            chunks = chunks[: min(faults.drop_after_chunks, len(chunks) - 1)]
        delay = (
            faults.chunk_delay_ms / 1000 if faults.models is None or model in faults.models else 0
        )
        if kind == "stall":
            await response.write(chunks[0])
            if not await self._stall():
                _abort(request)
                return response
            chunks = chunks[1:]
        if delay:
            for i, chunk in enumerate(chunks):
                if i:
                    await asyncio.sleep(delay)
                await response.write(chunk)
        elif chunks:
            await response.write(b"".join(chunks))
        if kind == "drop_after":
            _abort(request)
            return response
        await response.write_eof()
        return response

    async def _stall(self) -> bool:
        """Hang for ``stall_s``; False when the server stops first (the caller then
        drops the connection: a stalled answer is never completed by a shutdown).
        A client that goes away cancels the wait."""
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), self.faults.stall_s)
        except TimeoutError:
            return True
        return False


def _check(body: Any) -> tuple[str | None, str] | None:
    """What is wrong with a chat completion body, as (param, message), or None."""
    if not isinstance(body, dict):
        return None, "The body must be a JSON object."
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return "model", "You must provide a model parameter."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages", "'messages' must be a non-empty array of messages."
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"messages[{i}]", f"messages[{i}] must be an object with a 'role'."
    return None


def _usage(options: ModelOptions, reply: Answer) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }
    if options.cached_tokens:
        cached = min(options.cached_tokens, reply.prompt_tokens)
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


def _chunks(
    cid: str, created: int, model: str, reply: Answer, usage: dict[str, Any] | None
) -> list[bytes]:
    """The server-sent events of a streamed answer, as OpenAI sends them."""
    head = b'data: {"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
        cid.encode(),
        created,
        orjson.dumps(model),
    )

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return head + b'"choices":' + orjson.dumps([choice]) + b"}\n\n"

    out = [chunk({"role": "assistant", "content": ""})]
    out.extend(chunk({"content": piece}) for piece in reply.pieces)
    for i, call in enumerate(reply.tool_calls):
        function = call["function"]
        first = {
            "index": i,
            "id": call["id"],
            "type": "function",
            "function": {"name": function["name"], "arguments": ""},
        }
        out.append(chunk({"tool_calls": [first]}))
        arguments: str = function["arguments"]
        half = len(arguments) // 2
        for part in (arguments[:half], arguments[half:]):
            if part:
                out.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": part}}]}))
    out.append(chunk({}, reply.finish_reason))
    if usage is not None:
        out.append(head + b'"choices":[],"usage":' + orjson.dumps(usage) + b"}\n\n")
    out.append(b"data: [DONE]\n\n")
    return out


def _abort(request: web.BaseRequest) -> None:
    """Close the connection at once, with no response or the rest of one."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


@dataclass
class MockHandle:
    """A :class:`MockLLM` running in a background thread (see :func:`running_mock`)."""

    url: str
    port: int
    mock: MockLLM
    _loop: asyncio.AbstractEventLoop = field(repr=False)

    def _call(self, fn: Callable[[], Any]) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def set_faults(self, **faults: Any) -> None:
        """Replace the fault settings (see :meth:`MockLLM.set_faults`)."""
        self._call(lambda: self.mock.set_faults(**faults))

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call(self.mock.stats)
        return result

    def requests(self) -> list[Any]:
        result: list[Any] = self._call(self.mock.requests)
        return result

    def reset(self) -> None:
        self._call(self.mock.reset)


@contextlib.contextmanager
def running_mock(
    config: Mapping[str, Any] | None = None,
    *,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    **faults: Any,
) -> Iterator[MockHandle]:
    """Run a :class:`MockLLM` on its own event loop in a background thread, for code
    that is not async (a sync test, a benchmark driver); *faults* are its starting
    fault settings."""
    mock = MockLLM(config, api_key=api_key, faults=faults)
    loop = _new_loop()
    thread = threading.Thread(target=loop.run_forever, name="mock-llm", daemon=True)
    thread.start()
    try:
        url = asyncio.run_coroutine_threadsafe(mock.start(host, port), loop).result(10)
        assert mock.port is not None
        yield MockHandle(url, mock.port, mock, loop)
    finally:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(mock.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def serve(mock: MockLLM, host: str, port: int, on_ready: Callable[[str], None]) -> None:
    """Serve *mock* until SIGINT or SIGTERM; *on_ready* hears the base URL once it
    listens. A port that cannot be had is a one-line :class:`UsageError`."""

    async def main() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        try:
            url = await mock.start(host, port)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
            ) from None
        try:
            on_ready(url)
            await stopping.wait()
        finally:
            await mock.stop()

    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main())
