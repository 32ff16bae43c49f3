"""Adapter for scikit-learn estimators and pipelines saved with skops or pickle/joblib.

skops files load without running code from the file, as long as every type they
name is trusted: prodgate trusts the types of a short allow-list of libraries, and a
version may trust more by name (its :class:`~prodgate.runtime.base.Trust`, recorded
at registration with ``--trust-types``); the rest are refused. Pickle files run code
when they load, so they need the version's trust in its code (``--trust-pickle``).
"""

from __future__ import annotations

import builtins
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import is_classifier, is_regressor

from prodgate.exceptions import ArtifactError
from prodgate.runtime._treecheck import check_trees
from prodgate.runtime.base import ModelInfo, Prediction, map_labels

#: Libraries whose types a skops file may name and still load without trust.
SKOPS_TRUSTED_ROOTS = ("sklearn", "numpy", "scipy", "collections", "builtins")

# A module root is not enough: these parts of trusted libraries read or write files
# or fetch data, and a FunctionTransformer could call them on request input.
_DENIED_MODULE_PARTS = frozenset(
    {"io", "npyio", "f2py", "ctypeslib", "testing", "_testing", "datasets"}
)
_DENIED_NAMES = frozenset(
    {"load", "loads", "save", "savez", "savez_compressed", "savetxt", "loadtxt", "genfromtxt"}
    | {"fromfile", "tofile", "memmap", "fromregex", "open", "dump", "dumps"}
)
# functools.partial only wraps callables that skops checks on their own; HistGradient-
# Boosting models with categorical features hold one.
_TRUSTED_NAMES = frozenset({"functools.partial"})
_NoneType = type(None)


def pickle_refusal(path: str | Path) -> ArtifactError:
    """The error for a pickle-based file of a version that was not registered as trusted."""
    return ArtifactError(
        f"{path} is a pickle file and unpickling runs code; register it with --trust-pickle "
        "if you trust its source, or save it with skops"
    )


def _is_safe_type(name: str) -> bool:
    if name in _TRUSTED_NAMES:
        return True
    parts = name.split(".")
    if len(parts) < 2 or parts[0] not in SKOPS_TRUSTED_ROOTS:
        return False
    if _DENIED_MODULE_PARTS.intersection(parts[:-1]) or parts[-1] in _DENIED_NAMES:
        return False
    if parts[0] == "builtins":
        # Builtin classes (slice, frozenset...) are data; builtin functions include
        # eval, exec, getattr and __import__.
        return len(parts) == 2 and isinstance(getattr(builtins, parts[1], None), type)
    return True


def untrusted_skops_types(data: bytes) -> tuple[list[str], list[str]]:
    """Split the types skops does not trust by default into (allowed, refused)."""
    import skops.io as sio

    names = [str(n) for n in sio.get_untrusted_types(data=data)]
    return [n for n in names if _is_safe_type(n)], [n for n in names if not _is_safe_type(n)]


def skops_types(path: str | Path, data: bytes) -> tuple[list[str], list[str]]:
    """:func:`untrusted_skops_types` of a file's bytes; ArtifactError if it is not skops."""
    try:
        return untrusted_skops_types(data)
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable skops file ({exc})") from exc


def types_refusal(path: str | Path, types: Sequence[str]) -> ArtifactError:
    """The error for a skops file naming *types* outside the allow-list that are not trusted."""
    return ArtifactError(
        f"{path} names types outside the skops allow-list ({', '.join(types)}); if you "
        f"trust its source, register it with --trust-types {','.join(types)}"
    )


def load_skops(path: str | Path, info: ModelInfo, flavor: str = "skops") -> SklearnModel:
    """Load a skops file, trusting the allow-list's types and those the version trusts.

    A version whose code is trusted (``Trust.pickle``, as older versions of MLflow
    models registered with --trust-pickle are) may name any type.
    """
    import skops.io as sio

    data = _read(path)
    # One read for both the check and the load, so the file cannot change in between.
    allowed, refused = skops_types(path, data)
    trust = info.trust
    untrusted = [] if trust.pickle else [t for t in refused if t not in trust.types]
    if untrusted:
        raise types_refusal(path, untrusted)
    try:
        estimator = sio.loads(data, trusted=allowed + refused)
    except Exception as exc:
        raise ArtifactError(f"{path} could not be loaded with skops ({exc})") from exc
    if not trust.pickle:
        # The allow-list trusts sklearn's tree types, which skops leaves untrusted
        # because of their raw node indices; check those indices instead. Types a
        # person trusted by name do not vouch for the trees prodgate trusts itself.
        check_trees(estimator)
    return SklearnModel(estimator, info, flavor)


