"""Plain-text reports of an evaluation and of a comparison, for the terminal.

Both read only the JSON-ready data that :func:`~prodgate.evaluation.scoring.score`
and :func:`~prodgate.evaluation.evaluate.compare` return, so what the CLI prints and
what ``--json`` prints always agree. A prompt version's result (``kind: llm``, from
:mod:`~prodgate.evaluation.prompts`) has its own overall section (answer checks,
errors, cost, latency, tokens) and the same cohort, gate and comparison tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prodgate.evaluation.gates import lookup
from prodgate.spec import CLASSIFIER_METRICS, REGRESSOR_METRICS

_MISSING = "-"


def _table(rows: Sequence[Sequence[str]], headers: Sequence[str], right: set[int]) -> str:
    """Columns padded to their widest cell; columns in *right* are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def _value(metric: str, value: float | None, signed: bool = False) -> str:
    """A metric for people: costs with two decimals, rates and scores with four; an
    LLM call's cost in dollars to the millionth, latencies in tenths of milliseconds."""
    if value is None:
        return _MISSING
    sign = "+" if signed else ""
    if metric.startswith("business."):
        return f"{value:{sign},.2f}"
    if metric == "cost_per_call":
        return _usd(value, signed)
    if metric.endswith("_ms"):
        return f"{value:{sign},.1f}"
    return f"{value:{sign}.4f}"


def _usd(value: float, signed: bool = False) -> str:
    """Dollars: to the cent when large, to the millionth (an LLM call's scale) else."""
    sign = "-" if value < 0 else ("+" if signed else "")
    amount = abs(value)
    return f"{sign}${amount:,.2f}" if amount >= 1 else f"{sign}${amount:.6f}"


def _percent(value: float | None) -> str:
    return _MISSING if value is None else f"{value:.1%}"


def _header(
    service: str, what: str, dataset: Mapping[str, Any], rows: int, label_column: str
) -> str:
    sha = str(dataset.get("sha256", ""))[:12]
    return (
        f"{service} {what} on {dataset.get('file', '?')}: {rows:,} rows, "
        f"truth in {label_column!r} (sha256 {sha})"
    )


def _cohort_table(result: Mapping[str, Any]) -> str:
    names = list(result["metrics"])
    business = result.get("business") is not None
    classifier = names[0] in CLASSIFIER_METRICS
    headers = ["COHORT", "ROWS", *(n.upper() for n in names)]
    if classifier:
        headers.append("ESCALATED")
    if business:
        headers.append("COST/DECISION")
    rows = []
    for entry in [{**result, "name": "overall"}, *result["cohorts"]]:
        cells = [entry["name"], f"{entry['rows']:,}"]
        cells += [_value(n, entry["metrics"].get(n)) for n in names]
        if classifier:
            cells.append(_percent(entry.get("escalation_rate")))
        if business:
            cells.append(_value("business.", lookup(entry, "business.cost_per_decision")))
        rows.append(cells)
    return _table(rows, headers, right=set(range(1, len(headers))))


def _gate_table(gates: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            "PASS" if g["passed"] else "FAIL",
            g["gate"],
            _MISSING if g["value"] is None else f"{g['value']:.4g}",
            f"{g.get('threshold', 0):g}",
            g.get("detail", ""),
        ]
        for g in gates
    ]
    return _table(rows, ["RESULT", "GATE", "MEASURED", "THRESHOLD", "DETAIL"], right={2, 3})


