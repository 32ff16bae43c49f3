"""The scikit-learn adapter: skops and joblib files of real fitted models."""

from __future__ import annotations

import json
import time

import joblib
import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder
from sklearn.svm import LinearSVC

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import ModelInfo, Trust
from prodgate.runtime.sklearn import load_pickle, load_skops, untrusted_skops_types

FEATURES = ["a", "b", "color"]
ARRAY_FEATURES = ["x0", "x1", "x2", "x3"]


def _double(x):  # a user function: skops cannot vouch for it
    return x * 2


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


@pytest.fixture(scope="module")
def target(frame: pd.DataFrame) -> np.ndarray:
    return np.where(frame["a"] + (frame["color"] == "red") > 0.5, "yes", "no")


@pytest.fixture(scope="module")
def pipeline(frame: pd.DataFrame, target: np.ndarray):
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    return make_pipeline(encode, HistGradientBoostingClassifier(max_iter=10)).fit(frame, target)


@pytest.fixture(scope="module")
def matrix() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4))
    y = np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5])  # classes 0, 1, 2
    return x, y


@pytest.fixture(scope="module")
def forest(matrix):
    x, y = matrix
    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)


def _rows(frame: pd.DataFrame, n: int = 20) -> list[dict]:
    return frame.head(n).to_dict(orient="records")


def _matrix_rows(x: np.ndarray) -> list[dict]:
    return [dict(zip(ARRAY_FEATURES, r)) for r in x.tolist()]


def test_skops_pipeline_matches_the_model(tmp_path, frame, pipeline):
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)
    model = load_skops(path, ModelInfo("classifier", FEATURES))
    assert model.flavor == "skops"
    assert model.labels == ["no", "yes"]

    preds = model.predict(_rows(frame))
    proba = pipeline.predict_proba(frame.head(20))
    assert [p.value for p in preds] == pipeline.predict(frame.head(20)).tolist()
    for p, row in zip(preds, proba):
        assert p.probabilities == pytest.approx(dict(zip(["no", "yes"], row)))
    json.dumps([[p.value, p.probabilities] for p in preds])  # plain Python types only


def test_missing_field_is_fed_as_nan(tmp_path, frame, pipeline):
    path = tmp_path / "model.skops"
    sio.dump(pipeline, path)
    model = load_skops(path, ModelInfo("classifier", FEATURES))
    rows = _rows(frame, 5)
    del rows[0]["a"]
    expected = frame.head(5).copy()
    expected.loc[0, "a"] = np.nan
    got = [p.probabilities["yes"] for p in model.predict(rows)]
    assert got == pytest.approx(pipeline.predict_proba(expected)[:, 1].tolist())


def test_array_model_classes_map_to_service_labels(tmp_path, matrix, forest):
    x, _ = matrix
    path = tmp_path / "forest.skops"
    sio.dump(forest, path)
    model = load_skops(path, ModelInfo("classifier", ARRAY_FEATURES, labels=["low", "mid", "high"]))
    preds = model.predict(_matrix_rows(x[:30]))
    names = np.array(["low", "mid", "high"])
    assert [p.value for p in preds] == names[forest.predict(x[:30])].tolist()
    assert [p.probabilities["high"] for p in preds] == pytest.approx(
        forest.predict_proba(x[:30])[:, 2].tolist()
    )


def test_joblib_needs_trust(tmp_path, matrix, forest):
    x, _ = matrix
    path = tmp_path / "forest.joblib"
    joblib.dump(forest, path)
    with pytest.raises(ArtifactError, match=r"unpickling runs code.*--trust-pickle.*skops"):
        load_pickle(path, ModelInfo("classifier", ARRAY_FEATURES))

    model = load_pickle(path, ModelInfo("classifier", ARRAY_FEATURES, trusted=True))
    assert model.flavor == "pickle"
    assert [p.value for p in model.predict(_matrix_rows(x[:10]))] == [
        str(c) for c in forest.predict(x[:10])
    ]


