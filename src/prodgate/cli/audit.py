"""``audit verify``, ``audit tail`` and ``audit show``."""

from __future__ import annotations

import datetime as dt

import click

from prodgate.audit import log
from prodgate.audit.verify import verify as verify_chain
from prodgate.cli.context import Context, Group, echo_json, pass_ctx, table
from prodgate.exceptions import UnknownInferenceError


@click.group(cls=Group)
def audit() -> None:
    """The tamper-evident audit trail of every decision and action."""


@audit.command()
@pass_ctx
def verify(ctx: Context) -> None:
    """Walk the hash chain; exit 1 naming the first record changed, removed or moved."""

    def progress(n: int) -> None:
        click.echo(f"  checked {n} records...", err=True)

    verdict = verify_chain(ctx.store(), progress)
    if verdict.ok:
        click.echo(f"ok: {verdict.checked} records verified; head {verdict.head}")
        return
    click.echo(f"FAILED after {verdict.checked} good records: {verdict.problem}", err=True)
    raise SystemExit(1)


def _when(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1e6, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


@audit.command()
@click.option(
    "-n",
    "limit",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="How many records.",
)
@click.option("--service", default=None, help="Only this service's records.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def tail(ctx: Context, limit: int, service: str | None, as_json: bool) -> None:
    """Show the newest records."""
    with ctx.store().read() as conn:
        records = log.tail(conn, limit, service)
    if as_json:
        echo_json(records)
        return
    rows = [
        [
            str(r["seq"]),
            _when(r["ts_us"]),
            r["kind"],
            r["action"],
            r["service"] or "-",
            str(r["version"] or "-"),
            str(r["status"] or "-"),
            r["decision"] or r.get("actor") or "-",
            r["id"],
        ]
        for r in records
    ]
    click.echo(
        table(
            rows,
            [
                "SEQ",
                "TIME (UTC)",
                "KIND",
                "ACTION",
                "SERVICE",
                "VER",
                "STATUS",
                "DECISION/BY",
                "ID",
            ],
        )
    )


@audit.command()
@click.argument("record_id")
@pass_ctx
def show(ctx: Context, record_id: str) -> None:
    """Print one record (an inference id from a response, or any record id) as JSON."""
    with ctx.store().read() as conn:
        record = log.get(conn, record_id)
    if record is None:
        raise UnknownInferenceError(f"no audit record with id {record_id!r}")
    echo_json(record)


COMMANDS = [audit]
