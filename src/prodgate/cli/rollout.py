"""``rollout``: canary rollouts, and their status and controls."""

from __future__ import annotations

from typing import Any

import click

from prodgate.cli.context import Context, echo_json, pass_ctx, setting_options, table
from prodgate.exceptions import UsageError
from prodgate.registry.versions import MAX_VERSION
from prodgate.rollout import commands
from prodgate.rollout.status import status as rollout_status
from prodgate.settings import ACTING

ACTIONS = ("status", "pause", "resume", "abort", "confirm")


def _print_status(info: dict[str, Any]) -> None:
    where = (
        "now in production"  # the canary's share is gone: it takes all the traffic
        if info["state"] == "promoted"
        else f"weight {info['weight']:.0%}, "
        f"step {info['step'] + 1} of {len(info['policy']['steps'])}"
    )
    click.echo(
        f"{info['service']}: version {info['canary_version']} against "
        f"{info['baseline_version']}: {info['state']}, {where}, "
        f"failures {info['failures']} of {info['policy']['failure_threshold']}"
    )
    if info.get("reason"):
        click.echo(f"  reason: {info['reason']}")
    judgement = info.get("last_judgement") or {}
    checks = judgement.get("checks") or []
    if checks:
        rows = [
            [
                c.get("name", "?"),
                "pass" if c.get("passed") else "FAIL",
                _figure(c.get("canary_value")),
                _figure(c.get("baseline_value")),
                _figure(c.get("limit")),
            ]
            for c in checks
        ]
        lines = table(rows, ["CHECK", "RESULT", "CANARY", "PRODUCTION", "LIMIT"]).splitlines()
        click.echo("\n".join("  " + line for line in lines))


def _figure(value: Any) -> str:
    """A measured value as people read it: four significant digits, '-' for none."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("first", metavar="SERVICE|ACTION")
@click.argument("second", metavar="VERSION|SERVICE", required=False)
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (status).")
@setting_options(ACTING)
@pass_ctx
def rollout(ctx: Context, first: str, second: str | None, reason: str, as_json: bool) -> None:
    """Canary rollouts.

    \b
    prodgate rollout SERVICE VERSION     start a canary of VERSION (approved) against production
    prodgate rollout status SERVICE      where it stands, with the last checks
    prodgate rollout pause SERVICE       stop judging; the weight stays
    prodgate rollout resume SERVICE      judge again from a fresh interval
    prodgate rollout abort SERVICE       all traffic back to production
    prodgate rollout confirm SERVICE     promote a canary waiting at the manual gate

    The controller runs inside 'prodgate serve'; it moves the canary through the
    spec's steps, checking it against production every interval, and rolls it back
    by itself when the checks fail often enough.
    """
    store = ctx.store()
    actor = ctx.actor
    if first in ACTIONS:
        if second is None:
            raise UsageError(f"say which service: prodgate rollout {first} SERVICE")
        service = ctx.spec().service(second)
        if first == "status":
            with store.read() as conn:
                info = rollout_status(conn, service.name)
            if as_json:
                echo_json(info)
            else:
                _print_status(info)
            return
        action = getattr(commands, first)
        r = action(store, service, actor=actor, reason=reason)
        click.echo(f"{service.name}: rollout of version {r.canary_version} is {r.state}")
        return
    if second is None or not second.isdigit() or not 1 <= int(second) <= MAX_VERSION:
        raise UsageError("start a rollout with: prodgate rollout SERVICE VERSION (1, 2, ...)")
    number = int(second)
    service = ctx.spec().service(first)
    r = commands.start(store, service, number, actor=actor, reason=reason)
    steps = ", ".join(f"{s:g}%" for s in r.policy.steps)
    click.echo(
        f"{service.name}: canary of version {r.canary_version} started at {r.weight:.0%} "
        f"(steps {steps}, every {r.policy.interval_s:g}s); 'prodgate serve' drives it; "
        f"watch with 'prodgate rollout status {service.name}'"
    )


COMMANDS = [rollout]
