"""The label-free estimate: a classifier's expected accuracy and cost before feedback.

Ground truth arrives late, if at all; a window's inputs and answers are there at
once. In the manner of NannyML's CBPE (confidence-based performance estimation), the
evaluation that approved a version also measured how often it was right at each
confidence: :func:`calibration` keeps, per predicted label and confidence bin (the
fixed edges ``[0, 0.05, ..., 1.0]`` the gateway's windows count confidences in), the
counts of the true labels, and the probability of being right there. A window's
``calibration_counts`` (per predicted label, its count per bin) then give the
expected accuracy, and with the spec's costs the expected business cost per
decision (:func:`estimate`), each with an interval.

Why it works under covariate shift: if the inputs move but what the model's
confidence means does not (``P(correct | label, confidence)`` is the same), the
window's mix of confidences carries the change; when the model meets unfamiliar
inputs its confidences fall, and so does the estimate. It cannot see concept drift
(the same input now has another right answer); the realised figures from feedback,
shown beside it, can.

The probability of being right per cell is, of three candidates, the one with the
lowest cross-validated Brier score on the evaluation rows: the model's own confidence
(already calibrated), the cell's observed rate (shrunk toward the confidence when the
cell is small), or an isotonic regression of correctness on confidence per predicted
label (sklearn; monotone and smooth where cells are sparse). The choice and the
scores are stored with the calibration so anyone can see why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from prodgate.spec import Business

#: The fixed confidence bin edges: 20 bins of 0.05, the last one closed.
EDGES: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
BINS = len(EDGES) - 1
FORMAT = 1
#: Cross-validation folds when choosing how to calibrate, and the rows needed for it.
FOLDS = 5
MIN_CV_ROWS = 50
#: Rows used to choose the method (a fixed-seed sample of larger evaluations).
MAX_CV_ROWS = 200_000
#: Pseudo-counts pulling a small cell's observed rate toward its mean confidence.
PRIOR = 2.0
#: Rows of one predicted label needed to fit its own isotonic curve (else pooled).
MIN_ISOTONIC_ROWS = 20
#: Normal quantile of the interval (95%).
Z = 1.959964
METHODS = ("isotonic", "binned", "confidence")


def confidence_bins(confidence: Any) -> np.ndarray:
    """The bin index (0..19) of each confidence, as the gateway's windows count them
    (``int(confidence * 20)``: ``[e_i, e_i+1)``, the last bin closed, values outside
    [0, 1] clipped), so the evaluation and the windows bin alike to the last ulp."""
    values = np.asarray(confidence, dtype=np.float64)
    index: np.ndarray = np.clip(np.floor(values * BINS), 0, BINS - 1).astype(np.int64)
    return index


def _midpoints() -> np.ndarray:
    edges = np.asarray(EDGES)
    mids: np.ndarray = (edges[:-1] + edges[1:]) / 2
    return mids


# -- calibration (from an evaluation) ---------------------------------------------------


def _table(
    method: str,
    pred: np.ndarray,
    bins: np.ndarray,
    conf: np.ndarray,
    correct: np.ndarray,
    labels: Sequence[str],
) -> dict[str, np.ndarray]:
    """``{predicted label: P(correct) per bin}`` fitted on these rows by *method*."""
    mids = _midpoints()
    out: dict[str, np.ndarray] = {}
    pooled = None
    if method == "isotonic":
        pooled = _isotonic(conf, correct)
    for label in labels:
        rows = pred == label
        n = np.bincount(bins[rows], minlength=BINS).astype(np.float64)
        conf_sum = np.bincount(bins[rows], weights=conf[rows], minlength=BINS)
        mean_conf = np.where(n > 0, conf_sum / np.maximum(n, 1), mids)
        if method == "confidence":
            out[label] = mean_conf
        elif method == "binned":
            hits = np.bincount(bins[rows], weights=correct[rows], minlength=BINS)
            out[label] = (hits + PRIOR * mean_conf) / (n + PRIOR)
        else:
            fitted = (
                _isotonic(conf[rows], correct[rows]) if rows.sum() >= MIN_ISOTONIC_ROWS else None
            )
            curve = fitted or pooled
            if curve is None:
                out[label] = mean_conf
                continue
            # A cell's value is the curve's mean over its rows (the window knows only
            # the bin); an empty cell reads the curve at its midpoint.
            at_rows = np.bincount(bins[rows], weights=curve.predict(conf[rows]), minlength=BINS)
            out[label] = np.where(n > 0, at_rows / np.maximum(n, 1), curve.predict(mids))
    return out


def _isotonic(conf: np.ndarray, correct: np.ndarray) -> Any:
    if len(conf) < MIN_ISOTONIC_ROWS or len(np.unique(conf)) < 2:
        return None
    from sklearn.isotonic import IsotonicRegression

    model = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
    model.fit(conf, correct)
    return model


def _lookup(table: Mapping[str, np.ndarray], pred: np.ndarray, bins: np.ndarray) -> np.ndarray:
    mids = _midpoints()
    out: np.ndarray = mids[bins].copy()
    for label, values in table.items():
        rows = pred == label
        out[rows] = values[bins[rows]]
    return out


def _choose(
    pred: np.ndarray,
    bins: np.ndarray,
    conf: np.ndarray,
    correct: np.ndarray,
    labels: Sequence[str],
) -> tuple[str, dict[str, float]]:
    """The method with the lowest cross-validated Brier score, and every score."""
    n = len(pred)
    if n < MIN_CV_ROWS:
        return "binned", {}
    rng = np.random.default_rng(0)
    order = rng.permutation(n)[:MAX_CV_ROWS]
    folds = np.array_split(order, FOLDS)
    scores: dict[str, float] = {}
    for method in METHODS:
        squared = 0.0
        for k, test in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != k])
            table = _table(method, pred[train], bins[train], conf[train], correct[train], labels)
            p = _lookup(table, pred[test], bins[test])
            squared += float(((p - correct[test]) ** 2).sum())
        scores[method] = squared / len(order)
    best = min(METHODS, key=lambda m: (scores[m], METHODS.index(m)))
    return best, scores


def calibration(
    predictions: Sequence[Any],
    confidences: Sequence[float | None],
    truth: Sequence[Any],
    labels: Sequence[str],
    *,
    business: Business | None = None,
    inputs: Any = None,
) -> dict[str, Any] | None:
    """What the model's confidence meant on labelled data, for :func:`estimate`.

    Row *i* was predicted *predictions[i]* with *confidences[i]* (the top
    probability; None when the model gave none) and the truth was *truth[i]* (labels
    as text). Rows without a confidence are left out; None when none has one.

    Returns JSON-ready ``{"format", "edges", "labels", "rows", "method", "scores",
    "counts": {pred: [[n per true label] per bin]}, "p_correct": {pred: [p per bin]},
    "values": {column: {"mean", "cells": {pred: [[mean or None per true label] per
    bin]}}}}``; ``values`` holds the input columns the business costs are rates of
    (*inputs*, a DataFrame of the rows), so an estimated cost knows what is at stake
    in each cell.
    """
    keep = [i for i, c in enumerate(confidences) if c is not None and math.isfinite(c)]
    if not keep:
        return None
    pred = np.asarray([str(predictions[i]) for i in keep], dtype=object)
    true = np.asarray([str(truth[i]) for i in keep], dtype=object)
    conf = np.asarray([float(confidences[i]) for i in keep], dtype=np.float64)  # type: ignore[arg-type]
    names = list(dict.fromkeys([*labels, *sorted(set(pred.tolist()) | set(true.tolist()))]))
    bins = confidence_bins(conf)
    correct = (pred == true).astype(np.float64)
    method, scores = _choose(pred, bins, conf, correct, names)
    table = _table(method, pred, bins, conf, correct, names)
    true_index = {label: k for k, label in enumerate(names)}
    t_idx = np.asarray([true_index[t] for t in true], dtype=np.int64)
    counts: dict[str, list[list[int]]] = {}
    p_correct: dict[str, list[float]] = {}
    cell = bins * len(names) + t_idx
    for label in names:
        rows = pred == label
        if not rows.any():
            continue
        grid = np.bincount(cell[rows], minlength=BINS * len(names)).reshape(BINS, len(names))
        counts[label] = grid.astype(int).tolist()
        p_correct[label] = [round(float(p), 6) for p in table[label]]
    out: dict[str, Any] = {
        "format": FORMAT,
        "edges": list(EDGES),
        "labels": names,
        "rows": len(keep),
        "method": method,
        "scores": {m: round(s, 6) for m, s in scores.items()},
        "counts": counts,
        "p_correct": p_correct,
        "values": {},
    }
    if business is not None and inputs is not None:
        out["values"] = _values(business, inputs, keep, pred, bins, t_idx, names)
    return out


def _values(
    business: Business,
    inputs: Any,
    keep: list[int],
    pred: np.ndarray,
    bins: np.ndarray,
    t_idx: np.ndarray,
    names: list[str],
) -> dict[str, Any]:
    columns = sorted({c.of for c in business.costs.values() if c.of is not None and c.rate})
    out: dict[str, Any] = {}
    cell = bins * len(names) + t_idx
    size = BINS * len(names)
    for column in columns:
        if column not in getattr(inputs, "columns", ()):
            continue
        raw = np.asarray(inputs[column].to_numpy(dtype=np.float64, na_value=np.nan))[keep]
        known = ~np.isnan(raw)
        if not known.any():
            continue
        cells: dict[str, list[list[float | None]]] = {}
        for label in sorted(set(pred.tolist())):
            rows = (pred == label) & known
            n = np.bincount(cell[rows], minlength=size)
            total = np.bincount(cell[rows], weights=raw[rows], minlength=size)
            means = [
                None if k == 0 else round(float(s / k), 6) for s, k in zip(total, n, strict=True)
            ]
            cells[label] = [means[b * len(names) : (b + 1) * len(names)] for b in range(BINS)]
        out[column] = {"mean": float(raw[known].mean()), "cells": cells}
    return out


# -- the estimate of a window -----------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """A window's expected accuracy and cost per decision, with 95% intervals."""

    rows: int
    accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    cost_per_decision: float | None = None
    cost_low: float | None = None
    cost_high: float | None = None
    method: str = ""
    #: Decisions the window made with a label the evaluation never saw predicted.
    unseen: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _p_correct(cal: Mapping[str, Any], label: str) -> np.ndarray:
    """P(correct) per bin for *label*; a label never predicted in the evaluation
    reads the mean over labels, weighted by their counts (or the bin midpoints)."""
    table = cal.get("p_correct", {})
    if label in table:
        return np.asarray(table[label], dtype=np.float64)
    counts = cal.get("counts", {})
    weights = np.zeros(BINS)
    total = np.zeros(BINS)
    for other, values in table.items():
        n = np.asarray(counts.get(other, [[0]] * BINS), dtype=np.float64).sum(axis=1)
        weights += n
        total += n * np.asarray(values, dtype=np.float64)
    return np.where(weights > 0, total / np.maximum(weights, 1), _midpoints())


