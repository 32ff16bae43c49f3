"""The label-free estimate: calibration from labelled rows, and a window's expected
accuracy and cost tracking the realised ones under covariate shift (as CBPE does)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from prodgate.monitor.estimate import (
    BINS,
    EDGES,
    calibration,
    confidence_bins,
    counts_of,
    estimate,
)
from prodgate.spec import Business
from prodgate.spec.costs import Cost

W = np.array([1.5, -1.0])


def draw(
    rng: np.random.Generator, n: int, mu: tuple[float, float], sharp: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose truth follows a fixed concept, P(yes | x) = sigmoid(w.x); the model
    says sigmoid(sharp * w.x) (sharp > 1: overconfident). Covariate shift moves mu."""
    x = rng.normal(mu, 1.0, size=(n, 2))
    z = x @ W
    truth = np.where(rng.random(n) < 1 / (1 + np.exp(-z)), "yes", "no")
    q = 1 / (1 + np.exp(-sharp * z))
    pred = np.where(q >= 0.5, "yes", "no")
    return x, pred, np.maximum(q, 1 - q), truth


def test_bins_follow_the_fixed_edges() -> None:
    assert len(EDGES) == 21
    assert EDGES[0] == 0
    assert EDGES[-1] == 1.0
    assert BINS == 20
    got = confidence_bins([0.0, 0.0499, 0.05, 0.5, 0.95, 0.9999, 1.0, 1.2, -0.1])
    assert got.tolist() == [0, 0, 1, 10, 19, 19, 19, 19, 0]


def test_calibration_counts_true_labels_per_predicted_label_and_bin() -> None:
    pred = ["a", "a", "a", "b", "b"]
    conf = [0.97, 0.97, 0.61, 0.55, None]
    truth = ["a", "b", "a", "b", "a"]
    cal = calibration(pred, conf, truth, ["a", "b", "c"])
    assert cal is not None
    assert cal["labels"] == ["a", "b", "c"]
    assert cal["rows"] == 4
    assert cal["edges"] == list(EDGES)
    assert cal["counts"]["a"][19] == [1, 1, 0]
    assert cal["counts"]["a"][12] == [1, 0, 0]
    assert cal["counts"]["b"][11] == [0, 1, 0]
    assert sum(sum(row) for g in cal["counts"].values() for row in g) == 4
    assert cal["method"] == "binned"  # too few rows to cross-validate
    assert all(len(v) == BINS for v in cal["p_correct"].values())
    assert calibration(["a"], [None], ["a"], ["a"]) is None


@pytest.mark.parametrize("sharp", [1.0, 0.5, 1.5])
def test_estimate_tracks_realised_accuracy_under_covariate_shift(sharp: float) -> None:
    rng = np.random.default_rng(7)
    _, pred, conf, truth = draw(rng, 20_000, (0.0, 0.0), sharp)
    cal = calibration(pred.tolist(), conf.tolist(), truth.tolist(), ["no", "yes"])
    assert cal is not None
    if sharp != 1.0:
        # A miscalibrated model: its raw confidence is not trusted.
        assert cal["method"] != "confidence"
    misses = 0
    shifts = [(0.0, 0.0), (0.6, 0.6), (1.0, -1.0), (-0.4, -0.6), (1.5, 1.5), (-1.2, 0.8)]
    accuracies = []
    for mu in shifts:
        _, p, c, t = draw(rng, 4000, mu, sharp)
        e = estimate(cal, counts_of(p.tolist(), c.tolist()))
        real = float((p == t).mean())
        accuracies.append(real)
        assert e.rows == 4000
        assert e.accuracy is not None
        assert e.accuracy_low is not None
        assert e.accuracy_high is not None
        assert abs(e.accuracy - real) < 0.03, (mu, e, real)
        misses += not e.accuracy_low <= real <= e.accuracy_high
    assert misses <= 1
    # The shifts did move accuracy, and the estimate followed.
    assert max(accuracies) - min(accuracies) > 0.08


def test_estimate_falls_when_the_model_meets_unfamiliar_inputs() -> None:
    rng = np.random.default_rng(3)
    _, pred, conf, truth = draw(rng, 20_000, (1.0, -1.0))
    cal = calibration(pred.tolist(), conf.tolist(), truth.tolist(), ["no", "yes"])
    assert cal is not None
    _, p0, c0, _ = draw(rng, 3000, (1.0, -1.0))
    _, p1, c1, t1 = draw(rng, 3000, (0.2, 0.3))  # toward the decision boundary
    before = estimate(cal, counts_of(p0.tolist(), c0.tolist()))
    after = estimate(cal, counts_of(p1.tolist(), c1.tolist()))
    assert before.accuracy is not None
    assert after.accuracy is not None
    assert after.accuracy < before.accuracy - 0.05
    assert abs(after.accuracy - float((p1 == t1).mean())) < 0.03


def _costs(
    business: Business, amount: np.ndarray, truth: np.ndarray, pred: np.ndarray, escalated: Any
) -> float:
    return float(
        np.mean(
            [
                business.cost_of({"amount": a}, t, p, bool(e))
                for a, t, p, e in zip(amount, truth, pred, escalated, strict=True)
            ]
        )
    )


