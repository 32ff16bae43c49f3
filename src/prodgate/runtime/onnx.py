"""Adapter for ONNX models run with onnxruntime on the CPU.

Two input layouts are fed: one ``[N, k]`` tensor of the service's fields in contract
order, or one ``[N, 1]`` tensor per field named like the field (skl2onnx converting a
DataFrame pipeline). Classifier outputs are skl2onnx's ``label`` plus probabilities as
an ``[N, C]`` tensor or a sequence of maps (ZipMap).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from prodgate.exceptions import ArtifactError
from prodgate.runtime._onnxmeta import class_labels
from prodgate.runtime.base import ModelInfo, Prediction, map_labels

_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(string)": object,
}
_FLOATS = ("tensor(float)", "tensor(double)", "tensor(float16)")
_LABELS = ("tensor(string)", "tensor(int64)", "tensor(int32)")


def load_onnx(path: str | Path, info: ModelInfo, flavor: str = "onnx") -> OnnxModel:
    """Open an ONNX file in an onnxruntime session and check it fits the service."""
    if not Path(path).is_file():
        raise ArtifactError(f"there is no model file at {path}")
    return OnnxModel(path, info, flavor)


def _width(node: Any) -> int | None:
    """The second dimension of a [N, k] tensor; None when dynamic or not of rank 2."""
    shape = node.shape
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None


def _array(values: list[Any], dtype: Any, what: str) -> Any:
    if dtype is object:
        # ONNX string tensors have no missing value; "" is an unknown category.
        return np.array(["" if v is None else str(v) for v in values], dtype=object)
    try:
        return np.array(values, dtype=dtype)  # None -> NaN for floats, an error for ints
    except (TypeError, ValueError) as exc:
        raise ArtifactError(
            f"{what} cannot be fed to the model as {np.dtype(dtype).name} ({exc})"
        ) from exc


def cpu_session(path: str | Path) -> ort.InferenceSession:
    """An onnxruntime session on the CPU, one thread per run: the gateway batches
    requests and runs several workers, and more threads each would oversubscribe the
    cores."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


