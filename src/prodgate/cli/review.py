"""``review``: people judge escalated and sampled decisions.

``review list`` shows the queue, ``review next SERVICE`` claims its oldest item the
reviewer may judge (under a lease), ``review show ID`` shows one with its input, the
model's answer and its explanation, ``review decide ID --label L`` records a decision
and ``review skip ID`` passes on one. The reviewer is who acts (``--by``,
``PRODGATE_USER``, the login name), as for ``approve``. ``review stats`` and ``review
export`` (:mod:`prodgate.cli.review_report`) are loaded on first use.
"""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

import click

from prodgate.cli.context import Context, Group, echo_json, pass_ctx, setting_options, table
from prodgate.exceptions import ContractViolationError, UsageError
from prodgate.settings import ACTING

#: The commands of the group that live in :mod:`prodgate.cli.review_report`.
REPORTS = ("stats", "export")


class _ReviewGroup(Group):
    """The group; ``stats`` and ``export`` come from their own module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *REPORTS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in REPORTS and name not in self.commands:
            try:
                module = importlib.import_module("prodgate.cli.review_report")
            except ModuleNotFoundError as exc:
                if exc.name != "prodgate.cli.review_report":
                    raise
                return None
            from prodgate.cli.context import add_shared_options

            command: click.Command = getattr(module, name)
            add_shared_options(command)
            self.add_command(command, name)
        return super().get_command(ctx, name)


@click.group("review", cls=_ReviewGroup)
def review() -> None:
    """The review queue: escalated and sampled decisions, judged by people."""


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _shown(value: Any) -> str:
    return "-" if value is None else str(value)


@review.command("list")
@click.argument("service", required=False)
@click.option("--reason", default=None, help="Only items there for this reason (e.g. sampled).")
@click.option("--cohort", default=None, help="Only items of this cohort.")
@click.option(
    "--state",
    type=click.Choice(["open", "adjudication", "decided"]),
    default=None,
    help="Only items in this state (default: those still pending).",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def list_command(
    ctx: Context,
    service: str | None,
    reason: str | None,
    cohort: str | None,
    state: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Items waiting for a person, oldest first (of SERVICE, or every service)."""
    from prodgate.review import items

    if service is not None:
        ctx.spec().service(service)
    found = items.list_items(
        ctx.store(), service, state=state, reason=reason, cohort=cohort, limit=limit
    )
    if as_json:
        echo_json({"items": found})
        return
    if not found:
        click.echo("no items")
        return
    rows = [
        [
            i["id"],
            i["service"],
            _shown(i["version"]),
            i["state"] + (" (overdue)" if i["overdue"] else ""),
            ",".join(i["reasons"]),
            _shown(i["cohort"]),
            _shown(i["prediction"]),
            _shown((i["lease"] or {}).get("claimed_by")),
            _when(i["created_us"]),
        ]
        for i in found
    ]
    headers = ["id", "service", "version", "state", "reasons", "cohort", "model", "claimed", "at"]
    click.echo(table(rows, headers))


def _print_item(item: dict[str, Any]) -> None:
    lease = item["lease"]
    click.echo(f"item {item['id']}  {item['service']} version {_shown(item['version'])}")
    click.echo(f"  state      {item['state']}" + ("  (overdue)" if item["overdue"] else ""))
    click.echo(f"  reasons    {', '.join(item['reasons'])}")
    click.echo(f"  cohort     {_shown(item['cohort'])}")
    click.echo(f"  model      {_shown(item['prediction'])} ({item['decision']})")
    if item.get("probabilities"):
        odds = ", ".join(f"{k} {v:.3f}" for k, v in item["probabilities"].items())
        click.echo(f"  odds       {odds}")
    if item.get("confidence") is not None:
        click.echo(f"  confidence {item['confidence']:.3f}")
    if lease:
        click.echo(f"  claimed by {lease['claimed_by']} until {_when(lease['until_us'])} UTC")
    if item.get("input") is not None:
        click.echo("  input")
        for key, value in item["input"].items():
            click.echo(f"    {key}: {value}")
    _print_explanation(item.get("attributions"))
    for d in item.get("decisions", []):
        label = "" if d["role"] == "skip" else f" {d['label']}"
        note = f"  ({d['note']})" if d["note"] else ""
        click.echo(f"  {d['role']:10} {d['reviewer']}{label}{note}")
    if item["final"] is not None:
        override = "  (overrides the model)" if item["override"] else ""
        click.echo(f"  final      {item['final']}{override}")


#: Fields an explanation shows, the largest pushes first.
SHOWN_FIELDS = 8


