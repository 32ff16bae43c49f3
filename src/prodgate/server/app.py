"""``create_app(settings)``: the gateway as an ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
from prodgate.identity.keyring import KeyRing
from prodgate.monitor.alerts import AlertMetrics, run_monitor
from prodgate.monitor.operational import default_source
from prodgate.monitor.webhooks import Webhooks
from prodgate.pipeline.gateway import Gateway
from prodgate.pipeline.metrics import Metrics
from prodgate.review import metrics as review_metrics
from prodgate.review.explaining import Models as ReviewModels
from prodgate.review.explaining import run_explainer
from prodgate.rollout.controller import run_controller
from prodgate.server import openapi, problems, review, routes
from prodgate.server.access import ANY_KEY, PUBLIC, Access, Gatekeeper, Guarded
from prodgate.server.admin import Admin
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store, open_store
from prodgate.telemetry import Telemetry

logger = logging.getLogger("prodgate.server")


def create_app(
    settings: Settings,
    spec: Spec | None = None,
    telemetry: Telemetry | None = None,
) -> GatewayApp:
    """Build the gateway app. The spec is loaded now (so a broken one fails fast); the
    store is opened and migrated, and models loaded, when the app starts. *telemetry*
    replaces what the settings would build (tests give in-memory exporters)."""
    spec = spec or spec_module.load(settings.spec_path)
    metrics = Metrics()
    alert_metrics = AlertMetrics(metrics.registry)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # The two planes side by side: the gateway (data plane) and, unless turned
        # off, the rollout controller (control plane), sharing only the store.
        store = open_store(settings)
        gateway = Gateway(settings, spec, store, metrics, keyring, telemetry)
        app.state.gateway = state.gateway = gateway
        state.store = store
        await gateway.start()
        stopping = asyncio.Event()
        controller = None
        if settings.controller:
            # On a shared store only one replica at a time drives a given rollout
            # (the controller takes a lock per service).
            controller = asyncio.get_running_loop().create_task(
                run_controller(store, spec, settings.controller_interval, stop=stopping)
            )
        monitor, webhooks = None, None
        if settings.monitor_interval > 0 and any(s.monitor.alerts for s in spec.services.values()):
            # Alert rules, evaluated beside the gateway; on a shared store every replica
            # evaluates and one wins each transition (a conditional update).
            webhooks = Webhooks(alert_metrics)
            await webhooks.start()
            monitor = asyncio.get_running_loop().create_task(
                run_monitor(
                    store,
                    spec,
                    default_source(),
                    settings.monitor_interval,
                    metrics=alert_metrics,
                    webhooks=webhooks,
                    stop=stopping,
                )
            )
        review_hooks = None
        if any(s.review.webhook for s in spec.services.values()):
            # Decided review items, told to each service's webhook with retries.
            review_hooks = Webhooks(user_agent="prodgate-review")
            await review_hooks.start()
        app.state.review_webhooks = review_hooks
        explainer = None
        # The versions loaded to explain review items: the explainer's and reviewers'.
        models = app.state.review_models = ReviewModels(store, spec)
        explain_every = settings.review_explain_interval
        if explain_every > 0 and any(s.review.on for s in spec.services.values()):
            # Review items' explanations, computed beside the gateway and off the
            # request path (the work runs in a thread, a batch of items at a time).
            explainer = asyncio.get_running_loop().create_task(
                run_explainer(store, spec, explain_every, stop=stopping, models=models)
            )
        try:
            yield
        finally:
            # Ask the controller to stop and wait: cancelling would leave a worker
            # thread holding a store connection while the store is being closed.
            stopping.set()
            if controller is not None:
                await controller
            if monitor is not None:
                await monitor
            if explainer is not None:
                await explainer
            for hooks in (webhooks, review_hooks):
                if hooks is not None:
                    await hooks.stop()
            await gateway.stop()
            store.dispose()

    admin = Admin(state := _State())
    keyring = KeyRing(settings.admin_token)
    predict = Guarded(
        "/v1/services/{service}/predict", routes.predict, methods=["POST"], access=PREDICT
    )
    chat = Guarded(CHAT_PATH, routes.chat_completions, methods=["POST"], access=CHAT)
    app = GatewayApp(
        predict.endpoint,
        chat.endpoint,
        routes=[
            Guarded("/healthz", routes.healthz, methods=["GET"], access=PUBLIC),
            Guarded("/readyz", routes.readyz, methods=["GET"], access=PUBLIC),
            Guarded("/metrics", routes.metrics, methods=["GET"], access=PUBLIC),
            Guarded("/openapi.json", routes.openapi, methods=["GET"], access=PUBLIC),
            Guarded("/v1/services", routes.list_services, methods=["GET"], access=ANY_KEY),
            Guarded("/v1/services/{service}", routes.get_service, methods=["GET"], access=DESCRIBE),
            predict,
            chat,
            Guarded(
                "/v1/services/{service}/guard", routes.post_guard, methods=["POST"], access=GUARD
            ),
            Guarded("/v1/inferences/{id}", routes.get_inference, methods=["GET"], access=AUDIT),
            Guarded(
                "/v1/inferences/{id}/feedback",
                routes.post_feedback,
                methods=["POST"],
                access=Access(("feedback",), service_of=routes.inference_service),
            ),
            *admin.routes(),
            *review.routes(),
        ],
        exception_handlers={
            HTTPException: problems.on_http_exception,
            ProdgateError: problems.on_prodgate_error,
            ClientDisconnect: problems.on_client_disconnect,
            Exception: problems.on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = state.settings = settings
    app.state.spec = state.spec = spec
    app.state.metrics = metrics
    # The review queue on /metrics, read from the store once it is open.
    review_metrics.register(metrics.registry, spec, lambda: getattr(state, "store", None))
    app.state.keyring = keyring
    app.state.gatekeeper = Gatekeeper(settings, spec, keyring, metrics)
    # Built once: the spec cannot change while the app lives.
    app.state.openapi = openapi.render(spec, access_table(app.routes))
    return app


#: Calling a service; open without a key when its spec says ``public: true``.
PREDICT = Access(("predict",), open_if_public=True, limited=False)
#: An OpenAI chat request to an LLM service, named by the body's ``model``.
CHAT = Access(("predict",), open_if_public=True, limited=False, service_of=routes.chat_service)
CHAT_PATH = "/v1/chat/completions"
#: A text through a service's guard rails: for who may call the service.
GUARD = Access(("predict",), open_if_public=True)
#: A service's description and contract: for who may call it, govern it or audit it.
DESCRIBE = Access(("predict", "admin", "audit:read"))
#: The stored record of a decision.
AUDIT = Access(("audit:read",))

PREDICT_PREFIX, PREDICT_SUFFIX = "/v1/services/", "/predict"


def access_table(table: list[BaseRoute]) -> dict[tuple[str, str], Access]:
    """Each route's declared access by (path, method); a route that declares none is
    a bug this refuses to start with."""
    out: dict[tuple[str, str], Access] = {}
    for route in table:
        if not isinstance(route, Guarded):
            raise TypeError(f"route {getattr(route, 'path', route)!r} declares no access")
        for method, access in route.access.items():
            out[(route.path, method)] = access
    return out


class GatewayApp(Starlette):
    """The Starlette app, with ``POST /v1/services/{service}/predict`` taken first.

    Predict is nearly all of a gateway's traffic, and Starlette's middleware stack and
    router (trying each route's pattern in turn) cost a measurable share of its CPU on
    every request. Here a predict request goes straight to its route function, which
    is the same one the router would call; everything else, including other methods
    on the predict path (405), goes through Starlette as usual.
    """

    def __init__(
        self,
        predict: Callable[[Request], Awaitable[Response]],
        chat: Callable[[Request], Awaitable[Response]],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._predict_endpoint = predict  # the guarded predict route's endpoint
        self._chat_endpoint = chat  # and the chat route's

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            service = _predict_target(scope)
            if service is not None:
                scope["app"] = self
                scope["path_params"] = {"service": service}
                await _predict(self._predict_endpoint, Request(scope, receive), send)
                return
            if scope["path"] == CHAT_PATH and not scope.get("root_path"):
                scope["app"] = self
                scope["path_params"] = {}
                await _predict(self._chat_endpoint, Request(scope, receive), send)
                return
        await super().__call__(scope, receive, send)


def _predict_target(scope: Scope) -> str | None:
    """The service a path names as ``/v1/services/{service}/predict`` (as the router's
    ``{service}`` would match it: any one segment), else None."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not (path.startswith(PREDICT_PREFIX) and path.endswith(PREDICT_SUFFIX)):
        return None
    service = path[len(PREDICT_PREFIX) : -len(PREDICT_SUFFIX)]
    return service if service and "/" not in service else None


async def _predict(
    endpoint: Callable[[Request], Awaitable[Response]], request: Request, send: Send
) -> None:
    """The guarded predict route, with the one error handling it needs outside the
    router: what the route itself does not answer is a logged 500 problem."""
    try:
        response = await endpoint(request)
    except ProdgateError as exc:
        response = problems.error_response(exc, request)
    except Exception as exc:
        response = await problems.on_unexpected(request, exc)
    await response(request.scope, request.receive, send)


class _State:
    """What the admin routes read: settings, spec; the store and the gateway once
    the app has started."""

    settings: Settings
    spec: Spec
    store: Store
    gateway: Gateway