def test_skops_refuses_a_type_outside_the_allow_list(tmp_path, frame, target):
    pipe = make_pipeline(
        FunctionTransformer(_double), HistGradientBoostingClassifier(max_iter=3)
    ).fit(frame[["a", "b"]], target)
    path = tmp_path / "custom.skops"
    sio.dump(pipe, path)
    with pytest.raises(ArtifactError, match=r"outside the skops allow-list \(.*_double\)"):
        load_skops(path, ModelInfo("classifier", ["a", "b"]))
    # A version registered as trusted may name any type.
    model = load_skops(path, ModelInfo("classifier", ["a", "b"], trusted=True))
    assert model.predict(_rows(frame[["a", "b"]], 3))[0].value in ("no", "yes")


@pytest.mark.parametrize("func", [eval, np.load])
def test_skops_refuses_dangerous_functions_of_trusted_libraries(func):
    data = sio.dumps(FunctionTransformer(func=func))
    allowed, refused = untrusted_skops_types(data)
    assert allowed == []
    assert refused == [f"{'builtins' if func is eval else 'numpy'}.{func.__name__}"]


def test_regressor_values_are_floats(tmp_path, matrix):
    x, _ = matrix
    y = x @ np.array([1.0, -2.0, 0.5, 0.0])
    ridge = Ridge().fit(x, y)
    path = tmp_path / "ridge.skops"
    sio.dump(ridge, path)
    model = load_skops(path, ModelInfo("regressor", ARRAY_FEATURES))
    preds = model.predict(_matrix_rows(x[:10]))
    assert model.labels is None
    assert all(type(p.value) is float and p.probabilities is None for p in preds)
    assert [p.value for p in preds] == pytest.approx(ridge.predict(x[:10]).tolist())


def test_classifier_without_predict_proba(tmp_path, matrix):
    x, y = matrix
    svc = LinearSVC().fit(x, y)
    path = tmp_path / "svc.skops"
    sio.dump(svc, path)
    model = load_skops(path, ModelInfo("classifier", ARRAY_FEATURES, labels=["l", "m", "h"]))
    preds = model.predict(_matrix_rows(x[:10]))
    assert [p.value for p in preds] == np.array(["l", "m", "h"])[svc.predict(x[:10])].tolist()
    assert all(p.probabilities is None for p in preds)


def test_kind_mismatch_is_refused_at_load(tmp_path, frame, target, pipeline):
    regressor = HistGradientBoostingRegressor(max_iter=3).fit(frame[["a", "b"]], frame["a"])
    sio.dump(regressor, tmp_path / "reg.skops")
    sio.dump(pipeline, tmp_path / "clf.skops")
    with pytest.raises(ArtifactError, match="classifier but the model is a regressor"):
        load_skops(tmp_path / "reg.skops", ModelInfo("classifier", ["a", "b"]))
    with pytest.raises(ArtifactError, match="regressor but the model is a classifier"):
        load_skops(tmp_path / "clf.skops", ModelInfo("regressor", FEATURES))


def test_label_mismatch_is_refused(tmp_path, pipeline):
    sio.dump(pipeline, tmp_path / "clf.skops")
    with pytest.raises(ArtifactError, match="do not match the service's labels"):
        load_skops(tmp_path / "clf.skops", ModelInfo("classifier", FEATURES, labels=["x", "y"]))


def test_feature_mismatch_is_refused(tmp_path, forest, pipeline):
    sio.dump(forest, tmp_path / "forest.skops")
    sio.dump(pipeline, tmp_path / "clf.skops")
    with pytest.raises(ArtifactError, match="takes 4 features but the service declares 3"):
        load_skops(tmp_path / "forest.skops", ModelInfo("classifier", ["x0", "x1", "x2"]))
    with pytest.raises(ArtifactError, match=r"reads columns \['color'\]"):
        load_skops(tmp_path / "clf.skops", ModelInfo("classifier", ["a", "b"]))


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.skops"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="not a readable skops file"):
        load_skops(bad, ModelInfo("classifier", FEATURES))
    with pytest.raises(ArtifactError, match="no model file"):
        load_skops(tmp_path / "absent.skops", ModelInfo("classifier", FEATURES))


