"""The review API: reviewers list, claim and decide escalated and sampled inferences.

Every route needs a key with the ``review`` scope (``admin`` grants it too), even when
auth is off: who reviews is the key's identity (an agent's owner for separation of
duties), never a name from the body. The routes call :mod:`prodgate.review.queue` and
:mod:`prodgate.review.items`, in a worker thread since they use the store. Their
OpenAPI entries are declared here, beside them (:func:`openapi_paths`).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prodgate.exceptions import ContractViolationError, UsageError, Violation
from prodgate.identity.actor import Actor
from prodgate.monitor.feedback import MAX_CORRECT
from prodgate.monitor.webhooks import Webhooks
from prodgate.review import explaining, items, queue
from prodgate.server import body as request_body
from prodgate.server.access import Access, Guarded, principal
from prodgate.server.problems import json_response
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store

#: Reviewing: the ``review`` scope, and a key even when auth is off (it names who).
REVIEW = Access(("review",), admin=True)
#: A decision is one small object.
BODY_BYTES = 65_536
ITEMS = "/v1/review/items"
ITEM = ITEMS + "/{id}"
NEXT = "/v1/review/next"
_NOTE_MAX = 10_000


def _store(request: Request) -> Store:
    store: Store = request.app.state.gateway.store
    return store


def _spec(request: Request) -> Spec:
    spec: Spec = request.app.state.spec
    return spec


def _reviewer(request: Request) -> Actor:
    address = request.client.host if request.client else None
    return principal(request).actor(address)


def _item_id(request: Request) -> str:
    item_id: str = request.path_params["id"]
    return item_id


async def _body(request: Request) -> Any:
    """The JSON body; an empty one is an empty object."""
    raw = await request_body.read(request, BODY_BYTES)
    if not raw.strip():
        return {}
    request_body.require_json(request, missing_ok=True)
    return request_body.parse_json(raw)


async def _no_fields(request: Request) -> None:
    """Claim and skip take no fields: an empty body or ``{}``."""
    payload = await _body(request)
    if not isinstance(payload, dict):
        raise ContractViolationError([Violation("", "send no body, or {}")])
    if payload:
        raise ContractViolationError([Violation(f"/{k}", "unknown field") for k in sorted(payload)])


def _limit(raw: str | None) -> int:
    if raw is None:
        return 50
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 6 else 0
    if not 1 <= number <= items.MAX_LIMIT:
        raise UsageError(f"limit {raw!r}: must be a whole number from 1 to {items.MAX_LIMIT}")
    return number


def _text(query: Any, name: str) -> str | None:
    value = query.get(name)
    if value is not None and (not value or "\x00" in value):
        raise UsageError(f"{name}: must not be empty")
    return str(value) if value is not None else None


async def list_items(request: Request) -> Response:
    query = request.query_params
    unknown = sorted(set(query) - {"service", "state", "reason", "cohort", "limit"})
    if unknown:
        raise UsageError(f"unknown query parameter(s): {', '.join(unknown)}")
    service = _text(query, "service")
    if service is not None:
        _spec(request).service(service)  # 404 for one the spec does not declare
    found = await asyncio.to_thread(
        items.list_items,
        _store(request),
        service,
        state=_text(query, "state"),
        reason=_text(query, "reason"),
        cohort=_text(query, "cohort"),
        limit=_limit(query.get("limit")),
    )
    return json_response({"items": found})


def _models(request: Request) -> explaining.Models:
    """The versions loaded to explain items on demand: the server's explainer's own."""
    models: explaining.Models | None = getattr(request.app.state, "review_models", None)
    if models is None:
        models = request.app.state.review_models = explaining.Models(
            _store(request), _spec(request)
        )
    return models


def _shown(request: Request, item: dict[str, Any] | None) -> dict[str, Any] | None:
    """An item as a reviewer sees it: with its explanation, computed now if the
    server's explainer has not come to it yet."""
    if item is None:
        return None
    return explaining.explained(_store(request), _spec(request), item, _models(request))


async def get_item(request: Request) -> Response:
    store = _store(request)

    def read() -> dict[str, Any] | None:
        return _shown(request, items.show(store, _item_id(request)))

    return json_response(await asyncio.to_thread(read))


async def claim(request: Request) -> Response:
    await _no_fields(request)
    store, spec = _store(request), _spec(request)

    def take() -> dict[str, Any] | None:
        return _shown(request, queue.claim(store, spec, _item_id(request), _reviewer(request)))

    return json_response(await asyncio.to_thread(take))


async def decision(request: Request) -> Response:
    payload = await _body(request)
    loop = asyncio.get_running_loop()
    hooks: Webhooks | None = getattr(request.app.state, "review_webhooks", None)

    def notify(service: ServiceSpec, event: dict[str, Any]) -> str | None:
        """Queue the event for delivery with retries, from the store's thread into
        the server's loop: the reviewer's answer never waits for a receiver."""
        url = service.review.webhook
        if not url or hooks is None:
            return None
        loop.call_soon_threadsafe(hooks.send, event, (url,))
        return "queued"

    result = await asyncio.to_thread(
        functools.partial(
            queue.decide,
            _store(request),
            _spec(request),
            _item_id(request),
            _reviewer(request),
            payload,
            notify=notify,
        )
    )
    return json_response(result)


