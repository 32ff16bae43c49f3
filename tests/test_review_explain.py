"""Explanations of decisions: exact for trees and linear models, sampled otherwise,
always over the model's input fields; and the worker that fills review items."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from prodgate import spec as spec_module
from prodgate.audit import log as audit_log
from prodgate.audit.record import Record
from prodgate.pipeline import review_entry as entry
from prodgate.pipeline.records import inference_record
from prodgate.registry import versions
from prodgate.review.explain import LINEAR, PERMUTATION, TREE, Explanation, explain
from prodgate.review.explaining import explain_pending, run_explainer
from prodgate.runtime.base import ModelInfo
from prodgate.runtime.callable import CallableModel
from prodgate.runtime.sklearn import SklearnModel
from prodgate.settings import Settings
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import review_items

NUMERIC = ["a", "b", "c"]
MIXED = ["a", "b", "color"]


def _total(e: Explanation) -> float:
    return e.base + sum(e.values.values())


@pytest.fixture(scope="module")
def numbers() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    return pd.DataFrame(x, columns=NUMERIC)


@pytest.fixture(scope="module")
def mixed() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    n = 400
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


def _rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(r) for r in df.to_dict(orient="records")]


# --- tree ensembles ---------------------------------------------------------------


def test_treeshap_of_a_boosted_model_adds_up_to_its_log_odds(numbers: pd.DataFrame) -> None:
    y = np.where(numbers["a"] - 2 * numbers["b"] > 0, "yes", "no")
    est = GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0)
    est.fit(numbers, y)
    model = SklearnModel(est, ModelInfo("classifier", NUMERIC), "skops")
    rows = _rows(numbers.head(30))
    found = explain(model, rows, _rows(numbers.tail(100)), features=NUMERIC)
    raw = est.decision_function(numbers.head(30))  # log-odds of "yes"
    for e, r, p in zip(found, raw, model.predict(rows), strict=True):
        assert e.method == TREE
        assert e.space == "log-odds"
        assert e.target == p.value
        assert set(e.values) == set(NUMERIC)
        expected = r if e.target == "yes" else -r  # the other class's log-odds
        assert _total(e) == pytest.approx(expected, abs=1e-6)
    # c means nothing to the label; a and b do.
    mean = {f: np.mean([abs(e.values[f]) for e in found]) for f in NUMERIC}
    assert mean["c"] < mean["a"]
    assert mean["c"] < mean["b"]


def test_treeshap_of_a_forest_adds_up_to_the_predicted_class_probability(
    numbers: pd.DataFrame,
) -> None:
    y = np.digitize(numbers["a"] + numbers["b"], [-0.5, 0.5])  # classes 0, 1, 2
    est = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0)
    est.fit(numbers.to_numpy(), y)
    labels = ["low", "mid", "high"]
    model = SklearnModel(est, ModelInfo("classifier", NUMERIC, labels=labels), "skops")
    rows = _rows(numbers.head(20))
    found = explain(model, rows, [], features=NUMERIC)
    proba = est.predict_proba(numbers.head(20).to_numpy())
    for e, p in zip(found, proba, strict=True):
        assert e.method == TREE
        assert e.space == "probability"
        assert _total(e) == pytest.approx(float(p[labels.index(str(e.target))]), abs=1e-6)
        assert e.target == labels[int(np.argmax(p))]


# --- linear models ------------------------------------------------------------------


def test_a_logistic_regressions_attributions_are_coef_times_distance_from_the_mean(
    numbers: pd.DataFrame,
) -> None:
    y = np.where(numbers["a"] + 0.5 * numbers["c"] > 0, "yes", "no")
    est = LogisticRegression().fit(numbers, y)
    model = SklearnModel(est, ModelInfo("classifier", NUMERIC), "skops")
    background = numbers.tail(200)
    rows = _rows(numbers.head(10))
    found = explain(model, rows, _rows(background), features=NUMERIC)
    mean = background.mean().to_numpy()
    coef = est.coef_[0]
    for e, x in zip(found, numbers.head(10).to_numpy(), strict=True):
        sign = 1.0 if e.target == "yes" else -1.0
        assert e.method == LINEAR
        assert e.space == "log-odds"
        for j, name in enumerate(NUMERIC):
            assert e.values[name] == pytest.approx(sign * coef[j] * (x[j] - mean[j]), abs=1e-9)
        logit = est.decision_function(pd.DataFrame([x], columns=NUMERIC))[0]
        assert _total(e) == pytest.approx(sign * logit, abs=1e-9)


def test_a_linear_regressor_behind_a_scaler_is_exact_on_the_raw_fields(
    numbers: pd.DataFrame,
) -> None:
    y = numbers @ np.array([3.0, -1.0, 0.0]) + 2.0
    est = make_pipeline(StandardScaler(), LinearRegression()).fit(numbers, y)
    model = SklearnModel(est, ModelInfo("regressor", NUMERIC), "skops")
    background = numbers.tail(200)
    found = explain(model, _rows(numbers.head(5)), _rows(background), features=NUMERIC)
    mean = background.mean().to_numpy()
    for e, x in zip(found, numbers.head(5).to_numpy(), strict=True):
        assert e.method == LINEAR
        assert e.target is None
        assert e.space == "value"
        # A standardised feature's coef is w * sd, so coef * (z - mean z) = w * (x - mean x).
        assert e.values["a"] == pytest.approx(3.0 * (x[0] - mean[0]), abs=1e-6)
        assert e.values["b"] == pytest.approx(-1.0 * (x[1] - mean[1]), abs=1e-6)
        assert e.values["c"] == pytest.approx(0.0, abs=1e-6)
        assert _total(e) == pytest.approx(float(x @ [3.0, -1.0, 0.0] + 2.0), abs=1e-6)


def test_one_hot_columns_are_added_back_onto_their_field(mixed: pd.DataFrame) -> None:
    y = np.where(mixed["a"] + 2 * (mixed["color"] == "red") > 0.8, "yes", "no")
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    est = make_pipeline(encode, LogisticRegression()).fit(mixed, y)
    model = SklearnModel(est, ModelInfo("classifier", MIXED), "skops")
    rows = _rows(mixed.head(10))
    found = explain(model, rows, _rows(mixed.tail(200)), features=[*MIXED, "unused"])
    logit = est.decision_function(mixed.head(10))
    for e, z in zip(found, logit, strict=True):
        assert e.method == LINEAR
        assert list(e.values) == [*MIXED, "unused"]
        assert e.values["unused"] == 0.0
        assert _total(e) == pytest.approx(z if e.target == "yes" else -z, abs=1e-9)
        assert e.ranked()[0][1] ** 2 >= max(v**2 for v in e.values.values())


def test_an_encoding_that_cannot_be_traced_to_fields_is_sampled(numbers: pd.DataFrame) -> None:
    y = np.where(numbers["a"] > 0, "yes", "no")
    est = make_pipeline(PCA(n_components=2), LogisticRegression()).fit(numbers, y)
    model = SklearnModel(est, ModelInfo("classifier", NUMERIC), "skops")
    rows = _rows(numbers.head(3))
    found = explain(model, rows, _rows(numbers.tail(50)), features=NUMERIC)
    for e, p in zip(found, model.predict(rows), strict=True):
        assert e.method == PERMUTATION
        assert e.space == "probability"
        assert p.probabilities is not None
        assert _total(e) == pytest.approx(p.probabilities[str(e.target)], abs=1e-9)


# --- the claims-triage example ------------------------------------------------------


@pytest.fixture(scope="module")
def claims() -> tuple[Any, pd.DataFrame]:
    from prodgate.examples.claims_triage.generate import generate
    from prodgate.examples.claims_triage.train import train

    df = generate(3000, seed=3)
    return train(df), df


def _claim_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    from prodgate.examples.claims_triage.generate import FEATURES

    rows = []
    for r in df[FEATURES].to_dict(orient="records"):
        # As the audit log holds them: JSON, so a missing age is null, not NaN.
        rows.append({k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()})
    return rows


def test_the_claims_pipeline_is_explained_over_its_input_fields(
    claims: tuple[Any, pd.DataFrame],
) -> None:
    from prodgate.examples.claims_triage.generate import FEATURES, LABELS

    pipeline, df = claims
    model = SklearnModel(pipeline, ModelInfo("classifier", FEATURES, labels=LABELS), "skops")
    rows = _claim_rows(df.head(300))
    started = time.perf_counter()
    found = explain(model, rows, _claim_rows(df.tail(200)), features=FEATURES)
    assert time.perf_counter() - started < 5.0  # TreeSHAP: well under a ms a row
    encoded = np.asarray(pipeline[:-1].transform(df[FEATURES].head(300)), dtype=np.float64)
    raw = pipeline[-1].decision_function(encoded)
    for e, z in zip(found, raw, strict=True):
        assert e.method == TREE
        assert e.space == "log-odds"
        assert list(e.values) == FEATURES  # claim_type and region, not their one-hot columns
        assert _total(e) == pytest.approx(z if e.target == "adjuster" else -z, abs=1e-6)
    # The label comes from the risk factors; the region is noise.
    weight = {f: float(np.mean([abs(e.values[f]) for e in found])) for f in FEATURES}
    order = sorted(FEATURES, key=weight.__getitem__, reverse=True)
    assert order[-1] == "region" or order[-2] == "region"
    assert set(order[:3]) & {"prior_claims", "days_to_report", "policy_age_years"}


def test_a_claim_with_many_prior_claims_is_explained_by_them(
    claims: tuple[Any, pd.DataFrame],
) -> None:
    from prodgate.examples.claims_triage.generate import FEATURES, LABELS

    pipeline, df = claims
    model = SklearnModel(pipeline, ModelInfo("classifier", FEATURES, labels=LABELS), "skops")
    base = _claim_rows(df.head(1))[0]
    row = {**base, "prior_claims": 9, "days_to_report": 1, "claim_amount": 1500.0}
    (exact,) = explain(model, [row], _claim_rows(df.tail(200)), features=FEATURES)
    assert exact.target == "adjuster"
    assert exact.ranked()[0][0] == "prior_claims"
    # The model-agnostic method, through the adapter on the raw rows, agrees.
    agnostic = CallableModel(
        "claims:pipeline",
        lambda rows: [p.probabilities for p in model.predict(rows)],
        ModelInfo("classifier", FEATURES, labels=LABELS),
    )
    (sampled,) = explain(agnostic, [row], _claim_rows(df.tail(200)), features=FEATURES)
    assert sampled.method == PERMUTATION
    assert sampled.target == "adjuster"
    assert sampled.ranked()[0][0] == "prior_claims"


# --- the model-agnostic method ----------------------------------------------------


def _by_amount(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """P(adjuster) grows with the amount; the other fields mean nothing."""
    out = []
    for row in rows:
        p = min(0.99, max(0.01, float(row["amount"]) / 10_000))
        out.append({"routine": 1 - p, "adjuster": p})
    return out


FIELDS = ["amount", "category", "note", "urgent"]


def _mixed_rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "amount": float(rng.integers(0, 12_000)),
            "category": str(rng.choice(["auto", "home", "travel"])),
            "note": None if i % 3 else "see photos",
            "urgent": bool(i % 2),
        }
        for i in range(n)
    ]


def test_a_callable_is_explained_by_permutation_over_mixed_fields() -> None:
    model = CallableModel(
        "tests:by_amount", _by_amount, ModelInfo("classifier", FIELDS, ["routine", "adjuster"])
    )
    rows = [
        {"amount": 9000.0, "category": "home", "note": None, "urgent": True},
        {"amount": 500.0, "category": "auto", "note": "see photos", "urgent": False},
    ]
    before = np.random.get_state()[1].copy()
    started = time.perf_counter()
    found = explain(model, rows, _mixed_rows(100, 0), features=FIELDS)
    per_row = (time.perf_counter() - started) / len(rows)
    assert np.array_equal(np.random.get_state()[1], before)  # numpy's generator as it was
    assert [e.target for e in found] == ["adjuster", "routine"]
    for e, row in zip(found, rows, strict=True):
        assert e.method == PERMUTATION
        assert e.space == "probability"
        assert list(e.values) == FIELDS
        p = _by_amount([row])[0][str(e.target)]
        assert _total(e) == pytest.approx(p, abs=1e-9)  # exact sums, by construction
        # Only the amount moves the output, so it carries the whole difference.
        assert e.values["amount"] == pytest.approx(p - e.base, abs=1e-9)
        assert e.values["category"] == e.values["note"] == e.values["urgent"] == 0.0
    assert per_row < 1.0
    again = explain(model, rows, _mixed_rows(100, 0), features=FIELDS)
    assert [e.as_dict() for e in again] == [e.as_dict() for e in found]  # seeded


def test_an_onnx_pipeline_is_explained_through_its_adapter(
    tmp_path: Path, mixed: pd.DataFrame
) -> None:
    from skl2onnx import to_onnx

    from prodgate.runtime.onnx import load_onnx

    frame = mixed.astype({"a": np.float32, "b": np.float32})
    y = np.where(frame["a"] + 2 * (frame["color"] == "red") > 0.8, "yes", "no")
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    est = make_pipeline(encode, LogisticRegression()).fit(frame, y)
    path = tmp_path / "pipe.onnx"
    path.write_bytes(to_onnx(est, frame[:1], target_opset=17).SerializeToString())
    model = load_onnx(path, ModelInfo("classifier", MIXED))
    rows = _rows(frame.head(4))
    found = explain(model, rows, _rows(frame.tail(100)), features=MIXED)
    for e, p in zip(found, model.predict(rows), strict=True):
        assert e.method == PERMUTATION
        assert list(e.values) == MIXED
        assert p.probabilities is not None
        assert _total(e) == pytest.approx(p.probabilities[str(e.target)], abs=1e-5)
        assert abs(e.values["b"]) <= max(abs(e.values["a"]), abs(e.values["color"]))


def test_a_classifier_without_probabilities_is_explained_as_an_indicator() -> None:
    model = CallableModel(
        "tests:threshold",
        lambda rows: ["adjuster" if r["amount"] >= 5000 else "routine" for r in rows],
        ModelInfo("classifier", FIELDS, ["routine", "adjuster"]),
    )
    row = {"amount": 9000.0, "category": "home", "note": None, "urgent": True}
    (e,) = explain(model, [row], _mixed_rows(60, 1), features=FIELDS)
    assert e.space == "indicator"
    assert e.target == "adjuster"
    assert _total(e) == pytest.approx(1.0)


# --- the worker, on a real store ------------------------------------------------------

SPEC = """\
version: 1
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, category]
        properties:
          amount: {type: number, minimum: 0}
          category: {type: string, enum: [auto, home, travel]}
          note: {type: string, nullable: true}
    review:
      sample: 0.05
