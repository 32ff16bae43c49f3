"""``profile``: a version's reference profile, computed from data and stored."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, setting_options
from prodgate.exceptions import UsageError
from prodgate.monitor import profiles
from prodgate.registry.versions import get_version
from prodgate.settings import ACTING

#: Rows of model output above which a progress bar is drawn (on stderr).
PROGRESS_ABOVE = 20_000


@click.command()
@click.argument("service")
@click.argument("version", type=VERSION)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reference data (csv, parquet, jsonl): profile it and store it as VERSION's "
    "reference, replacing any. Without it, show the stored profile.",
)
@click.option(
    "--at",
    "at",
    default=None,
    metavar="COLUMN",
    help="Services with feature views: the column of each row's time; data with only the "
    "entity keys gets the features joined as of then (as 'features dataset' does).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with the statistics).")
@setting_options(ACTING)
@pass_ctx
def profile(
    ctx: Context, service: str, version: int, data: Path | None, at: str | None, as_json: bool
) -> None:
    """Compute and store the reference profile of SERVICE's VERSION from --data.

    Per input field: rows, nulls, quantiles and bins (numbers) or category counts (text);
    per output, the model's predictions on up to 100,000 rows of the data (the class or
    value, and the confidence). Production windows and drift compare against it.
    """
    spec = ctx.spec().service(service)
    store = ctx.store()
    with store.read() as conn:
        found = get_version(conn, service, version)
        stored = profiles.load(conn, service, version) if data is None else None
    if at is not None and data is None:
        raise UsageError("--at joins features into --data: give both")
    if data is None:
        if stored is None:
            raise UsageError(
                f"{service} version {version} has no reference profile; "
                f"run 'prodgate profile {service} {version} --data FILE'"
            )
    else:
        bars: list[Any] = []  # drawn once the model's rows are known to be many

        def progress(done: int, total: int) -> None:
            if total <= PROGRESS_ABOVE:
                return
            if not bars:
                err = sys.stderr
                bars.append(click.progressbar(length=total, label="running the model", file=err))
                bars[0].__enter__()
            bars[0].update(done - bars[0].pos)

        with tempfile.TemporaryDirectory(prefix="prodgate-profile-") as tmp:
            source = data
            if at is not None:
                from prodgate.cli.features_dataset import store_url, summary_text
                from prodgate.features.offline import joined_file

                base = ctx.spec().path.parent
                source, joined = joined_file(spec, data, at, base, store_url(ctx, spec), Path(tmp))
                click.echo(summary_text(joined.summary(), service=service), err=True)
            try:
                computed = profiles.compute_for_version(
                    store, spec, found, source, progress=progress
                )
            finally:
                for bar in bars:
                    bar.__exit__(None, None, None)
        stored = profiles.save(store, service, version, computed, source=data.name, actor=ctx.actor)
    if as_json:
        echo_json({**stored.summary(), "profile": stored.profile})
        return
    summary = stored.summary()
    when = dt.datetime.fromtimestamp(stored.created_at_us / 1e6, dt.UTC)
    verb = "profiled" if data is not None else "reference profile of"
    click.echo(
        f"{verb} {service} version {version} from {stored.source}: {stored.rows:,} rows, "
        f"{len(summary['columns'])} input columns ({', '.join(summary['columns'])})"
    )
    if summary["outputs"]:
        click.echo(f"outputs: {', '.join(summary['outputs'])}")
    click.echo(f"by {stored.created_by}, {when:%Y-%m-%d %H:%M:%S} UTC")


COMMANDS = [profile]
