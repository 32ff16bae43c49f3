"""Scoring decisions against the truth: metrics, business cost, cohorts and gates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from prodgate import spec as spec_module
from prodgate.evaluation import MIN_COHORT_ROWS, score
from prodgate.evaluation.report import evaluation_text
from prodgate.evaluation.scoring import truth_labels
from prodgate.exceptions import UsageError
from prodgate.spec import ServiceSpec

CLASSIFIER = """\
services:
  claims:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        properties:
          amount: {{type: number}}
          region: {{type: string}}
    escalation: {{confidence_below: 0.7}}
    business:
      positive: adjuster
      costs:
        false_negative: {{rate: 0.1, of: amount}}
        false_positive: 40
        true_positive: {{amount: 5}}
        escalation: 25
    cohorts:
      large: {{where: "amount >= 5000"}}
      region: {{by: region}}
    gates: {gates}
"""

MULTICLASS = """\
services:
  triage:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [low, mid, high]
    contract:
      input: {type: object, properties: {x: {type: number}}}
    cohorts:
      big: {where: "x >= 4"}
"""

REGRESSOR = """\
services:
  price:
    owner: {name: Ops, contact: ops@example.com}
    kind: regressor
    contract:
      input: {type: object, properties: {x: {type: number}}}
    gates: ["mae <= 1", "rmse < 1"]
