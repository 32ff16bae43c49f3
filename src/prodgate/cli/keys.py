"""``keys create``, ``keys list``, ``keys revoke`` and ``keys rotate``."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import click

from prodgate.cli.context import Context, Group, echo_json, pass_ctx, setting_options, table
from prodgate.durations import parse_duration as parse_window
from prodgate.identity import keys as key_store
from prodgate.identity.key import LIMITS, ApiKey
from prodgate.llm.prices import usd_text
from prodgate.settings import ACTING
from prodgate.store.engine import now_us

_COUNT = click.IntRange(min=1)
#: Each limit's option: (option, limit name, type, metavar, help). A budget is given in
#: USD as text and checked by the library (exactly, to the micro-dollar).
_LIMIT_OPTIONS: tuple[tuple[str, str, click.ParamType[Any], str | None, str], ...] = (
    ("--rps", "rps", _COUNT, None, "Requests per second."),
    ("--rpm", "rpm", _COUNT, None, "Requests per minute."),
    ("--rows-per-minute", "rows_per_minute", _COUNT, None, "Rows (instances) per minute."),
    ("--concurrency", "concurrency", _COUNT, None, "Requests in flight at once."),
    (
        "--tokens-per-minute",
        "tokens_per_minute",
        _COUNT,
        None,
        "LLM tokens (prompt and answer) per calendar minute.",
    ),
    (
        "--budget-day",
        "budget_day",
        click.STRING,
        "USD",
        "USD to spend on LLM calls per calendar day (UTC), e.g. 2.50.",
    ),
    (
        "--budget-month",
        "budget_month",
        click.STRING,
        "USD",
        "USD to spend on LLM calls per calendar month (UTC).",
    ),
)


@click.group(cls=Group)
def keys() -> None:
    """API keys: who may call what, and how much.

    \b
    prodgate keys create app --scope predict:claims-triage --rpm 600
    prodgate keys create triage-bot --agent --owner alice --scope predict:*
    prodgate keys create chat-app --scope predict:claims-letter \\
        --tokens-per-minute 20000 --budget-day 5 --budget-month 100
    prodgate keys list
    prodgate keys rotate app --grace 24h
    prodgate keys revoke app --reason "laptop lost"

    A key is shown once, when made or rotated; only its hash is stored. Running
    gateways pick up every change within PRODGATE_REFRESH_INTERVAL.
    """


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _grace(text: str) -> float:
    """--grace in seconds. Zero is a valid grace (none at all) in any unit, which
    parse_window, made for windows that must be longer than zero, refuses."""
    if re.fullmatch(r"\s*0+(\.0*)?\s*[smhd]?\s*", text):
        return 0.0
    return parse_window(text, "--grace")


def _limits_text(limits: dict[str, int]) -> str:
    """``rpm=600, budget_day=$2.50``: budgets in USD, never rounded."""
    return (
        ", ".join(
            f"{k}={usd_text(v) if k in LIMITS and LIMITS[k].unit == 'usd_micros' else v}"
            for k, v in limits.items()
        )
        or "-"
    )


def _issued(issued: key_store.Issued, as_json: bool, verb: str) -> None:
    key = issued.key
    if as_json:
        echo_json({**key.as_dict(now_us()), "key": issued.token})
        return
    who = f"agent {key.name}, owned by {key.owner}" if key.agent else f"{key.owner}"
    click.echo(f"{verb} key {key.id} ({key.name}) for {who}: {', '.join(key.scopes)}")
    if key.limits:
        click.echo(f"  limits: {_limits_text(key.limits)}")
    if key.expires_at_us:
        click.echo(f"  expires: {_when(key.expires_at_us)} UTC")
    if key.previous_until_us:
        click.echo(f"  the old key works until {_when(key.previous_until_us)} UTC")
    click.echo("The key, shown this once (send it as Authorization: Bearer <key>):", err=True)
    click.echo(issued.token)


def _limit_options(f: Any) -> Any:
    for option, name, kind, metavar, help_text in reversed(_LIMIT_OPTIONS):
        f = click.option(option, name, type=kind, default=None, metavar=metavar, help=help_text)(f)
    return f


@keys.command()
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="predict:SERVICE, feedback:SERVICE, admin:SERVICE (SERVICE may be *), review, "
    "audit:read or admin; repeat for several.",
)
@click.option("--expires", default=None, metavar="DURATION", help="Lifetime: 90d, 12h, 30m.")
@click.option("--agent", is_flag=True, help="The key is an AI agent's or service account's.")
@click.option(
    "--owner",
    default=None,
    metavar="PERSON",
    help="The person the key belongs to (an agent's: the person accountable); default --by.",
)
@_limit_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON; the key is its 'key' field.")
@setting_options(ACTING)
@pass_ctx
def create(
    ctx: Context,
    /,
    name: str,
    scopes: tuple[str, ...],
    expires: str | None,
    agent: bool,
    owner: str | None,
    as_json: bool,
    **limits: int | str | None,
) -> None:
    """Make a key named NAME and print it, once."""
    expires_s = parse_window(expires, "--expires") if expires else None
    issued = key_store.create(
        ctx.store(),
        name,
        scopes=scopes,
        actor=ctx.actor,
        owner=owner,
        agent=agent,
        expires_in_s=expires_s,
        limits={k: limits.get(k) for _, k, _, _, _ in _LIMIT_OPTIONS},
    )
    _issued(issued, as_json, "made")


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="Revoked keys too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_(ctx: Context, include_revoked: bool, as_json: bool) -> None:
    """The keys: id, name, identity, scopes, limits and state; never a secret."""
    found: list[ApiKey] = key_store.list_keys(ctx.store(), include_revoked=include_revoked)
    now = now_us()
    if as_json:
        echo_json([k.as_dict(now) for k in found])
        return
    if not found:
        click.echo("no keys; make one with: prodgate keys create NAME --scope predict:SERVICE")
        return
    rows = [
        [
            k.id,
            k.name,
            f"{k.name} (agent of {k.owner})" if k.agent else k.owner,
            " ".join(k.scopes),
            _limits_text(k.limits),
            k.state(now),
            _when(k.expires_at_us),
        ]
        for k in found
    ]
    click.echo(table(rows, ["ID", "NAME", "IDENTITY", "SCOPES", "LIMITS", "STATE", "EXPIRES"]))


@keys.command()
@click.argument("key", metavar="KEY")
@click.option("--reason", default="", help="Why, for the audit trail.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@setting_options(ACTING)
@pass_ctx
def revoke(ctx: Context, key: str, reason: str, as_json: bool) -> None:
    """Revoke KEY (its id, its name or the key itself) on every gateway at once."""
    revoked = key_store.revoke(ctx.store(), key, actor=ctx.actor, reason=reason)
    if as_json:
        echo_json(revoked.as_dict(now_us()))
        return
    click.echo(f"revoked key {revoked.id} ({revoked.name})")


@keys.command()
@click.argument("key", metavar="KEY")
@click.option(
    "--grace",
    default="24h",
    show_default=True,
    metavar="DURATION",
    help="How long the old key keeps working (0 for not at all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON; the key is its 'key' field.")
@setting_options(ACTING)
@pass_ctx
def rotate(ctx: Context, key: str, grace: str, as_json: bool) -> None:
    """A new secret for KEY (same id, scopes, limits and identity); print it once."""
    grace_s = _grace(grace)
    issued = key_store.rotate(ctx.store(), key, actor=ctx.actor, grace_s=grace_s)
    _issued(issued, as_json, "rotated")


COMMANDS = [keys]