def _print_explanation(found: dict[str, Any] | None) -> None:
    """Why the model decided so: each input field's push towards its answer."""
    if not found:
        click.echo("  explanation  not computed yet")
        return
    if "error" in found:
        click.echo(f"  explanation  unavailable: {found['error']}")
        return
    values: dict[str, float] = found.get("values", {})
    click.echo(
        f"  explanation  {found.get('method')} attributions towards {found.get('target')!r}"
        f" ({found.get('space')}, base {found.get('base', 0):.3f})"
    )
    top = max((abs(v) for v in values.values()), default=0.0) or 1.0
    for name, value in list(values.items())[:SHOWN_FIELDS]:
        bar = "#" * max(1, round(12 * abs(value) / top)) if value else ""
        click.echo(f"    {name:24} {value:+.3f} {bar}")


def _explained(ctx: Context, item: dict[str, Any]) -> dict[str, Any]:
    """*item* with its explanation, computed here when the server has not yet."""
    from prodgate.review.explaining import explained

    return explained(ctx.store(), ctx.spec(), item)


@review.command("next")
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@setting_options(ACTING)
@pass_ctx
def next_command(ctx: Context, service: str, as_json: bool) -> None:
    """Claim the oldest item of SERVICE you may judge, under a lease, and show it."""
    from prodgate.review import queue

    item = queue.claim_next(ctx.store(), ctx.spec().service(service), ctx.actor)
    if item is not None:
        item = _explained(ctx, item)
    if as_json:
        echo_json({"item": item})
    elif item is None:
        click.echo(f"{service}: nothing to review for {ctx.actor}")
    else:
        _print_item(item)


@review.command("show")
@click.argument("item_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def show(ctx: Context, item_id: str, as_json: bool) -> None:
    """One item: the input, the model's answer, why it is here, the decisions so far."""
    from prodgate.review import items

    item = _explained(ctx, items.show(ctx.store(), item_id))
    if as_json:
        echo_json(item)
    else:
        _print_item(item)


def _number(text: str, option: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{option} {text!r}: must be a number") from None


@review.command("decide")
@click.argument("item_id", metavar="ID")
@click.option("--label", default=None, help="The true label.")
@click.option("--value", default=None, help="The true value (a regressor).")
@click.option("--score", default=None, help="How good an LLM answer was, 0 to 1.")
@click.option("--correct", default=None, help="The right answer to an LLM's question.")
@click.option("--note", default="", help="Why, kept with the decision.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@setting_options(ACTING)
@pass_ctx
def decide(
    ctx: Context,
    item_id: str,
    label: str | None,
    value: str | None,
    score: str | None,
    correct: str | None,
    note: str,
    as_json: bool,
) -> None:
    """Record your decision on item ID: its true label (or value, score, correct
    answer). You must hold its lease, or nobody may (it is claimed for you)."""
    from prodgate.review import queue

    given = {
        k: v
        for k, v in {"label": label, "value": value, "score": score, "correct": correct}.items()
        if v is not None
    }
    if len(given) != 1:
        raise UsageError("give the truth once: --label, --value, --score or --correct")
    body: dict[str, Any] = {
        k: _number(v, f"--{k}") if k in ("value", "score") else v for k, v in given.items()
    }
    body["note"] = note
    try:
        result = queue.decide(ctx.store(), ctx.spec(), item_id, ctx.actor, body)
    except ContractViolationError as exc:
        # The body's JSON paths are this command's options.
        said = "; ".join(
            f"--{v.path.strip('/') or 'label'} {v.message}".replace("-- ", "")
            for v in exc.violations
        )
        raise UsageError(said) from None
    if as_json:
        echo_json(result)
        return
    line = f"item {item_id}: {result['role']} by {result['reviewer']} recorded; "
    if result["state"] == "decided":
        line += f"decided: {result['final']}"
        line += " (overrides the model)" if result["override"] else ""
        fb = result.get("feedback") or {}
        if fb and not fb.get("written"):
            line += f"; {fb['detail']}"
    elif result["state"] == "adjudication":
        line += "the reviews disagree: it waits for an adjudicator"
    else:
        line += "it needs more reviews"
    click.echo(line)


@review.command("skip")
@click.argument("item_id", metavar="ID")
@setting_options(ACTING)
@pass_ctx
def skip(ctx: Context, item_id: str) -> None:
    """Pass on item ID: your lease is released and ``next`` will not offer it to you."""
    from prodgate.review import queue

    result = queue.skip(ctx.store(), item_id, ctx.actor)
    released = " (lease released)" if result["released"] else ""
    click.echo(f"item {item_id}: skipped by {ctx.actor}{released}")


COMMANDS = [review]