"""


def _inference(number: int | None, row: dict[str, Any], marked: bool, ts: int) -> Record:
    payload: dict[str, Any] = {"input": row, "output": {"prediction": "routine"}}
    if marked:
        payload[entry.REVIEW] = {"reasons": ["sampled"], "cohort": None, "reviewers": 1}
    return inference_record(
        action="predict",
        service="claims",
        version=number,
        status=200,
        decision="auto",
        payload=payload,
        ts_us=ts,
        latency_ms=1.0,
    )


def _record(store: Store, records: list[Record]) -> None:
    """What the recorder does: the records, and the items of the marked ones, at once."""
    with store.write() as conn:
        audit_log.append(store, conn, records)
        entry.enter(conn, records)


def _attributions(store: Store) -> dict[str, Any]:
    with store.read() as conn:
        found = conn.execute(sa.select(review_items.c.id, review_items.c.attributions)).all()
    return {i: None if a is None else orjson.loads(a) for i, a in found}


def _setup(settings: Settings, store: Store, ref: str) -> tuple[spec_module.Spec, int]:
    Path(settings.config).write_text(SPEC)
    spec = spec_module.load(settings.config)
    v = versions.register(store, spec.service("claims"), ref, actor="tester")
    return spec, v.number


def test_the_worker_fills_items_oldest_first_and_once(settings: Settings, store: Store) -> None:
    spec, number = _setup(settings, store, "fixture_models:claims")
    base = now_us()
    background = [
        _inference(number, {**row, "note": None}, False, base + i)
        for i, row in enumerate(
            {"amount": float(a), "category": c}
            for a, c in zip(range(0, 10_000, 250), ["auto", "home", "travel"] * 14, strict=False)
        )
    ]
    items = [
        _inference(number, {"amount": 9000.0, "category": "home", "note": "x"}, True, base + 100),
        _inference(number, {"amount": 100.0, "category": "auto", "note": None}, True, base + 101),
        _inference(number + 7, {"amount": 5.0, "category": "auto"}, True, base + 102),
        _inference(None, {"amount": 5.0, "category": "auto"}, True, base + 103),
    ]
    _record(store, [*background, *items])
    assert set(_attributions(store).values()) == {None}

    assert explain_pending(store, spec, limit=1) == 1
    found = _attributions(store)
    assert found[items[0].id] is not None
    assert found[items[1].id] is None

    assert explain_pending(store, spec) == 3
    found = _attributions(store)
    high, low = found[items[0].id], found[items[1].id]
    assert high["method"] == PERMUTATION
    assert high["target"] == "adjuster"
    assert next(iter(high["values"])) == "amount"  # sorted by magnitude
    assert set(high["values"]) == {"amount", "category", "note"}
    assert high["base"] + sum(high["values"].values()) == pytest.approx(0.9)
    assert low["target"] == "routine"
    assert low["values"]["category"] == 0.0
    assert "no version" in found[items[2].id]["error"]
    assert "names no version" in found[items[3].id]["error"]
    assert explain_pending(store, spec) == 0  # an error is an answer: never retried


def test_the_worker_explains_a_registered_tree_model_exactly(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    import skops.io

    rng = np.random.default_rng(5)
    n = 300
    frame = pd.DataFrame(
        {
            "amount": rng.uniform(0, 10_000, n),
            "category": rng.choice(["auto", "home", "travel"], n),
        }
    )
    y = np.where(frame["amount"] > 6000, "adjuster", "routine")
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["category"])],
        remainder="passthrough",
    )
    pipeline = make_pipeline(encode, GradientBoostingClassifier(n_estimators=20, random_state=0))
    pipeline.fit(frame, y)
    path = tmp_path / "model.skops"
    skops.io.dump(pipeline, path)
    spec, number = _setup(settings, store, str(path))
    base = now_us()
    rows = [dict(r) for r in frame.head(5).to_dict(orient="records")]
    records = [_inference(number, {**r, "note": None}, True, base + i) for i, r in enumerate(rows)]
    _record(store, records)
    started = time.perf_counter()
    assert explain_pending(store, spec) == 5
    assert time.perf_counter() - started < 10.0  # loading included
    found = _attributions(store)
    raw = pipeline.decision_function(frame.head(5))  # log-odds of classes_[1]: routine
    second = str(pipeline.classes_[1])
    for record, z in zip(records, raw, strict=True):
        a = found[record.id]
        assert a["method"] == TREE
        assert a["space"] == "log-odds"
        assert set(a["values"]) == {"amount", "category", "note"}
        assert a["values"]["note"] == 0.0
        expected = z if a["target"] == second else -z
        assert a["base"] + sum(a["values"].values()) == pytest.approx(expected, abs=1e-6)
        assert next(iter(a["values"])) == "amount"


@pytest.mark.anyio
async def test_run_explainer_fills_items_until_stopped(settings: Settings, store: Store) -> None:
    spec, number = _setup(settings, store, "fixture_models:claims")
    record = _inference(number, {"amount": 7000.0, "category": "home", "note": None}, True, 1)
    _record(store, [record])
    stop = asyncio.Event()
    task = asyncio.create_task(run_explainer(store, spec, 0.05, stop))
    for _ in range(200):
        if _attributions(store)[record.id] is not None:
            break
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert _attributions(store)[record.id]["target"] == "adjuster"


@pytest.mark.anyio
async def test_run_explainer_survives_a_failing_pass(
    settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    from prodgate.review import explaining

    spec, _ = _setup(settings, store, "fixture_models:claims")
    calls: list[int] = []

    def failing(*args: Any, **kwargs: Any) -> int:
        calls.append(1)
        raise RuntimeError("store away")

    monkeypatch.setattr(explaining, "explain_pending", failing)
    stop = asyncio.Event()
    task = asyncio.create_task(run_explainer(store, spec, 0.01, stop))
    while len(calls) < 3:
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert "explaining review items failed" in caplog.text


@pytest.mark.anyio
async def test_the_server_explains_what_enters_review(settings: Settings) -> None:
    from gateway_support import SPEC as GATEWAY_SPEC
    from gateway_support import register_and_deploy, running, write_spec

    write_spec(
        settings,
        GATEWAY_SPEC.replace(
            "    escalation:", "    review:\n      sample: 1.0\n    escalation:", 1
        ),
    )
    register_and_deploy(settings)
    async with running(settings.with_(review_explain_interval=0.2)) as client:
        body = {"inputs": {"amount": 9500.0, "category": "auto", "count": 1}}
        answered = await client.post("/v1/services/claims/predict", json=body)
        assert answered.status_code == 200, answered.text
        item = answered.json()["id"]
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        for _ in range(300):
            found = _attributions(store).get(item)
            if found is not None:
                break
            await asyncio.sleep(0.05)
    assert found is not None
    assert found["target"] == "adjuster"
    assert found["method"] == PERMUTATION
    assert set(found["values"]) == {"amount", "category", "code", "note", "count"}


@pytest.mark.anyio
async def test_an_explain_interval_of_zero_leaves_it_to_other_replicas(
    settings: Settings,
) -> None:
    """``PRODGATE_REVIEW_EXPLAIN_INTERVAL=0``: this server explains nothing by itself
    (another replica will), but an item a reviewer opens is explained then."""
    from gateway_support import SPEC as GATEWAY_SPEC
    from gateway_support import register_and_deploy, running, write_spec

    write_spec(
        settings,
        GATEWAY_SPEC.replace(
            "    escalation:", "    review:\n      sample: 1.0\n    escalation:", 1
        ),
    )
    register_and_deploy(settings)
    async with running(settings.with_(review_explain_interval=0)) as client:
        body = {"inputs": {"amount": 9500.0, "category": "auto", "count": 1}}
        answered = await client.post("/v1/services/claims/predict", json=body)
        assert answered.status_code == 200, answered.text
        item = answered.json()["id"]
        store = client.app.state.gateway.store  # type: ignore[attr-defined]
        await asyncio.sleep(0.5)
        assert item in _attributions(store)
        assert _attributions(store)[item] is None
        # A reviewer who opens the item gets it explained on the spot.
        shown = await client.get(f"/v1/review/items/{item}")
        assert shown.status_code == 200, shown.text
        assert shown.json()["attributions"]["method"] == PERMUTATION
        assert _attributions(store)[item] is not None