def test_conversion_overhead_is_small(tmp_path, frame, pipeline):
    sio.dump(pipeline, tmp_path / "clf.skops")
    model = load_skops(tmp_path / "clf.skops", ModelInfo("classifier", FEATURES))
    rows = _rows(frame, 64)
    runs = []
    for _ in range(30):
        start = time.perf_counter()
        model.frame(rows)
        runs.append(time.perf_counter() - start)
    assert sorted(runs)[len(runs) // 2] < 1e-3


def test_tampered_tree_nodes_are_refused(tmp_path, forest, pipeline):
    import copy

    crafted = copy.deepcopy(forest)
    tree = crafted.estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["left_child"][0] = 10**6  # would make predict read far out of bounds
    tree.__setstate__(state)
    sio.dump(crafted, tmp_path / "forest.skops")
    with pytest.raises(ArtifactError, match="child node indices out of range"):
        load_skops(tmp_path / "forest.skops", ModelInfo("classifier", ARRAY_FEATURES))

    boosted = copy.deepcopy(pipeline)
    boosted[-1]._predictors[0][0].nodes["feature_idx"][0] = 99
    sio.dump(boosted, tmp_path / "boosted.skops")
    with pytest.raises(ArtifactError, match="feature indices out of range"):
        load_skops(tmp_path / "boosted.skops", ModelInfo("classifier", FEATURES))


def test_tree_ensembles_pass_the_bounds_check(tmp_path, matrix):
    from sklearn.ensemble import (
        BaggingClassifier,
        GradientBoostingClassifier,
        StackingClassifier,
    )
    from sklearn.tree import DecisionTreeClassifier

    x, y = matrix
    cat = pd.DataFrame({"a": x[:, 0], "c": pd.Categorical(np.where(x[:, 1] > 0, "p", "n"))})
    models = [
        (GradientBoostingClassifier(n_estimators=3, max_depth=2).fit(x, y), ARRAY_FEATURES),
        (
            BaggingClassifier(DecisionTreeClassifier(), n_estimators=2, max_features=0.5).fit(x, y),
            ARRAY_FEATURES,
        ),
        (
            StackingClassifier(
                [("t", DecisionTreeClassifier()), ("h", HistGradientBoostingClassifier(max_iter=2))]
            ).fit(x, y),
            ARRAY_FEATURES,
        ),
        (
            HistGradientBoostingClassifier(max_iter=3, categorical_features="from_dtype").fit(
                cat, y
            ),
            ["a", "c"],
        ),
    ]
    for i, (est, features) in enumerate(models):
        sio.dump(est, tmp_path / f"{i}.skops")
        load_skops(tmp_path / f"{i}.skops", ModelInfo("classifier", features))


def test_trusted_types_load_only_those_and_still_check_trees(tmp_path, matrix):
    import copy

    from custom_estimators import Doubler

    x, y = matrix
    model = make_pipeline(Doubler(), RandomForestClassifier(n_estimators=3, max_depth=3))
    model.fit(x, y)
    sio.dump(model, tmp_path / "custom.skops")
    trust = Trust(types=("custom_estimators.Doubler",))
    doubler = ModelInfo("classifier", ARRAY_FEATURES, None, trust)
    loaded = load_skops(tmp_path / "custom.skops", doubler)
    assert [p.value for p in loaded.predict(_matrix_rows(x[:10]))] == [
        str(c) for c in model.predict(x[:10])
    ]
    other = Trust(types=("custom_estimators.Other",))
    with pytest.raises(ArtifactError, match=r"--trust-types custom_estimators\.Doubler"):
        load_skops(tmp_path / "custom.skops", ModelInfo("classifier", ARRAY_FEATURES, None, other))

    # Types a person trusted by name do not vouch for the trees prodgate trusts itself.
    crafted = copy.deepcopy(model)
    tree = crafted[-1].estimators_[0].tree_
    state = tree.__getstate__()
    state["nodes"]["left_child"][0] = 10**6
    tree.__setstate__(state)
    sio.dump(crafted, tmp_path / "crafted.skops")
    with pytest.raises(ArtifactError, match="child node indices out of range"):
        load_skops(tmp_path / "crafted.skops", doubler)
