"""Adapter for a plain Python function, named ``package.module:function``.

The function takes the batch (``list[dict]``) and returns one item per row: for
classifiers a label or a ``{label: probability}`` dict, for regressors a number.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import ModelInfo, Prediction


def _split(ref: str) -> tuple[str, str]:
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ArtifactError(
            f"{ref!r} is not a callable reference of the form package.module:function"
        )
    return module, attr


def _import_module(ref: str) -> Any:
    module, _ = _split(ref)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ArtifactError(
            f"cannot import module {module!r} for the callable {ref!r} ({exc})"
        ) from exc


def resolve_callable(ref: str) -> Callable[[list[dict[str, Any]]], Any]:
    """The function a ``module:function`` reference names (attributes may be dotted)."""
    target = _import_module(ref)
    for part in _split(ref)[1].split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ArtifactError(
                f"the callable {ref!r} does not exist: no attribute {part!r}"
            ) from None
    if not callable(target):
        raise ArtifactError(f"{ref!r} names a {type(target).__name__}, which is not callable")
    fn: Callable[[list[dict[str, Any]]], Any] = target
    return fn


def callable_fingerprint(ref: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes) of the source file of the callable's module."""
    module = _import_module(ref)
    try:
        source = inspect.getsourcefile(module)
    except TypeError:
        source = None  # a builtin module
    if source is None:
        raise ArtifactError(f"the module of {ref!r} has no source file to fingerprint")
    data = Path(source).read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def load_callable(ref: str, info: ModelInfo) -> CallableModel:
    """Import the function and wrap it as a model."""
    if info.kind not in ("classifier", "regressor"):
        raise ArtifactError(f"unknown model kind {info.kind!r}; use classifier or regressor")
    return CallableModel(ref, resolve_callable(ref), info)


class CallableModel:
    """A Python function behind the :class:`Model` protocol."""

    flavor = "callable"

    def __init__(self, ref: str, fn: Callable[[list[dict[str, Any]]], Any], info: ModelInfo):
        self.ref = ref
        self.fn = fn
        self.kind = info.kind
        self.labels: Sequence[str] | None = list(info.labels) if info.labels is not None else None

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """Call the function on the batch and check each answer's shape."""
        if not rows:
            return []
        out = self.fn([dict(r) for r in rows])  # copies: the function may mutate its input
        if isinstance(out, str | bytes | Mapping) or not hasattr(out, "__len__"):
            raise ArtifactError(
                f"the callable {self.ref!r} returned a {type(out).__name__}; "
                "it must return a list with one item per row"
            )
        if len(out) != len(rows):
            raise ArtifactError(
                f"the callable {self.ref!r} returned {len(out)} items for {len(rows)} rows"
            )
        each = self._label if self.kind == "classifier" else self._value
        return [each(item) for item in out]

    def _value(self, item: Any) -> Prediction:
        if isinstance(item, bool) or not isinstance(item, numbers.Real):
            raise ArtifactError(
                f"the regressor callable {self.ref!r} returned {item!r}; expected a number"
            )
        return Prediction(float(item))

    def _check(self, label: str) -> str:
        if self.labels is not None and label not in self.labels:
            raise ArtifactError(
                f"the callable {self.ref!r} returned the label {label!r}, not one of {self.labels}"
            )
        return label

    def _label(self, item: Any) -> Prediction:
        if isinstance(item, Mapping):
            if not item:
                raise ArtifactError(f"the callable {self.ref!r} returned an empty probability dict")
            probs: dict[str, float] = {}
            for k, v in item.items():
                if isinstance(v, bool) or not isinstance(v, numbers.Real) or math.isnan(v):
                    raise ArtifactError(
                        f"the callable {self.ref!r} returned probability {v!r} for {k!r}; "
                        "expected a number"
                    )
                probs[self._check(str(k))] = float(v)
            return Prediction(max(probs, key=probs.__getitem__), probs)
        if isinstance(item, str) or (
            not isinstance(item, bool) and isinstance(item, numbers.Integral)
        ):
            return Prediction(self._check(str(item)))
        raise ArtifactError(
            f"the classifier callable {self.ref!r} returned {item!r}; "
            "expected a label or a {label: probability} dict"
        )
