"""The ONNX adapter: models converted with skl2onnx, run with onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

import prodgate.runtime.onnx as onnx_adapter
from prodgate.exceptions import ArtifactError
from prodgate.runtime._onnxmeta import class_labels
from prodgate.runtime.base import ModelInfo
from prodgate.runtime.onnx import load_onnx

FEATURES = ["a", "b", "color"]
ARRAY_FEATURES = ["x0", "x1", "x2", "x3"]
LABELS = ["low", "mid", "high"]


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 300
    # float32 columns: skl2onnx then declares float inputs, and ZipMap needs float
    # (not double) probabilities.
    return pd.DataFrame(
        {
            "a": rng.normal(size=n).astype(np.float32),
            "b": rng.normal(size=n).astype(np.float32),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


@pytest.fixture(scope="module")
def pipeline(frame: pd.DataFrame):
    y = np.where(frame["a"] + (frame["color"] == "red") > 0.5, "yes", "no")
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    return make_pipeline(encode, LogisticRegression()).fit(frame, y)


@pytest.fixture(scope="module")
def matrix() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    return x, np.digitize(x[:, 0] + x[:, 1], [-0.5, 0.5])  # classes 0, 1, 2


@pytest.fixture(scope="module")
def forest(matrix):
    x, y = matrix
    return RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(x, y)


def _save(tmp_path, model, sample, name, **options) -> str:
    path = tmp_path / name
    path.write_bytes(to_onnx(model, sample, options=options, target_opset=17).SerializeToString())
    return str(path)


def _matrix_rows(x: np.ndarray) -> list[dict]:
    return [dict(zip(ARRAY_FEATURES, r)) for r in x.tolist()]


@pytest.mark.parametrize("zipmap", [True, False])
def test_array_classifier_matches_the_model(tmp_path, matrix, forest, zipmap):
    x, _ = matrix
    path = _save(tmp_path, forest, x[:1], "forest.onnx", zipmap=zipmap)
    model = load_onnx(path, ModelInfo("classifier", ARRAY_FEATURES, labels=LABELS))
    assert model.flavor == "onnx"
    assert model.labels == LABELS
    preds = model.predict(_matrix_rows(x[:40]))
    assert [p.value for p in preds] == np.array(LABELS)[forest.predict(x[:40])].tolist()
    expected = forest.predict_proba(x[:40])
    for p, row in zip(preds, expected):
        assert p.probabilities == pytest.approx(dict(zip(LABELS, row)), abs=1e-5)
    json.dumps([[p.value, p.probabilities] for p in preds])


@pytest.mark.parametrize("zipmap", [True, False])
def test_dataframe_pipeline_gets_one_input_per_field(tmp_path, frame, pipeline, zipmap):
    path = _save(tmp_path, pipeline, frame[:1], "pipe.onnx", zipmap=zipmap)
    model = load_onnx(path, ModelInfo("classifier", FEATURES))
    assert model.labels == ["no", "yes"]
    rows = frame.head(40).to_dict(orient="records")
    preds = model.predict(rows)
    assert [p.value for p in preds] == pipeline.predict(frame.head(40)).tolist()
    yes = [p.probabilities["yes"] for p in preds]
    assert yes == pytest.approx(pipeline.predict_proba(frame.head(40))[:, 1].tolist(), abs=1e-5)


def test_regressor_matches_the_model(tmp_path, matrix):
    x, _ = matrix
    y = x @ np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)
    reg = LinearRegression().fit(x, y)
    model = load_onnx(
        _save(tmp_path, reg, x[:1], "reg.onnx"), ModelInfo("regressor", ARRAY_FEATURES)
    )
    preds = model.predict(_matrix_rows(x[:10]))
    assert all(type(p.value) is float and p.probabilities is None for p in preds)
    assert [p.value for p in preds] == pytest.approx(reg.predict(x[:10]).tolist(), abs=1e-4)


def test_class_labels_are_read_from_the_file(tmp_path, matrix, forest, frame, pipeline):
    x, _ = matrix
    for zipmap in (True, False):
        forest_file = _save(tmp_path, forest, x[:1], "f.onnx", zipmap=zipmap)
        pipe_file = _save(tmp_path, pipeline, frame[:1], "p.onnx", zipmap=zipmap)
        with open(forest_file, "rb") as fh:
            assert class_labels(fh.read()) == [0, 1, 2]
        with open(pipe_file, "rb") as fh:
            assert class_labels(fh.read()) == ["no", "yes"]
    assert class_labels(b"\xff\xff garbage") is None


def test_unknown_class_order_is_assumed_and_checked(tmp_path, matrix, forest, monkeypatch):
    x, _ = matrix
    path = _save(tmp_path, forest, x[:1], "forest.onnx", zipmap=False)
    monkeypatch.setattr(onnx_adapter, "class_labels", lambda data: None)
    model = load_onnx(path, ModelInfo("classifier", ARRAY_FEATURES, labels=LABELS))
    assert model.labels == LABELS  # classes 0..2 from the probability width
    preds = model.predict(_matrix_rows(x[:20]))
    assert [p.value for p in preds] == np.array(LABELS)[forest.predict(x[:20])].tolist()


def test_text_labels_without_classlabels_are_refused(tmp_path, frame, pipeline, monkeypatch):
    path = _save(tmp_path, pipeline, frame[:1], "pipe.onnx", zipmap=False)
    monkeypatch.setattr(onnx_adapter, "class_labels", lambda data: None)
    with pytest.raises(ArtifactError, match="cannot tell the order"):
        load_onnx(path, ModelInfo("classifier", FEATURES))


def test_feature_count_mismatch_is_refused(tmp_path, matrix, forest):
    x, _ = matrix
    path = _save(tmp_path, forest, x[:1], "forest.onnx")
    with pytest.raises(ArtifactError, match="takes 4 features per row but the service declares 3"):
        load_onnx(path, ModelInfo("classifier", ARRAY_FEATURES[:3]))


def test_per_field_inputs_must_match_the_fields(tmp_path, frame, pipeline):
    path = _save(tmp_path, pipeline, frame[:1], "pipe.onnx")
    with pytest.raises(ArtifactError, match="neither one"):
        load_onnx(path, ModelInfo("classifier", ["a", "b", "colour"]))


def test_kind_mismatch_is_refused(tmp_path, matrix, forest):
    x, _ = matrix
    reg = LinearRegression().fit(x, x[:, 0])
    reg_path = _save(tmp_path, reg, x[:1], "reg.onnx")
    clf_path = _save(tmp_path, forest, x[:1], "clf.onnx")
    with pytest.raises(ArtifactError, match="neither a label nor a probability output"):
        load_onnx(reg_path, ModelInfo("classifier", ARRAY_FEATURES))
    with pytest.raises(ArtifactError, match="regressor but the ONNX model outputs class labels"):
        load_onnx(clf_path, ModelInfo("regressor", ARRAY_FEATURES))


def test_label_mismatch_and_bad_files(tmp_path, matrix, forest):
    x, _ = matrix
    path = _save(tmp_path, forest, x[:1], "forest.onnx")
    with pytest.raises(ArtifactError, match="do not match the service's labels"):
        load_onnx(path, ModelInfo("classifier", ARRAY_FEATURES, labels=["a", "b"]))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nonsense")
    with pytest.raises(ArtifactError, match="not a loadable ONNX model"):
        load_onnx(bad, ModelInfo("classifier", ARRAY_FEATURES))
    with pytest.raises(ArtifactError, match="no model file"):
        load_onnx(tmp_path / "absent.onnx", ModelInfo("classifier", ARRAY_FEATURES))


def test_a_wrong_assumed_class_order_is_caught(tmp_path, matrix, monkeypatch):
    x, y = matrix
    shifted = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y + 1)
    path = _save(tmp_path, shifted, x[:1], "shifted.onnx", zipmap=False)
    monkeypatch.setattr(onnx_adapter, "class_labels", lambda data: None)
    model = load_onnx(path, ModelInfo("classifier", ARRAY_FEATURES))
    with pytest.raises(ArtifactError, match=r"not in the order 0\.\.C-1"):
        model.predict(_matrix_rows(x[:20]))
