"""``serve``: the gateway under uvicorn."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from prodgate.cli.context import Context, pass_ctx, setting_options
from prodgate.exceptions import UsageError
from prodgate.settings import SERVE, Settings
from prodgate.spec import Spec

if TYPE_CHECKING:  # the server stack loads only when serving
    from prodgate.pipeline.gateway import Gateway


def run_server(
    settings: Settings,
    spec: Spec,
    on_ready: Callable[[Gateway], None] | None = None,
    access_log: bool = False,
) -> None:
    """Serve until interrupted. The store is opened first so its errors are one line;
    *on_ready* hears of the gateway once it listens, so what it prints works at once."""
    import uvicorn

    from prodgate.server.app import create_app
    from prodgate.store.engine import open_store

    open_store(settings).dispose()  # migrate now; fail fast on a bad URL or a down server
    _check_address(settings.host, settings.port)
    app = create_app(settings, spec)

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)  # the app has started and the socket listens
            if on_ready is not None and self.started:
                on_ready(app.state.gateway)

    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=access_log,
        timeout_graceful_shutdown=10,
    )
    with contextlib.suppress(KeyboardInterrupt):
        Server(config).run()


def _check_address(host: str, port: int) -> None:
    """Fail with one line, before anything is printed, when *host*:*port* cannot be had."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "choose another --port (or --host)"
        ) from None


@click.command()
@setting_options(SERVE)
@click.option(
    "--access-log", is_flag=True, help="Log every request (the audit trail has them anyway)."
)
@pass_ctx
def serve(ctx: Context, access_log: bool) -> None:
    """Serve the deployed versions of every service in the spec.

    POST /v1/services/SERVICE/predict, GET /v1/services, /metrics, /healthz, /readyz,
    /openapi.json.
    """
    settings = ctx.settings

    def announce(gateway: Gateway) -> None:
        base = f"http://{settings.host}:{settings.port}"
        for view in gateway.describe_all():
            number = view["deployed_version"]
            state = f"version {number}" if number else "nothing deployed"
            click.echo(f"prodgate: {view['name']}: {state}; POST {base}{view['predict']}")

    run_server(settings, ctx.spec(), on_ready=announce, access_log=access_log)


COMMANDS = [serve]