def _true_shares(cal: Mapping[str, Any], label: str, p: np.ndarray) -> np.ndarray:
    """P(true label | predicted *label*, bin) as a (bins x labels) array whose
    diagonal share is *p*; the wrong mass is split as the cell's errors were (else
    as the label's errors over all bins, else evenly)."""
    names: list[str] = list(cal["labels"])
    k = len(names)
    shares = np.zeros((BINS, k))
    me = names.index(label) if label in names else None
    grid = np.asarray(cal.get("counts", {}).get(label, np.zeros((BINS, k))), dtype=np.float64)
    wrong = grid.copy()
    if me is not None:
        wrong[:, me] = 0
    pooled = wrong.sum(axis=0)
    others = k - (1 if me is not None else 0)
    even = np.full(k, 1.0 / max(others, 1))
    if me is not None:
        even[me] = 0
    fallback = pooled / pooled.sum() if pooled.sum() > 0 else even
    for b in range(BINS):
        total = wrong[b].sum()
        split = wrong[b] / total if total > 0 else fallback
        shares[b] = (1 - p[b]) * split
        if me is not None:
            shares[b, me] = p[b]
    return shares


def _escalated_share(threshold: float | None) -> np.ndarray:
    """Per bin, the share of decisions escalated by ``escalation_below`` (the bin
    that straddles the threshold counts its part below it, as if spread evenly)."""
    if threshold is None:
        return np.zeros(BINS)
    edges = np.asarray(EDGES)
    share: np.ndarray = np.clip((threshold - edges[:-1]) / (edges[1:] - edges[:-1]), 0.0, 1.0)
    return share


