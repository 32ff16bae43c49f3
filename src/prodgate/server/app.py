"""``create_app(settings)``: the gateway as an ASGI application."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Route

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
from prodgate.pipeline.gateway import Gateway
from prodgate.pipeline.metrics import Metrics
from prodgate.server import problems, routes
from prodgate.server.admin import Admin
from prodgate.server.auth import AdminAuth
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import open_store

logger = logging.getLogger("prodgate.server")


def create_app(
    settings: Settings,
    spec: Spec | None = None,
) -> Starlette:
    """Build the gateway app. The spec is loaded now (so a broken one fails fast); the
    store is opened and migrated, and models loaded, when the app starts."""
    spec = spec or spec_module.load(settings.spec_path)
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(settings)
        gateway = Gateway(settings, spec, store, metrics)
        app.state.gateway = gateway
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()
            store.dispose()

    admin = Admin(state := _State())
    app = Starlette(
        routes=[
            Route("/healthz", routes.healthz, methods=["GET"]),
            Route("/readyz", routes.readyz, methods=["GET"]),
            Route("/metrics", routes.metrics, methods=["GET"]),
            Route("/openapi.json", routes.openapi, methods=["GET"]),
            Route("/v1/services", routes.list_services, methods=["GET"]),
            Route("/v1/services/{service}", routes.get_service, methods=["GET"]),
            Route("/v1/services/{service}/predict", routes.predict, methods=["POST"]),
            Route("/v1/inferences/{id}", routes.get_inference, methods=["GET"]),
            Route("/v1/inferences/{id}/feedback", routes.post_feedback, methods=["POST"]),
            *admin.routes(),
        ],
        exception_handlers={
            HTTPException: problems.on_http_exception,
            ProdgateError: problems.on_prodgate_error,
            Exception: problems.on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = state.settings = settings
    app.state.spec = state.spec = spec
    app.state.metrics = metrics
    app.state.auth = state.auth = AdminAuth(settings.admin_token)
    state.app_state = app.state
    return app


class _State:
    """What the admin routes read: settings, spec, auth, and the gateway once started."""

    settings: Settings
    spec: Spec
    auth: AdminAuth
    app_state: Any

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app_state.gateway
        return gateway
