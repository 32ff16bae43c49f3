"""Adapter for MLflow model directories, read without importing mlflow.

mlflow's own pyfunc loader imports whatever ``loader_module`` the MLmodel file names,
which is code chosen by the artifact. prodgate instead reads MLmodel as data and
serves only the loaders it re-implements (:data:`ALLOWED_LOADERS`) with its own
sklearn and ONNX adapters.

MLflow 3 logs a model beside its run rather than inside it; :func:`find_models`
finds the model folder in a run or experiment folder, either layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import Model, ModelInfo

#: The pyfunc loader modules prodgate can serve.
ALLOWED_LOADERS = ("mlflow.sklearn", "mlflow.onnx")

_PICKLE_FORMATS = ("pickle", "cloudpickle")


def read_mlmodel(directory: str | Path) -> dict[str, Any]:
    """The parsed ``MLmodel`` file of an MLflow model directory."""
    path = Path(directory) / "MLmodel"
    if not path.is_file():
        raise ArtifactError(
            f"{directory} is not an MLflow model directory (it has no MLmodel file)"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("flavors"), dict):
        raise ArtifactError(f"{path} has no 'flavors' section")
    return data


def _flavor(mlmodel: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    conf = mlmodel["flavors"].get(name)
    if not isinstance(conf, dict):
        raise ArtifactError(f"{path / 'MLmodel'} has no {name!r} flavor")
    return conf


def _member(directory: Path, name: Any, what: str) -> Path:
    """A file named by MLmodel, which must stay inside the model directory."""
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{directory / 'MLmodel'} does not name the {what}")
    root = directory.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise ArtifactError(f"{directory / 'MLmodel'} names a {what} outside the model directory")
    if not target.is_file():
        raise ArtifactError(f"the {what} {name!r} is missing from {directory}")
    return target


def load_mlflow(directory: str | Path, info: ModelInfo) -> Model:
    """Load an MLflow model directory whose pyfunc loader is in :data:`ALLOWED_LOADERS`."""
    directory = Path(directory)
    mlmodel = read_mlmodel(directory)
    pyfunc = _flavor(mlmodel, "python_function", directory)
    loader = pyfunc.get("loader_module")
    if loader not in ALLOWED_LOADERS:
        raise ArtifactError(
            f"the MLflow model's loader module {loader!r} is not one prodgate serves "
            f"(allowed: {', '.join(ALLOWED_LOADERS)})"
        )
    if loader == "mlflow.onnx":
        from prodgate.runtime.onnx import load_onnx

        conf = _flavor(mlmodel, "onnx", directory)
        return load_onnx(_member(directory, conf.get("data"), "ONNX model file"), info, "mlflow")

    from prodgate.runtime.sklearn import load_pickle, load_skops

    sk = sklearn_model(directory, mlmodel)
    if sk.format == "skops":
        # MLmodel's skops_trusted_types is not read here: the artifact would be vouching
        # for itself. The types a person trusted at registration are in info.
        return load_skops(sk.file, info, "mlflow")
    return load_pickle(sk.file, info, "mlflow", serializer=sk.format)  # refuses unless trusted


@dataclass(frozen=True)
class SklearnFile:
    """The model file of an MLflow sklearn model, how it is serialized, and the types
    its MLmodel declares trusted (``skops_trusted_types``; None when it declares none)."""

    format: str
    file: Path
    declared_types: tuple[str, ...] | None

    @property
    def pickled(self) -> bool:
        return self.format in _PICKLE_FORMATS


def sklearn_model(directory: str | Path, mlmodel: dict[str, Any] | None = None) -> SklearnFile:
    """The :class:`SklearnFile` of an MLflow model directory with the sklearn flavor."""
    directory = Path(directory)
    mlmodel = mlmodel if mlmodel is not None else read_mlmodel(directory)
    conf = _flavor(mlmodel, "sklearn", directory)
    fmt = conf.get("serialization_format", "cloudpickle")
    if fmt != "skops" and fmt not in _PICKLE_FORMATS:
        raise ArtifactError(
            f"the MLflow sklearn model uses an unknown serialization format {fmt!r}"
        )
    file = _member(directory, conf.get("pickled_model"), "pickled model")
    declared = conf.get("skops_trusted_types")
    types = tuple(str(t) for t in declared) if isinstance(declared, list) else None
    return SklearnFile(fmt, file, types)


def loader_module(directory: str | Path) -> Any:
    """The pyfunc ``loader_module`` an MLflow model directory names (None if none)."""
    pyfunc = read_mlmodel(directory)["flavors"].get("python_function")
    return pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None


# -- finding the model in an MLflow run or experiment folder ---------------------------


def _run_outputs(folder: Path) -> list[Path]:
    """The model folders an MLflow 3 run folder points to.

    MLflow 3 (file store) keeps a logged model beside its run, in
    ``<experiment>/models/<model id>/artifacts``; the run folder only records the
    model's id under ``outputs/<model id>/``.
    """
    outputs = folder / "outputs"
    if not (folder / "meta.yaml").is_file() or not outputs.is_dir():
        return []
    found = []
    for output in sorted(outputs.iterdir()):
        candidate = folder.parent / "models" / output.name / "artifacts"
        if (candidate / "MLmodel").is_file():
            found.append(candidate)
    return found


def find_models(folder: str | Path) -> list[Path]:
    """The MLflow model folders in *folder*: itself if it has an MLmodel file; else
    every folder below it with one, and the models an MLflow 3 run folder logged."""
    root = Path(folder)
    if (root / "MLmodel").is_file():
        return [root]
    found = {p.parent for p in root.rglob("MLmodel") if p.is_file()}
    found.update(_run_outputs(root))
    return sorted(found)
