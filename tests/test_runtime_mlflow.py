"""The MLflow adapter: directories written by mlflow.sklearn / mlflow.onnx.save_model."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import ModelInfo
from prodgate.runtime.mlflow import ALLOWED_LOADERS, load_mlflow

FEATURES = ["a", "b", "color"]
ARRAY_FEATURES = ["x0", "x1", "x2"]


@pytest.fixture(scope="module")
def mlflow():
    # Importing mlflow.pyfunc warns about its own type hints ("Any type hint is inferred
    # as AnyType"); that is mlflow's business, not ours, so it is silenced for the import.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*type hint", category=UserWarning)
        import mlflow.onnx
        import mlflow.pyfunc
        import mlflow.sklearn
    return mlflow


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 200
    return pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "color": rng.choice(["red", "green", "blue"], n),
        }
    )


@pytest.fixture(scope="module")
def pipeline(frame):
    y = np.where(frame["a"] + (frame["color"] == "red") > 0.5, "yes", "no")
    encode = ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"])], remainder="passthrough"
    )
    return make_pipeline(encode, HistGradientBoostingClassifier(max_iter=5)).fit(frame, y)


@pytest.fixture(scope="module")
def matrix():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(100, 3)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(int)


@pytest.fixture(scope="module")
def logistic(matrix):
    x, y = matrix
    return LogisticRegression().fit(x, y)


@pytest.fixture(scope="module")
def saved(tmp_path_factory, mlflow, pipeline, logistic, matrix):
    """One MLflow directory per serialization, saved once for the module."""
    root = tmp_path_factory.mktemp("mlflow")
    # mlflow test-loads its skops file with only the types it is told to trust;
    # skops leaves HistGradientBoosting's TreePredictor untrusted by default.
    tree_type = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
    # Explicit pip requirements: inferring them runs the model in a subprocess (~4 s each).
    reqs = {"pip_requirements": ["scikit-learn"]}
    mlflow.sklearn.save_model(pipeline, root / "skops", skops_trusted_types=[tree_type], **reqs)
    for fmt in ("cloudpickle", "pickle"):
        mlflow.sklearn.save_model(pipeline, root / fmt, serialization_format=fmt, **reqs)
    onx = to_onnx(logistic, matrix[0][:1], target_opset=17)
    mlflow.onnx.save_model(onx, root / "onnx", pip_requirements=["onnxruntime"])
    return root


def _copy(saved, name, tmp_path):
    import shutil

    return shutil.copytree(saved / name, tmp_path / name)


def _edit(directory, change) -> None:
    path = directory / "MLmodel"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_default_mlflow_sklearn_is_skops_and_matches(saved, frame, pipeline):
    assert (
        yaml.safe_load((saved / "skops" / "MLmodel").read_text())["flavors"]["sklearn"][
            "serialization_format"
        ]
        == "skops"
    )
    model = load_mlflow(saved / "skops", ModelInfo("classifier", FEATURES))
    assert model.flavor == "mlflow"
    preds = model.predict(frame.head(30).to_dict(orient="records"))
    assert [p.value for p in preds] == pipeline.predict(frame.head(30)).tolist()
    assert [p.probabilities["yes"] for p in preds] == pytest.approx(
        pipeline.predict_proba(frame.head(30))[:, 1].tolist()
    )


@pytest.mark.parametrize("fmt", ["cloudpickle", "pickle"])
def test_pickled_mlflow_models_need_trust(saved, frame, pipeline, fmt):
    with pytest.raises(ArtifactError, match=r"unpickling runs code.*--trust-pickle"):
        load_mlflow(saved / fmt, ModelInfo("classifier", FEATURES))
    model = load_mlflow(saved / fmt, ModelInfo("classifier", FEATURES, trusted=True))
    preds = model.predict(frame.head(30).to_dict(orient="records"))
    assert [p.value for p in preds] == pipeline.predict(frame.head(30)).tolist()


def test_mlflow_onnx_matches(saved, matrix, logistic):
    x, _ = matrix
    model = load_mlflow(saved / "onnx", ModelInfo("classifier", ARRAY_FEATURES, labels=["n", "y"]))
    preds = model.predict([dict(zip(ARRAY_FEATURES, r)) for r in x[:30].tolist()])
    assert model.flavor == "mlflow"
    assert [p.value for p in preds] == np.array(["n", "y"])[logistic.predict(x[:30])].tolist()
    assert [p.probabilities["y"] for p in preds] == pytest.approx(
        logistic.predict_proba(x[:30])[:, 1].tolist(), abs=1e-5
    )


def test_loader_outside_the_allow_list_is_refused(saved, tmp_path):
    directory = _copy(saved, "skops", tmp_path)

    def swap(data):
        data["flavors"]["python_function"]["loader_module"] = "my_company.loader"

    _edit(directory, swap)
    with pytest.raises(ArtifactError, match=r"'my_company\.loader'") as err:
        load_mlflow(directory, ModelInfo("classifier", FEATURES))
    assert all(name in str(err.value) for name in ALLOWED_LOADERS)


def test_model_file_outside_the_directory_is_refused(saved, tmp_path):
    directory = _copy(saved, "skops", tmp_path)
    (tmp_path / "elsewhere.skops").write_bytes((directory / "model.skops").read_bytes())

    def escape(data):
        data["flavors"]["sklearn"]["pickled_model"] = "../elsewhere.skops"

    _edit(directory, escape)
    with pytest.raises(ArtifactError, match="outside the model directory"):
        load_mlflow(directory, ModelInfo("classifier", FEATURES))


def test_broken_directories(saved, tmp_path):
    with pytest.raises(ArtifactError, match="no MLmodel file"):
        load_mlflow(tmp_path, ModelInfo("classifier", FEATURES))
    directory = _copy(saved, "skops", tmp_path)
    _edit(directory, lambda data: data["flavors"].pop("python_function"))
    with pytest.raises(ArtifactError, match="no 'python_function' flavor"):
        load_mlflow(directory, ModelInfo("classifier", FEATURES))


def test_serving_does_not_import_mlflow(saved):
    code = (
        "import sys\n"
        "from prodgate.runtime.base import ModelInfo\n"
        "from prodgate.runtime.mlflow import load_mlflow\n"
        f"m = load_mlflow({str(saved / 'skops')!r}, ModelInfo('classifier', ['a', 'b', 'color']))\n"
        "m.predict([{'a': 0.1, 'b': 0.2, 'color': 'red'}])\n"
        "assert 'mlflow' not in sys.modules, 'mlflow was imported'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)