def test_estimated_cost_tracks_realised_cost_with_escalation_and_inflation() -> None:
    rng = np.random.default_rng(11)
    business = Business(
        positive="yes",
        costs={
            "false_negative": Cost(rate=0.5, of="amount"),
            "false_positive": Cost(amount=40.0),
            "escalation": Cost(amount=12.0),
        },
    )
    threshold = 0.62
    _x, pred, conf, truth = draw(rng, 20_000, (0.0, 0.0))
    amount = rng.gamma(2.0, 100.0, size=len(pred))
    inputs = pd.DataFrame({"amount": amount})
    cal = calibration(
        pred.tolist(),
        conf.tolist(),
        truth.tolist(),
        ["no", "yes"],
        business=business,
        inputs=inputs,
    )
    assert cal is not None
    assert "amount" in cal["values"]
    for mu, inflation in [((0.0, 0.0), 1.0), ((0.8, -0.5), 1.0), ((0.3, 0.4), 1.4)]:
        _, p, c, t = draw(rng, 6000, mu)
        a = rng.gamma(2.0, 100.0, size=len(p)) * inflation
        realised = _costs(business, a, t, p, c < threshold)
        e = estimate(
            cal,
            counts_of(p.tolist(), c.tolist()),
            business=business,
            escalation_below=threshold,
            column_means={"amount": float(a.mean())},
        )
        assert e.cost_per_decision is not None
        assert e.cost_low is not None
        assert e.cost_high is not None
        assert abs(e.cost_per_decision - realised) / realised < 0.1, (mu, e, realised)
        assert e.cost_low < e.cost_per_decision < e.cost_high
        assert all(type(v) in (int, float, str) for v in e.as_dict().values())


def test_empty_window_and_unseen_labels() -> None:
    cal = calibration(["a"] * 60 + ["b"] * 60, [0.9] * 120, ["a"] * 100 + ["b"] * 20, ["a", "b"])
    assert cal is not None
    empty = estimate(cal, {})
    assert empty.rows == 0
    assert empty.accuracy is None
    assert estimate(cal, {"a": [0] * BINS}).accuracy is None
    seen = estimate(cal, {"a": [0] * 18 + [10, 0]})
    assert seen.accuracy is not None
    assert seen.accuracy > 0.9
    odd = estimate(cal, {"zzz": [0] * 18 + [10, 0]})
    assert odd.unseen == 10
    assert odd.accuracy is not None
    assert 0 <= odd.accuracy <= 1
    assert odd.as_dict()["rows"] == 10


def test_evaluating_a_classifier_stores_its_calibration(store: Any, tmp_path: Any) -> None:
    from prodgate import spec as spec_module
    from prodgate.evaluation import evaluate_version
    from prodgate.registry import approvals, versions
    from test_evaluation_store import ROWS, SPEC

    config = tmp_path / "prodgate.yaml"
    config.write_text(SPEC)
    claims = spec_module.load(config).service("claims")
    data = tmp_path / "holdout.csv"
    ROWS.to_csv(data, index=False)
    versions.register(store, claims, "fixture_models:claims", actor="maker")
    stored = evaluate_version(store, claims, 1, data, actor="tester")
    cal = stored.result["calibration"]
    assert cal["labels"] == ["routine", "adjuster"]
    assert cal["rows"] == 6
    # P(adjuster) = amount / 10,000: 6000 -> adjuster at 0.6, right.
    assert cal["counts"]["adjuster"][12] == [0, 1]
    assert cal["values"]["amount"]["mean"] == pytest.approx(34000 / 6)
    with store.read() as conn:
        latest = approvals.latest_evaluation(conn, "claims", 1)
    assert latest is not None
    assert latest["calibration"] == cal


def test_the_examples_model_estimated_under_claim_inflation(store: Any, tmp_path: Any) -> None:
    """The bundled claims-triage model, calibrated on its holdout: as claims inflate, its
    accuracy falls and the estimate falls with it, within a point or two."""
    from prodgate import spec as spec_module
    from prodgate.evaluation import evaluate_version
    from prodgate.evaluation.evaluate import input_rows
    from prodgate.examples.claims_triage.build import build
    from prodgate.examples.claims_triage.generate import LABEL, generate
    from prodgate.examples.claims_triage.spec import SERVICE
    from prodgate.registry import artifacts, versions
    from prodgate.runtime.base import ModelInfo
    from prodgate.runtime.loader import load_model

    built = build(tmp_path / "example", n_train=6000, n_holdout=4000)
    service = spec_module.load(built.spec).service(SERVICE)
    version = versions.register(store, service, str(built.model), actor="maker")
    cal = evaluate_version(store, service, 1, built.holdout_data, actor="t").result["calibration"]
    assert cal["method"] == "isotonic"  # the booster is not quite calibrated
    info = ModelInfo(service.kind, service.feature_names, service.labels, version.trusted)
    model = load_model(artifacts.materialise(store, version), version.flavor, info)
    estimates, realised = [], []
    for inflation in (1.0, 1.5, 3.0):
        frame = generate(3000, seed=99, inflation=inflation)
        answers = model.predict(input_rows(frame, service))
        predicted = [str(a.value) for a in answers]
        truth = service.as_labels(frame[LABEL].tolist())
        assert truth is not None
        e = estimate(
            cal,
            counts_of(predicted, [a.confidence for a in answers]),
            business=service.policy.business,
            escalation_below=service.escalation_below,
        )
        real = float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)]))
        assert e.accuracy is not None
        assert abs(e.accuracy - real) < 0.02, (inflation, e, real)
        estimates.append(e.accuracy)
        realised.append(real)
    assert realised[2] < realised[0] - 0.02
    assert estimates[2] < estimates[1] < estimates[0]
