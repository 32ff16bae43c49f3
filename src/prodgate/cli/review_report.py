"""``review stats`` and ``review export``: how a service's review is going, and the
reviewed inferences as a dataset. The ``review`` group loads them by name from
:data:`SUBCOMMANDS`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from prodgate.cli.context import Context, echo_json, pass_ctx, setting_options, table
from prodgate.settings import ACTING

_SINCE = click.option(
    "--since",
    default=None,
    metavar="WHEN",
    help="Only items that entered review since then: a duration ago (7d, 24h) or an ISO 8601 time.",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _since(text: str | None) -> int | None:
    if text is None:
        return None
    from prodgate.cli.features import since_us

    return since_us(text)


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _figure(f: dict[str, Any]) -> str:
    if f["value"] is None:
        return f"- ({f['reason']})"
    return f"{f['value']:.3f}"


def stats_text(s: dict[str, Any]) -> str:
    """The human report of :func:`prodgate.review.stats.review_stats`."""
    q = s["queue"]
    lines = [
        f"{s['service']}: {s['items']['decided']:,} items decided, "
        f"{s['items']['reviewed']:,} reviewed",
        "",
        f"queue: {q['open']} open, {q['adjudication']} in adjudication, {q['claimed']} "
        f"claimed, {q['overdue']} overdue; oldest waiting {_age(q['oldest_age_s'])}",
    ]
    t = s["time_to_decision"]
    if t["n"]:
        lines.append(
            f"time to decision: median {_age(t['median_s'])}, p90 {_age(t['p90_s'])} (n={t['n']})"
        )
    else:
        lines.append(f"time to decision: - ({t['reason']})")
    a = s["agreement"]
    overall = a["overall"]
    method = {"cohen_kappa": "Cohen's kappa", "krippendorff_alpha": "Krippendorff's alpha"}
    name = method.get(overall["method"] or "", "agreement")
    lines += ["", f"agreement ({a['reviewers']} reviewers): {name} {_figure(overall)} "
              f"(n={overall['n']})"]  # fmt: skip
    if a["pairs"]:
        rows = [[p["a"], p["b"], str(p["n"]), _figure(p)] for p in a["pairs"]]
        lines += ["", table(rows, ["REVIEWER", "REVIEWER", "ITEMS", "KAPPA"])]
    if s["reviewers"]:
        rows = [
            [r["reviewer"], str(r["reviews"]), str(r["with_final"]["n"]), _figure(r["with_final"])]
            for r in s["reviewers"]
        ]
        lines += ["", table(rows, ["REVIEWER", "REVIEWS", "DECIDED", "AGREES WITH FINAL"])]
    auto = s["automatic"]
    rows = []
    for label, acc in [("all", auto["accuracy"])] + [
        (c["cohort"] or "(no cohort)", c) for c in auto["cohorts"]
    ]:
        ci = acc.get("ci")
        interval = f"{ci[0]:.3f}-{ci[1]:.3f}" if ci else "-"
        shown = _num(acc["value"]) if acc["value"] is not None else f"- ({acc['reason']})"
        rows.append([label, str(acc["n"]), shown, interval])
    lines += [
        "",
        "automatic path, estimated from the reviewed sample (Wilson 95% interval):",
        table(rows, ["COHORT", "N", "ACCURACY", "95% CI"]),
    ]
    o = s["overrides"]
    lines += [
        "",
        f"overrides: {o['count']} of {o['decided']} decided ({o['of_auto']} of automatic "
        f"decisions, {o['of_escalated']} of escalated)",
    ]
    return "\n".join(lines)


@click.command()
@click.argument("service")
@_SINCE
@_JSON
@pass_ctx
def stats(ctx: Context, service: str, since: str | None, as_json: bool) -> None:
    """How SERVICE's review is going: agreement between reviewers (Cohen's kappa per
    pair, Krippendorff's alpha for more), each reviewer against the final label, the
    automatic path's accuracy estimated from the sample with a 95% interval, overrides,
    the queue and time to decision. A figure with too few items is shown as '-' with
    the reason."""
    from prodgate.review.stats import review_stats

    result = review_stats(ctx.store(), ctx.spec(), service, _since(since))
    if as_json:
        echo_json(result)
    else:
        click.echo(stats_text(result))


@click.command()
@click.argument("service")
@_SINCE
@click.option(
    "--reason",
    default=None,
    metavar="REASON",
    help="Only items with this reason: sampled, low_confidence, guard, rule:NAME (or rule).",
)
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write: .parquet, or .csv.",
)
@_JSON
@setting_options(ACTING)
@pass_ctx
def export(
    ctx: Context,
    service: str,
    since: str | None,
    reason: str | None,
    output: Path,
    as_json: bool,
) -> None:
    """Write SERVICE's reviewed inferences to a file: the input fields, the model's
    answer, the final label (column 'label', which 'prodgate evaluate' reads as the
    truth), reviewers, reasons, cohort and the inference ids (lineage to the audit
    log). The export is recorded in the audit log."""
    from prodgate.review.export import export as write

    since_us = _since(since)
    summary = write(ctx.store(), ctx.spec(), service, output, since_us, reason, actor=ctx.actor)
    if as_json:
        echo_json(summary)
    else:
        click.echo(
            f"wrote {summary['rows']:,} reviewed inferences of {service} to {output} "
            f"(truth in '{summary['label_column']}'; audit record {summary['audit_id']})"
        )


SUBCOMMANDS = [stats, export]
