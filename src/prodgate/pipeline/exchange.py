"""One predict request as it moves through the stages, and the answer it gets.

Every stage reads and fills the same :class:`Exchange`, so a refusal at any point
records exactly what was known by then (the raw body, the parsed payload, the version
chosen) without each stage passing it along by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prodgate.identity.keyring import ANONYMOUS_PRINCIPAL, Principal
from prodgate.limits import Lease


@dataclass(slots=True)
class Exchange:
    """A predict request: what arrived, and what the stages have learned of it."""

    service: str
    body: bytes
    started: float  # time.perf_counter() when the request arrived
    routing_key: str | None = None  # the X-Routing-Key header; the body's key wins
    parsed: bool = False  # whether ``payload`` holds the body's JSON
    payload: Any = None
    rows: Sequence[Mapping[str, Any]] = ()  # set by the parse stage
    single: bool = True  # ``{"inputs": row}`` rather than ``{"instances": [...]}``
    version: int | None = None  # the version chosen by the route stage
    caller: Principal = ANONYMOUS_PRINCIPAL  # who sent it (the server's access check)
    lease: Lease | None = None  # concurrency slots the limit stage took, given back after
    limit_headers: dict[str, str] | None = None  # RateLimit fields of an admitted request
    chat: Any = None  # an LLM chat request (prodgate.llm.wire.ChatRequest), once parsed
    #: The payload as records may keep it once the input guard ran (PII and secrets
    #: replaced), and the guard's verdict on it.
    masked: Any = None
    guard: Any = None  # prodgate.guard.policy.Verdict of the input guard
    #: What the enrich stage added: per row, each view's record (entity, status, as of,
    #: defaults) and the features' values.
    features: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None


@dataclass(slots=True)
class Outcome:
    """What the server sends back: a status, a JSON body and any extra headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] | None = None
    #: Server-Sent Events to send instead of *body* (a streamed LLM answer).
    stream: AsyncIterator[bytes] | None = None

    @property
    def ok(self) -> bool:
        return self.status < 400
