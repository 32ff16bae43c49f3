"""What an LLM call tells its caller and its record, beyond the answer: the failure
when every model failed, the usage in prodgate's and in OpenAI's shape, and the chat
body read."""

from __future__ import annotations

from typing import Any

import orjson

from prodgate.exceptions import (
    ContractViolationError,
    MalformedJSONError,
    ProdgateError,
    UpstreamFailedError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
    Violation,
)
from prodgate.llm import wire
from prodgate.llm.route import Completion
from prodgate.llm.tokens import Usage
from prodgate.pipeline.exchange import Exchange


def failure_of(c: Completion) -> ProdgateError:
    """The error a caller gets when every model of the route failed."""
    error = c.error
    tried = ", ".join(f"{a.provider}/{a.model}: {a.outcome}" for a in c.attempts) or "nothing"
    if c.attempts and all(a.outcome == "breaker_open" for a in c.attempts):
        return UpstreamUnavailableError(
            f"every model of the route is unavailable (circuit open): {tried}", retry_after=5
        )
    if error is not None and error.kind == "client" and not error.fallback:
        # The request itself is wrong (a 400, 413, 422 from the provider): the caller's
        # to change. A target that is misconfigured (its key, its model) is ours: 502.
        return UpstreamRejectedError(f"the provider refused the request: {error.message}")
    return UpstreamFailedError(f"every model of the route failed ({tried})")


def retry_after(exc: ProdgateError) -> dict[str, str] | None:
    retry = getattr(exc, "retry_after", None)
    return {"Retry-After": str(retry)} if retry else None


def usage_dict(u: Usage) -> dict[str, Any]:
    return {
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "cached_tokens": u.cached_tokens,
        "estimated": u.estimated,
    }


def openai_usage(u: Usage, given: Any) -> dict[str, Any]:
    """The usage object a chat answer carries: the provider's when it gave one."""
    if isinstance(given, dict) and not u.estimated:
        return given
    usage: dict[str, Any] = {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
    }
    if u.cached_tokens:
        usage["prompt_tokens_details"] = {"cached_tokens": u.cached_tokens}
    return usage


def parse_chat_body(ex: Exchange) -> wire.ChatRequest:
    """The chat stage of parsing: JSON, then OpenAI's shape (every violation listed)."""
    if not ex.parsed:
        try:
            ex.payload = orjson.loads(ex.body)
        except orjson.JSONDecodeError as exc:
            raise MalformedJSONError(f"the body is not JSON: {exc}") from None
        ex.parsed = True
    payload = ex.payload
    if type(payload) is not dict:
        raise ContractViolationError([Violation("", "the body must be a chat request object")])
    chat = wire.parse_chat(payload)
    ex.chat = chat
    ex.service = chat.service
    if ex.routing_key is None and chat.user:
        ex.routing_key = chat.user
    return chat