class OnnxModel:
    """An onnxruntime session behind the :class:`Model` protocol."""

    def __init__(self, path: str | Path, info: ModelInfo, flavor: str) -> None:
        self.flavor = flavor
        try:
            self.session = cpu_session(path)
        except Exception as exc:
            raise ArtifactError(f"{path} is not a loadable ONNX model ({exc})") from exc
        self.features = list(info.features)
        self._inputs = self._plan_inputs()
        self.labels: Sequence[str] | None = None
        self._info = info
        outputs = self.session.get_outputs()
        if info.kind == "classifier":
            self._plan_classifier(outputs, Path(path).read_bytes())
        elif info.kind == "regressor":
            if any(o.type.startswith("seq(") or o.type in _LABELS for o in outputs):
                raise ArtifactError(
                    "the service is a regressor but the ONNX model outputs class labels"
                )
            floats = [
                o for o in outputs if o.type in _FLOATS and (len(o.shape) == 1 or _width(o) == 1)
            ]
            if not floats:
                raise ArtifactError("the ONNX model has no numeric output to use as a value")
            self._value = floats[0].name
        else:
            raise ArtifactError(f"unknown model kind {info.kind!r}; use classifier or regressor")

    def _plan_inputs(self) -> list[tuple[str, list[str], Any, bool]]:
        """(input name, fields, dtype, as column) for each model input."""
        inputs = self.session.get_inputs()
        for node in inputs:
            if node.type not in _DTYPES:
                raise ArtifactError(
                    f"the ONNX input {node.name!r} has unsupported type {node.type}"
                )
        names = [n.name for n in inputs]
        # skl2onnx gives each DataFrame column its own [N, 1] input named like the column.
        per_field = all(n in self.features for n in names) and all(
            len(n.shape) == 1 or _width(n) == 1 for n in inputs
        )
        if per_field and (len(inputs) > 1 or names == self.features):
            return [(n.name, [n.name], _DTYPES[n.type], len(n.shape) == 2) for n in inputs]
        if len(inputs) == 1 and len(inputs[0].shape) == 2:
            width = _width(inputs[0])
            if width is not None and width != len(self.features):
                raise ArtifactError(
                    f"the ONNX model takes {width} features per row but the service declares "
                    f"{len(self.features)} ({', '.join(self.features)})"
                )
            return [(names[0], self.features, _DTYPES[inputs[0].type], False)]
        raise ArtifactError(
            f"the ONNX model's inputs {names} are neither one [N, k] tensor nor one "
            f"[N, 1] tensor per input field of the service ({', '.join(self.features)})"
        )

    def _plan_classifier(self, outputs: Sequence[Any], data: bytes) -> None:
        maps = [o for o in outputs if o.type.startswith("seq(map(")]
        tables = [o for o in outputs if o.type in _FLOATS and len(o.shape) == 2 and _width(o) != 1]
        tables.sort(key=lambda o: "prob" not in o.name)  # prefer skl2onnx's name
        label_outs = [o for o in outputs if o.type in _LABELS]
        self._zipmap = bool(maps)
        self._proba = maps[0].name if maps else tables[0].name if tables else None
        self._label = label_outs[0].name if label_outs else None
        if self._proba is None and self._label is None:
            raise ArtifactError(
                "the service is a classifier but the ONNX model has neither a label nor a "
                "probability output (is it a regressor?)"
            )
        classes = class_labels(data)
        self._check_order = False
        if classes is None and not self._zipmap:
            width = _width(tables[0]) if tables else None
            if self._label and label_outs[0].type == "tensor(string)":
                raise ArtifactError(
                    "cannot tell the order of the ONNX model's classes: its labels are text "
                    "but it records no classlabels; export it with zipmap enabled"
                )
            if width is not None:
                # Assume classes 0..C-1 and check each batch's labels against that order.
                classes, self._check_order = list(range(width)), self._label is not None
        if classes is not None:
            self._set_classes(classes)

    def _set_classes(self, classes: Sequence[Any]) -> None:
        self.labels = map_labels(classes, self._info.labels)
        self._label_of = {str(c): lab for c, lab in zip(classes, self.labels, strict=True)}

    def feeds(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The batch as the session's input tensors."""
        feeds = {}
        for name, fields, dtype, column in self._inputs:
            if len(fields) == 1 and fields[0] == name:
                values = _array([r.get(name) for r in rows], dtype, f"field {name!r}")
                feeds[name] = values.reshape(-1, 1) if column else values
            else:
                matrix = [[r.get(f) for f in fields] for r in rows]
                feeds[name] = _array(matrix, dtype, "the input fields")
        return feeds

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]:
        """One prediction per row, in order."""
        if not rows:
            return []
        n = len(rows)
        if self._info.kind == "regressor":
            (out,) = self.session.run([self._value], self.feeds(rows))
            values = np.asarray(out, dtype=np.float64).reshape(-1)
            if values.shape != (n,):
                raise ArtifactError(f"the ONNX model returned {values.size} values for {n} rows")
            return [Prediction(v) for v in values.tolist()]
        names = [x for x in (self._proba, self._label) if x]
        results = dict(zip(names, self.session.run(names, self.feeds(rows)), strict=True))
        if self._proba is None:
            return [Prediction(self._lookup(v)) for v in results[self._label or ""].tolist()]
        if self._zipmap:
            return self._from_maps(results[self._proba], n)
        p = np.asarray(results[self._proba], dtype=np.float64)
        if self.labels is None:
            self._set_classes(list(range(p.shape[1])))
            self._check_order = self._label is not None
        labels = self.labels or []
        if p.shape != (n, len(labels)):
            raise ArtifactError(f"the ONNX model returned probabilities of shape {p.shape}")
        if self._check_order:
            self._verify_order(p, np.asarray(results[self._label or ""]))
        best = p.argmax(axis=1).tolist()
        return [
            Prediction(labels[i], dict(zip(labels, row, strict=True)))
            for i, row in zip(best, p.tolist(), strict=True)
        ]

    @staticmethod
    def _verify_order(p: Any, label: Any) -> None:
        """Fail unless each row's label output is a most probable column (ties allowed)."""
        ok = label.shape == (len(p),) and ((label >= 0) & (label < p.shape[1])).all()
        if ok:
            chosen = np.take_along_axis(p, label.astype(np.int64)[:, None], axis=1)[:, 0]
            ok = bool((chosen >= p.max(axis=1)).all())
        if not ok:
            raise ArtifactError("the ONNX model's classes are not in the order 0..C-1")

    def _lookup(self, raw: Any) -> str:
        if self.labels is not None:
            return self._label_of[str(raw)]
        allowed = self._info.labels
        if allowed is not None and str(raw) not in allowed:
            raise ArtifactError(f"the ONNX model returned {raw!r}, not one of {list(allowed)}")
        return str(raw)

    def _from_maps(self, maps: Sequence[Mapping[Any, float]], n: int) -> list[Prediction]:
        if len(maps) != n:
            raise ArtifactError(
                f"the ONNX model returned {len(maps)} probability maps for {n} rows"
            )
        if self.labels is None and maps:
            # No classlabels recorded: the map keys are the classes themselves.
            self._set_classes(list(maps[0].keys()))
        labels, label_of = self.labels or [], self._label_of
        out = []
        for m in maps:
            probs = {label_of[str(k)]: float(v) for k, v in m.items()}
            out.append(Prediction(max(labels, key=probs.__getitem__), probs))
        return out
