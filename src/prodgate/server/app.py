"""``create_app(settings)``: the gateway as an ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from prodgate import spec as spec_module
from prodgate.exceptions import ProdgateError
from prodgate.pipeline.gateway import Gateway
from prodgate.pipeline.metrics import Metrics
from prodgate.rollout.controller import run_controller
from prodgate.server import openapi, problems, routes
from prodgate.server.admin import Admin
from prodgate.server.auth import AdminAuth
from prodgate.settings import Settings
from prodgate.spec import Spec
from prodgate.store.engine import Store, open_store

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
        # The two planes side by side: the gateway (data plane) and, unless turned
        # off, the rollout controller (control plane), sharing only the store.
        store = open_store(settings)
        gateway = Gateway(settings, spec, store, metrics)
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
        try:
            yield
        finally:
            # Ask the controller to stop and wait: cancelling would leave a worker
            # thread holding a store connection while the store is being closed.
            stopping.set()
            if controller is not None:
                await controller
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
            ClientDisconnect: problems.on_client_disconnect,
            Exception: problems.on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.settings = state.settings = settings
    app.state.spec = state.spec = spec
    app.state.metrics = metrics
    app.state.auth = state.auth = AdminAuth(settings.admin_token)
    # Built once: the spec cannot change while the app lives.
    app.state.openapi = openapi.render(spec)
    return app


class _State:
    """What the admin routes read: settings, spec, auth; the store and the gateway once
    the app has started."""

    settings: Settings
    spec: Spec
    auth: AdminAuth
    store: Store
    gateway: Gateway
