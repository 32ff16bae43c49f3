"""Plain-text reports of an evaluation and of a comparison, for the terminal.

Both read only the JSON-ready data that :func:`~prodgate.evaluation.scoring.score`
and :func:`~prodgate.evaluation.evaluate.compare` return, so what the CLI prints and
what ``--json`` prints always agree.
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
    """A metric for people: costs with two decimals, rates and scores with four."""
    if value is None:
        return _MISSING
    sign = "+" if signed else ""
    if metric.startswith("business."):
        return f"{value:{sign},.2f}"
    return f"{value:{sign}.4f}"


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
    lines = [_header(service, f"version {version}", dataset, result["rows"], label_column)]
    if evaluation_id is not None:
        lines.append(f"stored as evaluation {evaluation_id}")
    refused = result.get("contract_violations") or 0
    if refused:
        lines.append(
            f"warning: {refused:,} of {result['rows']:,} rows break the input contract; "
            "the gateway would refuse them with 422"
        )
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
    if result["cohorts"]:
        lines += ["", "cohorts", _cohort_table(result)]
    gates = result["gates"]
    failed = sum(not g["passed"] for g in gates)
    lines.append("")
    if gates:
        lines += [f"gates ({failed} of {len(gates)} failed)", _gate_table(gates), ""]
        verdict = f"FAILED: {failed} of {len(gates)} gates failed" if failed else "PASSED"
    else:
        verdict = "PASSED (the service declares no gates)"
    lines.append(verdict)
    return "\n".join(lines)


def compare_text(comparison: Mapping[str, Any]) -> str:
    """Two versions side by side: every metric per cohort with the difference (B - A),
    then each gate's verdict for both."""
    a, b = comparison["a"], comparison["b"]
    va, vb = f"V{a['version']}", f"V{b['version']}"
    lines = [
        _header(
            comparison["service"],
            f"version {a['version']} vs version {b['version']}",
            comparison["dataset"],
            a["rows"],
            comparison["label_column"],
        ),
        "",
    ]
    rows = []
    previous = None
    for d in comparison["differences"]:
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
