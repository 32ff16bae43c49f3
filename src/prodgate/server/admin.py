"""The admin HTTP API: governance over HTTP, for the dashboard and for automation.

Every route here needs the admin bearer token (see :mod:`prodgate.server.auth`) and
calls the same library functions as the CLI, in a worker thread since they use the
store. Who acts comes from ``X-Prodgate-Actor`` (default ``admin-api``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prodgate.audit.history import history
from prodgate.evaluation import evaluate_version
from prodgate.exceptions import (
    ContractViolationError,
    NotFoundError,
    Violation,
)
from prodgate.monitor.production import parse_window, production_metrics
from prodgate.registry import approvals, versions
from prodgate.registry.versions import MAX_VERSION
from prodgate.rollout import commands as rollout_commands
from prodgate.rollout import split as deployments
from prodgate.rollout.status import status as rollout_status
from prodgate.server import body as request_body
from prodgate.server.problems import json_response
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store

Handler = Callable[[Request], Awaitable[Response]]
ROLLOUT_ACTIONS = ("pause", "resume", "abort", "confirm")


async def _body(request: Request, allowed: dict[str, type | tuple[type, ...]]) -> dict[str, Any]:
    raw = await request_body.read(request, request.app.state.settings.max_body_bytes)
    if not raw.strip():
        return {}
    # A body that says nothing of its type is taken as JSON (curl --data-binary
    # without -H); one that says another type is refused.
    request_body.require_json(request, missing_ok=True)
    body = request_body.parse_json(raw)
    if not isinstance(body, dict):
        raise ContractViolationError([Violation("", "the body must be a JSON object")])
    problems = [Violation(f"/{k}", "unknown field") for k in sorted(set(body) - set(allowed))]
    for key, kind in allowed.items():
        if key in body and body[key] is not None and not isinstance(body[key], kind):
            problems.append(Violation(f"/{key}", f"wrong type: {type(body[key]).__name__}"))
        if key in body and isinstance(body[key], bool) and kind is int:
            problems.append(Violation(f"/{key}", "wrong type: bool"))
        elif key in body and isinstance(body[key], int) and not 1 <= body[key] <= MAX_VERSION:
            problems.append(Violation(f"/{key}", f"must be from 1 to {MAX_VERSION}"))
    if problems:
        raise ContractViolationError(problems)
    return body


def _path_version(request: Request) -> int:
    raw = request.path_params["version"]
    number = int(raw) if raw.isdigit() else 0
    if not 1 <= number <= MAX_VERSION:
        raise ContractViolationError(
            [Violation("/version", f"must be a version number from 1 to {MAX_VERSION}")]
        )
    return number


def _require(body: dict[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise ContractViolationError([Violation(f"/{key}", "required field is missing")])
    return body[key]


class Admin:
    """The admin routes, bound to one app's gateway and auth."""

    def __init__(self, app_state: Any) -> None:
        self.state = app_state

    def _service(self, request: Request) -> ServiceSpec:
        service: ServiceSpec = self.state.spec.service(request.path_params["service"])
        return service

    def _actor(self, request: Request) -> str:
        actor: str = self.state.auth.actor(request)
        return actor

    @property
    def store(self) -> Store:
        store: Store = self.state.store
        return store

    async def _after_change(self) -> None:
        # Apply the change here at once rather than at the next poll.
        await self.state.gateway.refresh()

    async def list_versions(self, request: Request) -> Response:
        self._actor(request)
        service = self._service(request)

        def read() -> list[dict[str, Any]]:
            with self.store.read() as conn:
                found = versions.list_versions(conn, service.name)
                out = []
                for v in found:
                    item = v.as_dict()
                    item["approvals"] = [
                        a.__dict__ for a in approvals.list_approvals(conn, service.name, v.number)
                    ]
                    evaluation = approvals.latest_evaluation(conn, service.name, v.number)
                    item["evaluation"] = (
                        {"id": evaluation["id"], "passed": evaluation["passed"]}
                        if evaluation
                        else None
                    )
                    out.append(item)
                return out

        return json_response({"versions": await asyncio.to_thread(read)})

    async def get_history(self, request: Request) -> Response:
        self._actor(request)
        service = self._service(request)

        def read() -> list[dict[str, Any]]:
            with self.store.read() as conn:
                return history(conn, service.name)

        return json_response({"service": service.name, "history": await asyncio.to_thread(read)})

    async def get_deployment(self, request: Request) -> Response:
        self._actor(request)
        service = self._service(request)

        def read() -> dict[str, Any] | None:
            with self.store.read() as conn:
                dep = deployments.get_deployment(conn, service.name)
                return dep.as_dict() if dep else None

        return json_response({"service": service.name, "deployment": await asyncio.to_thread(read)})

    async def approve(self, request: Request) -> Response:
        actor = self._actor(request)
        service = self._service(request)
        body = await _body(request, {"by": str, "note": str, "override_gates": bool, "reason": str})
        number = _path_version(request)
        approval = await asyncio.to_thread(
            approvals.approve,
            self.store,
            service,
            number,
            by=body.get("by") or actor,
            note=body.get("note") or "",
            override_gates=bool(body.get("override_gates")),
            reason=body.get("reason") or "",
        )
        return json_response({"service": service.name, "version": number, **approval.__dict__})

    async def _change_split(
        self,
        request: Request,
        fields: dict[str, type | tuple[type, ...]],
        change: Callable[[ServiceSpec, str, dict[str, Any]], deployments.Deployment],
    ) -> Response:
        """Check the caller and body, change the split in a thread, apply it here now."""
        actor = self._actor(request)
        service = self._service(request)
        body = await _body(request, fields)
        dep = await asyncio.to_thread(change, service, actor, body)
        await self._after_change()
        return json_response({"service": service.name, "deployment": dep.as_dict()})

    async def deploy(self, request: Request) -> Response:
        return await self._change_split(
            request,
            {"version": int, "reason": str},
            lambda service, actor, body: deployments.deploy(
                self.store,
                service,
                _require(body, "version"),
                actor=actor,
                reason=body.get("reason") or "",
            ),
        )

    async def rollback(self, request: Request) -> Response:
        return await self._change_split(
            request,
            {"reason": str},
            lambda service, actor, body: deployments.rollback(
                self.store, service, actor=actor, reason=body.get("reason") or ""
            ),
        )

    async def disable(self, request: Request) -> Response:
        return await self._change_split(
            request,
            {"reason": str},
            lambda service, actor, body: deployments.set_disabled(
                self.store, service, True, actor=actor, reason=_require(body, "reason")
            ),
        )

    async def enable(self, request: Request) -> Response:
        return await self._change_split(
            request,
            {"reason": str},
            lambda service, actor, body: deployments.set_disabled(
                self.store, service, False, actor=actor, reason=body.get("reason") or ""
            ),
        )

    async def shadow(self, request: Request) -> Response:
        def change(service: ServiceSpec, actor: str, body: dict[str, Any]) -> Any:
            if "version" not in body:
                raise ContractViolationError(
                    [Violation("/version", "give a version, or null to stop")]
                )
            return deployments.set_shadow(
                self.store, service, body["version"], actor=actor, reason=body.get("reason") or ""
            )

        return await self._change_split(request, {"version": int, "reason": str}, change)

    async def rollout_start(self, request: Request) -> Response:
        actor = self._actor(request)
        service = self._service(request)
        body = await _body(request, {"version": int, "reason": str})
        r = await asyncio.to_thread(
            rollout_commands.start,
            self.store,
            service,
            _require(body, "version"),
            actor=actor,
            reason=body.get("reason") or "",
        )
        await self._after_change()
        return json_response({"rollout": r.as_dict()}, 201)

    async def rollout_get(self, request: Request) -> Response:
        self._actor(request)
        service = self._service(request)

        def read() -> dict[str, Any]:
            with self.store.read() as conn:
                return rollout_status(conn, service.name)

        return json_response({"rollout": await asyncio.to_thread(read)})

    async def rollout_action(self, request: Request) -> Response:
        actor = self._actor(request)
        service = self._service(request)
        action = request.path_params["action"]
        if action not in ROLLOUT_ACTIONS:
            raise NotFoundError(f"no rollout action {action!r}; use {', '.join(ROLLOUT_ACTIONS)}")
        body = await _body(request, {"reason": str})
        r = await asyncio.to_thread(
            getattr(rollout_commands, action),
            self.store,
            service,
            actor=actor,
            reason=body.get("reason") or "",
        )
        await self._after_change()
        return json_response({"rollout": r.as_dict()})

    async def metrics(self, request: Request) -> Response:
        self._actor(request)
        service = self._service(request)
        window = parse_window(request.query_params.get("window", "1h"))
        report = await asyncio.to_thread(production_metrics, self.store, service, window)
        return json_response(report)

    async def evaluate(self, request: Request) -> Response:
        """Evaluate a version on a data file readable by the server (admins only)."""
        actor = self._actor(request)
        service = self._service(request)
        body = await _body(request, {"data": str, "label": str})
        number = _path_version(request)
        stored = await asyncio.to_thread(
            evaluate_version,
            self.store,
            service,
            number,
            Path(_require(body, "data")),
            body.get("label"),
            actor=actor,
        )
        return json_response(
            {"id": stored.id, "service": service.name, "version": number, **stored.result}, 201
        )

    def routes(self) -> list[Route]:
        base = "/v1/services/{service}"
        return [
            Route(f"{base}/versions", self.list_versions, methods=["GET"]),
            Route(f"{base}/versions/{{version}}/approve", self.approve, methods=["POST"]),
            Route(f"{base}/history", self.get_history, methods=["GET"]),
            Route(f"{base}/deployment", self.get_deployment, methods=["GET"]),
            Route(f"{base}/deploy", self.deploy, methods=["POST"]),
            Route(f"{base}/rollback", self.rollback, methods=["POST"]),
            Route(f"{base}/disable", self.disable, methods=["POST"]),
            Route(f"{base}/enable", self.enable, methods=["POST"]),
            Route(f"{base}/shadow", self.shadow, methods=["POST"]),
            Route(f"{base}/rollout", self.rollout_start, methods=["POST"]),
            Route(f"{base}/rollout", self.rollout_get, methods=["GET"]),
            Route(f"{base}/rollout/{{action}}", self.rollout_action, methods=["POST"]),
            Route(f"{base}/metrics", self.metrics, methods=["GET"]),
            Route(f"{base}/versions/{{version}}/evaluate", self.evaluate, methods=["POST"]),
        ]
