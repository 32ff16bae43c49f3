"""Score a set of decisions against the truth: metrics, business cost, cohorts, gates.

:func:`score` is pure: it takes the inputs, the true answers, the model's answers and
which decisions were escalated, and returns JSON-ready data. Offline evaluation calls
it on a holdout file; production metrics call it on decisions that got feedback.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from prodgate.evaluation import gates as gates_module
from prodgate.evaluation.metrics import classifier_metrics, regressor_metrics
from prodgate.exceptions import UsageError
from prodgate.spec import Business, Cohort, ServiceSpec


def plain(value: Any) -> Any:
    """A cell as a plain Python value: numpy scalars unwrapped, NaN/NA/NaT as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _shown(values: Sequence[Any], limit: int = 5) -> str:
    distinct = list(dict.fromkeys(repr(v) for v in values))
    more = f" (+{len(distinct) - limit} more)" if len(distinct) > limit else ""
    return ", ".join(distinct[:limit]) + more


def truth_labels(truth: Sequence[Any], service: ServiceSpec) -> list[str]:
    """True classes as the service's labels, by the spec's one rule for them
    (:meth:`ServiceSpec.as_labels`: labels as text, or 0..k-1 and False/True standing
    for the labels in order). Anything else is a :class:`UsageError` naming the values.
    """
    values = [plain(t) for t in truth]
    missing = sum(v is None for v in values)
    if missing:
        raise UsageError(f"{missing} row(s) have no true label; drop them or fill them in")
    found = service.as_labels(values)
    if found is not None:
        return found
    labels = service.labels
    if labels is None:
        bad = [v for v in values if service.as_label(v) is None]
        raise UsageError(f"true labels must be text, integers or booleans, not {_shown(bad)}")
    # Each on its own may be a label, yet the column mixes text and positions.
    unknown = [v for v in values if service.as_label(v) is None] or [
        v for v in values if str(v) not in labels
    ]
    positions = (
        f"; 0..{len(labels) - 1} stand for them in order" if service.labels_by_position else ""
    )
    raise UsageError(
        f"true labels {_shown(unknown)} are not labels of the service "
        f"({', '.join(labels)}{positions})"
    )


def _truth_values(truth: Sequence[Any]) -> np.ndarray:
    values = [plain(t) for t in truth]
    bad = [v for v in values if isinstance(v, (bool, str)) or not isinstance(v, (int, float))]
    if bad:
        raise UsageError(f"a regressor's true values must be numbers, not {_shown(bad)}")
    return np.asarray(values, dtype=np.float64)


class _Scorer:
    """The cleaned arrays of one scoring run, measured on any subset of rows."""

    def __init__(
        self,
        service: ServiceSpec,
        truth: Sequence[Any],
        predictions: Sequence[Any],
        probabilities: Sequence[Mapping[str, float] | None],
        escalated: Sequence[bool],
    ) -> None:
        self.classifier = service.kind == "classifier"
        self.escalated = np.asarray([bool(e) for e in escalated], dtype=bool)
        self.proba: np.ndarray | None = None
        self.positive: str | None = None
        if not self.classifier:
            self.truth = _truth_values(truth)
            self.predicted = np.asarray([float(p) for p in predictions], dtype=np.float64)
            self.labels: list[str] = []
            return
        self.truth = np.asarray(truth_labels(truth, service), dtype=object)
        self.predicted = np.asarray([str(plain(p)) for p in predictions], dtype=object)
        seen = set(self.truth.tolist()) | set(self.predicted.tolist())
        if service.labels is not None:
            self.labels = list(service.labels)
            strange = sorted(seen - set(self.labels))
            if strange:
                raise UsageError(f"the model answered labels outside the service's: {strange}")
        else:
            for p in probabilities:
                seen.update(p or ())
            self.labels = sorted(seen)
        business = service.policy.business
        if len(self.labels) <= 2 and (business or self.labels):
            # Binary: the business's positive label, else the last label.
            self.positive = business.positive if business else self.labels[-1]
            if self.positive not in self.labels:  # undeclared labels, one class seen
                self.labels.append(self.positive)
        if all(p for p in probabilities) and len(probabilities) > 0:
            self.proba = np.asarray(
                [[float(p.get(label, 0.0)) for label in self.labels] for p in probabilities if p],
                dtype=np.float64,
            )

    def measure(self, mask: np.ndarray, costs: np.ndarray | None) -> dict[str, Any]:
        rows = int(mask.sum())
        if self.classifier:
            proba = None if self.proba is None else self.proba[mask]
            metrics = classifier_metrics(
                self.truth[mask], self.predicted[mask], proba, self.labels, self.positive
            )
        else:
            metrics = regressor_metrics(self.truth[mask], self.predicted[mask])
        business = None
        if costs is not None:
            chosen = costs[mask]
            business = {
                "cost_per_decision": float(chosen.mean()) if rows else None,
                "total_cost": float(chosen.sum()),
            }
        return {
            "rows": rows,
            "metrics": metrics,
            "escalation_rate": float(self.escalated[mask].mean()) if rows else None,
            "business": business,
        }


