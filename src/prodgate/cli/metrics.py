"""``metrics``: what each version of a service did over a window, and what it cost.

For every kind: calls, errors, decisions and latency. For a service of kind ``llm``
also time to first token, tokens, cost per call and per good answer, fallbacks and
the models that answered. For classifiers and regressors also the quality of the
decisions that received feedback (cohorts and gates), as before.

This command takes the name ``metrics`` over from the one in
:mod:`prodgate.cli.governance`, registered before it in ``_NOUNS``, and keeps that
one's output for classic services.
"""

from __future__ import annotations

from typing import Any

import click

from prodgate.cli.context import VERSION, Context, echo_json, pass_ctx, table
from prodgate.durations import parse_duration
from prodgate.monitor.llm import report as metrics_report


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def _pair(a: float | None, b: float | None) -> str:
    return "-" if a is None and b is None else f"{_ms(a)}/{_ms(b)}"


def _usd(x: float | None) -> str:
    """Dollars as people read them: cents above a cent, else up to eight decimals."""
    if x is None:
        return "-"
    if x == 0 or abs(x) >= 0.01:
        return f"{x:.4f}" if abs(x) < 100 else f"{x:,.2f}"
    return f"{x:.8f}".rstrip("0")


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.1f}k"
    return str(n)


def _errors(v: dict[str, Any]) -> str:
    return f"{v['errors']} ({_pct(v['error_rate'])})"


def _print_llm(versions: list[dict[str, Any]]) -> None:
    rows = []
    for v in versions:
        f = v["llm"]
        t, cost = f["tokens"], f["cost_usd"]
        rows.append(
            [
                str(v["version"]),
                str(v["calls"]),
                _errors(v),
                _pair(v["latency_ms"]["p50"], v["latency_ms"]["p95"]),
                _pair(f["ttft_ms"]["p50"], f["ttft_ms"]["p95"]),
                f"{_tokens(t['input'])}/{_tokens(t['output'])}/{_tokens(t['cached'])}",
                _pct(t["estimated_share"]) if f["calls"] else "-",
                _usd(cost["total"]),
                _usd(cost["per_call"]),
                _usd(cost["per_positive"]),
                _pct(f["fallback_rate"]) if f["calls"] else "-",
            ]
        )
    headers = ["VERSION", "CALLS", "ERRORS", "P50/P95 MS", "TTFT P50/P95", "TOKENS IN/OUT/CACHED"]
    click.echo(table(rows, [*headers, "ESTIMATED", "COST $", "$/CALL", "$/GOOD", "FALLBACK"]))
    for v in versions:
        f = v["llm"]
        for m in f["models"]:
            errors = f", {m['errors']} failed" if m["errors"] else ""
            fallback = f", {m['fallback']} as fallback" if m["fallback"] else ""
            click.echo(
                f"  v{v['version']} {m['model']}: {m['calls']} calls{errors}{fallback}, "
                f"{_tokens(m['input_tokens'])} in / {_tokens(m['output_tokens'])} out tokens, "
                f"${_usd(m['cost_usd'])}"
            )
        fb = f["feedback"]
        if fb["labelled"]:
            parts = [f"{fb['labelled']} rated"]
            if fb["graded"]:
                parts.append(f"accuracy {_pct(fb['accuracy'])} of {fb['graded']} graded")
            if fb["scored"]:
                parts.append(f"mean score {fb['mean_score']:.2f} of {fb['scored']}")
            parts.append(f"{fb['positive']} good")
            click.echo(f"  v{v['version']} feedback: " + ", ".join(parts))


def _print_classic(versions: list[dict[str, Any]]) -> None:
    rows = []
    for v in versions:
        ops, quality = v.get("operations") or {}, v.get("quality") or {}
        cost = quality.get("business") or {}
        rows.append(
            [
                str(v["version"]),
                str(v["calls"]),
                _errors(v),
                _pair(v["latency_ms"]["p50"], v["latency_ms"]["p95"]),
                ", ".join(f"{k} {n}" for k, n in v["decisions"].items()),
                _pct(ops.get("violation_rate")),
                str(ops.get("labelled", 0)),
                _pct(quality.get("metrics", {}).get("accuracy")),
                f"{cost['cost_per_decision']:.2f}" if cost else "-",
            ]
        )
    headers = ["VERSION", "CALLS", "ERRORS", "P50/P95 MS", "DECISIONS", "VIOLATIONS"]
    click.echo(table(rows, [*headers, "LABELLED", "ACCURACY", "COST/DECISION"]))
    for v in versions:
        quality = v.get("quality")
        if not quality:
            continue
        for cohort in quality["cohorts"]:
            acc = cohort["metrics"].get("accuracy")
            click.echo(
                f"  v{v['version']} {cohort['name']}: {cohort['rows']} labelled, "
                f"accuracy {_pct(acc)}"
            )
        # The spec's gates, judged on production's labelled decisions.
        for gate in quality.get("gates", []):
            verdict = "pass" if gate["passed"] else "FAIL"
            click.echo(f"  v{v['version']} gate {verdict}: {gate['detail']}")


@click.command()
@click.argument("service")
@click.option("--window", default="1h", show_default=True, help="How far back: 90s, 30m, 1h, 7d.")
@click.option("--version", "version", type=VERSION, default=None, help="Only this version.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, with every figure.")
@pass_ctx
def metrics(ctx: Context, service: str, window: str, version: int | None, as_json: bool) -> None:
    """What each version of SERVICE did over the window, from the audit log.

    \b
    every kind   calls, errors, p50/p95 latency, decisions
    kind llm     p50/p95 time to first token, tokens in/out/cached (and the share
                 prodgate estimated), cost in total, per call and per good answer
                 (right, or scored at least 0.5 by feedback), fallback rate, and
                 the models that answered
    classifiers  labelled decisions, accuracy, business cost, cohorts and gates
    """
    seconds = parse_duration(window)
    spec = ctx.spec().service(service)
    report = metrics_report(ctx.store(), spec, seconds, version=version)
    if as_json:
        echo_json(report)
        return
    versions = report["versions"]
    if not versions:
        what = "calls" if spec.kind == "llm" else "decisions"
        which = f" of version {version}" if version is not None else ""
        click.echo(f"{service}: no {what}{which} in the last {window}")
        return
    click.echo(f"{service}, last {window}:")
    if spec.kind == "llm":
        _print_llm(versions)
    else:
        _print_classic(versions)


COMMANDS = [metrics]
