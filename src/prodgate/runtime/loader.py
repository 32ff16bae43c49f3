"""Tell a model artifact's flavor and load it with the matching adapter.

The adapters import heavy libraries (pandas, scikit-learn, onnxruntime), so they are
imported only when a model of their flavor loads: detecting a flavor stays cheap.
"""

from __future__ import annotations

import re
from pathlib import Path

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import FLAVORS, Model, ModelInfo

_SUFFIXES = {
    ".skops": "skops",
    ".joblib": "pickle",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".onnx": "onnx",
    ".yaml": "prompt",
    ".yml": "prompt",
}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_CALLABLE = re.compile(rf"{_NAME}(\.{_NAME})*:{_NAME}(\.{_NAME})*")


def detect_flavor(path: str) -> str:
    """The flavor of an artifact, from its file suffix, an MLmodel file or ``module:function``."""
    p = Path(path)
    if p.is_dir():
        if (p / "MLmodel").is_file():
            return "mlflow"
    elif p.suffix.lower() in _SUFFIXES:
        return _SUFFIXES[p.suffix.lower()]
    elif not p.exists() and _CALLABLE.fullmatch(path):
        return "callable"
    raise ArtifactError(
        f"cannot tell the flavor of {path!r}: prodgate knows {', '.join(FLAVORS)} "
        "(.skops, .joblib/.pkl/.pickle, .onnx, an MLflow directory, module:function, "
        "a prompt .yaml); "
        "pass --flavor to force one"
    )


def load_model(location: str | Path, flavor: str, info: ModelInfo) -> Model:
    """Load the artifact at ``location`` (a ``module:function`` string for callables)."""
    if flavor == "skops":
        from prodgate.runtime.sklearn import load_skops

        return load_skops(location, info)
    if flavor == "pickle":
        from prodgate.runtime.sklearn import load_pickle

        return load_pickle(location, info)
    if flavor == "onnx":
        from prodgate.runtime.onnx import load_onnx

        return load_onnx(location, info)
    if flavor == "mlflow":
        from prodgate.runtime.mlflow import load_mlflow

        return load_mlflow(location, info)
    if flavor == "prompt":
        raise ArtifactError("a prompt version is served by the LLM route, not loaded as a model")
    if flavor == "callable":
        from prodgate.runtime.callable import load_callable

        return load_callable(str(location), info)
    raise ArtifactError(f"unknown flavor {flavor!r}; prodgate knows {', '.join(FLAVORS)}")
