"""``evaluate`` and ``compare``: a version's metrics, cohorts and gates on labelled data.

A prompt version (a service of kind ``llm``) is run over a cases file (JSON Lines),
its calls made concurrently with a progress bar on stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, setting_options
from prodgate.evaluation import report
from prodgate.settings import ACTING

if TYPE_CHECKING:
    from prodgate.evaluation.evaluate import FeatureJoin
    from prodgate.evaluation.prompts import Limits

_DATA = click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Labelled data (csv, parquet, jsonl) with the input fields and the truth; for an "
    "llm service, test cases (.jsonl, one {inputs, expected, label, contains, regex} a line).",
)
_LABEL = click.option(
    "--label",
    "label",
    default=None,
    metavar="COLUMN",
    help="The column holding the truth [default: 'label', or the one non-input column]; "
    "for an llm service, the field of a JSON answer holding its label.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_AT = click.option(
    "--at",
    "at",
    default=None,
    metavar="COLUMN",
    help="Services with feature views: the column of each row's time; data with only the "
    "entity keys gets the features joined as of then (as 'features dataset' does).",
)
_CONCURRENCY = click.option(
    "--concurrency",
    type=click.IntRange(1, 1024),
    default=None,
    metavar="N",
    help="llm services: cases in flight at once [default: 8].",
)
_MAX_COST = click.option(
    "--max-cost",
    "max_cost",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="USD",
    help="llm services: start no more cases once the calls cost this much (the run then "
    "does not pass).",
)


def _join(ctx: Context, at: str | None) -> FeatureJoin | None:
    """``--at``: features joined as of each row's time, file sources beside the spec."""
    if at is None:
        return None
    from prodgate.evaluation.evaluate import FeatureJoin

    return FeatureJoin(at, ctx.spec().path.parent)


def _progress(message: str) -> None:
    click.echo(message, err=True)


def _limits(concurrency: int | None, max_cost: float | None) -> Limits | None:
    if concurrency is None and max_cost is None:
        return None
    from prodgate.evaluation.prompts import DEFAULT_CONCURRENCY, Limits

    return Limits(concurrency or DEFAULT_CONCURRENCY, max_cost)


class _Bar:
    """The cases' progress on stderr: a bar on a terminal, else a line every tenth of
    the cases (logs of a CI job see how far it got, and what it cost so far)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.shown = 0
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int, spent: float) -> None:
        if done == 0:
            self.close()
            self.shown = 0
            if self.tty:
                self.bar = click.progressbar(length=total, label="cases", file=sys.stderr)
                self.bar.__enter__()
            return
        if self.bar is not None:
            self.bar.label = f"cases (${spent:.6f})"
            self.bar.update(done - self.bar.pos)
        elif done * 10 // total > self.shown * 10 // total or done == total:
            self.shown = done
            click.echo(f"  {done:,}/{total:,} cases, ${spent:.6f} spent", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION)
@_DATA
@_LABEL
@_CONCURRENCY
@_MAX_COST
@_AT
@_JSON
@setting_options(ACTING)
@pass_ctx
def evaluate(
    ctx: Context,
    service: str,
    version: int,
    data: Path,
    label: str | None,
    concurrency: int | None,
    max_cost: float | None,
    at: str | None,
    as_json: bool,
) -> None:
    """Measure VERSION of SERVICE on labelled data: metrics, business cost, cohorts, gates.

    For a prompt version (a service of kind llm) the data are test cases, run through
    the version's route: exact match, contains, regex, JSON validity, label accuracy,
    a judge's grade, errors, cost per call and latency, per cohort.

    The result is stored (approval needs a passing one) and recorded in the audit log.
    Exits 1 when a gate fails, 0 when all pass.
    """
    spec = ctx.spec().service(service)
    from prodgate.evaluation import evaluate as evaluation  # scikit-learn: when used

    bar = _Bar()
    try:
        stored = evaluation.evaluate_version(
            ctx.store(),
            spec,
            version,
            data,
            label,
            actor=ctx.actor,
            progress=_progress,
            limits=_limits(concurrency, max_cost),
            step=bar,
            join=_join(ctx, at),
        )
    finally:
        bar.close()
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
@_CONCURRENCY
@_MAX_COST
@_AT
@_JSON
@pass_ctx
def compare(
    ctx: Context,
    service: str,
    a: int,
    b: int,
    data: Path,
    label: str | None,
    concurrency: int | None,
    max_cost: float | None,
    at: str | None,
    as_json: bool,
) -> None:
    """Score versions A and B of SERVICE on the same labelled data, side by side.

    Prompt versions run over the same test cases. Nothing is stored. Exits 0 whatever
    the gates say (use evaluate for a verdict).
    """
    spec = ctx.spec().service(service)
    from prodgate.evaluation import evaluate as evaluation

    bar = _Bar()
    try:
        result = evaluation.compare(
            ctx.store(),
            spec,
            a,
            b,
            data,
            label,
            progress=_progress,
            limits=_limits(concurrency, max_cost),
            step=bar,
            join=_join(ctx, at),
        )
    finally:
        bar.close()
    if as_json:
        echo_json(result)
    else:
        click.echo(report.compare_text(result))


COMMANDS = [evaluate, compare]
