"""OpenAI's chat wire format, as the gateway reads and writes it.

A ``POST /v1/chat/completions`` body is checked against a compiled JSON Schema (every
violation listed, as for a service's contract); ``model`` names the service, or
``service@version`` for one approved version. What the gateway does not govern
(temperature, tools, response_format, ...) passes through to the provider; what it
does (``model``, ``stream``, ``stream_options``, ``n``) it sets itself.

Streaming answers are Server-Sent Events in OpenAI's chunk format ending with
``data: [DONE]``; a failure after chunks were sent ends the stream with an error event
``data: {"error": {...}}``, which the official SDK raises as an ``APIError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema_rs
import orjson

from prodgate.exceptions import ContractViolationError, ProdgateError, Violation

_ROLES = ["system", "developer", "user", "assistant", "tool", "function"]
CHAT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {"type": "string", "minLength": 1, "maxLength": 200},
        "messages": {
            "type": "array",
            "minItems": 1,
            "maxItems": 10_000,
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": _ROLES},
                    "content": {"type": ["string", "array", "null"]},
                    "name": {"type": "string"},
                },
            },
        },
        "stream": {"type": ["boolean", "null"]},
        "stream_options": {
            "type": ["object", "null"],
            "properties": {"include_usage": {"type": "boolean"}},
        },
        "n": {"type": ["integer", "null"], "const": 1},
        "max_tokens": {"type": ["integer", "null"], "minimum": 1},
        "max_completion_tokens": {"type": ["integer", "null"], "minimum": 1},
        "user": {"type": ["string", "null"], "maxLength": 256},
        "tools": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"const": "function"},
                    "function": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,64}$"}
                        },
                    },
                },
            },
        },
    },
}
_CHAT = jsonschema_rs.validator_for(CHAT_SCHEMA)
#: Fields the gateway decides; the rest of a chat body goes to the provider as it is.
GOVERNED = frozenset({"model", "messages", "stream", "stream_options", "n", "user"})

DONE = b"data: [DONE]\n\n"


@dataclass(slots=True)
class ChatRequest:
    """A chat body, checked: the service (and pinned version) it names, and the rest."""

    service: str
    version: int | None
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    params: dict[str, Any] = field(default_factory=dict)  # passed to the provider
    tools: list[str] = field(default_factory=list)  # names of the offered functions
    user: str | None = None


def parse_model(model: str) -> tuple[str, int | None]:
    """``service`` or ``service@version``; a version that is not a number is a violation."""
    name, sep, number = model.partition("@")
    if not sep:
        return name, None
    if not number.isdigit() or int(number) < 1:
        raise ContractViolationError(
            [Violation("/model", "name a service, or service@VERSION with a version number")]
        )
    return name, int(number)


def parse_chat(payload: Any) -> ChatRequest:
    """*payload* (the parsed JSON body) as a :class:`ChatRequest`; every violation listed."""
    errors = [
        Violation("/" + "/".join(map(str, e.instance_path)), _short(e.message))
        for e in _CHAT.iter_errors(payload)
    ]
    if errors:
        raise ContractViolationError(errors)
    service, version = parse_model(payload["model"])
    options = payload.get("stream_options") or {}
    tools = [t["function"]["name"] for t in payload.get("tools") or () if "function" in t]
    return ChatRequest(
        service=service,
        version=version,
        messages=payload["messages"],
        stream=bool(payload.get("stream")),
        include_usage=bool(options.get("include_usage")),
        params={k: v for k, v in payload.items() if k not in GOVERNED and v is not None},
        tools=tools,
        user=payload.get("user"),
    )


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."


def sse(obj: Mapping[str, Any]) -> bytes:
    """One Server-Sent Event carrying *obj* as JSON."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def error_event(exc: ProdgateError, record_id: str | None = None) -> bytes:
    """The event that ends a stream which failed after its first chunk, in OpenAI's
    error shape (``{"error": {"message", "type", "code"}}``)."""
    error: dict[str, Any] = {"message": exc.detail, "type": exc.slug, "code": exc.status}
    if record_id:
        error["inference_id"] = record_id
    return sse({"error": error})


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""
