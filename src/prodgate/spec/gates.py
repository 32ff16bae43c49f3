"""Quality gates: the metric thresholds a version must pass, overall or per cohort."""

from __future__ import annotations

import re
from dataclasses import dataclass

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
OTHER_METRICS = ("escalation_rate", "business.cost_per_decision", "business.total_cost")
#: Measured on the whole evaluation data against the version's reference profile
#: (the share of its input columns that drifted), never per cohort.
DRIFT_METRICS = ("drift.share",)
#: What an evaluation of a prompt version measures (accuracy: of a declared label).
LLM_METRICS = (
    "accuracy",
    "exact_match",
    "contains",
    "regex",
    "json_valid",
    "judge_score",
    "error_rate",
    "cost_per_call",
    "latency_p50_ms",
    "latency_p95_ms",
)
#: Metrics where lower is better (a cohort "above overall" is the bad direction).
LOWER_IS_BETTER = frozenset(
    {
        "brier",
        "mae",
        "rmse",
        "escalation_rate",
        "business.cost_per_decision",
        "error_rate",
        "cost_per_call",
        "latency_p50_ms",
        "latency_p95_ms",
        "drift.share",
    }
)


_METRIC = r"(?P<metric>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?)"
_NUMBER = r"(?P<value>-?\d+(?:\.\d+)?(?:e-?\d+)?)"
_ABSOLUTE = re.compile(
    rf"^{_METRIC}\s*(?P<op>>=|<=|>|<)\s*{_NUMBER}(?:\s+on\s+(?P<cohort>[\w-]+(?:=\S+)?))?$"
)
_RELATIVE = re.compile(
    rf"^no\s+cohort(?:'s)?\s+{_METRIC}\s+more\s+than\s+{_NUMBER}\s+(?P<dir>below|above)\s+overall$"
)


@dataclass(frozen=True)
class Gate:
    """A quality gate. Absolute: ``metric op threshold [on cohort]``. Relative: no
    cohort's metric further than ``threshold`` below (or above) the overall value."""

    text: str
    metric: str
    threshold: float
    op: str = ">="
    cohort: str | None = None
    relative: bool = False
    direction: str = "below"


def parse_gate(text: str, kind: str) -> Gate:
    """Parse a gate for a service of *kind*; ValueError says what is wrong."""
    clean = " ".join(text.split())
    m = _RELATIVE.match(clean)
    if m:
        gate = Gate(clean, m["metric"], float(m["value"]), relative=True, direction=m["dir"])
    else:
        m = _ABSOLUTE.match(clean)
        if not m:
            raise ValueError(
                f"cannot read gate {text!r}; write 'METRIC >= VALUE [on COHORT]' or "
                "'no cohort METRIC more than VALUE below overall'"
            )
        gate = Gate(clean, m["metric"], float(m["value"]), m["op"], m["cohort"])
    known: tuple[str, ...]
    if kind == "llm":
        known = LLM_METRICS
    else:
        known = (CLASSIFIER_METRICS if kind == "classifier" else REGRESSOR_METRICS) + (
            OTHER_METRICS if kind == "classifier" else ()
        )
        known += DRIFT_METRICS
    if gate.metric not in known:
        raise ValueError(f"unknown metric {gate.metric!r} for a {kind}; known: {', '.join(known)}")
    if gate.metric in DRIFT_METRICS and (gate.relative or gate.cohort is not None):
        raise ValueError(
            f"{gate.metric} is measured on the whole evaluation data, not per cohort; "
            f"write '{gate.metric} <= VALUE'"
        )
    return gate
