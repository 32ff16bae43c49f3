"""``drift report``: drift of a service's production windows over a span, and over time.

A command of the ``drift`` group (:mod:`prodgate.cli.drift` adds it); it prints
:func:`prodgate.monitor.report.drift_report`, and with ``--html`` writes
:func:`prodgate.monitor.report.drift_html`: a self-contained page with the plots.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, table
from prodgate.cli.monitor import drift_line, number, verdict
from prodgate.durations import parse_duration


def _short(us: int) -> str:
    return dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_drift(report: Mapping[str, Any], since: str) -> None:
    """The drift report for people: the span's columns, then drift over time."""
    service, version = report["service"], report["version"]
    if version is not None:
        profile = report.get("profile")
        reference = (
            f"against the reference profile of {profile['rows']:,} rows ({profile['source']})"
            if profile
            else "with no reference profile"
        )
        click.echo(
            f"{service} version {version}, last {since}: {report['rows']:,} decisions {reference}"
        )
        judged = [c for c in report["columns"] if c.get("method")]
        if judged:
            rows = [
                [
                    str(c["column"]),
                    str(c["method"]),
                    number(c.get("statistic"), 4),
                    number(c.get("threshold"), 4),
                    verdict(c),
                    number(c.get("psi"), 4),
                ]
                for c in judged
            ]
            click.echo(table(rows, ["COLUMN", "METHOD", "SCORE", "THRESHOLD", "DRIFT", "PSI"]))
        line = drift_line(report)
        if line:
            click.echo(line)
        points = report.get("over_time") or []
        if points:
            click.echo("drift over time (UTC):")
            for p in points:
                share = p.get("share_drifted")
                named = ", ".join(p.get("drifted") or [])
                figure = "not judged" if share is None else f"share drifted {share:.0%}"
                click.echo(
                    f"  {_short(p['start_us'])}  {p['rows']:>9,} decisions  {figure}"
                    + (f"  ({named})" if named else "")
                )
    for note in report.get("notes") or []:
        click.echo(f"note: {note}")


@click.command("report")
@click.argument("service")
@click.option("--since", default="24h", show_default=True, help="How far back: 30m, 24h, 7d.")
@click.option("--version", "version", type=VERSION, default=None, help="This version.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write a self-contained HTML report (plots) to this file.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with every figure.")
@pass_ctx
def drift_report(
    ctx: Context,
    service: str,
    since: str,
    version: int | None,
    html_path: Path | None,
    as_json: bool,
) -> None:
    """Drift of SERVICE's production version (or --version) over a span of its
    production windows against its reference profile: per column the test, score and
    verdict, the dataset's verdict, and drift over time (one point per window)."""
    from prodgate.monitor.report import drift_report as build

    seconds = parse_duration(since, "since")
    report = build(ctx.store(), ctx.spec(), service, seconds, version)
    if html_path is not None:
        from prodgate.monitor.report import drift_html

        html_path.write_text(
            drift_html(ctx.store(), ctx.spec(), service, seconds, version), encoding="utf-8"
        )
    if as_json:
        echo_json(report)
        return
    print_drift(report, since)
    if html_path is not None:
        click.echo(f"HTML report: {html_path}")
