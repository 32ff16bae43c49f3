"""OpenTelemetry: spans of a real predict request, the GenAI span and metrics of an
LLM call, what off means, and the switch read from settings and OTEL_* variables."""

from __future__ import annotations

import asyncio
import gzip
import http.server
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway_support import GOOD, register_and_deploy, running, write_spec
from prodgate.exceptions import UsageError
from prodgate.pipeline.envelope import parse
from prodgate.pipeline.path import ServicePath
from prodgate.server.app import create_app
from prodgate.settings import Settings
from prodgate.telemetry import Telemetry, build_telemetry, genai, wanted
from prodgate.telemetry.sdk import RecordingTelemetry

PREDICT = "/v1/services/claims/predict"
STAGES = ["parse", "limit", "route", "contract", "admit", "infer", "record"]


class Recorded:
    """A :class:`RecordingTelemetry` on in-memory providers, and what it recorded."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        tracer_provider = TracerProvider(shutdown_on_exit=False)
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        meter_provider = MeterProvider([self.reader], shutdown_on_exit=False)
        self.telemetry = RecordingTelemetry(tracer_provider, meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            point
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    r = Recorded()
    yield r
    r.telemetry.shutdown()


@pytest.fixture
def deployed(sqlite_settings: Settings) -> Settings:
    write_spec(sqlite_settings)
    register_and_deploy(sqlite_settings)
    return sqlite_settings.with_(controller=False)


def _traced(client: Any, telemetry: Telemetry) -> None:
    """Give the running gateway's claims service a path built with *telemetry*, as the
    gateway will once it builds its telemetry from settings."""
    gateway = client.app.state.gateway
    old = gateway.paths["claims"]
    gateway.paths["claims"] = ServicePath(
        gateway.spec.service("claims"),
        old.contract,
        fleet=old.fleet,
        router=old.router,
        recorder=old.recorder,
        refusal=old.refusal,
        shadows=old.shadows,
        metrics=old.metrics,
        limits=old.limits,
        max_rows=old.max_rows,
        telemetry=telemetry,
    )


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


# -- a classic predict request ---------------------------------------------------------


@pytest.mark.anyio
async def test_a_predict_request_is_a_span_with_a_child_per_stage(
    deployed: Settings, recorded: Recorded
) -> None:
    async with running(deployed) as client:
        _traced(client, recorded.telemetry)
        before = time.time_ns()
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200, r.text
    *stages, request = recorded.finished()
    assert request.name == "prodgate.predict"
    assert request.kind is SpanKind.SERVER
    assert request.parent is None
    assert _attrs(request) == {
        "prodgate.service": "claims",
        "prodgate.key_id": "bootstrap",
        "prodgate.version": 1,
        "http.response.status_code": 200,
    }
    assert request.status.status_code is StatusCode.UNSET
    assert before <= (request.start_time or 0)
    assert [s.name for s in sorted(stages, key=lambda s: s.start_time or 0)] == STAGES
    for stage in stages:
        assert _parent_id(stage) == request.context.span_id
        assert stage.context.trace_id == request.context.trace_id
        assert (request.start_time or 0) <= (stage.start_time or 0)
        assert (stage.end_time or 0) <= (request.end_time or 0)


@pytest.mark.anyio
async def test_a_refused_request_shows_the_stage_that_refused(
    deployed: Settings, recorded: Recorded
) -> None:
    async with running(deployed) as client:
        _traced(client, recorded.telemetry)
        r = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": -1}})
        assert r.status_code == 422
    spans = {s.name: s for s in recorded.finished()}
    assert set(spans) == {"parse", "limit", "route", "contract", "refuse", "prodgate.predict"}
    contract = spans["contract"]
    assert contract.status.status_code is StatusCode.ERROR
    # The kind of error, never its message (which can quote the caller's input).
    assert _attrs(contract) == {"error.type": "ContractViolationError"}
    assert contract.status.description is None
    request = spans["prodgate.predict"]
    assert _attrs(request)["http.response.status_code"] == 422
    assert request.status.status_code is StatusCode.UNSET  # the caller's mistake, not ours


@pytest.mark.anyio
async def test_with_telemetry_off_the_path_holds_the_plain_stage_functions(
    deployed: Settings,
) -> None:
    async with running(deployed) as client:
        path = client.app.state.gateway.paths["claims"]
        assert type(path.telemetry) is Telemetry
        assert not path.telemetry.on
        assert path._parse is parse  # nothing wrapped, so nothing paid per request
        assert path.handle == path._serve  # and no request span to decide on
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 200


# -- the API itself --------------------------------------------------------------------


def test_off_returns_shared_no_ops() -> None:
    off = Telemetry()
    scope = off.request("prodgate.chat", service="s", key_id="k", started=time.perf_counter())
    assert scope is off.stage("parse") is off.stage("infer")
    call = off.llm_call(provider="p", request_model="m")
    assert call is off.llm_call(provider="q", request_model="n", max_tokens=3)
    with scope as span, call as c:
        span.set_attribute("a", 1)
        span.answered(500, version=2)
        c.done(response_model="m", input_tokens=1, output_tokens=2, finish_reason="stop")
        c.failed("timeout")
    off.record_llm_call(provider="p", request_model="m", duration_s=1.0)

    def stage(x: int) -> int:
        return x

    assert off.staged("parse", stage) is stage
    off.shutdown()


def test_stage_spans_nest_under_the_current_request_and_only_there(recorded: Recorded) -> None:
    t = recorded.telemetry
    with t.stage("parse"):  # no request: nothing to hang it on, nothing recorded
        pass
    assert recorded.finished() == []
    with t.request("prodgate.chat", service="letters") as span:
        with t.stage("route"), t.stage("inner"):
            pass
        span.answered(503)
    inner, route, request = recorded.finished()
    assert _parent_id(inner) == route.context.span_id
    assert _parent_id(route) == request.context.span_id
    assert request.status.status_code is StatusCode.ERROR
    assert _attrs(request)["error.type"] == "503"
    assert _attrs(request)["prodgate.service"] == "letters"


def test_a_request_span_starts_when_the_request_arrived(recorded: Recorded) -> None:
    arrived = time.perf_counter() - 0.25  # a slow body read and access check before the path
    with recorded.telemetry.request("prodgate.predict", service="s", started=arrived):
        pass
    [span] = recorded.finished()
    assert (span.end_time or 0) - (span.start_time or 0) >= 250_000_000


def test_a_traceparent_continues_the_callers_trace(recorded: Recorded) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    with recorded.telemetry.request("prodgate.chat", service="s", headers=headers):
        pass
    [span] = recorded.finished()
    assert span.context.trace_id == int(trace_id, 16)
    assert _parent_id(span) == 0x00F067AA0BA902B7


@pytest.mark.anyio
async def test_staged_functions_run_inside_their_stage_span(recorded: Recorded) -> None:
    t = recorded.telemetry

    async def infer(x: int) -> int:
        return x + 1

    def parse(x: int) -> int:
        return x * 2

    with t.request("prodgate.predict", service="s"):
        assert t.staged("parse", parse)(2) == 4
        assert await t.staged("infer", infer)(2) == 3
    assert [s.name for s in recorded.finished()] == ["parse", "infer", "prodgate.predict"]


# -- LLM calls -------------------------------------------------------------------------


def test_an_llm_call_carries_the_genai_attributes_and_records_both_metrics(
    recorded: Recorded,
) -> None:
    t = recorded.telemetry
    with (
        t.request("prodgate.chat", service="letters", key_id="k_1"),
        t.llm_call(
            provider="openai", request_model="gpt-4o", max_tokens=200, temperature=0.2
        ) as call,
    ):
        call.done(
            response_model="gpt-4o-2024-08-06",
            input_tokens=57,
            output_tokens=130,
            finish_reason="stop",
        )
    llm, request = recorded.finished()
    assert llm.name == "chat gpt-4o"
    assert llm.kind is SpanKind.CLIENT
    assert _parent_id(llm) == request.context.span_id
    assert _attrs(llm) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.request.max_tokens": 200,
        "gen_ai.request.temperature": 0.2,
        "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.input_tokens": 57,
        "gen_ai.usage.output_tokens": 130,
        "gen_ai.response.finish_reasons": ("stop",),
    }
    assert llm.status.status_code is StatusCode.UNSET

    common = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.response.model": "gpt-4o-2024-08-06",
    }
    tokens = {p.attributes["gen_ai.token.type"]: p for p in recorded.points(genai.TOKEN_USAGE)}
    assert set(tokens) == {"input", "output"}
    assert (tokens["input"].sum, tokens["output"].sum) == (57, 130)
    assert dict(tokens["input"].attributes) == {**common, "gen_ai.token.type": "input"}
    assert tuple(tokens["input"].explicit_bounds) == genai.TOKEN_BUCKETS
    [duration] = recorded.points(genai.OPERATION_DURATION)
    assert dict(duration.attributes) == common
    assert duration.count == 1
    assert 0 <= duration.sum < 1
    assert tuple(duration.explicit_bounds) == genai.DURATION_BUCKETS


class UpstreamError(Exception):
    """Like the route's: a ``kind`` that names the failure."""

    kind = "rate_limited"


