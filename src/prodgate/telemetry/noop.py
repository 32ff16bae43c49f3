"""What the request paths call, and what it is when telemetry is off: nothing.

:class:`Telemetry` is the interface the paths hold, and this class itself is the off
one: every call returns one shared object whose ``with`` block and methods do
nothing, so a path instrumented stage by stage pays a method call and an empty
``with`` per stage (about 0.15 µs each), and one whose stage functions are wrapped
once with :meth:`Telemetry.staged` pays nothing. Nothing here imports OpenTelemetry
(its tracing SDK and exporter take about 0.2 s to import).
:class:`~prodgate.telemetry.sdk.RecordingTelemetry` is the same interface recording
with the OpenTelemetry SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

P = ParamSpec("P")
R = TypeVar("R")

#: What a span attribute may hold (OpenTelemetry's primitive values and lists of them).
Attribute = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)
Attributes = Mapping[str, Attribute]


class SpanScope:
    """A span as the ``with`` block around it sees it; this one records nothing.

    Entering makes the span the current one (so stages and LLM calls started inside
    become its children); leaving ends it, marked as failed when an exception escapes.
    """

    __slots__ = ()

    def __enter__(self) -> SpanScope:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def set_attribute(self, key: str, value: Attribute) -> None:
        """Add an attribute learned while the span runs."""

    def answered(self, status: int, *, version: int | None = None) -> None:
        """The request was answered with HTTP *status* by service *version*.

        A status of 500 or above marks the span as failed; a refusal of the caller's
        request (4xx) does not, as OpenTelemetry's HTTP conventions have it for servers.
        """


class LlmCall:
    """One call to an LLM as the ``with`` block around it sees it; this one records
    nothing.

    Inside the block, say what came back with :meth:`done`, or why it failed with
    :meth:`failed`; an exception escaping the block is a failure too. Leaving the
    block ends the span and records the two GenAI metrics, timed from entering it.
    """

    __slots__ = ()

    def __enter__(self) -> LlmCall:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def done(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str | None = None,
    ) -> None:
        """What the call produced: the model that answered, tokens used, why it stopped."""

    def failed(self, error_type: str) -> None:
        """The call failed; *error_type* is a short, low-cardinality name of why
        (``timeout``, ``rate_limited``, ``500``), never a message."""


_NO_SPAN = SpanScope()
_NO_CALL = LlmCall()


class Telemetry:
    """Spans and GenAI metrics for the request paths, built once per gateway; off.

    This is both the interface and its off implementation: every method returns
    at once. :func:`~prodgate.telemetry.config.build_telemetry` returns this or a
    :class:`~prodgate.telemetry.sdk.RecordingTelemetry`, which overrides every method.
    """

    on: bool = False
    """Whether anything is recorded: a caller may skip work that only feeds telemetry."""

    def request(
        self,
        name: str,
        *,
        service: str,
        key_id: str | None = None,
        started: float | None = None,
        headers: Mapping[str, str] | None = None,
        attributes: Attributes | None = None,
    ) -> SpanScope:
        """The root span of one request (``prodgate.predict``, ``prodgate.chat``).

        *started* is :func:`time.perf_counter` when the request arrived, so the span
        covers what came before the path (reading the body, the access check);
        *headers* are the request's: a W3C ``traceparent`` in them continues the
        caller's trace. Otherwise the span starts a trace of its own, whatever span
        is current. Say how it ended with :meth:`SpanScope.answered`.
        """
        return _NO_SPAN

    def stage(self, name: str) -> SpanScope:
        """A child span of the current span (the request's) for one stage: ``parse``,
        ``limit``, ``route``, ``contract``, ``infer``, ``record``..."""
        return _NO_SPAN

    @overload
    def staged(
        self, name: str, fn: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Awaitable[R]]: ...
    @overload
    def staged(self, name: str, fn: Callable[P, R]) -> Callable[P, R]: ...
    def staged(self, name: str, fn: Callable[P, Any]) -> Callable[P, Any]:
        """*fn* with each call in a :meth:`stage` span named *name*; when off, *fn* itself.

        For a path built once and called per request: wrapping its stage functions
        at construction costs an off path nothing at all, where a ``with`` block per
        stage would cost about 0.15 µs each. A coroutine function is awaited inside
        the span."""
        return fn

    def llm_call(
        self,
        *,
        provider: str,
        request_model: str,
        operation: str = "chat",
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: Attributes | None = None,
    ) -> LlmCall:
        """A client span around one LLM call, with the GenAI conventions' attributes,
        a child of the current span; see :class:`LlmCall`. For a call whose end is
        known only later (a stream), :meth:`record_llm_call` records it afterwards."""
        return _NO_CALL

    def record_llm_call(
        self,
        *,
        provider: str,
        request_model: str,
        duration_s: float,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str | None = None,
        error_type: str | None = None,
        start_ns: int | None = None,
        end_ns: int | None = None,
        operation: str = "chat",
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: Attributes | None = None,
    ) -> None:
        """Record one finished LLM call: the span (a child of the current span) and
        the two GenAI metrics, as :meth:`llm_call` would have.

        *start_ns* and *end_ns* are wall-clock nanoseconds (:func:`time.time_ns`);
        *end_ns* defaults to now and *start_ns* to *duration_s* before the end.
        """

    def shutdown(self) -> None:
        """Export what is buffered and stop; afterwards every call records nothing.

        Blocks until the exporters are done (bounded by their timeouts): from async
        code, ``await`` :meth:`close` instead."""

    async def close(self) -> None:
        """:meth:`shutdown` in a worker thread, so the event loop does not wait on it."""
        if self.on:
            await asyncio.to_thread(self.shutdown)
