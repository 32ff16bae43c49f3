"""``monitor``: drift, data quality, estimated and realised accuracy, firing alerts.

``prodgate monitor SERVICE`` prints :func:`prodgate.monitor.report.monitor_report`
(``--json`` prints it whole, as ``GET /v1/services/{service}/monitor`` does).
``prodgate drift report`` (:mod:`prodgate.cli.drift_report`) shares its helpers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import click

from prodgate.cli.context import (
    VERSION,
    Context,
    echo_json,
    pass_ctx,
    table,
)
from prodgate.durations import parse_duration


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def number(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _money(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f}"


def _when(us: int | None) -> str:
    if us is None:
        return "-"
    moment = dt.datetime.fromtimestamp(us / 1_000_000, tz=dt.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def verdict(column: Mapping[str, Any]) -> str:
    drifted = column.get("drifted")
    return "-" if drifted is None else ("DRIFTED" if drifted else "ok")


def _new(column: Mapping[str, Any]) -> str:
    share = column.get("new_categories")
    if share is None:
        return "-"
    names = column.get("new_category_names") or []
    shown = ", ".join(str(n) for n in names[:3]) + (" ..." if len(names) > 3 else "")
    return f"{share:.1%}" + (f" ({shown})" if shown else "")


def columns_table(columns: list[Mapping[str, Any]]) -> str:
    """Per column: the drift test, its verdict and the data-quality figures."""
    rows = [
        [
            str(c["column"]),
            str(c.get("method") or "-"),
            number(c.get("statistic"), 4),
            number(c.get("threshold"), 4) if c.get("threshold") is not None else "-",
            verdict(c),
            _pct(c.get("null_rate")),
            _pct(c.get("reference_null_rate")),
            _pct(c.get("out_of_range")),
            _pct(c.get("invalid_rate")) if c.get("invalid_rate") else "-",
            _new(c),
        ]
        for c in columns
    ]
    headers = ["COLUMN", "METHOD", "SCORE", "THRESHOLD", "DRIFT", "NULLS", "REF NULLS"]
    return table(rows, [*headers, "OUT OF RANGE", "WRONG TYPE", "NEW CATEGORIES"])


def _interval(low: float | None, high: float | None, money: bool = False) -> str:
    if low is None or high is None:
        return ""
    show = _money if money else number
    return f" ({show(low)} to {show(high)})"


def _quality_lines(entry: Mapping[str, Any], classifier: bool) -> list[str]:
    estimate = entry.get("estimate") or {}
    realised = entry.get("realised") or {}
    lines = []
    if estimate or realised.get("labelled"):
        parts = []
        if estimate:
            parts.append(
                f"estimated {number(estimate.get('accuracy'))}"
                f"{_interval(estimate.get('accuracy_low'), estimate.get('accuracy_high'))}"
                f" over {estimate.get('rows', 0):,} decisions"
            )
        elif classifier:
            parts.append("no estimate")
        parts.append(
            f"realised {number(realised.get('accuracy'))} of {realised['labelled']:,} labelled"
            if realised.get("labelled")
            else "no feedback yet"
        )
        lines.append("accuracy: " + "; ".join(parts))
    if estimate.get("cost_per_decision") is not None or realised.get("cost_per_decision"):
        est = _money(estimate.get("cost_per_decision"))
        est += _interval(estimate.get("cost_low"), estimate.get("cost_high"), money=True)
        lines.append(
            f"cost per decision: estimated {est}; "
            f"realised {_money(realised.get('cost_per_decision'))}"
        )
    ops = [
        f"errors {_pct(realised.get('error_rate'))}",
        f"escalated {_pct(realised.get('escalation_rate'))}",
        f"refused {entry['refused']:,} ({_pct(entry.get('violation_rate'))})",
    ]
    lines.append("operations: " + ", ".join(ops))
    for name, v in (entry.get("violations") or {}).items():
        if not v["count"]:
            continue
        lines.append(f"  contract violations on {name}: {v['count']:,} ({_pct(v['rate'])})")
    for view, f in (entry.get("features") or {}).items():
        if f["rows"]:
            lines.append(
                f"feature view {view}: {f['rows']:,} rows, stale {_pct(f['stale_rate'])}, "
                f"missing {_pct(f['missing_rate'])}"
            )
    for c in entry.get("cohorts") or []:
        guess: Mapping[str, Any] = c.get("estimate") or {}
        parts = [f"{c['rows']:,} decisions", f"estimated accuracy {number(guess.get('accuracy'))}"]
        if c.get("labelled"):
            parts.append(f"realised {number(c.get('accuracy'))} of {c['labelled']:,}")
        if guess.get("cost_per_decision") is not None:
            parts.append(f"estimated cost {_money(guess.get('cost_per_decision'))}")
        lines.append(f"cohort {c['name']}: " + ", ".join(parts))
    return lines


def drift_line(entry: Mapping[str, Any]) -> str | None:
    drift = entry.get("drift")
    if not drift:
        return None
    judged = [c for c in entry.get("columns") or [] if c.get("drifted") is not None]
    drifted = [str(c["column"]) for c in judged if c.get("drifted")]
    verdict = "DATASET DRIFT" if drift.get("dataset_drift") else "no dataset drift"
    share = drift.get("share")
    at = f", dataset drift at {_pct(share)}" if share is not None else ""
    named = f": {', '.join(drifted)}" if drifted else ""
    return (
        f"{verdict}: {len(drifted)} of {len(judged)} columns drifted "
        f"({_pct(drift.get('share_drifted'))}{at}){named}"
    )


def print_report(report: Mapping[str, Any], window: str) -> None:
    """The report for people: one block per version, then the alerts."""
    service = report["service"]
    click.echo(f"{service}, last {window} (until {_when(report['end_us'])}):")
    for entry in report["versions"]:
        profile = entry.get("profile")
        reference = (
            f"reference profile of {profile['rows']:,} rows ({profile['source']})"
            if profile
            else "no reference profile"
        )
        click.echo("")
        answered = max(entry["rows"], (entry.get("realised") or {}).get("answered") or 0)
        click.echo(
            f"version {entry['version']} ({entry['role']}): {answered:,} decisions, {reference}"
        )
        if entry.get("columns"):
            click.echo(columns_table(entry["columns"]))
        line = drift_line(entry)
        if line:
            click.echo(line)
        for text in _quality_lines(entry, report.get("kind") == "classifier"):
            click.echo(text)
        for note in entry.get("notes") or []:
            click.echo(f"note: {note}")
    firing = [a for a in report["alerts"] if a["state"] == "firing"]
    click.echo("")
    if firing:
        click.echo("alerts firing:")
        for a in firing:
            value = "" if a["value"] is None else f", value {a['value']:.4g}"
            when = f" ({a['when']})" if a.get("when") and a["when"] != a["rule"] else ""
            click.echo(f"  {a['rule']}{when} since {_when(a['since_us'])}{value}")
    else:
        click.echo("alerts firing: none")
    for note in report.get("notes") or []:
        click.echo(f"note: {note}")


@click.command()
@click.argument("service")
@click.option("--window", default="1h", show_default=True, help="How far back: 90s, 30m, 1h, 7d.")
@click.option("--version", "version", type=VERSION, default=None, help="Only this version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with every figure.")
@pass_ctx
def monitor(ctx: Context, service: str, window: str, version: int | None, as_json: bool) -> None:
    """How SERVICE does in production: drift, data quality, accuracy, alerts.

    \b
    per column   the drift test (method, score, threshold, verdict) against the
                 version's reference profile; null rate (and the reference's),
                 share out of the reference's range, values of the wrong type,
                 new categories
    accuracy     the label-free estimate (from the evaluation's calibration) beside
                 the realised accuracy of decisions that got feedback; the same for
                 the business cost per decision, and per cohort
    alerts       the spec's monitor rules now firing
    """
    # The report needs pandas and scikit-learn: imported when run, not when the CLI starts.
    from prodgate.monitor.report import monitor_report

    seconds = parse_duration(window)
    report = monitor_report(ctx.store(), ctx.spec(), service, seconds, version)
    if as_json:
        echo_json(report)
        return
    print_report(report, window)


COMMANDS = [monitor]
