"""``contract check``: a whole data file against a service's input contract.

The batch twin of the gateway's per-request check (:mod:`prodgate.contract_batch`):
every row judged as a request would be, violations counted per column and rule with
a few example rows. Exits 0 when the file is clean, 1 when any row breaks the
contract, 2 on a usage error (an unknown service, a file that cannot be read).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from prodgate.cli.context import Context, ProgressBar, echo_json, pass_ctx, table
from prodgate.contract_batch import Report, check_file

#: From this size (rows of a Parquet file, bytes of another) a terminal shows a bar.
PROGRESS_FROM = 200_000


@click.group()
def contract() -> None:
    """Check data against a service's input contract."""


@contract.command()
@click.argument("service")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The data to check (csv, parquet, jsonl): one request body a row.",
)
@click.option(
    "--examples",
    type=click.IntRange(0, 1000),
    default=3,
    show_default=True,
    metavar="N",
    help="Example rows (row number and value) kept per column and rule.",
)
@click.option(
    "--ignore",
    default="",
    metavar="COLUMNS",
    help="Columns to leave out, comma separated (a label column, say).",
)
@click.option(
    "--null-is-missing",
    "null_is_missing",
    is_flag=True,
    help="csv, parquet: an empty cell is a field left out (not a null value).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_ctx
def check(
    ctx: Context,
    service: str,
    data: Path,
    examples: int,
    ignore: str,
    null_is_missing: bool,
    as_json: bool,
) -> None:
    """Check every row of --data against SERVICE's input contract.

    Counts, per column and rule (type, null, required, additionalProperties, enum,
    minimum, pattern, ...), the rows that break it, with example rows. A CSV cell is
    read as its field's type asks; an empty cell is null (or, with --null-is-missing,
    a field the request leaves out).

    \b
    prodgate contract check claims-triage --data holdout.parquet
    prodgate contract check claims-triage --data requests.jsonl --json --examples 5

    Exits 1 when any row breaks the contract, 0 when none does.
    """
    schema = ctx.spec().service(service).contract
    left_out = tuple(c.strip() for c in ignore.split(",") if c.strip())
    bar = ProgressBar("checking", PROGRESS_FROM)
    try:
        report = check_file(
            schema,
            data,
            examples=examples,
            ignore=left_out,
            null_is_missing=null_is_missing,
            progress=bar,
        )
    finally:
        bar.close()
    if as_json:
        echo_json({"service": service, **report.as_dict()})
    else:
        click.echo(render(service, report))
    if report.rows_with_violations:
        click.get_current_context().exit(1)


def _value(value: Any) -> str:
    return orjson.dumps(value).decode() if value is not None else "null"


def render(service: str, report: Report) -> str:
    """The report as text: a summary line, a table per column and rule, notes."""
    share = report.rows_with_violations / report.rows if report.rows else 0.0
    lines = [
        f"{service}: {report.rows:,} rows of {report.file} checked in {report.seconds:.2f} s: "
        + (
            "no violations"
            if not report.rows_with_violations
            else f"{report.rows_with_violations:,} rows with violations ({share:.2%})"
        )
    ]
    if report.counts:
        rows = [
            [
                c.column,
                c.rule,
                f"{c.count:,}",
                ", ".join(
                    f"row {e['row']}" + (f": {_value(e['value'])}" if "value" in e else "")
                    for e in c.examples
                ),
            ]
            for c in report.ordered()
        ]
        lines += ["", table(rows, ["COLUMN", "RULE", "ROWS", "EXAMPLES"])]
    notes = []
    if report.missing_columns:
        notes.append(f"columns not in the file: {', '.join(report.missing_columns)}")
    if report.unknown_columns:
        notes.append(f"columns not in the contract: {', '.join(report.unknown_columns)}")
    notes += [f"checked by the validator: {n}" for n in report.per_value]
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


COMMANDS = [contract]
