"""``approve``, ``rollback``, ``shadow``, ``disable``, ``enable`` and ``history``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from prodgate.audit.history import guard_events
from prodgate.audit.history import history as read_history
from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, setting_options, table
from prodgate.registry import approvals
from prodgate.rollout import split as deployments
from prodgate.settings import ACTING


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION)
@click.option("--note", default="", help="Free text kept with the approval.")
@click.option(
    "--override-gates", is_flag=True, help="Approve although gates failed (needs --reason)."
)
@click.option("--reason", default="", help="Why the gates are overridden.")
@setting_options(ACTING)
@pass_ctx
def approve(
    ctx: Context, service: str, version: int, note: str, override_gates: bool, reason: str
) -> None:
    """Sign off VERSION of SERVICE for production and canary traffic.

    Refused (and recorded as refused) when the version's newest evaluation failed its
    gates, when the approver (--by) registered the version (separation of duties), or
    when they already approved it. The OS user and host are recorded beside the name.
    """
    spec = ctx.spec().service(service)
    store = ctx.store()
    by = ctx.actor
    approvals.approve(
        store, spec, version, by=by, note=note, override_gates=override_gates, reason=reason
    )
    with store.read() as conn:
        have = len(approvals.list_approvals(conn, service, version))
    need = spec.policy.approvals.required
    kind = "override of failed gates" if override_gates else "approval"
    click.echo(f"{service} version {version}: {kind} by {by} recorded ({have} of {need} needed)")


@click.command()
@click.argument("service")
@click.option(
    "--to", "to", type=VERSION, default=None, help="An earlier production version to go back to."
)
@click.option("--reason", default="", help="Why, for the audit trail.")
@setting_options(ACTING)
@pass_ctx
def rollback(ctx: Context, service: str, to: int | None, reason: str) -> None:
    """Put the production version before the current one of SERVICE back at once (stops
    any canary). Again, and it goes further back; --to VERSION goes back to that one."""
    spec = ctx.spec().service(service)
    store = ctx.store()
    with store.read() as conn:
        before = deployments.get_deployment(conn, service)
    dep = deployments.rollback(store, spec, actor=ctx.actor, reason=reason, to=to)
    gone = before.production_version if before is not None else None
    click.echo(
        f"{service}: version {dep.production_version} is back in production "
        f"(version {gone} rolled back)"
    )


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION, required=False)
@click.option("--off", is_flag=True, help="Stop shadowing.")
@click.option("--reason", default="", help="Why, for the audit trail.")
@setting_options(ACTING)
@pass_ctx
def shadow(ctx: Context, service: str, version: int | None, off: bool, reason: str) -> None:
    """Run VERSION in shadow: it sees a copy of every request; its answers are recorded
    but never returned. Needs no approval."""
    spec = ctx.spec().service(service)
    if off == (version is not None):
        raise click.UsageError("give a VERSION, or --off")
    deployments.set_shadow(ctx.store(), spec, version, actor=ctx.actor, reason=reason)
    click.echo(f"{service}: " + (f"version {version} runs in shadow" if version else "shadow off"))


@click.command()
@click.argument("service")
@click.option("--reason", required=True, help="Why; every caller gets it with the 503.")
@setting_options(ACTING)
@pass_ctx
def disable(ctx: Context, service: str, reason: str) -> None:
    """The kill switch: every request to SERVICE gets 503 with REASON, and is recorded."""
    spec = ctx.spec().service(service)
    deployments.set_disabled(ctx.store(), spec, True, actor=ctx.actor, reason=reason)
    click.echo(f"{service} is disabled: {reason}")


@click.command()
@click.argument("service")
@click.option("--reason", default="", help="Why, for the audit trail.")
@setting_options(ACTING)
@pass_ctx
def enable(ctx: Context, service: str, reason: str) -> None:
    """Undo 'prodgate disable': SERVICE serves again."""
    spec = ctx.spec().service(service)
    deployments.set_disabled(ctx.store(), spec, False, actor=ctx.actor, reason=reason)
    click.echo(f"{service} is enabled")


#: The details a history row shows, in this order, when the record has them.
_DETAILS = (
    "reason",
    "note",
    "previous",
    "rolled_back",
    "aborted_canary",
    "failed_gates",
    "passed",
    "weight",
)


def _guard_summary(entry: dict[str, Any]) -> str:
    """``input block: injection (injection.patterns) at messages/0/content; ...``"""
    parts = []
    for direction, verdict in entry["guard"].items():
        found = sorted(
            {
                f"{f['category']}/{f['kind']} {f['action']}"
                + (f" at {f['path']}" if f.get("path") else "")
                for f in verdict.get("findings", [])
            }
        )
        parts.append(f"{direction} {verdict.get('verdict')}: {', '.join(found)}")
    return "; ".join(parts) + f" (record {entry['id']}, status {entry['status']})"


def _summary(entry: dict[str, Any]) -> str:
    if entry["action"] == "guard":
        return _guard_summary(entry)
    details = dict(entry)
    if entry["action"] == "rollout_step":
        # The record's ``weight`` is the one the interval was judged at (like every
        # judged record's); the row says where the step took the canary.
        details["weight"] = entry.get("new_weight")
    elif entry["action"] in ("promote", "rollback"):
        # Judged at that weight, but afterwards the canary is production or off: a
        # weight on the row would read as the canary's share now.
        details.pop("weight", None)
    parts = []
    for key in _DETAILS:
        value = details.get(key)
        if value in (None, "", []):
            continue
        if key == "failed_gates":
            value = "; ".join(g.get("gate", "?") for g in value)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def _by(entry: dict[str, Any]) -> str:
    """Who acted, and where from when that was recorded: ``alice (dana@build-7)``."""
    name = entry.get("actor") or "-"
    origin = entry.get("origin") or {}
    if origin.get("os_user") and origin.get("host"):
        return f"{name} ({origin['os_user']}@{origin['host']})"
    if origin.get("address"):
        return f"{name} ({origin['address']})"
    return str(name)


@click.command()
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with every detail.")
@click.option("-n", "limit", default=1000, show_default=True, help="Newest N actions.")
@click.option(
    "--guard/--no-guard",
    "with_guard",
    default=True,
    show_default=True,
    help="Also the newest 50 decisions a guard rail acted on (blocked, redacted, ...).",
)
@pass_ctx
def history(ctx: Context, service: str, as_json: bool, limit: int, with_guard: bool) -> None:
    """Every governance action on SERVICE: who, when, why, and the metrics behind it;
    and the decisions its guard rails acted on."""
    ctx.spec().service(service)
    with ctx.store().read() as conn:
        entries = read_history(conn, service, limit)
        if with_guard:
            entries = sorted(entries + guard_events(conn, service), key=lambda e: e["seq"])
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo(f"{service} has no recorded actions yet")
        return
    rows = [
        [
            dt.datetime.fromtimestamp(e["ts_us"] / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            e["action"],
            str(e["version"] if e["version"] is not None else "-"),
            _by(e),
            _summary(e),
        ]
        for e in entries
    ]
    click.echo(table(rows, ["TIME (UTC)", "ACTION", "VER", "BY", "DETAILS"]))


COMMANDS = [approve, rollback, shadow, disable, enable, history]
