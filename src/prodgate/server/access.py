"""Who may call which route: each route declares its :class:`Access`, and one check
(:class:`Gatekeeper`, run by :class:`Guarded` before the route's handler) enforces it.

A route is built as a :class:`Guarded` route or it is not built: the app's route table
holds nothing else (a test walks it), so a route cannot be added without saying who
may call it. The predict fast path (:class:`~prodgate.server.app.GatewayApp`) calls
the same guarded endpoint the router would.

Answers: no key or a malformed header, 401 with ``WWW-Authenticate: Bearer``; a key
that is unknown, revoked or expired, 401 with ``error="invalid_token"``; a working key
without the scope, 403 with ``error="insufficient_scope"`` (RFC 6750). Each refusal is
an audit record (``access_denied``, naming the key by id, never the key) and a count
in ``prodgate_auth_denied_total``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from prodgate.audit.record import KIND_ACTION, Record
from prodgate.exceptions import AuthError, ProdgateError, RateLimitedError, ScopeError
from prodgate.identity import scopes as scope_grammar
from prodgate.identity.keyring import ANONYMOUS_PRINCIPAL, KeyRing, Principal
from prodgate.identity.scopes import Need
from prodgate.limits import Lease
from prodgate.pipeline.metrics import Metrics
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import now_us

#: Where the principal of a request is kept in its ASGI scope.
PRINCIPAL = "prodgate.principal"
Endpoint = Callable[[Request], Awaitable[Response]]
ServiceOf = Callable[[Request], Awaitable[str]]


@dataclass(frozen=True)
class Access:
    """What a route asks of its caller.

    *kinds* are the scopes that admit it, any one enough (``predict``, ``admin``,
    ``audit:read``, ...); a kind that names services is checked against the request's
    service: the ``{service}`` path parameter, or what *service_of* finds. No kinds and
    not *public*: any working key. *public*: no key at all (probes, metrics, the API
    document). *admin*: the admin API, which needs a key even when auth is off.
    *open_if_public*: open without a key when the service's spec says ``public: true``.
    """

    kinds: tuple[str, ...] = ()
    public: bool = False
    admin: bool = False
    open_if_public: bool = False
    service_of: ServiceOf | None = None
    #: Whether the key's request limits are checked here; predict checks them, and the
    #: rest, in its own limit stage (it knows the rows).
    limited: bool = True

    def needs(self, service: str | None) -> list[Need]:
        return [
            Need(kind, service if kind in scope_grammar.PER_SERVICE else None)
            for kind in self.kinds
        ]

    def describe(self) -> str:
        """The scopes, as the API document lists them."""
        if self.public:
            return "none"
        if not self.kinds:
            return "any key"
        named = [f"{k}:{{service}}" if k in scope_grammar.PER_SERVICE else k for k in self.kinds]
        return " or ".join(named)


PUBLIC = Access(public=True)
ANY_KEY = Access()


def principal(request: Request) -> Principal:
    """The caller of a guarded request, as the gatekeeper admitted it."""
    found: Principal = request.scope.get(PRINCIPAL, ANONYMOUS_PRINCIPAL)
    return found


class Guarded(Route):
    """A route with its access declared per method; the check runs before the handler."""

    def __init__(
        self,
        path: str,
        endpoint: Endpoint,
        *,
        methods: Sequence[str],
        access: Access | Mapping[str, Access],
    ) -> None:
        per_method = dict.fromkeys(methods, access) if isinstance(access, Access) else dict(access)
        missing = [m for m in methods if m not in per_method]
        if missing:
            raise ValueError(f"{path}: no access declared for {', '.join(missing)}")
        self.access = per_method

        async def guarded(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            gatekeeper: Gatekeeper = request.app.state.gatekeeper
            access = per_method[method]
            caller = request.scope[PRINCIPAL] = await gatekeeper.check(request, access)
            if not (access.limited and caller.limits):
                return await endpoint(request)
            lease = await gatekeeper.limit(request, caller)
            try:
                return await endpoint(request)
            finally:
                if lease is not None:
                    await request.app.state.gateway.limits.release_lease(lease)

        super().__init__(path, guarded, methods=list(methods))


class Gatekeeper:
    """The one check of every route's access."""

    def __init__(self, settings: Settings, spec: Spec, keyring: KeyRing, metrics: Metrics) -> None:
        self.off = settings.auth == "off"
        self.spec = spec
        self.keyring = keyring
        self.metrics = metrics
        self.public = {n for n, s in spec.services.items() if s.public}

    async def check(self, request: Request, access: Access) -> Principal:
        """The request's principal if *access* admits it; else the refusal, recorded."""
        if access.public or (self.off and not access.admin):
            return ANONYMOUS_PRINCIPAL
        header = request.headers.get("authorization")
        service = request.path_params.get("service")
        if access.open_if_public and header is None and self.public:
            if service is None and access.service_of is not None:
                service = await access.service_of(request)  # a chat names it in its body
            if service in self.public:
                return ANONYMOUS_PRINCIPAL
        try:
            who = self.keyring.authenticate(header)
            if access.kinds:
                if access.service_of is not None and not self._everywhere(who, access):
                    # Only a key limited to some services needs to know which this is.
                    service = await access.service_of(request)
                needs = access.needs(service)
                if access.service_of is not None and not service:
                    # The body names no service (it is not JSON, or has no model): a key
                    # that may call some service passes, to hear what is wrong with it.
                    allowed = any(
                        scope_grammar.services(who.scopes, k) != set() for k in access.kinds
                    )
                else:
                    allowed = any(scope_grammar.grants(who.scopes, n) for n in needs)
                if not allowed:
                    raise ScopeError(
                        f"key {who.key_id} may not do this: it needs "
                        + " or ".join(str(n) for n in needs)
                        + f"; it has {', '.join(who.scopes) or 'no scopes'}",
                        who.key_id,
                    )
        except AuthError as exc:
            await self.deny(request, exc, service)
            raise
        return who

    @staticmethod
    def _everywhere(who: Principal, access: Access) -> bool:
        """Whether *who* may do what *access* asks on every service."""
        return any(scope_grammar.services(who.scopes, kind) is None for kind in access.kinds)

    async def limit(self, request: Request, caller: Principal) -> Lease | None:
        """The caller's key limits on a route other than predict; the refusal recorded."""
        try:
            lease: Lease | None = await request.app.state.gateway.limits.admit_call(caller)
        except RateLimitedError as exc:
            await self.deny(request, exc, request.path_params.get("service"), caller.key_id)
            raise
        return lease

    async def deny(
        self,
        request: Request,
        exc: AuthError | RateLimitedError,
        service: str | None,
        key_id: str | None = None,
    ) -> None:
        """Record a refusal (and count an access one); a store that cannot take the
        record does not turn the caller's 401 into a 503 (the journal keeps what it can)."""
        reason = getattr(exc, "reason", "scope") if isinstance(exc, AuthError) else "limit"
        key_id = key_id or getattr(exc, "key_id", None)
        if isinstance(exc, AuthError):
            self.metrics.auth_denied.labels(reason).inc()
        payload: dict[str, Any] = {
            "method": request.method,
            "path": request.url.path[:512],
            "reason": reason,
            "detail": exc.detail,
        }
        if request.client:
            payload["address"] = request.client.host
        record = Record(
            kind=KIND_ACTION,
            action="access_denied" if isinstance(exc, AuthError) else "rate_limited",
            ts_us=now_us(),
            payload=payload,
            service=service if service in self.spec.services else None,
            actor=key_id,
            status=exc.status,
        )
        gateway = getattr(request.app.state, "gateway", None)
        if gateway is not None:
            with contextlib.suppress(ProdgateError):
                await gateway.recorder.record([record])
