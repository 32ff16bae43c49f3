"""Quality gates' verdicts on a scored result.

Absolute gates (``recall >= 0.6 on high_value``) read one measured value, overall or
on a cohort. A gate on a ``by`` cohort may name one value (``on region=north``) or the
whole cohort (``on region``: every value must pass; the worst is reported). Relative
gates (``no cohort accuracy more than 0.05 below overall``) compare every cohort entry
of at least :data:`MIN_COHORT_ROWS` rows with the overall value and name the worst.
A value that cannot be measured fails its gate: a gate proves something or it fails.
``drift.share`` is the share of input columns of the evaluation data that drifted
from the version's reference profile (the result's ``drift``); without a profile it
is not measurable, and the verdict says why.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prodgate.spec import LOWER_IS_BETTER, Gate

#: Cohort entries smaller than this are left out of relative gates (too noisy).
MIN_COHORT_ROWS = 30

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def lookup(entry: Mapping[str, Any], metric: str) -> float | None:
    """The value of *metric* (``recall``, ``escalation_rate``, ``business.total_cost``)
    in one scored entry (overall or a cohort); None when it was not measured."""
    if metric == "escalation_rate":
        value = entry.get("escalation_rate")
    elif metric == "drift.share":
        value = (entry.get("drift") or {}).get("share_drifted")
    elif metric.startswith("business."):
        business = entry.get("business") or {}
        value = business.get(metric.split(".", 1)[1])
    else:
        value = entry.get("metrics", {}).get(metric)
    return None if value is None else float(value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _holds(value: float, op: str, threshold: float) -> bool:
    """``value op threshold``, where a value equal to the threshold up to float noise
    counts as equal (3/5 recall meets ``recall >= 0.6``)."""
    if math.isclose(value, threshold, rel_tol=1e-9, abs_tol=1e-12):
        return op in (">=", "<=")
    return _OPS[op](value, threshold)


def _verdict(gate: Gate, passed: bool, value: float | None, detail: str) -> dict[str, Any]:
    return {
        "gate": gate.text,
        "passed": passed,
        "value": value,
        "threshold": gate.threshold,
        "detail": detail,
    }


def _absolute(
    gate: Gate, overall: Mapping[str, Any], cohorts: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    need = f"needs {gate.op} {gate.threshold:g}"
    if gate.cohort is None:
        targets: list[Mapping[str, Any]] = [{**overall, "name": "overall"}]
    else:
        targets = [c for c in cohorts if c["name"] == gate.cohort]
        if not targets and "=" not in gate.cohort:
            targets = [c for c in cohorts if c.get("cohort") == gate.cohort]
        if not targets:
            return _verdict(gate, False, None, f"not measurable: no rows in cohort {gate.cohort}")
    measured = [(t["name"], lookup(t, gate.metric)) for t in targets]
    missing = [name for name, value in measured if value is None]
    if missing:
        where = "" if gate.cohort is None else f" on {', '.join(missing)}"
        why = (overall.get("drift") or {}).get("note") if gate.metric.startswith("drift.") else None
        tail = f": {why}" if why else ""
        return _verdict(gate, False, None, f"{gate.metric}{where} is not measurable{tail}")
    values = [(name, v) for name, v in measured if v is not None]
    pick = min if gate.op in (">=", ">") else max
    name, worst = pick(values, key=lambda nv: nv[1])
    passed = _holds(worst, gate.op, gate.threshold)
    where = "" if gate.cohort is None else f" on {name}"
    prefix = "worst: " if len(values) > 1 else ""
    detail = f"{prefix}{gate.metric}{where} is {_fmt(worst)}; {need}"
    if gate.metric.startswith("drift."):
        drifted = [
            c["column"]
            for c in (overall.get("drift") or {}).get("columns") or ()
            if c.get("drifted")
        ]
        detail += f" (drifted: {', '.join(drifted) or 'none'})"
    return _verdict(gate, passed, worst, detail)


def _relative(
    gate: Gate, overall: Mapping[str, Any], cohorts: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    base = lookup(overall, gate.metric)
    if base is None:
        return _verdict(gate, False, None, f"{gate.metric} overall is not measurable")
    below = gate.direction == "below"
    gaps: list[tuple[float, str, float]] = []
    skipped: list[str] = []
    unmeasured: list[str] = []
    for c in cohorts:
        if c["rows"] < MIN_COHORT_ROWS:
            skipped.append(f"{c['name']} ({c['rows']})")
            continue
        value = lookup(c, gate.metric)
        if value is None:
            unmeasured.append(c["name"])
            continue
        gaps.append(((base - value) if below else (value - base), c["name"], value))
    notes = []
    if skipped:
        notes.append(f"skipped, under {MIN_COHORT_ROWS} rows: {', '.join(skipped)}")
    if unmeasured:
        notes.append(f"not measurable on: {', '.join(unmeasured)}")
    if (gate.metric in LOWER_IS_BETTER) == below:
        bad = "above" if below else "below"
        notes.append(f"note: for {gate.metric} '{bad}' overall is the bad direction")
    tail = "".join(f"; {n}" for n in notes)
    if not gaps:
        return _verdict(
            gate, False, None, f"not measurable: no cohort with {MIN_COHORT_ROWS}+ rows{tail}"
        )
    gap, name, value = max(gaps)
    failing = [n for g, n, _ in sorted(gaps, reverse=True) if not _holds(g, "<=", gate.threshold)]
    passed = not failing
    side = gate.direction if gap >= 0 else ("above" if below else "below")
    detail = (
        f"worst: {name} {gate.metric} {_fmt(value)} vs {_fmt(base)} overall "
        f"({_fmt(abs(gap))} {side}; allowed {gate.threshold:g} {gate.direction})"
    )
    if len(failing) > 1:
        detail += f"; also failing: {', '.join(failing[1:])}"
    return _verdict(gate, passed, gap, detail + tail)


def check(
    gates: Sequence[Gate], overall: Mapping[str, Any], cohorts: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """One verdict per gate: ``{"gate", "passed", "value", "threshold", "detail"}``.

    *overall* and each of *cohorts* are scored entries (``metrics``, ``escalation_rate``,
    ``business``; cohorts also ``name``, ``cohort`` and ``rows``). An absolute gate's
    value is the measured metric; a relative gate's value is the largest gap in the
    gate's direction (the worst cohort's distance from overall).
    """
    return [(_relative if gate.relative else _absolute)(gate, overall, cohorts) for gate in gates]
