"""The telemetry interface recording with the OpenTelemetry SDK.

Imported only when telemetry is on (see :mod:`prodgate.telemetry.config`), so a
process imports the tracing SDK and the exporter only when it exports.

The providers are this object's own, never the global ones: ``create_app`` can run
many times in one process (the tests do), and a gateway embedded in someone's
application must not take over that application's telemetry. Parenting goes through
OpenTelemetry's context (a context variable): a stage or an LLM call started inside
a request's ``with`` block, in the same task, is that request's child.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from prodgate import __version__
from prodgate.telemetry import genai
from prodgate.telemetry.noop import Attribute, Attributes, LlmCall, P, SpanScope, Telemetry

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.metrics import Histogram
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

SCOPE = "prodgate"
SERVICE = "prodgate.service"
VERSION = "prodgate.version"
KEY_ID = "prodgate.key_id"
HTTP_STATUS = "http.response.status_code"

_PROPAGATOR = TraceContextTextMapPropagator()
_ROOT: Context = otel_context.Context()  # no current span: what a request's span starts from


class RecordingTelemetry(Telemetry):
    """:class:`~prodgate.telemetry.noop.Telemetry` recording spans with
    *tracer_provider* and the GenAI metrics with *meter_provider* (either may be
    None: that signal is not recorded). It owns both: :meth:`shutdown` shuts them down.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
    ) -> None:
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: Tracer | None = (
            tracer_provider.get_tracer(SCOPE, __version__) if tracer_provider else None
        )
        self._metrics = _GenAiMetrics(meter_provider) if meter_provider else None
        self.on = tracer_provider is not None or meter_provider is not None

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
        tracer = self._tracer
        if tracer is None:
            return super().request(name, service=service)
        attrs: dict[str, Attribute] = {SERVICE: service}
        if key_id is not None:
            attrs[KEY_ID] = key_id
        if attributes:
            attrs.update(attributes)
        parent = _PROPAGATOR.extract(headers) if headers else _ROOT
        span = tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attrs,
            start_time=None if started is None else _wall_ns(started),
        )
        return _Scope(span)

    def stage(self, name: str) -> SpanScope:
        tracer = self._tracer
        # Only inside a recorded span: a span costs 15 to 30 µs, a stage of a request
        # the sampler dropped would be dropped too, and one of no request would be a
        # trace of its own, cut off from what it was a stage of.
        if tracer is None or not trace.get_current_span().is_recording():
            return super().stage(name)
        return _Scope(tracer.start_span(name))

    def staged(self, name: str, fn: Callable[P, Any]) -> Callable[P, Any]:
        if self._tracer is None:
            return fn
        stage = self.stage
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def traced_coroutine(*args: P.args, **kwargs: P.kwargs) -> Any:
                with stage(name):
                    return await fn(*args, **kwargs)

            return traced_coroutine

        @functools.wraps(fn)
        def traced(*args: P.args, **kwargs: P.kwargs) -> Any:
            with stage(name):
                return fn(*args, **kwargs)

        return traced

    def llm_call(
        self,
        *,
        provider: str,
        request_model: str,
        operation: str = genai.CHAT,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: Attributes | None = None,
    ) -> LlmCall:
        if not self.on:
            return super().llm_call(provider=provider, request_model=request_model)
        asked = _asked(operation, provider, request_model, max_tokens, temperature, attributes)
        return _Call(self, asked)

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
        operation: str = genai.CHAT,
        max_tokens: int | None = None,
        temperature: float | None = None,
        attributes: Attributes | None = None,
    ) -> None:
        if not self.on:
            return
        asked = _asked(operation, provider, request_model, max_tokens, temperature, attributes)
        end = time.time_ns() if end_ns is None else end_ns
        start = end - round(duration_s * 1e9) if start_ns is None else start_ns
        span = self._start_llm_span(asked, start)
        outcome = _Outcome(response_model, input_tokens, output_tokens, finish_reason, error_type)
        self._end_llm(span, asked, outcome, duration_s, end)

    def shutdown(self) -> None:
        tracer_provider, meter_provider = self._tracer_provider, self._meter_provider
        self._tracer_provider = self._meter_provider = self._tracer = self._metrics = None
        self.on = False
        try:
            if tracer_provider is not None:
                tracer_provider.shutdown()
        finally:
            if meter_provider is not None:
                meter_provider.shutdown()

    # -- an LLM call's span and metrics, the same whether timed here or told after ----

    def _start_llm_span(self, asked: dict[str, Attribute], start_ns: int | None) -> Span | None:
        if self._tracer is None:
            return None
        name = f"{asked[genai.OPERATION]} {asked[genai.REQUEST_MODEL]}"
        return self._tracer.start_span(
            name, kind=SpanKind.CLIENT, attributes=asked, start_time=start_ns
        )

    def _end_llm(
        self,
        span: Span | None,
        asked: dict[str, Attribute],
        outcome: _Outcome,
        duration_s: float,
        end_ns: int | None,
    ) -> None:
        if span is not None:
            span.set_attributes(outcome.span_attributes())
            if outcome.error_type is not None:
                span.set_status(Status(StatusCode.ERROR))
            span.end(end_time=end_ns)
        if self._metrics is not None:
            self._metrics.record(asked, outcome, duration_s)