def evaluation_text(
    result: Mapping[str, Any],
    *,
    service: str,
    version: int,
    dataset: Mapping[str, Any],
    label_column: str,
    evaluation_id: int | None = None,
) -> str:
    """The report of one evaluation: overall figures, cohorts, gates and the verdict."""
    if result.get("kind") == "llm":
        return _prompt_text(result, service, version, dataset, evaluation_id)
    lines = [_header(service, f"version {version}", dataset, result["rows"], label_column)]
    if evaluation_id is not None:
        lines.append(f"stored as evaluation {evaluation_id}")
    refused = result.get("contract_violations") or 0
    if refused:
        lines.append(
            f"warning: {refused:,} of {result['rows']:,} rows break the input contract; "
            "the gateway would refuse them with 422"
        )
    lines += _features_lines(result.get("features"))
    lines += ["", "overall"]
    metrics = result["metrics"]
    lines.append("  " + "  ".join(f"{n} {_value(n, v)}" for n, v in metrics.items()))
    if set(metrics) != set(REGRESSOR_METRICS):
        lines.append(f"  escalated to people: {_percent(result['escalation_rate'])}")
    business = result.get("business")
    if business is not None:
        per = _value("business.", business["cost_per_decision"])
        total = _value("business.", business["total_cost"])
        lines.append(f"  business cost: {per} per decision, {total} in total")
    drift = result.get("drift") or {}
    if drift.get("share_drifted") is not None:
        drifted = [c["column"] for c in drift.get("columns") or () if c.get("drifted")]
        source = (drift.get("reference") or {}).get("source")
        lines.append(
            f"  inputs against the reference profile ({source}): {len(drifted)} of "
            f"{drift.get('number_of_tested_columns', drift.get('number_of_columns', 0))} "
            "columns drifted" + (f" ({', '.join(drifted)})" if drifted else "")
        )
    if result["cohorts"]:
        lines += ["", "cohorts", _cohort_table(result)]
    lines += _verdict_lines(result["gates"])
    return "\n".join(lines)


def _features_lines(joined: Mapping[str, Any] | None) -> list[str]:
    """How the features were joined onto the data, when they were (point-in-time)."""
    if not joined:
        return []
    views = "; ".join(
        f"{view} {c['fresh']:,} fresh, {c['stale']:,} stale, {c['missing']:,} missing"
        for view, c in joined["views"].items()
    )
    lines = [f"features joined as of {joined['at']!r}: {views}"]
    if joined["defaulted"]:
        taken = ", ".join(f"{n} {c:,}" for n, c in joined["defaulted"].items())
        lines.append(f"  defaults taken: {taken}")
    if joined["dropped"]:
        why = ", ".join(f"{n} {c:,}" for n, c in joined["refused"].items())
        lines.append(
            f"  not scored: {joined['dropped']:,} of {joined['rows_in']:,} rows without a "
            f"value for a feature that has no default (the gateway would refuse them): {why}"
        )
    return lines


def _verdict_lines(gates: Sequence[Mapping[str, Any]]) -> list[str]:
    failed = sum(not g["passed"] for g in gates)
    lines = [""]
    if gates:
        lines += [f"gates ({failed} of {len(gates)} failed)", _gate_table(gates), ""]
        verdict = f"FAILED: {failed} of {len(gates)} gates failed" if failed else "PASSED"
    else:
        verdict = "PASSED (the service declares no gates)"
    lines.append(verdict)
    return lines


def _prompt_header(
    service: str, what: str, dataset: Mapping[str, Any], result: Mapping[str, Any]
) -> str:
    sha = str(dataset.get("sha256", ""))[:12]
    field = result.get("label_field")
    labels = f", labels in {field!r}" if field and dataset.get("checks", {}).get("label") else ""
    return (
        f"{service} {what} on {dataset.get('file', '?')}: {result['cases']:,} cases "
        f"(sha256 {sha}){labels}"
    )


def _quality(entries: Sequence[Mapping[str, Any]], measured: bool = True) -> list[str]:
    """The answer metrics measured on some entry (or, not *measured*, on none: no case
    carries their check, so the report leaves them out)."""
    # Loaded by then: only a prompt version's evaluation has these results.
    from prodgate.evaluation.answers import QUALITY

    return [
        name
        for name in QUALITY
        if any(e["metrics"].get(name) is not None for e in entries) == measured
    ]


