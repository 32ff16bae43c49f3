"""Flavor detection and dispatch to the adapters."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
import skops.io as sio
import yaml
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import FLAVORS, ModelInfo
from prodgate.runtime.loader import detect_flavor, load_model

FEATURES = ["x0", "x1"]
INFO = ModelInfo("classifier", FEATURES, labels=["no", "yes"], trusted=True)


def always_yes(rows):
    return ["yes" for _ in rows]


@pytest.fixture(scope="module")
def logistic():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 2)).astype(np.float32)
    return x, LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))


@pytest.mark.parametrize(
    ("name", "flavor"),
    [
        ("m.skops", "skops"),
        ("m.joblib", "pickle"),
        ("m.pkl", "pickle"),
        ("m.pickle", "pickle"),
        ("m.onnx", "onnx"),
        ("M.ONNX", "onnx"),
    ],
)
def test_file_suffixes(tmp_path, name, flavor):
    (tmp_path / name).write_bytes(b"")
    assert detect_flavor(str(tmp_path / name)) == flavor


def test_mlflow_directory_and_callable(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert detect_flavor(str(tmp_path)) == "mlflow"
    assert detect_flavor("my_models.scoring:predict") == "callable"
    assert detect_flavor("scoring:Model.predict") == "callable"


@pytest.mark.parametrize("location", ["model.h5", "no/such/thing", "not a:ref", ""])
def test_unknown_artifacts_name_the_flavors_and_the_override(tmp_path, location):
    with pytest.raises(ArtifactError, match="pass --flavor to force one") as err:
        detect_flavor(location)
    assert all(f in str(err.value) for f in FLAVORS)


def test_directory_without_mlmodel_is_unknown(tmp_path):
    with pytest.raises(ArtifactError, match="cannot tell the flavor"):
        detect_flavor(str(tmp_path))


def test_existing_file_that_looks_like_a_callable_is_not_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg.mod:fn").write_text("")
    with pytest.raises(ArtifactError, match="cannot tell the flavor"):
        detect_flavor("pkg.mod:fn")


def test_load_model_dispatches_every_flavor(tmp_path, logistic):
    x, model = logistic
    sio.dump(model, tmp_path / "m.skops")
    joblib.dump(model, tmp_path / "m.joblib")
    (tmp_path / "m.onnx").write_bytes(to_onnx(model, x[:1], target_opset=17).SerializeToString())
    # A hand-written MLflow directory: the adapter needs only MLmodel and the model file.
    ml = tmp_path / "mlflow"
    ml.mkdir()
    sio.dump(model, ml / "model.skops")
    flavors = {
        "python_function": {"loader_module": "mlflow.sklearn", "model_path": "model.skops"},
        "sklearn": {"pickled_model": "model.skops", "serialization_format": "skops"},
    }
    (ml / "MLmodel").write_text(yaml.safe_dump({"flavors": flavors}))

    rows = [dict(zip(FEATURES, r)) for r in x[:10].tolist()]
    expected = np.array(["no", "yes"])[model.predict(x[:10])].tolist()
    for location in ["m.skops", "m.joblib", "m.onnx", "mlflow"]:
        path = str(tmp_path / location)
        loaded = load_model(path, detect_flavor(path), INFO)
        assert loaded.flavor == detect_flavor(path)
        assert [p.value for p in loaded.predict(rows)] == expected, location
    ref = f"{__name__}:always_yes"
    loaded = load_model(ref, detect_flavor(ref), INFO)
    assert [p.value for p in loaded.predict(rows)] == ["yes"] * 10


def test_load_model_refusals(tmp_path):
    with pytest.raises(ArtifactError, match="unknown flavor 'h5'"):
        load_model(tmp_path / "m.h5", "h5", INFO)
    with pytest.raises(ArtifactError, match="no model file"):
        load_model(tmp_path / "absent.skops", "skops", INFO)
    with pytest.raises(ArtifactError, match="cannot import module"):
        load_model("no_such_module_xyz:fn", "callable", INFO)
