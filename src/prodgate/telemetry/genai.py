"""The names OpenTelemetry's GenAI semantic conventions give an LLM call, spelled once.

The conventions are still in development (and moved out of the ``semantic-conventions``
repository, so the constants in ``opentelemetry-semantic-conventions`` are deprecated);
these are the names of the version prodgate follows, so dashboards built on them keep
working when the package's constants move or go. Bucket boundaries are the conventions'
advice for the two client metrics.
"""

from __future__ import annotations

from typing import Final

OPERATION: Final = "gen_ai.operation.name"
PROVIDER: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
TOKEN_TYPE: Final = "gen_ai.token.type"  # noqa: S105 (a name, not a secret)
ERROR_TYPE: Final = "error.type"

CHAT: Final = "chat"
INPUT: Final = "input"
OUTPUT: Final = "output"

TOKEN_USAGE: Final = "gen_ai.client.token.usage"  # noqa: S105 (a name, not a secret)
OPERATION_DURATION: Final = "gen_ai.client.operation.duration"

#: ``gen_ai.client.token.usage``: powers of 4 from 1 to 4**13 tokens.
TOKEN_BUCKETS: Final = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
#: ``gen_ai.client.operation.duration``: doublings from 10 ms to 82 s.
DURATION_BUCKETS: Final = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