def _value(
    cal: Mapping[str, Any],
    column: str | None,
    label: str,
    b: int,
    t: int,
    scale: Mapping[str, float],
) -> float:
    if column is None:
        return 0.0
    info = cal.get("values", {}).get(column)
    if info is None:
        return scale.get(column, 0.0)
    cells = info["cells"].get(label)
    value = cells[b][t] if cells is not None else None
    base = float(info["mean"]) if value is None else float(value)
    # The window's mean of the column against the evaluation's: claims inflated by a
    # fifth cost a fifth more when misjudged.
    mean = float(info["mean"])
    if column in scale and mean:
        base *= scale[column] / mean
    return base


def estimate(
    cal: Mapping[str, Any],
    window_counts: Mapping[str, Sequence[int]],
    *,
    business: Business | None = None,
    escalation_below: float | None = None,
    column_means: Mapping[str, float] | None = None,
) -> Estimate:
    """Expected accuracy (and with *business*, cost per decision) of a window whose
    decisions counted *window_counts* (``{predicted label: [count per bin]}``).

    Accuracy is the model's own answers right, escalated or not (as evaluation scores
    it); the cost counts a decision in a bin below *escalation_below* as an
    escalation. *column_means* are the window's means of the input columns costs
    are rates of. The interval adds the window's sampling spread (a sum of Bernoulli
    trials) to the calibration's own uncertainty (each cell's rate estimated from
    its evaluation rows); None figures when the window made no decision.
    """
    scale = dict(column_means or {})
    names: list[str] = list(cal["labels"])
    escalated = _escalated_share(escalation_below)
    n = expected = var = cost = cost_var = 0.0
    calib_var = 0.0
    unseen = 0
    for label, raw in window_counts.items():
        w = np.asarray(raw, dtype=np.float64)[:BINS]
        if w.sum() <= 0:
            continue
        p = np.clip(_p_correct(cal, label), 0.0, 1.0)
        if label not in cal.get("p_correct", {}):
            unseen += int(w.sum())
        m = np.asarray(cal.get("counts", {}).get(label, np.zeros((BINS, 1))), dtype=np.float64)
        m = m.sum(axis=1) if m.ndim == 2 else np.zeros(BINS)
        n += float(w.sum())
        expected += float((w * p).sum())
        var += float((w * p * (1 - p)).sum())
        calib_var += float((w * w * p * (1 - p) / (m + 1)).sum())
        if business is None:
            continue
        shares = _true_shares(cal, label, p)
        for b in (int(i) for i in np.flatnonzero(w)):
            outcomes = [(shares[b, t], truth) for t, truth in enumerate(names) if shares[b, t] > 0]
            first = second = 0.0
            for share, truth in outcomes:
                c = business.cost(business.outcome(truth, label, False))
                one = c.amount + c.rate * _value(cal, c.of, label, b, names.index(truth), scale)
                first += share * one
                second += share * one * one
            e = float(escalated[b])
            if e > 0:
                c = business.cost("escalation")
                at_stake = sum(
                    share * _value(cal, c.of, label, b, names.index(truth), scale)
                    for share, truth in outcomes
                )
                one = c.amount + c.rate * at_stake
                first, second = (1 - e) * first + e * one, (1 - e) * second + e * one * one
            cost += float(w[b] * first)
            cost_var += float(w[b] * max(0.0, second - first * first))
    if n == 0:
        return Estimate(0, None, None, None, method=str(cal.get("method", "")))
    accuracy = expected / n
    spread = Z * math.sqrt((var + calib_var) / (n * n))
    out_cost = low = high = None
    if business is not None:
        out_cost = cost / n
        half = Z * math.sqrt(cost_var) / n
        low, high = out_cost - half, out_cost + half
    return Estimate(
        rows=int(n),
        accuracy=accuracy,
        accuracy_low=max(0.0, accuracy - spread),
        accuracy_high=min(1.0, accuracy + spread),
        cost_per_decision=out_cost,
        cost_low=low,
        cost_high=high,
        method=str(cal.get("method", "")),
        unseen=unseen,
    )


def counts_of(
    predictions: Sequence[Any], confidences: Sequence[float | None]
) -> dict[str, list[int]]:
    """``{predicted label: [count per bin]}`` of decisions, as a window counts them
    (decisions without a confidence are left out)."""
    out: dict[str, list[int]] = {}
    keep = [
        (str(p), float(c)) for p, c in zip(predictions, confidences, strict=True) if c is not None
    ]
    if not keep:
        return out
    bins = confidence_bins([c for _, c in keep])
    for (label, _), b in zip(keep, bins, strict=True):
        out.setdefault(label, [0] * BINS)[int(b)] += 1
    return out