def test_a_failed_llm_call_says_what_kind_of_failure(recorded: Recorded) -> None:
    t = recorded.telemetry
    with pytest.raises(UpstreamError), t.llm_call(provider="p", request_model="m"):
        raise UpstreamError("429 from p: secret-looking text")
    with t.llm_call(provider="p", request_model="m") as call:
        call.failed("timeout")
    raised, told = recorded.finished()
    assert _attrs(raised)["error.type"] == "rate_limited"
    assert _attrs(told)["error.type"] == "timeout"
    assert raised.status.status_code is told.status.status_code is StatusCode.ERROR
    assert not raised.events  # no exception event: its message is not telemetry's to keep
    durations = recorded.points(genai.OPERATION_DURATION)
    assert sorted(p.attributes["error.type"] for p in durations) == ["rate_limited", "timeout"]
    assert recorded.points(genai.TOKEN_USAGE) == []  # no usage known, none recorded


def test_a_call_recorded_after_it_ended_keeps_its_times_and_parent(recorded: Recorded) -> None:
    t = recorded.telemetry
    end = time.time_ns()
    start = end - 2_500_000_000
    with t.request("prodgate.chat", service="letters"):
        t.record_llm_call(
            provider="local",
            request_model="small",
            response_model="small-1",
            input_tokens=10,
            output_tokens=20,
            finish_reason="length",
            duration_s=2.5,
            start_ns=start,
            end_ns=end,
            attributes={"prodgate.attempts": 2},
        )
        t.record_llm_call(provider="local", request_model="small", duration_s=0.5)
    timed, defaulted, request = recorded.finished()
    assert (timed.start_time, timed.end_time) == (start, end)
    assert _parent_id(timed) == request.context.span_id
    assert _attrs(timed)["gen_ai.response.finish_reasons"] == ("length",)
    assert _attrs(timed)["prodgate.attempts"] == 2
    assert (defaulted.end_time or 0) - (defaulted.start_time or 0) == 500_000_000
    assert sorted(p.sum for p in recorded.points(genai.OPERATION_DURATION)) == [0.5, 2.5]
    # The metrics carry the conventions' attributes, not the span's extras.
    assert all("prodgate.attempts" not in p.attributes for p in recorded.points(genai.TOKEN_USAGE))