def _column(inputs: pd.DataFrame, column: str, why: str) -> pd.Series:
    if column not in inputs.columns:
        raise UsageError(f"{why} needs the column {column!r}, which the data does not have")
    return inputs[column]


def _costs(business: Business, inputs: pd.DataFrame, scorer: _Scorer) -> np.ndarray:
    """Each decision's cost with :meth:`Business.cost_of` (an escalation costs the
    escalation: a person then decides, and is assumed to decide right)."""
    needed = sorted({c.of for c in business.costs.values() if c.of is not None and c.rate})
    columns = {
        name: [plain(v) for v in _column(inputs, name, "a business cost").tolist()]
        for name in needed
    }
    out = np.empty(len(scorer.truth), dtype=np.float64)
    for i, (truth, predicted, escalated) in enumerate(
        zip(scorer.truth, scorer.predicted, scorer.escalated, strict=True)
    ):
        row = {name: values[i] for name, values in columns.items()}
        try:
            out[i] = business.cost_of(row, truth, predicted, bool(escalated))
        except (TypeError, ValueError):
            raise UsageError(
                f"row {i}: a business cost needs a number in {', '.join(needed)}, got {row}"
            ) from None
    return out


def _cohort_masks(cohort: Cohort, inputs: pd.DataFrame) -> list[tuple[str, np.ndarray]]:
    """``(entry name, row mask)`` for a ``where`` cohort, or one per value of ``by``."""
    if cohort.where is not None:
        for column in sorted(cohort.where.columns):
            _column(inputs, column, f"cohort {cohort.name!r}")
        try:
            mask = np.asarray(cohort.where.mask(inputs), dtype=bool)
        except TypeError as exc:
            raise UsageError(
                f"cohort {cohort.name!r} ({cohort.where.text}) cannot be applied: {exc}"
            ) from None
        return [(cohort.name, mask)]
    assert cohort.by is not None
    column = _column(inputs, cohort.by, f"cohort {cohort.name!r}")
    values = [plain(v) for v in column.tolist()]
    distinct = {v for v in values if v is not None}
    try:
        ordered = sorted(distinct)
    except TypeError:
        ordered = sorted(distinct, key=str)
    array = np.asarray(values, dtype=object)
    out = [(f"{cohort.name}={v}", array == v) for v in ordered]
    if any(v is None for v in values):
        out.append((f"{cohort.name}=(missing)", np.asarray([v is None for v in values])))
    return out


def score(
    service: ServiceSpec,
    inputs: pd.DataFrame,
    truth: Sequence[Any],
    predictions: Sequence[Any],
    probabilities: Sequence[Mapping[str, float] | None],
    escalated: Sequence[bool],
    *,
    drift: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics, business cost, cohorts and gate verdicts of one set of decisions.

    Row *i* of *inputs* (the input fields, as columns) was answered *predictions[i]*
    with *probabilities[i]* (label -> probability, or None), escalated or not, and the
    right answer was *truth[i]*. Metrics are of the model's own answers on every row,
    escalated or not; the business cost counts an escalated row as the escalation cost.

    *drift*, the inputs' drift from the reference profile
    (:func:`prodgate.evaluation.drift.data_drift`), is kept as the result's ``drift``
    for the ``drift.*`` gates (measured on the whole data, never per cohort).

    Returns ``{"rows", "metrics", "escalation_rate", "business", "cohorts", "gates",
    "passed"}`` (and ``drift`` when given); every number is a plain float or None
    (not measurable).
    """
    n = len(inputs)
    lengths = {len(truth), len(predictions), len(probabilities), len(escalated)}
    if lengths != {n}:
        raise UsageError(
            f"score needs one truth, prediction, probabilities and escalation per input row "
            f"({n} rows; got {len(truth)}, {len(predictions)}, {len(probabilities)}, "
            f"{len(escalated)})"
        )
    scorer = _Scorer(service, truth, predictions, probabilities, escalated)
    business = service.policy.business
    costs = _costs(business, inputs, scorer) if business is not None else None
    overall = scorer.measure(np.ones(n, dtype=bool), costs)
    if drift is not None:
        overall["drift"] = dict(drift)
    cohorts = []
    for cohort in service.policy.cohorts:
        for name, mask in _cohort_masks(cohort, inputs):
            cohorts.append({"name": name, "cohort": cohort.name, **scorer.measure(mask, costs)})
    verdicts = gates_module.check(service.policy.gates, overall, cohorts)
    return {
        **overall,
        "cohorts": cohorts,
        "gates": verdicts,
        "passed": all(v["passed"] for v in verdicts),
    }
