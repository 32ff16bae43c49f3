"""RFC 9457 problem+json responses, and the handlers that turn every error into one."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from prodgate.exceptions import (
    PROBLEM_BASE,
    AuthError,
    KeyRejectedError,
    ProdgateError,
    RateLimitedError,
    ScopeError,
    StoreError,
)
from prodgate.server.body import ACCEPT_ENCODING

logger = logging.getLogger("prodgate.server")

PROBLEM_JSON = "application/problem+json"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(body),
        status_code=int(body["status"]),
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def problem_headers(status: int, headers: dict[str, str] | None = None) -> dict[str, str] | None:
    """The headers of a problem answer: *headers*, and what its status calls for."""
    if status == 415:
        # A 415 may be about the body's content coding: say which codings are taken
        # (RFC 7694), whichever it was about.
        return {**(headers or {}), "Accept-Encoding": ACCEPT_ENCODING}
    return headers


def challenge(exc: AuthError) -> str:
    """The ``WWW-Authenticate`` value of a 401 or 403 (RFC 6750)."""
    if isinstance(exc, ScopeError):
        return 'Bearer realm="prodgate", error="insufficient_scope"'
    if isinstance(exc, KeyRejectedError) and exc.reason in ("unknown", "revoked", "expired"):
        return 'Bearer realm="prodgate", error="invalid_token"'
    return 'Bearer realm="prodgate"'


def error_response(exc: ProdgateError, request: Request | None = None) -> Response:
    headers: dict[str, str] = {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    if isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = challenge(exc)
    if isinstance(exc, RateLimitedError):
        headers.update(exc.headers)
    body = exc.problem(request.url.path if request else None)
    if isinstance(exc, StoreError):
        # The store's address and its driver's words are the operator's, not every
        # caller's: the log keeps them.
        logger.warning("%s", exc.detail)
        body["detail"] = "the store is unavailable; the server's log says why"
    return problem_response(body, problem_headers(exc.status, headers) or None)


_HTTP_TITLES = {404: ("not-found", "Not found"), 405: ("method-not-allowed", "Method not allowed")}


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    slug, title = _HTTP_TITLES.get(exc.status_code, ("http", "HTTP error"))
    detail = exc.detail
    if exc.status_code == 404:
        detail = f"no route {request.method} {request.url.path}; see /openapi.json"
    body = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": exc.status_code,
        "detail": detail,
        "instance": request.url.path,
    }
    return problem_response(body, dict(exc.headers) if exc.headers else None)


async def on_prodgate_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProdgateError)
    return error_response(exc, request)


async def on_client_disconnect(request: Request, exc: Exception) -> Response:
    # The caller went away before its body arrived: nobody reads this answer, and it
    # is not the server's failure.
    return Response(status_code=400)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    body = {
        "type": PROBLEM_BASE + "internal",
        "title": "Internal error",
        "status": 500,
        "detail": "an unexpected error occurred; it was logged on the server",
        "instance": request.url.path,
    }
    return problem_response(body)
