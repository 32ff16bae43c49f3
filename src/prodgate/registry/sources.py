"""Where a registered artifact comes from: a local path, or an MLflow URI.

``register`` takes what the user typed and gets a local file or folder to hash and
copy, and the source to record on the version:

- a file, a model folder or ``module:function``: itself;
- a folder without an MLmodel file of its own (an MLflow run or experiment folder,
  MLflow 2 or 3 layout): the one MLflow model in it, or an error listing them;
- ``models:/NAME/VERSION`` or ``runs:/RUN_ID/PATH``: downloaded with mlflow's own API
  (from the tracking server ``MLFLOW_TRACKING_URI`` names) into a temporary folder,
  removed once the version is stored; the URI is the recorded source. Needs the
  ``mlflow`` package: ``pip install 'prodgate[mlflow]'``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prodgate.exceptions import ArtifactError, UsageError
from prodgate.runtime.mlflow import find_models

#: MLflow URIs ``register`` accepts.
MLFLOW_URI = re.compile(r"^(models|runs):/[^/]")

_LISTED = 8  # models named in the "which one?" error before "and N more"


@dataclass(frozen=True)
class Source:
    """A local artifact to register, what to record as its source, and the name of
    its stored copy (None: the local artifact's own name)."""

    path: str
    source: str
    name: str | None = None


def _which_one(given: str, root: Path, models: list[Path]) -> ArtifactError:
    def shown(p: Path) -> str:
        return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)

    names = [str(Path(given) / shown(m)) for m in models[:_LISTED]]
    more = f" and {len(models) - _LISTED} more" if len(models) > _LISTED else ""
    return ArtifactError(
        f"{given} holds {len(models)} MLflow models ({', '.join(names)}{more}); "
        "register one of them"
    )


def _one_model(given: str, folder: Path) -> Path | None:
    """The single MLflow model folder in *folder*; None if there is none."""
    models = find_models(folder)
    if len(models) > 1:
        raise _which_one(given, folder, models)
    return models[0] if models else None


def _download(uri: str, into: Path) -> Path:
    try:
        import mlflow.artifacts
    except ImportError:
        raise UsageError(
            f"{uri} is an MLflow URI; reading it needs mlflow: pip install 'prodgate[mlflow]'"
        ) from None
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into))
    except Exception as exc:  # mlflow raises its own exceptions and OSErrors alike
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"{uri}: MLflow could not download it: {first}") from None
    found = _one_model(uri, Path(local))
    if found is None:
        raise ArtifactError(f"{uri} is not an MLflow model (it has no MLmodel file)")
    return found


@contextmanager
def resolve(path: str, flavor: str | None) -> Iterator[Source]:
    """The :class:`Source` of *path*, valid inside the ``with`` block."""
    if MLFLOW_URI.match(path):
        if flavor not in (None, "mlflow"):
            raise UsageError(f"{path} is an MLflow URI; it cannot be registered as {flavor}")
        with tempfile.TemporaryDirectory(prefix="prodgate-mlflow-") as tmp:
            yield Source(str(_download(path, Path(tmp))), path, name="model")
        return
    local = Path(path)
    if local.is_dir() and flavor in (None, "mlflow") and not (local / "MLmodel").exists():
        found = _one_model(path, local)
        if found is not None:
            yield Source(str(found), str(found.resolve()))
            return
    yield Source(path, str(local.resolve()) if local.exists() else path)
