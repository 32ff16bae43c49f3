"""A route: the primary model, its fallbacks in order, retries, breakers and deadlines.

``Route.complete`` and ``Route.stream`` try the targets in order. A target whose
breaker is open is skipped without a call. A transient failure (rate limit, 5xx,
connection, timeout, a stream cut before its first chunk) is retried on the same
target ``retry.attempts`` more times, waiting an exponential backoff with full
jitter (``uniform(0, min(cap, base * 2**n))``: retries of many callers spread out
instead of arriving together), or the upstream's ``Retry-After`` when it is within
the cap; a longer ``Retry-After`` moves on to the next target at once, since waiting
that long would be worse than another model's answer. A request the upstream calls
wrong (400, 422...) is neither retried nor sent elsewhere: every model would refuse
it, so its error is the route's answer.

Streaming has a point of no return: the first chunk that carries something (content,
a tool call, a finish). Until then every failure falls back exactly as a plain call
does, and the chunks read so far (the role announcement) are held back, so that the
caller sees one clean stream from whichever target answered. After it, chunks have
reached the caller and cannot be taken back, so a failure ends the stream with an
:class:`UpstreamError` whose ``after_first_chunk`` is true, rather than splicing a
second model's answer onto the first's.

``timeouts.total_ms`` bounds the whole routed call, retries, waits and fallbacks
included: a caller waits at most that long for an answer, however many targets fail
on the way. ``first_token_ms`` applies to each try.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..spec.llm import ModelRef, Retry, Timeouts
from .breaker import Breakers, CircuitBreaker
from .tokens import Usage
from .upstream import Upstream, UpstreamError, carries_answer, usage_of

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[object]]
Chunks = AsyncGenerator[dict[str, Any], None]


@dataclass(frozen=True)
class Attempt:
    """One try of one target, or its skipping because its breaker was open."""

    provider: str
    model: str
    outcome: str  # "ok", an UpstreamError kind, or "breaker_open"
    status: int | None
    latency_ms: float
    retry_after_s: float | None = None


@dataclass
class Completion:
    """What one routed call produced, answered or not."""

    response: dict[str, Any] | None  # the upstream's response (non-streaming), untouched
    provider: str  # the target that answered (or was tried last)
    model: str
    attempts: list[Attempt]  # every try in order: the fallback path and the retries
    usage: Usage | None  # as the upstream reported it; None if it gave none
    ttft_ms: float | None  # streaming: until the first chunk went out; else until the answer
    latency_ms: float
    finish_reason: str | None
    text: str  # the answer's content (streaming: the deltas joined)
    tool_calls: list[dict[str, Any]]  # the answer's tool calls (streaming: assembled)
    error: UpstreamError | None = None  # why the call failed in the end, if it did

    @classmethod
    def empty(cls) -> Completion:
        return cls(None, "", "", [], None, None, 0.0, None, "", [])


class RouteFailed(Exception):
    """No target answered: each failed, was skipped, or the request was refused as wrong.
    ``completion.error`` is the failure that ended the route."""

    def __init__(self, completion: Completion) -> None:
        self.completion = completion
        error = completion.error
        super().__init__(error.message if error is not None else "no target answered")


class Route:
    """The targets of one service, tried in order; see the module's docstring."""

    def __init__(
        self,
        targets: Sequence[ModelRef],
        upstreams: Mapping[str, Upstream],
        breakers: Breakers,
        retry: Retry,
        timeouts: Timeouts,
        *,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not targets:
            raise ValueError("a route needs at least one target")
        self.targets = tuple(targets)
        self.upstreams = upstreams
        self.breakers = breakers
        self.retry = retry
        self.timeouts = timeouts
        self._sleep = sleep
        self._rng = rng or random.Random()  # jitter, not secrets

    async def complete(self, body: Mapping[str, Any]) -> Completion:
        """The answer to *body* (an OpenAI request without ``model``) from the first target
        that gives one; raises :class:`RouteFailed` when none does."""
        completion = Completion.empty()
        start = time.perf_counter()

        async def call(target: ModelRef, upstream: Upstream, timeouts: Timeouts) -> Any:
            return await upstream.complete(target.model, body, timeouts)

        answer = await self.run(completion, start, call)
        elapsed = (time.perf_counter() - start) * 1000.0
        completion.response = answer
        completion.latency_ms = completion.ttft_ms = elapsed
        completion.usage = usage_of(answer)
        choices = answer.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else {}
        message = (choice.get("message") or {}) if isinstance(choice, dict) else {}
        content = message.get("content")
        completion.text = content if isinstance(content, str) else ""
        calls = message.get("tool_calls")
        completion.tool_calls = list(calls) if isinstance(calls, list) else []
        completion.finish_reason = choice.get("finish_reason") if isinstance(choice, dict) else None
        return completion

    def stream(self, body: Mapping[str, Any]) -> RouteStream:
        """The streamed answer to *body*; iterate it for the chunks (see :class:`RouteStream`)."""
        return RouteStream(self, body)

    async def run(
        self,
        completion: Completion,
        start: float,
        call: Callable[[ModelRef, Upstream, Timeouts], Awaitable[T]],
    ) -> T:
        """Try *call* on the targets with retries and fallbacks, recording every attempt in
        *completion*; its result, or :class:`RouteFailed`."""
        retry = self.retry
        deadline = start + self.timeouts.total_ms / 1000.0
        error: UpstreamError | None = None
        skipped: list[CircuitBreaker] = []
        for target in self.targets:
            completion.provider, completion.model = target.provider, target.model
            upstream = self.upstreams.get(target.provider)
            if upstream is None:
                error = UpstreamError("client", f"{target}: no upstream for this provider")
                completion.attempts.append(Attempt(*_names(target), "client", None, 0.0))
                continue
            breaker = self.breakers.get(target.provider, target.model)
            for n in range(retry.attempts + 1):
                if not breaker.allow():
                    completion.attempts.append(Attempt(*_names(target), "breaker_open", None, 0.0))
                    skipped.append(breaker)
                    break
                left = deadline - time.perf_counter()
                if left <= 0:
                    breaker.release()
                    raise _failed(completion, _late(target, error), start)
                t0 = time.perf_counter()
                try:
                    result = await call(
                        target, upstream, dataclasses.replace(self.timeouts, total_ms=left * 1000)
                    )
                except UpstreamError as exc:
                    error = exc
                except BaseException:  # cancelled: the caller went away, no verdict
                    breaker.release()
                    raise
                else:
                    breaker.success()
                    completion.attempts.append(
                        Attempt(*_names(target), "ok", None, (time.perf_counter() - t0) * 1000.0)
                    )
                    return result
                completion.attempts.append(
                    Attempt(
                        *_names(target),
                        error.kind,
                        error.status,
                        (time.perf_counter() - t0) * 1000.0,
                        error.retry_after_s,
                    )
                )
                if not error.fallback:  # the request is wrong: no target will take it
                    breaker.release()
                    raise _failed(completion, error, start)
                breaker.failure()
                if not error.retryable or n == retry.attempts:
                    break
                wait = self.backoff(error, n)
                if wait is None or time.perf_counter() + wait >= deadline:
                    break  # asked to wait too long: another target now is better
                await self._sleep(wait)
        if error is None:  # no call was made: every breaker was open
            error = _all_open(skipped)
        raise _failed(completion, error, start)

    def backoff(self, error: UpstreamError, n: int) -> float | None:
        """Seconds to wait before retry *n* (0 for the first) after *error*, or None when
        the upstream asks for a longer wait than the cap (then try the next target)."""
        cap = self.retry.max_backoff_ms / 1000.0
        if error.retry_after_s is not None:
            return error.retry_after_s if error.retry_after_s <= cap else None
        return self._rng.uniform(0.0, min(cap, self.retry.backoff_ms / 1000.0 * 2**n))


def _failed(completion: Completion, error: UpstreamError, start: float) -> RouteFailed:
    """*completion* as it ends with *error*, in the exception that says so."""
    completion.error = error
    completion.latency_ms = (time.perf_counter() - start) * 1000.0
    return RouteFailed(completion)


def _names(target: ModelRef) -> tuple[str, str]:
    return target.provider, target.model


def _late(target: ModelRef, error: UpstreamError | None) -> UpstreamError:
    """The route's total timeout passed before *target* could be tried (again)."""
    before = f"; before it: {error.message}" if error is not None else ""
    return UpstreamError(
        "timeout", f"{target}: the route's total timeout passed before this try{before}"
    )


def _all_open(breakers: Sequence[CircuitBreaker]) -> UpstreamError:
    """The error of a route whose every target's breaker was open: kind ``breaker_open``,
    with Retry-After until the first of them lets a probe through."""
    waits = [s["retry_in_s"] for s in (b.snapshot() for b in breakers)]
    known = [w for w in waits if w is not None]
    names = ", ".join(f"{b.provider}/{b.model}" for b in breakers)
    return UpstreamError(
        "breaker_open",
        f"every target's circuit breaker is open ({names})",
        retry_after_s=min(known) if known else None,
    )


@dataclass
class _Opened:
    """A try that reached its point of no return: its stream, the chunks held back."""

    chunks: Chunks | None  # None: the stream already ended
    held: list[dict[str, Any]] = field(default_factory=list)


class RouteStream:
    """The chunks of a routed streamed answer, as received (``model`` untouched).

    Iterating it first finds a target that starts answering (with retries and
    fallbacks, invisibly), then passes its chunks on; :attr:`completion` fills in as
    they pass and is final when the iteration ends. :class:`RouteFailed` is raised
    by the first step when no target starts answering; an :class:`UpstreamError`
    with ``after_first_chunk`` by a later step when the answering one fails.
    """

    def __init__(self, route: Route, body: Mapping[str, Any]) -> None:
        self._route = route
        self._body = body
        self.completion = Completion.empty()
        self._start = 0.0
        self._opened: _Opened | None = None
        self._closed = False
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._attempt_t0 = 0.0

    def __aiter__(self) -> RouteStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._closed:
            raise StopAsyncIteration
        opened = self._opened
        if opened is None:
            opened = self._opened = await self._open()
        if opened.held:
            chunk = opened.held.pop(0)
        elif opened.chunks is None:
            self._finish()
            raise StopAsyncIteration
        else:
            try:
                chunk = await opened.chunks.__anext__()
            except StopAsyncIteration:
                self._finish()
                raise
            except UpstreamError as exc:
                error = exc.replace(after_first_chunk=True)
                self._failed(error)
                raise error from None
        self._absorb(chunk)
        return chunk

    async def aclose(self) -> None:
        """The caller went away: close the upstream's response (it stops generating)."""
        if self._closed:
            return
        self._closed = True
        if self._opened is None:  # never started: nothing to close
            return
        self._settle_text()
        if self._opened.chunks is not None:
            await self._opened.chunks.aclose()

    async def __aenter__(self) -> RouteStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- inside ---------------------------------------------------------------------------

    async def _open(self) -> _Opened:
        self._start = time.perf_counter()
        body = self._body

        async def call(target: ModelRef, upstream: Upstream, timeouts: Timeouts) -> _Opened:
            self._attempt_t0 = time.perf_counter()
            chunks = upstream.stream(target.model, body, timeouts)
            held: list[dict[str, Any]] = []
            try:
                while True:
                    try:
                        chunk = await chunks.__anext__()
                    except StopAsyncIteration:
                        return _Opened(None, held)
                    held.append(chunk)
                    if carries_answer(chunk):
                        return _Opened(chunks, held)
            except UpstreamError as exc:  # nothing went out: retry or fall back freely
                raise exc.replace(after_first_chunk=False) from None
            except BaseException:
                await chunks.aclose()
                raise

        try:
            opened = await self._route.run(self.completion, self._start, call)
        except RouteFailed:
            self._closed = True
            raise
        self.completion.ttft_ms = (time.perf_counter() - self._start) * 1000.0
        return opened

    def _absorb(self, chunk: Mapping[str, Any]) -> None:
        completion = self.completion
        usage = usage_of(chunk)
        if usage is not None:
            completion.usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            reason = choice.get("finish_reason")
            if reason:
                completion.finish_reason = reason
            delta = choice.get("delta")
            if not delta:
                continue
            content = delta.get("content")
            if content:
                self._text.append(content)
            calls = delta.get("tool_calls")
            if calls:
                self._tool_calls(calls)

    def _tool_calls(self, deltas: Sequence[Mapping[str, Any]]) -> None:
        """Assemble tool calls from their deltas: the first names the call, the next
        ones carry pieces of its arguments; ``index`` says which call a piece is of."""
        for delta in deltas:
            index = delta.get("index", len(self._calls))
            call = self._calls.get(index)
            if call is None:
                call = self._calls[index] = {
                    "id": None,
                    "type": "function",
                    "function": {"name": "", "arguments": ""},
                }
            if delta.get("id"):
                call["id"] = delta["id"]
            if delta.get("type"):
                call["type"] = delta["type"]
            function = delta.get("function") or {}
            if function.get("name") and not call["function"]["name"]:
                call["function"]["name"] = function["name"]
            if function.get("arguments"):
                call["function"]["arguments"] += function["arguments"]
        self.completion.tool_calls = [self._calls[i] for i in sorted(self._calls)]

    def _settle_text(self) -> None:
        self.completion.text = "".join(self._text)
        self.completion.latency_ms = (time.perf_counter() - self._start) * 1000.0
        attempts = self.completion.attempts
        if attempts and attempts[-1].outcome == "ok":  # the whole stream, not its start
            attempts[-1] = dataclasses.replace(
                attempts[-1], latency_ms=(time.perf_counter() - self._attempt_t0) * 1000.0
            )

    def _finish(self) -> None:
        self._closed = True
        self._settle_text()

    def _failed(self, error: UpstreamError) -> None:
        """The answering target failed after the first chunk went out: the breaker counts
        it, the attempt says how it ended, and the stream ends with the error."""
        self._closed = True
        completion = self.completion
        completion.error = error
        self._settle_text()
        completion.attempts[-1] = dataclasses.replace(
            completion.attempts[-1], outcome=error.kind, status=error.status
        )
        self._route.breakers.get(completion.provider, completion.model).failure()
