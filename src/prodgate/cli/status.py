"""``status``: what every service serves now, and what the gateways last saw of each
LLM provider's circuit breakers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from prodgate.cli.context import Context, echo_json, pass_ctx, table
from prodgate.rollout.status import overview


@click.command()
@click.argument("service", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def status(ctx: Context, service: str | None, as_json: bool) -> None:
    """Each service's split (production, canary, shadow, kill switch), and each LLM
    model's circuit breaker as the gateways last recorded it."""
    spec = ctx.spec()
    if service is not None:
        spec.service(service)
    with ctx.store().read() as conn:
        info = overview(conn, spec, service)
    if as_json:
        echo_json(info)
        return
    rows = [
        [
            s["name"],
            s["kind"],
            _v(s["production"]),
            f"v{s['canary']} ({s['canary_weight']:g}%)" if s["canary"] else "-",
            _v(s["shadow"]),
            "yes: " + s["disabled_reason"] if s["disabled"] else "no",
            s["rollout"] or "-",
        ]
        for s in info["services"]
    ]
    click.echo(
        table(rows, ["SERVICE", "KIND", "PRODUCTION", "CANARY", "SHADOW", "DISABLED", "ROLLOUT"])
    )
    breakers = info["breakers"]
    if breakers:
        click.echo("\nCircuit breakers (the last change any gateway recorded):")
        click.echo(
            table(
                [
                    [f"{b['provider']}/{b['model']}", b["state"], _when(b["ts_us"]), b["gateway"]]
                    for b in breakers
                ],
                ["MODEL", "STATE", "SINCE (UTC)", "GATEWAY"],
            )
        )
    elif spec.providers:
        click.echo("\nCircuit breakers: all closed (no gateway has recorded a change)")


def _v(number: Any) -> str:
    return f"v{number}" if number is not None else "-"


def _when(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S")


COMMANDS = [status]
