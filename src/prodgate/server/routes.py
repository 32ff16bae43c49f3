"""The gateway's HTTP routes. Thin: parse, call the gateway, answer."""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from prodgate.exceptions import ProdgateError, UnavailableError, UnknownInferenceError
from prodgate.pipeline.gateway import Gateway
from prodgate.server import body as request_body
from prodgate.server.access import principal
from prodgate.server.problems import json_response, problem_headers, problem_response

#: Feedback is one small object; it needs none of the room a batch of rows does.
FEEDBACK_BYTES = 65_536


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def healthz(request: Request) -> Response:
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    readiness = await _gateway(request).readiness()
    if not readiness.ready:
        problem = UnavailableError("; ".join(readiness.problems)).problem("/readyz")
        if readiness.warnings:
            problem["warnings"] = readiness.warnings
        return problem_response(problem)
    body: dict[str, Any] = {"status": "ready", "services": readiness.services}
    if readiness.warnings:
        body["warnings"] = readiness.warnings
    return json_response(body)


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    document: bytes = request.app.state.openapi  # built once, by create_app
    return Response(document, media_type="application/json")


async def list_services(request: Request) -> Response:
    return json_response({"services": _gateway(request).describe_all()})


async def get_service(request: Request) -> Response:
    return json_response(_gateway(request).describe(request.path_params["service"]))


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    gateway = _gateway(request)
    name = request.path_params["service"]
    body = b""
    try:
        body = await request_body.read(request, gateway.settings.max_body_bytes)
        request_body.require_json(request)
    except ClientDisconnect:
        return Response(status_code=400)
    except ProdgateError as exc:
        outcome = await gateway.refuse(name, exc, started, body, principal(request))
    else:
        outcome = await gateway.predict(
            name, body, started, request.headers.get("x-routing-key"), principal(request)
        )
    if not outcome.ok:
        outcome.body.setdefault("instance", request.url.path)
        return problem_response(outcome.body, problem_headers(outcome.status, outcome.headers))
    return json_response(outcome.body, outcome.status, outcome.headers)


#: Where the chat route finds a body the access check already read (to learn the service).
CHAT_BODY = "prodgate.chat_body"


async def chat_body(request: Request) -> bytes:
    """The body of a chat request, read once whoever asks first."""
    cached: bytes | None = request.scope.get(CHAT_BODY)
    if cached is None:
        cached = await request_body.read(request, _gateway(request).settings.max_body_bytes)
        request.scope[CHAT_BODY] = cached
    return cached


#: Where the chat route finds the body's JSON, when the access check parsed it already.
CHAT_PAYLOAD = "prodgate.chat_payload"


async def chat_service(request: Request) -> str:
    """The LLM service a chat request names (its ``model``, before any ``@version``):
    what its ``predict`` scope is checked on. The parsed body is kept for the route."""
    raw = await chat_body(request)
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return ""
    request.scope[CHAT_PAYLOAD] = payload
    model = payload.get("model") if isinstance(payload, dict) else None
    return model.partition("@")[0] if isinstance(model, str) else ""


async def chat_completions(request: Request) -> Response:
    """``POST /v1/chat/completions``, OpenAI-compatible; ``model`` names the service."""
    started = time.perf_counter()
    gateway = _gateway(request)
    body = b""
    try:
        body = await chat_body(request)
        request_body.require_json(request)
    except ClientDisconnect:
        return Response(status_code=400)
    except ProdgateError as exc:
        outcome = await gateway.refuse("", exc, started, body, principal(request))
    else:
        outcome = await gateway.chat(
            body,
            started,
            request.headers.get("x-routing-key"),
            principal(request),
            request.scope.get(CHAT_PAYLOAD),
        )
    if outcome.stream is not None:
        return StreamingResponse(
            outcome.stream, media_type="text/event-stream", headers=outcome.headers
        )
    if not outcome.ok:
        outcome.body.setdefault("instance", request.url.path)
        return problem_response(outcome.body, problem_headers(outcome.status, outcome.headers))
    return json_response(outcome.body, outcome.status, outcome.headers)


def _record_id(request: Request) -> str:
    """The ``{id}`` of a record; one that no record can have (NUL, which PostgreSQL
    text refuses) is a 404 here rather than the store's 503."""
    record_id: str = request.path_params["id"]
    if "\x00" in record_id:
        raise UnknownInferenceError(f"no inference with id {record_id!r}")
    return record_id


async def post_feedback(request: Request) -> Response:
    """The true label of a past decision: feeds canary checks and production metrics."""
    gateway = _gateway(request)
    record_id = _record_id(request)
    raw = await request_body.read(request, FEEDBACK_BYTES)
    request_body.require_json(request)
    payload = request_body.parse_json(raw)
    stored = await gateway.feedback(record_id, payload)
    return json_response(stored, 201)


#: A text to check is at most 100,000 characters: room for that in UTF-8 and JSON.
GUARD_BYTES = 1_048_576


async def post_guard(request: Request) -> Response:
    """One text through a service's guard rails: the verdict, the findings, the text
    redacted. For applications that do not send their calls through prodgate."""
    raw = await request_body.read(request, GUARD_BYTES)
    request_body.require_json(request)
    payload = request_body.parse_json(raw)
    verdict = await _gateway(request).guard(
        request.path_params["service"], payload, principal(request)
    )
    return json_response(verdict)


async def inference_service(request: Request) -> str:
    """The service a feedback's inference belongs to: what its scope is checked on."""
    record = await _gateway(request).inference(_record_id(request))
    return str(record.get("service") or "")


async def get_inference(request: Request) -> Response:
    return json_response(await _gateway(request).inference(_record_id(request)))