def load_pickle(
    path: str | Path, info: ModelInfo, flavor: str = "pickle", serializer: str = "joblib"
) -> SklearnModel:
    """Load a joblib/pickle file (``serializer``: joblib, pickle or cloudpickle); needs trust."""
    if not info.trusted:
        raise pickle_refusal(path)
    _read(path, check_only=True)
    try:
        if serializer == "joblib":
            import joblib

            estimator = joblib.load(path)
        else:
            module: Any = pickle
            if serializer == "cloudpickle":
                try:
                    module = __import__("cloudpickle")
                except ImportError:
                    module = pickle  # plain pickle reads cloudpickle files when code is importable
            with open(path, "rb") as fh:
                estimator = module.load(fh)
    except Exception as exc:
        raise ArtifactError(f"{path} could not be unpickled ({exc})") from exc
    return SklearnModel(estimator, info, flavor)


def _read(path: str | Path, check_only: bool = False) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"there is no model file at {p}")
    return b"" if check_only else p.read_bytes()


def _column(values: list[Any]) -> Any:
    """One input column; plain numbers become a numpy array at once (pandas infers the rest).

    Letting pandas infer every column costs ~35 us each; numbers are most columns.
    """
    kinds = set(map(type, values))
    if float in kinds and kinds <= {float, int, _NoneType}:
        return np.array(values, dtype=np.float64)  # None -> NaN, as pandas would
    if kinds == {int}:
        try:
            return np.array(values, dtype=np.int64)
        except OverflowError:
            return values
    return values


class SklearnModel:
    """A fitted scikit-learn estimator or pipeline behind the :class:`Model` protocol."""

    def __init__(self, estimator: Any, info: ModelInfo, flavor: str) -> None:
        self.flavor = flavor
        self.estimator = estimator
        self.kind = info.kind
        if not callable(getattr(estimator, "predict", None)):
            raise ArtifactError(
                f"the {flavor} artifact holds a {type(estimator).__name__}, "
                "not a fitted scikit-learn estimator"
            )
        names = getattr(estimator, "feature_names_in_", None)
        self.columns: list[str] | None = None if names is None else [str(n) for n in names]
        self.features = list(info.features)
        self._check_features()
        self.labels: Sequence[str] | None = None
        self._proba = False
        if info.kind == "classifier":
            if is_regressor(estimator) or not hasattr(estimator, "classes_"):
                raise ArtifactError(
                    f"the service is a classifier but the model is a regressor "
                    f"({type(estimator).__name__})"
                )
            self.labels = map_labels(list(estimator.classes_), info.labels)
            self._label_of = {
                str(c): lab for c, lab in zip(estimator.classes_, self.labels, strict=True)
            }
            self._proba = callable(getattr(estimator, "predict_proba", None))
        elif info.kind == "regressor":
            if is_classifier(estimator):
                raise ArtifactError(
                    f"the service is a regressor but the model is a classifier "
                    f"({type(estimator).__name__})"
                )
        else:
            raise ArtifactError(f"unknown model kind {info.kind!r}; use classifier or regressor")

    def _check_features(self) -> None:
        if not self.features:
            return  # nothing declared to check against (e.g. inspecting an artifact)
        if self.columns is not None:
            unknown = [c for c in self.columns if c not in self.features]
            if unknown:
                raise ArtifactError(
                    f"the model reads columns {unknown} that the service's inputs do not declare"
                )
            return
        n = getattr(self.estimator, "n_features_in_", None)
        if n is not None and int(n) != len(self.features):
            raise ArtifactError(
                f"the model takes {int(n)} features but the service declares "
                f"{len(self.features)} ({', '.join(self.features)})"
            )

    def frame(self, rows: Sequence[Mapping[str, Any]]) -> Any:
        """The batch as the model's input: a DataFrame by column name, or a 2-D array."""
        if self.columns is not None:
            data = {c: _column([r.get(c) for r in rows]) for c in self.columns}
            return pd.DataFrame(data, index=pd.RangeIndex(len(rows)), copy=False)
        matrix = [[r.get(f) for f in self.features] for r in rows]
        try:
            return np.array(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            return np.array(matrix, dtype=object)  # e.g. a model that encodes strings itself

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """One prediction per row, in order."""
        if not rows:
            return []
        x = self.frame(rows)
        if self.labels is None:
            values = np.asarray(self.estimator.predict(x), dtype=np.float64)
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            if values.shape != (len(rows),):
                raise ArtifactError(
                    f"the regressor returned shape {values.shape}; expected one value per row"
                )
            return [Prediction(v) for v in values.tolist()]
        if self._proba:
            return self._from_proba(self.estimator.predict_proba(x), len(rows))
        return [Prediction(self._label_of[str(c)]) for c in self.estimator.predict(x)]

    def _from_proba(self, proba: Any, n: int) -> list[Prediction]:
        labels = self.labels or []
        p = np.asarray(proba, dtype=np.float64)
        if p.shape != (n, len(labels)):
            raise ArtifactError(
                f"predict_proba returned shape {p.shape}; expected ({n}, {len(labels)})"
            )
        best = p.argmax(axis=1).tolist()
        return [
            Prediction(labels[i], dict(zip(labels, row, strict=True)))
            for i, row in zip(best, p.tolist(), strict=True)
        ]
