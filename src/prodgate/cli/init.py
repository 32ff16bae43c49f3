"""``init``: write a prodgate.yaml to start from, drafted from training data if given."""

from __future__ import annotations

import re
from pathlib import Path

import click

from prodgate import scaffold
from prodgate.cli.context import Context, pass_ctx
from prodgate.exceptions import UsageError
from prodgate.spec import SERVICE_NAME


@click.command()
@click.argument("service", default="my-service")
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Training data (csv, parquet, jsonl) to draft the input contract from.",
)
@click.option(
    "--label",
    help="The label column of --data, left out of the contract "
    "(default: a column named label, target or y).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_ctx
def init(ctx: Context, service: str, data: Path | None, label: str | None, force: bool) -> None:
    """Write a prodgate.yaml declaring SERVICE, to edit to your model's inputs.

    With --data, the input contract (types, required fields, ranges, enums, nulls)
    and the kind and labels are drafted from the training data.
    """
    if not re.match(SERVICE_NAME, service):
        raise UsageError(
            f"{service!r} is not a service name: lowercase letters, digits and '-', up to 63"
        )
    if label is not None and data is None:
        raise UsageError("--label names a column of --data; pass --data too")
    path = Path(ctx.settings.config or "prodgate.yaml")
    if path.exists() and not force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    drafted = scaffold.draft_file(data, label) if data is not None else None
    path.write_text(scaffold.render(service, drafted), encoding="utf-8")
    if drafted is None:
        click.echo(f"wrote {path}; edit the contract, then 'prodgate register {service} MODEL'")
        return
    what = f"{len(drafted.fields)} input fields from {drafted.rows} rows of {data}"
    if drafted.label is None:
        kind = "no label column (pass --label): set kind and labels"
    elif drafted.labels is not None:
        kind = f"a {drafted.kind} of label {drafted.label} ({', '.join(map(str, drafted.labels))})"
    else:
        kind = f"a {drafted.kind} of {drafted.label}"
    click.echo(f"wrote {path}: {what}; {kind}")
    click.echo(f"check the contract, then 'prodgate register {service} MODEL --data {data}'")


COMMANDS = [init]