"""


def parse(text: str) -> ServiceSpec:
    spec = spec_module.parse(text, Path("prodgate.yaml"))
    return next(iter(spec.services.values()))


def claims(*gates: str) -> ServiceSpec:
    return parse(CLASSIFIER.format(gates=json.dumps(list(gates))))


def proba(p: float) -> dict[str, float]:
    return {"routine": 1 - p, "adjuster": p}


# Eight decisions with known outcomes. p is P(adjuster); the model answers the more
# likely label and a confidence below 0.7 is escalated.
AMOUNTS = [1000.0, 2000.0, 4000.0, 6000.0, 9000.0, 12000.0, 3000.0, 8000.0]
REGIONS = ["north", "north", "south", "south", "north", None, "south", "north"]
TRUTH = [0, 1, 0, 1, 0, 1, 1, 1]
P = [0.1, 0.2, 0.4, 0.6, 0.9, 0.99, 0.25, 0.8]


def decisions(
    p: list[float] = P, truth: list[Any] = TRUTH
) -> tuple[pd.DataFrame, list[Any], list[str], list[dict[str, float] | None], list[bool]]:
    inputs = pd.DataFrame({"amount": AMOUNTS, "region": REGIONS})
    predicted = ["adjuster" if x > 0.5 else "routine" for x in p]
    escalated = [max(x, 1 - x) < 0.7 for x in p]
    return inputs, truth, predicted, [proba(x) for x in p], escalated


def test_binary_metrics_are_sklearns_on_the_positive_label() -> None:
    result = score(claims(), *decisions())
    y = np.array(TRUTH)
    yhat = np.array([1 if x > 0.5 else 0 for x in P])
    m = result["metrics"]
    assert result["rows"] == 8
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, yhat))
    assert m["precision"] == pytest.approx(sk.precision_score(y, yhat))
    assert m["recall"] == pytest.approx(sk.recall_score(y, yhat))
    assert m["f1"] == pytest.approx(sk.f1_score(y, yhat))
    assert m["roc_auc"] == pytest.approx(sk.roc_auc_score(y, P))
    assert m["brier"] == pytest.approx(sk.brier_score_loss(y, P))
    assert m["recall"] == pytest.approx(3 / 5)  # rows 2, 7 (p .2, .25) are missed
    assert result["escalation_rate"] == pytest.approx(2 / 8)  # p .4 and .6
    json.dumps(result, allow_nan=False)  # JSON-ready: plain floats, no NaN


def test_truth_may_be_indices_bools_or_labels() -> None:
    service = claims()
    expected = ["routine", "adjuster", "adjuster"]
    assert truth_labels([0, 1, 1], service) == expected
    assert truth_labels(np.array([0, 1, 1]), service) == expected
    assert truth_labels([False, True, True], service) == expected
    assert truth_labels([0.0, 1.0, 1.0], service) == expected
    assert truth_labels(["routine", "adjuster", "adjuster"], service) == expected
    with pytest.raises(UsageError, match=r"'maybe', 2 are not labels of the service"):
        truth_labels(["routine", "maybe", 2], service)
    with pytest.raises(UsageError, match=r"1 are not labels .*0\.\.1 stand for them in order"):
        truth_labels(["routine", 1], service)  # text and positions mixed in one column
    with pytest.raises(UsageError, match="1 row"):
        truth_labels([0, None, 1], service)


def test_truth_for_labels_written_as_booleans_or_integers() -> None:
    def labelled(labels: str) -> ServiceSpec:
        return parse(MULTICLASS.replace("[low, mid, high]", labels))

    booleans, integers, texts = (
        labelled("[false, true]"),
        labelled("[0, 1]"),
        labelled('["0", "1"]'),
    )
    assert booleans.labels == ("False", "True")
    assert integers.labels == texts.labels == ("0", "1")
    for service, expected in ((booleans, ["False", "True", "True"]), (integers, ["0", "1", "1"])):
        assert truth_labels([0, 1, 1], service) == expected
        assert truth_labels([False, True, True], service) == expected
        assert truth_labels(np.array([0.0, 1.0, 1.0]), service) == expected
    assert truth_labels(["False", "True", "True"], booleans) == ["False", "True", "True"]
    assert truth_labels(["0", "1", "1"], texts) == ["0", "1", "1"]
    # Integer labels that are not their positions: 0 is no label, and no position.
    grades = labelled("[1, 2, 3]")
    assert truth_labels([1, 3, 2.0], grades) == ["1", "3", "2"]
    with pytest.raises(UsageError, match=r"0 are not labels of the service \(1, 2, 3\)$"):
        truth_labels([0, 1], grades)
    # Without declared labels, text, integers and booleans are labels as text.
    free = parse(MULTICLASS.replace("    labels: [low, mid, high]\n", ""))
    assert truth_labels(["a", 2, 2.0, True], free) == ["a", "2", "2", "True"]
    with pytest.raises(UsageError, match=r"must be text, integers or booleans, not 1\.5"):
        truth_labels(["a", 1.5], free)


def test_business_cost_uses_a_rate_of_a_column_and_the_escalation_cost() -> None:
    result = score(claims(), *decisions())
    # Outcomes: TN, FN (10% of 2000), escalation, escalation, FP, TP (5), FN (10% of 3000), TP.
    costs = [0, 200, 25, 25, 40, 5, 300, 5]
    assert result["business"] == {
        "cost_per_decision": pytest.approx(sum(costs) / 8),
        "total_cost": pytest.approx(sum(costs)),
    }


def test_an_escalated_row_costs_the_escalation_not_its_error() -> None:
    # p = 0.4: answered routine (a miss of a 4000 claim) but escalated to a person.
    inputs, truth, predicted, probabilities, escalated = decisions()
    assert predicted[2] == "routine"
    assert escalated[2]
    truth = [0, 1, 1, 1, 0, 1, 1, 1]  # row 2 now needed an adjuster
    result = score(claims(), inputs, truth, predicted, probabilities, escalated)
    assert result["business"]["total_cost"] == pytest.approx(600)
    assert result["metrics"]["recall"] == pytest.approx(3 / 6)  # the model's own answer counts


def test_cohorts_where_and_by_each_with_their_rows() -> None:
    result = score(claims(), *decisions())
    by_name = {c["name"]: c for c in result["cohorts"]}
    assert list(by_name) == ["large", "region=north", "region=south", "region=(missing)"]
    assert [c["rows"] for c in result["cohorts"]] == [4, 4, 3, 1]
    large = by_name["large"]  # rows 3, 4, 5, 7: amounts 6000, 9000, 12000, 8000
    y = np.array([1, 0, 1, 1])
    assert large["metrics"]["accuracy"] == pytest.approx(3 / 4)
    assert large["metrics"]["roc_auc"] == pytest.approx(sk.roc_auc_score(y, [0.6, 0.9, 0.99, 0.8]))
    assert large["escalation_rate"] == pytest.approx(1 / 4)
    assert large["business"]["total_cost"] == pytest.approx(25 + 40 + 5 + 5)
    assert by_name["region=south"]["cohort"] == "region"
    assert by_name["region=south"]["metrics"]["recall"] == pytest.approx(1 / 2)
    # one row, one class: ROC AUC is not defined, the rest is
    assert by_name["region=(missing)"]["metrics"]["roc_auc"] is None
    assert by_name["region=(missing)"]["metrics"]["accuracy"] == 1.0


def test_absolute_gates_overall_on_cohorts_and_on_a_by_value() -> None:
    service = claims(
        "accuracy >= 0.6",
        "recall >= 0.9",
        "recall >= 0.6 on large",
        "accuracy > 0.9 on region=north",
        "accuracy >= 0.5 on region",
        "escalation_rate <= 0.25",
        "business.cost_per_decision < 50",
        "business.total_cost <= 500",
    )
    gates = score(service, *decisions())["gates"]
    verdicts = {g["gate"]: (g["passed"], g["value"]) for g in gates}
    assert verdicts == {
        "accuracy >= 0.6": (True, pytest.approx(5 / 8)),
        "recall >= 0.9": (False, pytest.approx(3 / 5)),
        "recall >= 0.6 on large": (True, pytest.approx(1.0)),
        "accuracy > 0.9 on region=north": (False, pytest.approx(2 / 4)),
        "accuracy >= 0.5 on region": (True, pytest.approx(2 / 4)),  # worst: north, equal
        "escalation_rate <= 0.25": (True, pytest.approx(0.25)),  # equal counts
        "business.cost_per_decision < 50": (False, pytest.approx(600 / 8)),
        "business.total_cost <= 500": (False, pytest.approx(600)),
    }
    details = {g["gate"]: g["detail"] for g in gates}
    assert details["recall >= 0.9"] == "recall is 0.6; needs >= 0.9"
    assert (
        details["accuracy >= 0.5 on region"]
        == "worst: accuracy on region=north is 0.5; needs >= 0.5"
    )
    assert [g["threshold"] for g in gates][:2] == [0.6, 0.9]
    assert not score(service, *decisions())["passed"]
    assert score(claims("accuracy >= 0.6"), *decisions())["passed"]


def test_a_metric_that_cannot_be_measured_fails_its_gate() -> None:
    inputs, truth, predicted, _, escalated = decisions()
    service = claims("roc_auc >= 0.5", "accuracy >= 0.5 on region=east", "accuracy >= 0.5")
    result = score(service, inputs, truth, predicted, [None] * 8, escalated)
    assert result["metrics"]["roc_auc"] is None
    assert result["metrics"]["brier"] is None
    roc, east, accuracy = result["gates"]
    assert (roc["passed"], roc["value"]) == (False, None)
    assert roc["detail"] == "roc_auc is not measurable"
    assert not east["passed"]
    assert "not measurable" in east["detail"]
    assert "region=east" in east["detail"]
    assert accuracy["passed"]
    assert result["passed"] is False


def _three_regions() -> tuple[pd.DataFrame, list[int], list[str], list[Any], list[bool]]:
    """north: 40 rows all right; south: 40 rows, 20 right; east: 10 rows, all wrong."""
    sizes = {"north": (40, 40), "south": (40, 20), "east": (MIN_COHORT_ROWS - 20, 0)}
    regions, truth, predicted = [], [], []
    for region, (n, right) in sizes.items():
        regions += [region] * n
        truth += [1] * n
        predicted += ["adjuster"] * right + ["routine"] * (n - right)
    p = [0.9 if x == "adjuster" else 0.1 for x in predicted]
    inputs = pd.DataFrame({"amount": [100.0] * len(truth), "region": regions})
    return inputs, truth, predicted, [proba(x) for x in p], [False] * len(truth)


def test_relative_gate_names_the_worst_cohort_and_skips_small_ones() -> None:
    data = _three_regions()
    overall = 60 / 90
    failing = score(claims("no cohort accuracy more than 0.05 below overall"), *data)
    gate = failing["gates"][0]
    assert gate["passed"] is False
    assert gate["value"] == pytest.approx(overall - 20 / 40)
    assert gate["detail"].startswith("worst: region=south accuracy 0.5 vs 0.6667 overall")
    assert "skipped, under 30 rows: large (0), region=east (10)" in gate["detail"]
    lenient = score(claims("no cohort accuracy more than 0.2 below overall"), *data)
    assert lenient["gates"][0]["passed"] is True


def test_relative_gate_on_a_lower_is_better_metric_looks_above() -> None:
    data = _three_regions()
    result = score(claims("no cohort brier more than 0.01 above overall"), *data)
    gate = result["gates"][0]
    # south's brier is worse (higher) than overall; north's is better
    assert gate["passed"] is False
    assert "worst: region=south brier" in gate["detail"]
    assert "above" in gate["detail"]
    north = next(c for c in result["cohorts"] if c["name"] == "region=north")
    assert north["metrics"]["brier"] < result["metrics"]["brier"]
    wrong_way = score(claims("no cohort brier more than 0.01 below overall"), *data)
    assert "'above' overall is the bad direction" in wrong_way["gates"][0]["detail"]


def test_relative_gate_without_a_large_enough_cohort_is_not_measurable() -> None:
    gate = score(claims("no cohort recall more than 0.1 below overall"), *decisions())["gates"][0]
    assert gate["passed"] is False
    assert gate["detail"].startswith("not measurable: no cohort with 30+ rows")


def test_multiclass_metrics_are_macro_averages() -> None:
    service = parse(MULTICLASS)
    labels = ["low", "mid", "high"]
    truth = [0, 1, 2, 2, 1, 0, 2, 1]
    y = [labels[t] for t in truth]
    rows = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.3, 0.6],
            [0.3, 0.4, 0.3],
            [0.1, 0.8, 0.1],
            [0.4, 0.4, 0.2],
            [0.2, 0.2, 0.6],
            [0.5, 0.3, 0.2],
        ]
    )
    predicted = [labels[i] for i in rows.argmax(axis=1)]
    probabilities = [dict(zip(labels, r, strict=True)) for r in rows.tolist()]
    inputs = pd.DataFrame({"x": [1.0, 2, 3, 4, 5, 6, 7, 8]})
    result = score(service, inputs, truth, predicted, probabilities, [False] * 8)
    m = result["metrics"]
    assert m["precision"] == pytest.approx(
        sk.precision_score(y, predicted, average="macro", zero_division=0)
    )
    assert m["f1"] == pytest.approx(sk.f1_score(y, predicted, average="macro", zero_division=0))
    assert m["roc_auc"] == pytest.approx(
        sk.roc_auc_score(y, rows[:, [2, 0, 1]], multi_class="ovr", labels=sorted(labels))
    )
    per_label = [
        sk.brier_score_loss([t == label for t in y], rows[:, i]) for i, label in enumerate(labels)
    ]
    assert m["brier"] == pytest.approx(np.mean(per_label))
    assert result["escalation_rate"] == 0.0
    assert result["business"] is None
    big = result["cohorts"][0]
    assert big["rows"] == 5
    assert big["metrics"]["roc_auc"] is not None
    small = score(service, inputs[:2], truth[:2], predicted[:2], probabilities[:2], [False] * 2)
    assert small["metrics"]["roc_auc"] is None  # "high" never occurs: not defined


def test_regressor_metrics_and_gates() -> None:
    service = parse(REGRESSOR)
    truth = [1.0, 2.0, 3.0, 4.0]
    predicted = [1.5, 2.0, 2.0, 4.5]
    inputs = pd.DataFrame({"x": [0, 1, 2, 3]})
    result = score(service, inputs, truth, predicted, [None] * 4, [False] * 4)
    assert result["metrics"] == {
        "mae": pytest.approx(sk.mean_absolute_error(truth, predicted)),
        "rmse": pytest.approx(sk.root_mean_squared_error(truth, predicted)),
        "r2": pytest.approx(sk.r2_score(truth, predicted)),
    }
    assert [g["passed"] for g in result["gates"]] == [True, True]
    one = score(service, inputs[:1], truth[:1], predicted[:1], [None], [False])
    assert one["metrics"]["r2"] is None
    with pytest.raises(UsageError, match="must be numbers"):
        score(service, inputs, ["a", 1, 2, 3], predicted, [None] * 4, [False] * 4)


def test_mismatched_lengths_and_missing_columns_are_usage_errors() -> None:
    inputs, truth, predicted, probabilities, escalated = decisions()
    with pytest.raises(UsageError, match="one truth, prediction"):
        score(claims(), inputs, truth[:3], predicted, probabilities, escalated)
    with pytest.raises(UsageError, match="'region'"):
        score(claims(), inputs[["amount"]], truth, predicted, probabilities, escalated)
    with pytest.raises(UsageError, match="outside the service's"):
        score(claims(), inputs, truth, ["maybe"] * 8, probabilities, escalated)


def test_no_rows_measures_nothing_and_fails_the_gates() -> None:
    inputs = pd.DataFrame({"amount": pd.Series([], dtype=float), "region": []})
    result = score(claims("accuracy >= 0.5"), inputs, [], [], [], [])
    assert result["rows"] == 0
    assert set(result["metrics"].values()) == {None}
    assert result["escalation_rate"] is None
    assert result["business"] == {"cost_per_decision": None, "total_cost": 0.0}
    assert result["gates"][0]["detail"] == "accuracy is not measurable"
    assert result["passed"] is False


def test_undeclared_labels_are_the_classes_seen() -> None:
    service = parse(MULTICLASS.replace("    labels: [low, mid, high]\n", ""))
    inputs = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    probabilities = [{"no": 0.8, "yes": 0.2}, {"no": 0.3, "yes": 0.7}] * 2
    result = score(
        service, inputs, ["no", "yes", "no", "yes"], ["no", "yes"] * 2, probabilities, [False] * 4
    )
    assert result["metrics"]["recall"] == 1.0  # of "yes", the last class
    assert result["metrics"]["roc_auc"] == 1.0


def test_reports_of_a_regressor_have_no_classifier_columns() -> None:
    service = parse(REGRESSOR)
    inputs = pd.DataFrame({"x": [0, 1, 2, 3]})
    result = score(service, inputs, [1.0, 2.0, 3.0, 4.0], [1.5, 2, 2, 4.5], [None] * 4, [False] * 4)
    dataset = {"file": "d.csv", "sha256": "ab" * 32, "rows": 4}
    text = evaluation_text(result, service="price", version=2, dataset=dataset, label_column="y")
    assert (
        text.splitlines()[0]
        == "price version 2 on d.csv: 4 rows, truth in 'y' (sha256 abababababab)"
    )
    assert "  mae 0.5000  rmse 0.6124  r2 0.7000" in text
    assert "escalated" not in text
    assert "PASS    mae <= 1" in text
    assert text.endswith("PASSED")
