"""OpenTelemetry for the request paths: a span per request with a child per stage, and
for each LLM call a span and the GenAI metrics; off by default, and then free.

Build one per gateway with :func:`build_telemetry` (the ``otel`` setting and the
standard ``OTEL_*`` variables decide), hand it to the request paths, shut it down
when the gateway stops. Tests give :class:`~prodgate.telemetry.sdk.RecordingTelemetry`
providers of their own (the SDK's in-memory exporter and reader). See docs/telemetry.md.
"""

from prodgate.telemetry.config import build_telemetry, wanted
from prodgate.telemetry.noop import Attribute, Attributes, LlmCall, SpanScope, Telemetry

__all__ = [
    "Attribute",
    "Attributes",
    "LlmCall",
    "SpanScope",
    "Telemetry",
    "build_telemetry",
    "wanted",
]
