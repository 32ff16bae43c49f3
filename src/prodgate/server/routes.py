"""The gateway's HTTP routes. Thin: parse, call the gateway, answer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from prodgate.audit import log
from prodgate.exceptions import (
    MalformedJSONError,
    PayloadTooLargeError,
    ProdgateError,
    UnavailableError,
    UnknownInferenceError,
    UnsupportedMediaTypeError,
)
from prodgate.monitor import feedback
from prodgate.pipeline.gateway import Gateway
from prodgate.server import openapi as openapi_doc
from prodgate.server.problems import json_response, problem_response


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def healthz(request: Request) -> Response:
    return json_response({"status": "alive"})


async def readyz(request: Request) -> Response:
    gateway = _gateway(request)
    store_ok = await asyncio.to_thread(gateway.store.ping)
    problems: list[str] = []
    if not gateway.started:
        problems.append("models are still loading")
    problems.extend(f"{name}: {why}" for name, why in gateway.load_errors.items())
    if not store_ok:
        problems.append("the store does not answer")
    spooled = gateway.recorder.spooled
    if spooled:
        problems.append(f"{spooled} audit records wait in the local journal for the store")
    if problems:
        return problem_response(UnavailableError("; ".join(problems)).problem("/readyz"))
    return json_response(
        {
            "status": "ready",
            "services": {
                n: state.production.version.number
                for n, state in gateway.fleet.services.items()
                if state.production is not None
            },
        }
    )


async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return json_response(openapi_doc.build(request.app.state.spec))


def _service_view(gateway: Gateway, name: str, full: bool) -> dict[str, Any]:
    service = gateway.service(name)
    state = gateway.fleet.services[name]
    live = state.production
    split = state.split
    view: dict[str, Any] = {
        "name": name,
        "description": service.description,
        "owner": {"name": service.owner.name, "contact": service.owner.contact},
        "kind": service.kind,
        "labels": list(service.labels) if service.labels else None,
        "escalation": {"confidence_below": service.escalation_below},
        "deployed_version": live.version.number if live else None,
        "canary": {"version": split.canary, "weight": split.canary_weight}
        if split and split.canary
        else None,
        "shadow_version": split.shadow if split else None,
        "disabled": state.disabled,
        "predict": f"/v1/services/{name}/predict",
    }
    if state.disabled:
        view["disabled_reason"] = state.disabled_reason
    if state.error:
        view["error"] = state.error
    if full:
        view["contract"] = service.contract
        view["example"] = {"inputs": gateway.examples[name]}
        if live:
            # Where the registrant's file was is theirs, not every caller's to see.
            view["version"] = {k: v for k, v in live.version.as_dict().items() if k != "source"}
    return view


async def list_services(request: Request) -> Response:
    gateway = _gateway(request)
    return json_response(
        {"services": [_service_view(gateway, n, False) for n in gateway.spec.services]}
    )


async def get_service(request: Request) -> Response:
    return json_response(_service_view(_gateway(request), request.path_params["service"], True))


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
        outcome = await gateway.reject(name, exc, started, raw=body)
    else:
        outcome = await gateway.predict(name, body, started, request.headers.get("x-routing-key"))
    if outcome.status >= 400:
        outcome.body.setdefault("instance", request.url.path)
        return problem_response(outcome.body, outcome.headers or None)
    return json_response(outcome.body, outcome.status, outcome.headers or None)


async def post_feedback(request: Request) -> Response:
    """The true label of a past decision: feeds canary checks and production metrics."""
    gateway = _gateway(request)
    body = await _read_body(request, 65_536)
    _require_json(request)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not JSON: {exc}") from None
    stored = await asyncio.to_thread(
        feedback.submit, gateway.store, gateway.spec, request.path_params["id"], payload
    )
    return json_response(stored, 201)


async def get_inference(request: Request) -> Response:
    gateway = _gateway(request)
    record_id = request.path_params["id"]

    def read() -> dict[str, Any] | None:
        with gateway.store.read() as conn:
            return log.get(conn, record_id)

    record = await asyncio.to_thread(read) if len(record_id) <= 64 else None
    if record is None:
        raise UnknownInferenceError(f"no inference with id {record_id!r}")
    return json_response(record)
