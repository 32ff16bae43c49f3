"""The admin HTTP API: governance over HTTP, for the dashboard and for automation.

Every route here needs an API key (see :mod:`prodgate.server.access`): reading needs
``admin:SERVICE`` or ``audit:read``, changing needs ``admin:SERVICE`` (``admin`` does
both, as does the bootstrap ``PRODGATE_ADMIN_TOKEN``), even when auth is off. Routes call
the same library functions as the CLI, in a worker thread since they use the store.
Who acts is the key's identity (a person, or an agent with its owner), recorded with
the key's id; never a name from the body or a header.

Each route is declared once, in :data:`ROUTES`: its method, path, handler, summary,
body fields and success status. The Starlette routes and the OpenAPI entries are both
built from that table, and a body is checked against the very JSON Schema the
OpenAPI document publishes for it, so the document and the server cannot disagree.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from prodgate.audit.history import history
from prodgate.contract import Contract
from prodgate.durations import parse_duration as parse_window
from prodgate.evaluation import evaluate_version
from prodgate.exceptions import ContractViolationError, NotFoundError, UsageError, Violation
from prodgate.identity.actor import Actor
from prodgate.monitor.production import production_metrics
from prodgate.monitor.report import monitor_report
from prodgate.registry import approvals, versions
from prodgate.registry.versions import MAX_VERSION
from prodgate.rollout import commands as rollout_commands
from prodgate.rollout import split as deployments
from prodgate.rollout.status import status as rollout_status
from prodgate.server import body as request_body
from prodgate.server.access import Access, Guarded, principal
from prodgate.server.problems import json_response
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store

BASE = "/v1/services/{service}"
#: A metrics window as :func:`~prodgate.durations.parse_duration` reads it.
WINDOW = r"^\s*\d+(\.\d+)?\s*[smhd]\s*$"
ROLLOUT_ACTIONS = ("pause", "resume", "abort", "confirm")
READ = Access(("admin", "audit:read"), admin=True)
CHANGE = Access(("admin",), admin=True)

#: The JSON Schema of each type a body field may have. Every integer an admin body
#: takes is a version number. No text may hold NUL: PostgreSQL text refuses it, and
#: a caller's mistake must not come back as the store's 503.
_SCHEMAS: dict[type, dict[str, Any]] = {
    str: {"type": "string", "pattern": "^[^\\u0000]*$"},
    bool: {"type": "boolean"},
    int: {"type": "integer", "minimum": 1, "maximum": MAX_VERSION},
}

#: The path parameters admin routes use (``service`` is documented from the spec).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "version": _SCHEMAS[int],
    "action": {"type": "string", "enum": list(ROLLOUT_ACTIONS)},
}


@dataclass(frozen=True)
class Field:
    """One field of an admin request body (or query string).

    A field not *required* may be left out or given as null, which means the same.
    A *nullable* required field must be given, and null is one of its values.
    """

    name: str
    kind: type  # str, bool or int (a version number)
    description: str = ""
    required: bool = False
    nullable: bool = False
    pattern: str = ""  # for a str: a regular expression the value must match

    def schema(self) -> dict[str, Any]:
        schema = dict(_SCHEMAS[self.kind])
        if self.pattern:
            schema["pattern"] = self.pattern
        if self.nullable or not self.required:
            schema["type"] = [schema["type"], "null"]
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass(frozen=True)
class Call:
    """One admin request, checked: who acts, on which service, with what body."""

    request: Request
    actor: Actor
    service: ServiceSpec
    body: dict[str, Any]
    version: int = 0  # the ``{version}`` path parameter, where the route has one

    @property
    def reason(self) -> str:
        """The body's ``reason``, or "" when it gives none."""
        return str(self.body.get("reason") or "")


AdminHandler = Callable[["Admin", Call], Awaitable[Response]]


