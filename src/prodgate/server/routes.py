"""The gateway's HTTP routes. Thin: parse, call the gateway, answer."""

from __future__ import annotations

import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from prodgate.exceptions import (
    MalformedJSONError,
    PayloadTooLargeError,
    ProdgateError,
    UnavailableError,
    UnsupportedMediaTypeError,
)
from prodgate.pipeline.gateway import Gateway
from prodgate.server import openapi as openapi_doc
from prodgate.server.problems import json_response, problem_response


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
    return json_response(openapi_doc.build(request.app.state.spec))


async def list_services(request: Request) -> Response:
    return json_response({"services": _gateway(request).describe_all()})


async def get_service(request: Request) -> Response:
    return json_response(_gateway(request).describe(request.path_params["service"]))


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type", "")
    if not _is_json(content_type):
        raise UnsupportedMediaTypeError(
            f"send application/json, not {content_type or 'no content type'}"
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"the body has {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"the body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def predict(request: Request) -> Response:
    started = time.perf_counter()
    gateway = _gateway(request)
    name = request.path_params["service"]
    body = b""
    try:
        body = await _read_body(request, gateway.settings.max_body_bytes)
        _require_json(request)
    except ClientDisconnect:
        return Response(status_code=400)
    except ProdgateError as exc:
        outcome = await gateway.refuse(name, exc, started, body)
    else:
        outcome = await gateway.predict(name, body, started, request.headers.get("x-routing-key"))
    if not outcome.ok:
        outcome.body.setdefault("instance", request.url.path)
        return problem_response(outcome.body, outcome.headers)
    return json_response(outcome.body, outcome.status, outcome.headers)


async def post_feedback(request: Request) -> Response:
    """The true label of a past decision: feeds canary checks and production metrics."""
    gateway = _gateway(request)
    body = await _read_body(request, 65_536)
    _require_json(request)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not JSON: {exc}") from None
    stored = await gateway.feedback(request.path_params["id"], payload)
    return json_response(stored, 201)


async def get_inference(request: Request) -> Response:
    return json_response(await _gateway(request).inference(request.path_params["id"]))
