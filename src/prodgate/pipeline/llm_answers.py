"""What an LLM call tells its caller and its record, beyond the answer: the failure
when every model failed, the usage in prodgate's and in OpenAI's shape, and the chat
body read."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson

from prodgate.exceptions import (
    ContractViolationError,
    MalformedJSONError,
    ProdgateError,
    ToolNotAllowedError,
    UpstreamFailedError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
    Violation,
)
from prodgate.identity import scopes
from prodgate.identity.keyring import Principal
from prodgate.llm import wire
from prodgate.llm.endpoint import Endpoint
from prodgate.llm.prices import cost_usd
from prodgate.llm.route import Completion
from prodgate.llm.tokens import Usage, estimate_usage
from prodgate.pipeline.exchange import Exchange
from prodgate.spec.llm import ModelRef
from prodgate.telemetry import Telemetry


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


def llm_section(
    c: Completion, mode: str, prompt_model: str, usage: Usage, cost: float, *, stream: bool
) -> dict[str, Any]:
    """The ``llm`` part of a call's record: the version's model and the one that
    answered, every attempt (the fallback path and retries), tokens, cost, time to first
    token, finish reason."""
    answered = f"{c.provider}/{c.model}"
    return {
        "mode": mode,
        "stream": stream,
        "prompt_model": prompt_model,
        "provider": c.provider,
        "model": c.model,
        # Answered by another model than the version's own (a call no model took
        # answered nothing, and fell back to nothing).
        "fallback": bool(c.provider) and answered != prompt_model,
        "attempts": [
            {
                "provider": a.provider,
                "model": a.model,
                "outcome": a.outcome,
                "status": a.status,
                "latency_ms": round(a.latency_ms, 3),
            }
            for a in c.attempts
        ],
        "retries": max(0, len(c.attempts) - 1),
        "usage": usage_dict(usage),
        "cost_usd": cost,
        "ttft_ms": None if c.ttft_ms is None else round(c.ttft_ms, 3),
        "finish_reason": c.finish_reason,
    }


def usage_and_cost(
    endpoint: Endpoint, body: Mapping[str, Any], c: Completion
) -> tuple[Usage, float]:
    """A call's usage (the upstream's, or counted when it gave none) and its cost at
    the price of the model that answered."""
    usage = c.usage
    if usage is None:
        if not c.text and not c.tool_calls and c.error is not None:
            usage = Usage(0, 0, estimated=True)  # nothing was answered
        else:
            usage = estimate_usage(body["messages"], c.text)
    try:
        price = endpoint.price(ModelRef(c.provider, c.model))
    except KeyError:
        return usage, 0.0
    return usage, cost_usd(price, usage)


def check_tools(caller: Principal, tools: list[str]) -> None:
    """The tools stage: every function a request offers the model must be granted by a
    ``tool:NAME`` scope of its key (a key with none may offer any)."""
    if not tools or caller.key_id is None:
        return
    allowed = scopes.services(caller.scopes, "tool")
    if allowed is None:
        return
    refused = sorted(set(tools) - allowed)
    if refused:
        raise ToolNotAllowedError(
            f"key {caller.key_id} may not offer the tool(s) {', '.join(refused)}; "
            f"it may offer {', '.join(sorted(allowed)) or 'none'} (scope tool:NAME)",
            caller.key_id,
        )


def trace_call(
    telemetry: Telemetry,
    endpoint: Endpoint,
    body: Mapping[str, Any],
    c: Completion,
    usage: Usage,
    start_ns: int,
) -> None:
    """The call's GenAI span and metrics (when telemetry is on)."""
    if not telemetry.on:
        return
    error = getattr(c.error, "kind", None) if c.error is not None else None
    telemetry.record_llm_call(
        provider=c.provider,
        request_model=str(endpoint.targets[0].model),
        response_model=c.model,
        duration_s=(time.time_ns() - start_ns) / 1e9,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        finish_reason=c.finish_reason,
        error_type=error,
        start_ns=start_ns,
        max_tokens=endpoint.max_tokens(body),
        temperature=body.get("temperature"),
    )