@dataclass(frozen=True)
class AdminRoute:
    """One admin route, declared once for the router and for the OpenAPI document."""

    method: str
    path: str  # under BASE
    handler: AdminHandler
    summary: str
    body: tuple[Field, ...] | None = None  # None: the route takes no body
    status: int = 200
    example: dict[str, Any] = field(default_factory=dict)
    query: tuple[Field, ...] = ()

    @property
    def full_path(self) -> str:
        return BASE + self.path

    @property
    def access(self) -> Access:
        """Reading: the service's admins and auditors; changing: its admins."""
        return READ if self.method == "GET" else CHANGE

    @property
    def path_parameters(self) -> list[str]:
        return [p for p in ("service", *PATH_PARAMETERS) if "{" + p + "}" in self.full_path]

    @property
    def body_required(self) -> bool:
        return any(f.required for f in self.body or ())

    @functools.cached_property
    def body_schema(self) -> dict[str, Any]:
        """The JSON Schema of the body: what is checked, and what OpenAPI documents."""
        fields = self.body or ()
        schema: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "properties": {f.name: f.schema() for f in fields},
        }
        required = [f.name for f in fields if f.required]
        if required:
            schema["required"] = required
        return schema

    @functools.cached_property
    def contract(self) -> Contract:
        return Contract(self.body_schema)

    def parse(self, payload: Any) -> dict[str, Any]:
        """The checked body, with null given for an optional field taken as left out."""
        problems = list(self.contract.violations(payload, ""))
        if problems:
            raise ContractViolationError(problems)
        body: dict[str, Any] = {}
        for f in self.body or ():
            value = payload.get(f.name)
            if value is None and not (f.required and f.nullable):
                continue
            # JSON Schema counts 2.0 as an integer; the library wants the int.
            body[f.name] = int(value) if f.kind is int and value is not None else value
        return body


def _path_version(request: Request) -> int:
    return _version_number(request.path_params["version"])


def _query_version(raw: str) -> int:
    """A version number in the query string: a bad one is a bad query (400)."""
    try:
        return _version_number(raw)
    except ContractViolationError:
        message = f"version {raw!r}: must be a version number from 1 to {MAX_VERSION}"
        raise UsageError(message) from None


def _version_number(raw: str) -> int:
    # ASCII digits only (str.isdigit takes any script's), and few enough of them.
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 10 else 0
    if not 1 <= number <= MAX_VERSION:
        raise ContractViolationError(
            [Violation("/version", f"must be a version number from 1 to {MAX_VERSION}")]
        )
    return number