class _Scope(SpanScope):
    """A recording span: current while its ``with`` block runs."""

    __slots__ = ("_span", "_token")

    def __init__(self, span: Span) -> None:
        self._span = span
        self._token: Token[Context] | None = None

    def __enter__(self) -> SpanScope:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            otel_context.detach(self._token)
        if exc is not None:
            # The kind of error only: an exception's message can carry request data.
            self._span.set_attribute(genai.ERROR_TYPE, error_type(exc))
            self._span.set_status(Status(StatusCode.ERROR))
        self._span.end()

    def set_attribute(self, key: str, value: Attribute) -> None:
        self._span.set_attribute(key, value)

    def answered(self, status: int, *, version: int | None = None) -> None:
        span = self._span
        span.set_attribute(HTTP_STATUS, status)
        if version is not None:
            span.set_attribute(VERSION, version)
        if status >= 500:
            span.set_attribute(genai.ERROR_TYPE, str(status))
            span.set_status(Status(StatusCode.ERROR))


class _Outcome:
    """What an LLM call came back with."""

    __slots__ = ("error_type", "finish_reason", "input_tokens", "output_tokens", "response_model")

    def __init__(
        self,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str | None = None,
        error_type: str | None = None,
    ) -> None:
        self.response_model = response_model
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.finish_reason = finish_reason
        self.error_type = error_type

    def span_attributes(self) -> dict[str, Attribute]:
        out: dict[str, Attribute] = {}
        if self.response_model is not None:
            out[genai.RESPONSE_MODEL] = self.response_model
        if self.input_tokens is not None:
            out[genai.USAGE_INPUT_TOKENS] = self.input_tokens
        if self.output_tokens is not None:
            out[genai.USAGE_OUTPUT_TOKENS] = self.output_tokens
        if self.finish_reason is not None:
            out[genai.RESPONSE_FINISH_REASONS] = (self.finish_reason,)
        if self.error_type is not None:
            out[genai.ERROR_TYPE] = self.error_type
        return out


class _Call(LlmCall):
    """A recording LLM call, timed from entering its ``with`` block to leaving it."""

    __slots__ = ("_asked", "_outcome", "_owner", "_span", "_started", "_token")

    def __init__(self, owner: RecordingTelemetry, asked: dict[str, Attribute]) -> None:
        self._owner = owner
        self._asked = asked
        self._outcome = _Outcome()
        self._span: Span | None = None
        self._token: Token[Context] | None = None
        self._started = 0.0

    def __enter__(self) -> LlmCall:
        self._span = self._owner._start_llm_span(self._asked, None)
        if self._span is not None:
            self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._started = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        duration = time.perf_counter() - self._started
        if self._token is not None:
            otel_context.detach(self._token)
        if exc is not None and self._outcome.error_type is None:
            self._outcome.error_type = error_type(exc)
        self._owner._end_llm(self._span, self._asked, self._outcome, duration, None)

    def done(
        self,
        *,
        response_model: str | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        finish_reason: str | None = None,
    ) -> None:
        outcome = self._outcome
        outcome.response_model = response_model
        outcome.input_tokens = input_tokens
        outcome.output_tokens = output_tokens
        outcome.finish_reason = finish_reason

    def failed(self, error_type: str) -> None:
        self._outcome.error_type = error_type


class _GenAiMetrics:
    """The two GenAI client histograms, with the conventions' bucket advice."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(SCOPE, __version__)
        self.tokens: Histogram = meter.create_histogram(
            genai.TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=genai.TOKEN_BUCKETS,
        )
        self.duration: Histogram = meter.create_histogram(
            genai.OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=genai.DURATION_BUCKETS,
        )

    def record(self, asked: Mapping[str, Attribute], outcome: _Outcome, duration_s: float) -> None:
        # The metric attributes are the conventions' few, not the span's extras
        # (a key id or a version there would multiply the series).
        attrs = {key: asked[key] for key in (genai.OPERATION, genai.PROVIDER, genai.REQUEST_MODEL)}
        if outcome.response_model is not None:
            attrs[genai.RESPONSE_MODEL] = outcome.response_model
        if outcome.input_tokens is not None:
            self.tokens.record(outcome.input_tokens, {**attrs, genai.TOKEN_TYPE: genai.INPUT})
        if outcome.output_tokens is not None:
            self.tokens.record(outcome.output_tokens, {**attrs, genai.TOKEN_TYPE: genai.OUTPUT})
        if outcome.error_type is not None:
            attrs[genai.ERROR_TYPE] = outcome.error_type
        self.duration.record(duration_s, attrs)


def _asked(
    operation: str,
    provider: str,
    request_model: str,
    max_tokens: int | None,
    temperature: float | None,
    attributes: Attributes | None,
) -> dict[str, Attribute]:
    """The attributes an LLM call's span starts with: what was asked of whom."""
    asked: dict[str, Attribute] = {
        genai.OPERATION: operation,
        genai.PROVIDER: provider,
        genai.REQUEST_MODEL: request_model,
    }
    if max_tokens is not None:
        asked[genai.REQUEST_MAX_TOKENS] = max_tokens
    if temperature is not None:
        asked[genai.REQUEST_TEMPERATURE] = temperature
    if attributes:
        asked.update(attributes)
    return asked


def error_type(exc: BaseException) -> str:
    """A low-cardinality name for *exc*: its ``kind`` when it has one (an upstream
    error's ``timeout``, ``rate_limited``...), else its class name."""
    kind = getattr(exc, "kind", None)
    return kind if isinstance(kind, str) and kind else type(exc).__qualname__


def _wall_ns(started: float) -> int:
    """Wall-clock nanoseconds of *started*, a :func:`time.perf_counter` reading."""
    return time.time_ns() - round((time.perf_counter() - started) * 1e9)