def test_shutdown_stops_recording_and_the_global_providers_are_untouched(
    recorded: Recorded,
) -> None:
    global_before = trace.get_tracer_provider()
    t = recorded.telemetry
    assert t.on
    t.shutdown()
    t.shutdown()  # a second stop is harmless
    assert not t.on
    with t.request("prodgate.chat", service="s"), t.llm_call(provider="p", request_model="m"):
        pass
    assert recorded.finished() == []
    assert trace.get_tracer_provider() is global_before


# -- on or off: the setting and the standard variables ---------------------------------


def _settings(otel: str | None = None) -> Settings:
    return Settings.load(env={"PRODGATE_OTEL": otel} if otel else {})


@pytest.mark.parametrize(
    ("otel", "env", "on"),
    [
        (None, {}, False),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        (None, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
        ("on", {}, True),
        ("off", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ("on", {"OTEL_SDK_DISABLED": "true"}, False),
        (None, {"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ("on", {"OTEL_SDK_DISABLED": "false"}, True),
        ("on", {"OTEL_SDK_DISABLED": "1"}, True),  # only "true" disables, per the spec
    ],
)
def test_on_when_asked_or_pointed_at_a_collector_and_sdk_disabled_wins(
    otel: str | None, env: dict[str, str], on: bool
) -> None:
    assert wanted(_settings(otel), env) is on


def test_the_setting_takes_on_or_off_only() -> None:
    assert Settings.load(env={"PRODGATE_OTEL": "ON"}).otel == "on"
    with pytest.raises(UsageError, match="PRODGATE_OTEL='yes please': must be one of on, off"):
        Settings.load(env={"PRODGATE_OTEL": "yes please"})


def test_off_imports_nothing_of_opentelemetry() -> None:
    # Of prodgate's own telemetry, that is: redis-py 8 imports OpenTelemetry's
    # metrics SDK for its own observability, so a gateway process has part of it.
    code = (
        "import sys\n"
        "from prodgate.settings import Settings\n"
        "from prodgate.telemetry import build_telemetry\n"
        "t = build_telemetry(Settings.load(env={}))\n"
        "print(type(t).__name__, sorted(m for m in sys.modules if m.startswith('opentelemetry')))"
    )
    env = {"PATH": "/usr/bin:/bin"}  # no OTEL_* from this process's environment
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "Telemetry []"


class Collector:
    """A real OTLP/HTTP receiver on a local port: what each signal's POSTs carried."""

    def __init__(self) -> None:
        self.posts: dict[str, list[bytes]] = {}
        received = self.posts

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                received.setdefault(self.path, []).append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.close()


def test_an_endpoint_alone_exports_spans_and_metrics_over_otlp_http(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
    t = build_telemetry(Settings.load(env={}))
    assert t.on
    with t.request("prodgate.chat", service="letters"), t.stage("infer"):
        t.record_llm_call(
            provider="p", request_model="m", input_tokens=3, output_tokens=4, duration_s=0.1
        )
    t.shutdown()  # flushes the batch processor and the metric reader

    [traces] = collector.posts["/v1/traces"]
    exported = ExportTraceServiceRequest.FromString(traces)
    [resource_spans] = exported.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "prodgate"
    assert resource["deployment.environment.name"] == "test"
    names = {s.name for ss in resource_spans.scope_spans for s in ss.spans}
    assert names == {"prodgate.chat", "infer", "chat m"}
    metrics = ExportMetricsServiceRequest.FromString(collector.posts["/v1/metrics"][-1])
    exported_metrics = {
        m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert exported_metrics == {genai.TOKEN_USAGE, genai.OPERATION_DURATION}


def test_a_service_name_in_the_environment_is_kept(
    collector: Collector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SDK_DISABLED", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "claims-gateway")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{collector.url}/v1/traces")
    t = build_telemetry(Settings.load(env={}))
    with t.request("prodgate.predict", service="claims"):
        pass
    t.shutdown()
    [traces] = collector.posts["/v1/traces"]
    [resource_spans] = ExportTraceServiceRequest.FromString(traces).resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["service.name"] == "claims-gateway"
    assert "/v1/metrics" not in collector.posts  # OTEL_METRICS_EXPORTER=none


def test_an_llm_call_is_a_span_with_the_genai_attributes_and_metrics(
    sqlite_settings: Settings, recorded: Recorded, tmp_path: Path
) -> None:
    from llm_support import MOCK_CONFIG, llm_spec, register_prompt, write_prompt
    from prodgate.llm.mock import running_mock

    async def call(settings: Settings) -> None:
        app = create_app(settings, telemetry=recorded.telemetry)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://g") as client:
                r = await client.post(
                    "/v1/chat/completions",
                    json={"model": "letter", "messages": [{"role": "user", "content": "hi"}]},
                )
                assert r.status_code == 200, r.text

    with running_mock(MOCK_CONFIG) as mock:
        write_spec(sqlite_settings, llm_spec(mock.url))
        register_prompt(sqlite_settings, write_prompt(tmp_path, "v1"))
        asyncio.run(call(sqlite_settings.with_(controller=False, auth="off")))
    spans = {s.name: s for s in recorded.finished()}
    request = spans["prodgate.chat"]
    llm = next(s for s in spans.values() if s.attributes.get("gen_ai.operation.name") == "chat")
    assert llm.attributes["gen_ai.provider.name"] == "primary"
    assert llm.attributes["gen_ai.request.model"] == "small"
    assert llm.attributes["gen_ai.response.model"] == "small"
    assert llm.attributes["gen_ai.usage.input_tokens"] > 0
    assert llm.attributes["gen_ai.usage.output_tokens"] > 0
    assert llm.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert {"limit", "infer"} <= set(spans)
    assert spans["infer"].parent.span_id == request.context.span_id
    tokens = recorded.points("gen_ai.client.token.usage")
    assert {p.attributes["gen_ai.token.type"] for p in tokens} == {"input", "output"}
    assert recorded.points("gen_ai.client.operation.duration")
