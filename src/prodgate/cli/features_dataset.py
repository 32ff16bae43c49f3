"""``features dataset``: a training or evaluation set with each row's features as of its time.

The rows of events (entity keys, an event time, anything else: amounts, labels) get
every feature the service reads, point-in-time (:func:`prodgate.features.offline.join`):
the values the gateway would have served at that moment under the view's policy, never
one written later. The ``features`` group (:mod:`prodgate.cli.features`) adds it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prodgate.cli.context import Context, echo_json, pass_ctx
from prodgate.exceptions import UsageError
from prodgate.spec import ServiceSpec

#: Suffixes the dataset may be written as.
WRITERS = (".parquet", ".pq", ".csv")


@click.command("dataset")
@click.argument("service")
@click.option(
    "--entities",
    "entities",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Rows of events (csv, parquet, jsonl): the service's entity keys, the time of each "
    "event, and any other columns (they are kept).",
)
@click.option(
    "--at",
    "at",
    required=True,
    metavar="COLUMN",
    help="The column holding each event's time (datetime, ISO 8601 text, or seconds since "
    "the epoch; naive times are UTC). No feature from after it is used.",
)
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the dataset: .parquet, or .csv.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def dataset(
    ctx: Context, service: str, entities: Path, at: str, output: Path, as_json: bool
) -> None:
    """Write SERVICE's features, point-in-time, joined onto the rows of --entities.

    Each row gets, per feature view, the newest value of its entity at or before its
    --at time, judged by the view's policy at that time exactly as serving judges it:
    a value older than the view's ttl is stale, and a stale, missing or null value
    takes the feature's default. A row left without a value for a feature that has no
    default is dropped (the gateway would refuse it) and counted in the summary.
    """
    from prodgate.features import offline
    from prodgate.registry.fingerprint import read_table

    if output.suffix.lower() not in WRITERS:
        raise UsageError(f"{output}: write the dataset as .parquet or .csv")
    spec = ctx.spec()
    svc = spec.service(service)
    frame = read_table(entities)
    frame.columns = [str(c) for c in frame.columns]
    joined = offline.join(frame, svc, spec.path.parent, store_url(ctx, svc), at)
    try:
        if output.suffix.lower() == ".csv":
            joined.frame.to_csv(output, index=False)
        else:
            joined.frame.to_parquet(output, index=False)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write it: {exc.strerror or exc}") from None
    summary = joined.summary()
    if as_json:
        echo_json(
            {
                "service": service,
                "entities": str(entities),
                "at": at,
                "output": str(output),
                **summary,
            }
        )
        return
    click.echo(summary_text(summary, service=service, output=output))


def store_url(ctx: Context, service: ServiceSpec) -> str | None:
    """The store's URL when a view reads a ``query`` without a ``url`` of its own
    (resolved only then: a dataset from files needs no store)."""
    if not any(u.view.source.query and not u.view.source.url for u in service.features.uses):
        return None
    from prodgate.store.engine import resolve_url

    return resolve_url(ctx.settings.store_url)


def summary_text(summary: dict[str, Any], *, service: str, output: Path | None = None) -> str:
    """The join's figures as lines: rows in and out, each view's fresh, stale and
    missing rows, the defaults taken, the rows dropped and why. Evaluations print it too."""
    rows_in, rows_out = summary["rows_in"], summary["rows_out"]
    head = f"{service}: {rows_in:,} rows in, {rows_out:,} rows out"
    lines = [head + (f" -> {output}" if output is not None else "")]
    for view, counts in summary["views"].items():
        parts = ", ".join(f"{counts[s]:,} {s}" for s in ("fresh", "stale", "missing"))
        lines.append(f"  view {view}: {parts} (at each row's time)")
    if summary["defaulted"]:
        taken = ", ".join(f"{n} {c:,}" for n, c in summary["defaulted"].items())
        lines.append(f"  defaults taken (rows kept): {taken}")
    if summary["dropped"]:
        why = ", ".join(f"{n} {c:,}" for n, c in summary["refused"].items())
        lines.append(
            f"  dropped {summary['dropped']:,} rows without a value at their time for a "
            f"feature that has no default: {why}"
        )
    return "\n".join(lines)