class Admin:
    """The admin routes, bound to one app's state (settings, spec, auth, store, gateway)."""

    def __init__(self, app_state: Any) -> None:
        self.state = app_state

    @property
    def store(self) -> Store:
        store: Store = self.state.store
        return store

    @property
    def max_body_bytes(self) -> int:
        limit: int = self.state.settings.max_body_bytes
        return limit

    async def _after_change(self) -> None:
        # Apply the change here at once rather than at the next poll.
        await self.state.gateway.refresh()

    def routes(self) -> list[Guarded]:
        """One Starlette route per path, answering each of its declared methods, so a
        405 lists them all in ``Allow``."""
        by_path: dict[str, dict[str, AdminRoute]] = {}
        for declared in ROUTES:
            by_path.setdefault(declared.full_path, {})[declared.method] = declared
        return [
            Guarded(
                path,
                self._endpoint(methods),
                methods=list(methods),
                access={m: declared.access for m, declared in methods.items()},
            )
            for path, methods in by_path.items()
        ]

    def _endpoint(self, methods: dict[str, AdminRoute]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            # Starlette answers HEAD on a GET route; any other method was refused (405).
            declared = methods["GET" if request.method == "HEAD" else request.method]
            return await declared.handler(self, await self._call(request, declared))

        return endpoint

    async def _call(self, request: Request, declared: AdminRoute) -> Call:
        """Check the caller first, then the service, the path and the body."""
        address = request.client.host if request.client else None
        actor = principal(request).actor(address)
        service: ServiceSpec = self.state.spec.service(request.path_params["service"])
        number = _path_version(request) if "version" in request.path_params else 0
        body: dict[str, Any] = {}
        if declared.body is not None:
            raw = await request_body.read(request, self.max_body_bytes)
            if raw.strip():
                # A body that says nothing of its type is taken as JSON (curl
                # --data-binary without -H); one that says another type is refused.
                request_body.require_json(request, missing_ok=True)
                payload = request_body.parse_json(raw)
            else:
                payload = {}
            body = declared.parse(payload)
        return Call(request, actor, service, body, number)

    # -- reading -------------------------------------------------------------------

    async def list_versions(self, call: Call) -> Response:
        name = call.service.name

        def read() -> list[dict[str, Any]]:
            with self.store.read() as conn:
                out = []
                for v in versions.list_versions(conn, name):
                    item = v.as_dict()
                    item["approvals"] = [
                        a.__dict__ for a in approvals.list_approvals(conn, name, v.number)
                    ]
                    evaluation = approvals.latest_evaluation(conn, name, v.number)
                    item["evaluation"] = (
                        {"id": evaluation["id"], "passed": evaluation["passed"]}
                        if evaluation
                        else None
                    )
                    out.append(item)
                return out

        return json_response({"versions": await asyncio.to_thread(read)})

    async def get_history(self, call: Call) -> Response:
        name = call.service.name

        def read() -> list[dict[str, Any]]:
            with self.store.read() as conn:
                return history(conn, name)

        return json_response({"service": name, "history": await asyncio.to_thread(read)})

    async def get_deployment(self, call: Call) -> Response:
        name = call.service.name

        def read() -> dict[str, Any] | None:
            with self.store.read() as conn:
                dep = deployments.get_deployment(conn, name)
                return dep.as_dict() if dep else None

        return json_response({"service": name, "deployment": await asyncio.to_thread(read)})

    async def rollout_get(self, call: Call) -> Response:
        def read() -> dict[str, Any]:
            with self.store.read() as conn:
                return rollout_status(conn, call.service.name)

        return json_response({"rollout": await asyncio.to_thread(read)})

    async def metrics(self, call: Call) -> Response:
        window = parse_window(call.request.query_params.get("window", "1h"))
        report = await asyncio.to_thread(production_metrics, self.store, call.service, window)
        return json_response(report)

    async def monitor(self, call: Call) -> Response:
        query = call.request.query_params
        # Given empty is given wrong (the document says so), not left out.
        window = parse_window(query["window"]) if "window" in query else None
        version = _query_version(query["version"]) if "version" in query else None
        report = await asyncio.to_thread(
            monitor_report, self.store, self.state.spec, call.service.name, window, version
        )
        return json_response(report)

    # -- changing ------------------------------------------------------------------

    async def approve(self, call: Call) -> Response:
        body = call.body
        approval = await asyncio.to_thread(
            approvals.approve,
            self.store,
            call.service,
            call.version,
            by=call.actor,
            note=body.get("note") or "",
            override_gates=bool(body.get("override_gates")),
            reason=call.reason,
        )
        return json_response(
            {"service": call.service.name, "version": call.version, **approval.__dict__}
        )

    async def evaluate(self, call: Call) -> Response:
        """Evaluate a version on a data file readable by the server (admins only)."""
        stored = await asyncio.to_thread(
            evaluate_version,
            self.store,
            call.service,
            call.version,
            Path(call.body["data"]),
            call.body.get("label"),
            actor=call.actor,
        )
        answer = {"id": stored.id, "service": call.service.name, "version": call.version}
        return json_response({**answer, **stored.result}, 201)

    async def _change_split(
        self, call: Call, change: Callable[[], deployments.Deployment]
    ) -> Response:
        """Change the split in a thread, then apply it here now."""
        dep = await asyncio.to_thread(change)
        await self._after_change()
        return json_response({"service": call.service.name, "deployment": dep.as_dict()})

    async def deploy(self, call: Call) -> Response:
        return await self._change_split(
            call,
            lambda: deployments.deploy(
                self.store,
                call.service,
                call.body["version"],
                actor=call.actor,
                reason=call.reason,
            ),
        )

    async def rollback(self, call: Call) -> Response:
        return await self._change_split(
            call,
            lambda: deployments.rollback(
                self.store,
                call.service,
                actor=call.actor,
                reason=call.reason,
                to=call.body.get("to"),
            ),
        )

    async def disable(self, call: Call) -> Response:
        return await self._change_split(
            call,
            lambda: deployments.set_disabled(
                self.store, call.service, True, actor=call.actor, reason=call.body["reason"]
            ),
        )

    async def enable(self, call: Call) -> Response:
        return await self._change_split(
            call,
            lambda: deployments.set_disabled(
                self.store,
                call.service,
                False,
                actor=call.actor,
                reason=call.reason,
            ),
        )

    async def shadow(self, call: Call) -> Response:
        return await self._change_split(
            call,
            lambda: deployments.set_shadow(
                self.store,
                call.service,
                call.body["version"],
                actor=call.actor,
                reason=call.reason,
            ),
        )

    async def rollout_start(self, call: Call) -> Response:
        r = await asyncio.to_thread(
            rollout_commands.start,
            self.store,
            call.service,
            call.body["version"],
            actor=call.actor,
            reason=call.reason,
        )
        await self._after_change()
        return json_response({"rollout": r.as_dict()}, 201)

    async def rollout_action(self, call: Call) -> Response:
        action = call.request.path_params["action"]
        if action not in ROLLOUT_ACTIONS:
            raise NotFoundError(f"no rollout action {action!r}; use {', '.join(ROLLOUT_ACTIONS)}")
        r = await asyncio.to_thread(
            getattr(rollout_commands, action),
            self.store,
            call.service,
            actor=call.actor,
            reason=call.reason,
        )
        await self._after_change()
        return json_response({"rollout": r.as_dict()})


_REASON = Field("reason", str, "why, for the audit log")

#: Every admin route, once.
ROUTES: tuple[AdminRoute, ...] = (
    AdminRoute(
        "GET", "/versions", Admin.list_versions, "Versions with approvals and evaluation verdicts"
    ),
    AdminRoute(
        "POST",
        "/versions/{version}/evaluate",
        Admin.evaluate,
        "Evaluate a version on a server-side file",
        body=(
            Field("data", str, "a CSV or Parquet file the server can read", required=True),
            Field("label", str, "the column of true labels (default: from the spec)"),
        ),
        status=201,
        example={"data": "/srv/data/holdout.parquet", "label": "outcome"},
    ),
    AdminRoute(
        "POST",
        "/versions/{version}/approve",
        Admin.approve,
        "Approve a version",
        body=(
            Field("note", str),
            Field("override_gates", bool, "approve although the gates failed (needs a reason)"),
            _REASON,
        ),
        example={"note": "holdout results reviewed"},
    ),
    AdminRoute("GET", "/deployment", Admin.get_deployment, "The traffic split"),
    AdminRoute(
        "POST",
        "/deploy",
        Admin.deploy,
        "Send all traffic to an approved version",
        body=(Field("version", int, "an approved version", required=True), _REASON),
        example={"version": 2, "reason": "better recall on the holdout"},
    ),
    AdminRoute(
        "POST",
        "/rollback",
        Admin.rollback,
        "Put an earlier production version back (the one before, or 'to')",
        body=(
            Field("to", int, "an earlier production version; default: the one before"),
            _REASON,
        ),
        example={"reason": "version 2 misroutes travel claims"},
    ),
    AdminRoute(
        "POST",
        "/disable",
        Admin.disable,
        "Kill switch on",
        body=(Field("reason", str, "why, for the audit log and the callers", required=True),),
        example={"reason": "bad data upstream"},
    ),
    AdminRoute(
        "POST",
        "/enable",
        Admin.enable,
        "Kill switch off",
        body=(_REASON,),
        example={"reason": "upstream fixed"},
    ),
    AdminRoute(
        "POST",
        "/shadow",
        Admin.shadow,
        "Run a version in shadow (or stop)",
        body=(
            Field(
                "version", int, "the version to shadow; null stops", required=True, nullable=True
            ),
            _REASON,
        ),
        example={"version": 2, "reason": "compare on live traffic"},
    ),
    AdminRoute(
        "POST",
        "/rollout",
        Admin.rollout_start,
        "Start a canary rollout",
        body=(Field("version", int, "an approved version", required=True), _REASON),
        status=201,
        example={"version": 2, "reason": "passed evaluation"},
    ),
    AdminRoute("GET", "/rollout", Admin.rollout_get, "The rollout's status and last checks"),
    AdminRoute(
        "POST",
        "/rollout/{action}",
        Admin.rollout_action,
        "Pause, resume, abort or confirm the rollout",
        body=(_REASON,),
        example={"reason": "holding over the weekend"},
    ),
    AdminRoute("GET", "/history", Admin.get_history, "Every governance action"),
    AdminRoute(
        "GET",
        "/metrics",
        Admin.metrics,
        "Production metrics per version",
        query=(
            Field(
                "window",
                str,
                "how far back, longer than zero: 90s, 30m, 1h (default), 7d",
                pattern=WINDOW,
            ),
        ),
    ),
    AdminRoute(
        "GET",
        "/monitor",
        Admin.monitor,
        "Drift, data quality, estimated and realised accuracy, firing alerts",
        query=(
            Field(
                "window",
                str,
                "how far back, longer than zero: 90s, 30m, 1h, 7d (default: the monitor window)",
                pattern=WINDOW,
            ),
            Field("version", int, "only this version (default: production and any canary)"),
        ),
    ),
)
