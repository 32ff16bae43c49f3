"""Standard metrics of one set of decisions, computed with scikit-learn.

Every function takes plain arrays that :mod:`prodgate.evaluation.scoring` has already
cleaned (truth and predictions as the service's labels, or as floats for regressors)
and returns ``{metric name: float or None}`` in the order of
:data:`~prodgate.spec.gates.CLASSIFIER_METRICS` or :data:`~prodgate.spec.gates.REGRESSOR_METRICS`.
None means "not measurable here": no rows, one class only, no probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as sk

from prodgate.spec import CLASSIFIER_METRICS, REGRESSOR_METRICS


def _number(value: Any) -> float | None:
    """A metric as a plain float, or None for NaN (JSON has no NaN)."""
    out = float(value)
    return None if math.isnan(out) else out


def classifier_metrics(
    truth: np.ndarray,
    predicted: np.ndarray,
    proba: np.ndarray | None,
    labels: Sequence[str],
    positive: str | None,
) -> dict[str, float | None]:
    """Accuracy, precision, recall, f1, ROC AUC and Brier score of a classifier.

    *truth* and *predicted* hold labels; *proba* is a rows x labels matrix (columns in
    the order of *labels*) or None when some row came without probabilities. With a
    *positive* label the problem is binary: precision, recall and f1 are of that label,
    ROC AUC and Brier use its probability. Otherwise precision, recall and f1 are macro
    averages, ROC AUC is one-vs-rest macro (None unless every label occurs in *truth*)
    and Brier is the mean of the per-label one-vs-rest Brier scores, which equals the
    binary Brier score when there are two labels.
    """
    out: dict[str, float | None] = dict.fromkeys(CLASSIFIER_METRICS)
    if len(truth) == 0:
        return out
    out["accuracy"] = _number(sk.accuracy_score(truth, predicted))
    if positive is not None:
        prf = {"average": "binary", "pos_label": positive, "zero_division": 0}
    else:
        prf = {"average": "macro", "zero_division": 0}
    out["precision"] = _number(sk.precision_score(truth, predicted, **prf))
    out["recall"] = _number(sk.recall_score(truth, predicted, **prf))
    out["f1"] = _number(sk.f1_score(truth, predicted, **prf))
    if proba is None:
        return out
    present = set(truth.tolist())
    if positive is not None:
        p = proba[:, list(labels).index(positive)]
        actual = truth == positive
        if len(present) > 1:
            out["roc_auc"] = _number(sk.roc_auc_score(actual, p))
        out["brier"] = _number(sk.brier_score_loss(actual, p))
        return out
    if present >= set(labels):
        # scikit-learn wants the labels sorted, with the score columns in that order.
        order = sorted(range(len(labels)), key=lambda i: labels[i])
        out["roc_auc"] = _number(
            sk.roc_auc_score(
                truth,
                proba[:, order],
                multi_class="ovr",
                average="macro",
                labels=[labels[i] for i in order],
            )
        )
    per_label = [
        sk.brier_score_loss(truth == label, proba[:, i], pos_label=True)
        for i, label in enumerate(labels)
    ]
    out["brier"] = _number(np.mean(per_label))
    return out


def regressor_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """Mean absolute error, root mean squared error and R² (None with fewer than 2 rows)."""
    out: dict[str, float | None] = dict.fromkeys(REGRESSOR_METRICS)
    if len(truth) == 0:
        return out
    out["mae"] = _number(sk.mean_absolute_error(truth, predicted))
    out["rmse"] = _number(sk.root_mean_squared_error(truth, predicted))
    if len(truth) >= 2:
        out["r2"] = _number(sk.r2_score(truth, predicted))
    return out
