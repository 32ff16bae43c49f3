"""Whether telemetry is on, and the OpenTelemetry SDK set up by the standard variables.

On when the setting ``otel`` (``PRODGATE_OTEL``) says ``on``, or, when it is unset,
when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``): whoever points prodgate at a collector
wants its spans. ``OTEL_SDK_DISABLED=true`` wins over both, as the specification
says it must.

Everything else is the SDK's own reading of the ``OTEL_*`` variables, not a copy of
it here: the exporter's endpoint, headers, timeout and compression
(``OTEL_EXPORTER_OTLP_*``), the sampler (``OTEL_TRACES_SAMPLER``, ``_ARG``), the batch
processor (``OTEL_BSP_*``), the metric export interval (``OTEL_METRIC_EXPORT_INTERVAL``)
and the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``; the service is
``prodgate`` when neither names one). prodgate exports OTLP over HTTP (protobuf) only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from prodgate import __version__
from prodgate.settings import Settings
from prodgate.telemetry.noop import Telemetry

if TYPE_CHECKING:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

logger = logging.getLogger("prodgate.telemetry")

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
SERVICE_NAME = "prodgate"


def wanted(settings: Settings, env: Mapping[str, str]) -> bool:
    """Whether telemetry is on for *settings* in environment *env* (see the module)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if settings.otel:
        return settings.otel == "on"
    return any(env.get(name, "").strip() for name in ENDPOINTS)


def build_telemetry(settings: Settings) -> Telemetry:
    """The gateway's telemetry: off (free), or exporting over OTLP/HTTP as the
    ``OTEL_*`` variables of this process say. Call its ``shutdown`` (or ``close``)
    when the gateway stops, so what is buffered is exported."""
    env = os.environ
    if not wanted(settings, env):
        return Telemetry()
    from prodgate.telemetry.sdk import RecordingTelemetry

    tracer_provider, meter_provider = _providers(env)
    where = next((env[n] for n in ENDPOINTS if env.get(n, "").strip()), "localhost:4318")
    signals = [name for name, p in (("traces", tracer_provider), ("metrics", meter_provider)) if p]
    logger.info(
        "OpenTelemetry on: %s over OTLP/HTTP to %s", " and ".join(signals) or "nothing", where
    )
    return RecordingTelemetry(tracer_provider, meter_provider)


def _providers(env: Mapping[str, str]) -> tuple[TracerProvider | None, MeterProvider | None]:
    """A tracer provider with a batch span processor and a meter provider with a
    periodic reader, both exporting OTLP/HTTP; None for a signal whose exporter is
    ``none``."""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({})
    named = str(resource.attributes.get("service.name", ""))
    if named.startswith("unknown_service"):  # the SDK's default: no variable named one
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    if "service.version" not in resource.attributes:
        resource = resource.merge(Resource({"service.version": __version__}))
    _warn_unsupported(env)
    tracer_provider = meter_provider = None
    # shutdown_on_exit=False: no atexit hook holding every provider a test process built;
    # the gateway shuts its own down when it stops.
    if _exporting(env, "OTEL_TRACES_EXPORTER"):
        tracer_provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _exporting(env, "OTEL_METRICS_EXPORTER"):
        reader = PeriodicExportingMetricReader(OTLPMetricExporter())
        meter_provider = MeterProvider([reader], resource=resource, shutdown_on_exit=False)
    return tracer_provider, meter_provider


def _exporting(env: Mapping[str, str], variable: str) -> bool:
    """Whether the signal of *variable* (``OTEL_TRACES_EXPORTER``...) is exported:
    not when it says ``none``."""
    return env.get(variable, "otlp").strip().lower() != "none"


def _warn_unsupported(env: Mapping[str, str]) -> None:
    """Say once, at start, where the variables ask for what prodgate does not do."""
    for variable in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        value = env.get(variable, "otlp").strip().lower()
        if value not in ("otlp", "none", ""):
            logger.warning(
                "%s=%s: prodgate exports otlp (or none); exporting otlp", variable, value
            )
    for variable in (
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    ):
        value = env.get(variable, "").strip()
        if value and value != "http/protobuf":
            logger.warning("%s=%s: prodgate exports http/protobuf only", variable, value)