async def skip(request: Request) -> Response:
    await _no_fields(request)
    result = await asyncio.to_thread(
        queue.skip, _store(request), _item_id(request), _reviewer(request)
    )
    return json_response(result)


async def next_item(request: Request) -> Response:
    payload = await _body(request)
    if not isinstance(payload, dict):
        raise ContractViolationError([Violation("", 'send {"service": NAME}')])
    problems = [Violation(f"/{k}", "unknown field") for k in sorted(set(payload) - {"service"})]
    name = payload.get("service")
    if not isinstance(name, str):
        problems.append(Violation("/service", "the service to review: its name"))
    if problems:
        raise ContractViolationError(problems)
    store, spec = _store(request), _spec(request)
    service = spec.service(str(name))

    def take() -> dict[str, Any] | None:
        return _shown(request, queue.claim_next(store, service, _reviewer(request)))

    return json_response({"item": await asyncio.to_thread(take)})


def routes() -> list[Guarded]:
    """The review routes, each guarded by the ``review`` scope."""
    return [
        Guarded(ITEMS, list_items, methods=["GET"], access=REVIEW),
        Guarded(ITEM, get_item, methods=["GET"], access=REVIEW),
        Guarded(ITEM + "/claim", claim, methods=["POST"], access=REVIEW),
        Guarded(ITEM + "/decision", decision, methods=["POST"], access=REVIEW),
        Guarded(ITEM + "/skip", skip, methods=["POST"], access=REVIEW),
        Guarded(NEXT, next_item, methods=["POST"], access=REVIEW),
    ]


# -- the OpenAPI document ------------------------------------------------------------

_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[^\\u0000]+$"},
    "example": "0b4570fe82b545c29c5e4bb3d5bb5a21",
}
_TEXT = {"type": "string", "minLength": 1, "pattern": "^[^\\u0000]+$"}
_EMPTY = {"type": "object", "additionalProperties": False, "properties": {}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _op(
    summary: str,
    operation: str,
    problems: Any,
    answer: Any,
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    example: Any = None,
    required: bool = False,
    codes: tuple[int, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "operationId": operation,
        "tags": ["review"],
        "parameters": params or [],
        "responses": {"200": answer("done"), **problems(*codes)},
    }
    if body is not None:
        op["requestBody"] = {
            "required": required,
            "content": {
                "application/json": {"schema": body, "examples": {"example": {"value": example}}}
            },
        }
    return op


def openapi_paths(spec: Spec, problems: Any, answer: Any) -> dict[str, Any]:
    """The review routes' OpenAPI entries; *problems* and *answer* are the document's
    own builders of problem and JSON responses."""
    names = list(spec.services)
    label = next((s.labels[0] for s in spec.services.values() if s.labels), "yes")
    decision_body = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "label": {"description": "the true label (classifier, or an LLM classification)"},
            "value": {"type": "number", "description": "the true value (regressor)"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "correct": {"type": "string", "minLength": 1, "maxLength": MAX_CORRECT},
            "note": {
                "type": ["string", "null"],
                "maxLength": _NOTE_MAX,
                "pattern": "^[^\\u0000]*$",
            },
        },
        "anyOf": [{"required": [k]} for k in ("label", "value", "score", "correct")],
    }
    write = (400, 404, 409, 413, 415, 422, 503)
    return {
        ITEMS: {
            "get": _op(
                "Review items, oldest first (pending ones unless a state is given)",
                "review_items",
                problems,
                answer,
                params=[
                    _query("service", {"type": "string", "enum": names}, "one service's"),
                    _query("state", {"enum": list(items.STATES)}, "only items in this state"),
                    _query("reason", _TEXT, "e.g. low_confidence, guard, rule:NAME, sampled"),
                    _query("cohort", _TEXT, "only items of this cohort"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": items.MAX_LIMIT},
                        "at most this many (default 50)",
                    ),
                ],
                codes=(400, 404, 503),
            )
        },
        ITEM: {
            "get": _op(
                "One item: input, answer, probabilities, reasons, explanation, decisions",
                "review_item",
                problems,
                answer,
                params=[_ID],
                codes=(404, 503),
            )
        },
        ITEM + "/claim": {
            "post": _op(
                "Claim an item under a lease",
                "review_claim",
                problems,
                answer,
                params=[_ID],
                body=_EMPTY,
                example={},
                codes=write,
            )
        },
        ITEM + "/decision": {
            "post": _op(
                "Decide an item: the true label (or value), and a note",
                "review_decide",
                problems,
                answer,
                params=[_ID],
                body=decision_body,
                example={"label": label, "note": "the documents show a second claim"},
                required=True,
                codes=write,
            )
        },
        ITEM + "/skip": {
            "post": _op(
                "Pass on an item: its lease is released and next skips it for you",
                "review_skip",
                problems,
                answer,
                params=[_ID],
                body=_EMPTY,
                example={},
                codes=write,
            )
        },
        NEXT: {
            "post": _op(
                "Claim the oldest item of a service you may judge (item null: none)",
                "review_next",
                problems,
                answer,
                body={
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["service"],
                    "properties": {"service": {"type": "string", "enum": names}},
                },
                example={"service": names[0] if names else "claims"},
                required=True,
                codes=(400, 404, 413, 415, 422, 503),
            )
        },
    }
