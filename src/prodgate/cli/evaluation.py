"""``evaluate`` and ``compare``: a version's metrics, cohorts and gates on labelled data."""

from __future__ import annotations

from pathlib import Path

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, setting_options
from prodgate.evaluation import report
from prodgate.settings import ACTING

_DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Labelled data (csv, parquet, jsonl) with the input fields and the truth.",
)
_LABEL = click.option(
    "--label",
    "label",
    default=None,
    metavar="COLUMN",
    help="The column holding the truth [default: 'label', or the one non-input column].",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION)
@_DATA
@_LABEL
@_JSON
@setting_options(ACTING)
@pass_ctx
def evaluate(
    ctx: Context, service: str, version: int, data: Path, label: str | None, as_json: bool
) -> None:
    """Measure VERSION of SERVICE on labelled data: metrics, business cost, cohorts, gates.

    The result is stored (approval needs a passing one) and recorded in the audit log.
    Exits 1 when a gate fails, 0 when all pass.
    """
    spec = ctx.spec().service(service)
    from prodgate.evaluation import evaluate as evaluation  # scikit-learn: when used

    stored = evaluation.evaluate_version(
        ctx.store(), spec, version, data, label, actor=ctx.actor, progress=_progress
    )
    if as_json:
        echo_json(
            {
                "id": stored.id,
                "service": service,
                "version": version,
                "dataset": stored.fingerprint,
                "label_column": stored.label_column,
                **stored.result,
            }
        )
    else:
        click.echo(
            report.evaluation_text(
                stored.result,
                service=service,
                version=version,
                dataset=stored.fingerprint,
                label_column=stored.label_column,
                evaluation_id=stored.id,
            )
        )
    if not stored.result["passed"]:
        click.get_current_context().exit(1)


@click.command()
@click.argument("service")
@click.argument("a", type=VERSION)
@click.argument("b", type=VERSION)
@_DATA
@_LABEL
@_JSON
@pass_ctx
def compare(
    ctx: Context, service: str, a: int, b: int, data: Path, label: str | None, as_json: bool
) -> None:
    """Score versions A and B of SERVICE on the same labelled data, side by side.

    Nothing is stored. Exits 0 whatever the gates say (use evaluate for a verdict).
    """
    spec = ctx.spec().service(service)
    from prodgate.evaluation import evaluate as evaluation

    result = evaluation.compare(ctx.store(), spec, a, b, data, label, progress=_progress)
    if as_json:
        echo_json(result)
    else:
        click.echo(report.compare_text(result))


COMMANDS = [evaluate, compare]