def _prompt_text(
    result: Mapping[str, Any],
    service: str,
    version: int,
    dataset: Mapping[str, Any],
    evaluation_id: int | None,
) -> str:
    """The report of a prompt version's evaluation (:mod:`~prodgate.evaluation.prompts`)."""
    lines = [_prompt_header(service, f"version {version} ({result['model']})", dataset, result)]
    if evaluation_id is not None:
        lines.append(f"stored as evaluation {evaluation_id}")
    if result.get("stopped"):
        lines.append(f"stopped: {result['stopped']}; an incomplete evaluation does not pass")
    refused = result.get("contract_violations") or 0
    if refused:
        lines.append(
            f"warning: {refused:,} of {result['cases']:,} cases break the input contract; "
            "the gateway would refuse them with 422"
        )
    entries = [{**result, "name": "overall"}, *result["cohorts"]]
    quality = _quality(entries)
    metrics, totals = result["metrics"], result["totals"]
    lines += ["", "overall"]
    if quality:
        lines.append("  " + "  ".join(f"{n} {_value(n, metrics[n])}" for n in quality))
    lines.append(
        f"  errors {_percent(metrics['error_rate'])}  "
        f"cost per call {_value('cost_per_call', metrics['cost_per_call'])}  "
        f"latency p50 {_value('latency_p50_ms', metrics['latency_p50_ms'])} ms, "
        f"p95 {_value('latency_p95_ms', metrics['latency_p95_ms'])} ms"
    )
    cached = f" ({totals['cached_tokens']:,} cached)" if totals["cached_tokens"] else ""
    estimated = (
        f"; {totals['estimated_calls']:,} call(s) counted here, the provider gave no usage"
        if totals["estimated_calls"]
        else ""
    )
    lines.append(
        f"  {totals['calls']:,} calls: {totals['input_tokens']:,} tokens in{cached}, "
        f"{totals['output_tokens']:,} out, {_usd(totals['cost_usd'])} in total{estimated}"
    )
    if totals["judge_calls"]:
        lines.append(
            f"  judge: {totals['judge_calls']:,} grades asked, {totals['judge_failures']:,} "
            f"failed, {_usd(totals['judge_cost_usd'])}"
        )
    failures = result.get("failures") or []
    if failures:
        lines += ["", f"failed calls ({totals['failed']:,}; the first {len(failures[:5])}):"]
        lines += [f"  line {f['line']}: {f['error']}" for f in failures[:5]]
    if result["cohorts"]:
        lines += ["", "cohorts", _prompt_cohort_table(entries, quality)]
    lines += _verdict_lines(result["gates"])
    return "\n".join(lines)


def _prompt_cohort_table(entries: Sequence[Mapping[str, Any]], quality: Sequence[str]) -> str:
    names = [*quality, "error_rate", "cost_per_call", "latency_p95_ms"]
    headers = ["COHORT", "CASES", *(n.upper() for n in names)]
    rows = [
        [e["name"], f"{e['rows']:,}", *(_value(n, e["metrics"].get(n)) for n in names)]
        for e in entries
    ]
    return _table(rows, headers, right=set(range(1, len(headers))))


def compare_text(comparison: Mapping[str, Any]) -> str:
    """Two versions side by side: every metric per cohort with the difference (B - A),
    then each gate's verdict for both."""
    a, b = comparison["a"], comparison["b"]
    va, vb = f"V{a['version']}", f"V{b['version']}"
    what = f"version {a['version']} vs version {b['version']}"
    differences = comparison["differences"]
    if a.get("kind") == "llm":
        what += f" ({a['model']} vs {b['model']})"
        header = _prompt_header(comparison["service"], what, comparison["dataset"], a)
        entries = [{**a, "name": "overall"}, *a["cohorts"], {**b, "name": "overall"}, *b["cohorts"]]
        hidden = set(_quality(entries, measured=False))
        differences = [d for d in differences if d["metric"] not in hidden]
    else:
        header = _header(
            comparison["service"],
            what,
            comparison["dataset"],
            a["rows"],
            comparison["label_column"],
        )
    lines = [header, ""]
    rows = []
    previous = None
    for d in differences:
        first = d["cohort"] != previous
        previous = d["cohort"]
        rows.append(
            [
                d["cohort"] if first else "",
                f"{d['rows']:,}" if first else "",
                d["metric"],
                _value(d["metric"], d["a"]),
                _value(d["metric"], d["b"]),
                _value(d["metric"], d["difference"], signed=True),
            ]
        )
    lines.append(_table(rows, ["COHORT", "ROWS", "METRIC", va, vb, "DIFF"], right={1, 3, 4, 5}))
    if a["gates"]:
        gate_rows = []
        for ga, gb in zip(a["gates"], b["gates"], strict=True):
            gate_rows.append([ga["gate"], _verdict(ga), _verdict(gb)])
        gate_rows.append(
            [
                "all gates",
                "PASSED" if a["passed"] else "FAILED",
                "PASSED" if b["passed"] else "FAILED",
            ]
        )
        lines += ["", _table(gate_rows, ["GATE", va, vb], right=set())]
    return "\n".join(lines)


def _verdict(gate: Mapping[str, Any]) -> str:
    value = _MISSING if gate["value"] is None else f"{gate['value']:.4g}"
    return f"{'PASS' if gate['passed'] else 'FAIL'} {value}"
