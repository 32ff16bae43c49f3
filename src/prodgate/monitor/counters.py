"""The counters of a production window's columns, and what a window counts.

A column's counter buffers values as they come (its ``add`` is a list's append, the
cheapest thing Python does per value) and counts them a few thousand at a time when
folded: numbers with NumPy on the reference profile's edges, categories with
:class:`collections.Counter`. :class:`Layout` says which columns a version's windows
count and how: from its reference profile's JSON, or from its contract when it has
none. Used by :mod:`prodgate.monitor.tally`; no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: A window keeps at most this many distinct categories per column, then "other".
MAX_CATEGORIES = 200
#: The confidence histogram's fixed edges: 0, 0.05, ..., 1.0 (20 bins).
CONFIDENCE_BINS = 20
CONFIDENCE_EDGES = [i / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS + 1)]
#: The numeric outputs of an LLM service's records.
LLM_OUTPUTS = ("prompt_chars", "answer_chars", "prompt_tokens", "completion_tokens")
NUMERIC, CATEGORICAL = "numeric", "categorical"
_NUMBER_TYPES = (int, float, bool)
_NUMERIC_OR_NONE = frozenset((int, float, bool, type(None)))
_NUMERIC_OR_STR = frozenset((int, float, bool, str))


def _float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf


class Numeric:
    """One numeric column's counts, binned on the reference's edges when there are any.

    :attr:`add` only appends the value to a buffer (a list's own ``append``); the buffer
    is folded into the counts with NumPy, a few thousand values at a time, when the
    window is flushed or read, or when it grows long (:data:`FOLD_AT` records)."""

    __slots__ = (
        "add",
        "buffer",
        "counts",
        "edges",
        "hi",
        "invalid",
        "keys",
        "last",
        "lo",
        "max",
        "min",
        "name",
        "nulls",
        "over",
        "rows",
        "sum",
        "sumsq",
        "under",
        "values",
        "values_other",
    )

    def __init__(self, name: str, edges: Sequence[float] | None, values: Iterable[str] | None):
        self.name = name
        self.edges = np.asarray(edges, dtype=np.float64) if edges and len(edges) >= 2 else None
        self.lo = float(self.edges[0]) if self.edges is not None else 0.0
        self.hi = float(self.edges[-1]) if self.edges is not None else 0.0
        self.last = len(self.edges) - 2 if self.edges is not None else 0  # the closed last bin
        #: The reference's exact values by number, as the reference spells them.
        self.keys = {float(k): k for k in values} if values is not None else None
        self.rows = self.nulls = self.invalid = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum = self.sumsq = 0.0
        self.counts = np.zeros(self.last + 1, dtype=np.int64) if self.edges is not None else None
        self.under = self.over = 0
        self.values: dict[str, int] | None = {} if self.keys is not None else None
        self.values_other = 0
        self.buffer: list[Any] = []
        self.add: Callable[[Any], None] = self.buffer.append

    def fold(self) -> None:
        """Count the buffered values."""
        buffer = self.buffer
        if not buffer:
            return
        values = buffer.copy()
        buffer.clear()  # in place: ``add`` is this list's append
        self.rows += len(values)
        if not set(map(type, values)) <= _NUMERIC_OR_NONE:
            numbers = [v for v in values if v is None or type(v) in _NUMBER_TYPES]
            self.invalid += len(values) - len(numbers)
            values = numbers
        try:
            x = np.array(values, dtype=np.float64)  # None (and NaN) -> NaN: missing
        except OverflowError:  # an integer beyond a float's range: not a usable number
            x = np.array([_float(v) for v in values], dtype=np.float64)
            huge = np.isinf(x)
            self.invalid += int(huge.sum())
            x = x[~huge]
        missing = np.isnan(x)
        absent = int(missing.sum())
        if absent:
            self.nulls += absent
            x = x[~missing]
        if not x.size:
            return
        self.sum += float(x.sum())
        self.sumsq += float(np.dot(x, x))
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))
        edges = self.edges
        if edges is not None and self.counts is not None:
            below = x < self.lo
            above = x > self.hi
            self.under += int(below.sum())
            self.over += int(above.sum())
            inside = x[~(below | above)]
            bins = np.searchsorted(edges, inside, side="right") - 1
            np.minimum(bins, self.last, out=bins)
            self.counts += np.bincount(bins, minlength=self.last + 1)
        keys = self.keys
        if keys is not None and self.values is not None:
            found, times = np.unique(x, return_counts=True)
            counted = self.values
            for value, n in zip(found.tolist(), times.tolist(), strict=True):
                key = keys.get(value)
                if key is None:
                    self.values_other += n
                else:
                    counted[key] = counted.get(key, 0) + n

    def as_json(self) -> dict[str, Any]:
        self.fold()
        seen = self.rows - self.nulls - self.invalid
        return {
            "name": self.name,
            "kind": NUMERIC,
            "rows": self.rows,
            "nulls": self.nulls,
            "invalid": self.invalid,
            "min": self.min if seen else None,
            "max": self.max if seen else None,
            "sum": self.sum,
            "sumsq": self.sumsq,
            "counts": self.counts.tolist() if self.counts is not None else None,
            "under": self.under,
            "over": self.over,
            "values": dict(self.values) if self.values is not None else None,
            "values_other": self.values_other,
        }


class Categorical:
    """One categorical column's counts: at most :data:`MAX_CATEGORIES`, then "other".
    Values are buffered as they come (:attr:`add` is a list's append) and counted with
    :class:`collections.Counter` when folded."""

    __slots__ = ("add", "buffer", "counts", "invalid", "name", "nulls", "other", "rows")

    def __init__(self, name: str):
        self.name = name
        self.rows = self.nulls = self.invalid = self.other = 0
        self.counts: dict[str, int] = {}
        self.buffer: list[Any] = []
        self.add: Callable[[Any], None] = self.buffer.append

    def fold(self) -> None:
        """Count the buffered values (in the order they came, as one by one would)."""
        buffer = self.buffer
        if not buffer:
            return
        values = buffer.copy()
        buffer.clear()
        self.rows += len(values)
        try:
            tallied = Counter(values)
        except TypeError:  # an unhashable value (a list, an object) is no category
            plain = [v for v in values if v is None or type(v) in _NUMERIC_OR_STR]
            self.invalid += len(values) - len(plain)
            tallied = Counter(plain)
        counts = self.counts
        for v, n in tallied.items():
            if v is None:
                self.nulls += n
            elif type(v) is not str:
                self.invalid += n
            elif v in counts:
                counts[v] += n
            elif len(counts) < MAX_CATEGORIES:
                counts[v] = n
            else:
                self.other += n

    def as_json(self) -> dict[str, Any]:
        self.fold()
        return {
            "name": self.name,
            "kind": CATEGORICAL,
            "rows": self.rows,
            "nulls": self.nulls,
            "invalid": self.invalid,
            "counts": dict(self.counts),
            "other": self.other,
        }


Column = Numeric | Categorical


@dataclass(frozen=True)
class ColumnShape:
    """How one column is counted: its kind, and the reference's edges and values."""

    name: str
    kind: str
    edges: tuple[float, ...] | None = None
    values: tuple[str, ...] | None = None

    def start(self) -> Column:
        if self.kind == NUMERIC:
            return Numeric(self.name, self.edges, self.values)
        return Categorical(self.name)


@dataclass(frozen=True)
class Layout:
    """What a version's windows count: its input columns and outputs, and whether they
    are binned on a reference profile (its ``created_us``) or not (None)."""

    service_kind: str
    columns: tuple[ColumnShape, ...]
    outputs: tuple[ColumnShape, ...]
    reference: int | None = None

    @classmethod
    def from_profile(cls, service_kind: str, profile: Mapping[str, Any]) -> Layout:
        """The layout of a reference profile's JSON (``monitor.profile.Profile``)."""

        def shape(column: Mapping[str, Any]) -> ColumnShape:
            if column.get("kind") == NUMERIC:
                values = column.get("values")
                return ColumnShape(
                    str(column["name"]),
                    NUMERIC,
                    tuple(float(e) for e in column.get("edges") or ()) or None,
                    tuple(values) if values else None,
                )
            return ColumnShape(str(column["name"]), CATEGORICAL)

        outputs = [shape(c) for c in profile.get("outputs") or ()]
        named = {s.name for s in outputs}
        outputs += [s for s in _default_outputs(service_kind) if s.name not in named]
        return cls(
            service_kind,
            tuple(shape(c) for c in profile.get("columns") or ()),
            tuple(outputs),
            int(profile.get("created_us") or 0) or None,
        )

    @classmethod
    def from_contract(cls, service_kind: str, contract: Mapping[str, Any]) -> Layout:
        """Without a profile: the contract's scalar fields, unbinned (quality still counts)."""
        shapes = []
        for name, schema in (contract.get("properties") or {}).items():
            kind = contract_kind(schema)
            if kind is not None:
                shapes.append(ColumnShape(str(name), kind))
        return cls(service_kind, tuple(shapes), _default_outputs(service_kind))


def contract_kind(schema: Any) -> str | None:
    """How a contract field's values are counted: numeric, categorical, or None (not)."""
    if not isinstance(schema, Mapping):
        return None
    types = schema.get("type")
    types = [types] if isinstance(types, str) else list(types or ())
    types = [t for t in types if t != "null"]
    if types and all(t in ("number", "integer", "boolean") for t in types):
        return NUMERIC
    if types == ["string"] or (not types and "enum" in schema):
        return CATEGORICAL
    return None


def _default_outputs(service_kind: str) -> tuple[ColumnShape, ...]:
    if service_kind == "llm":
        return tuple(ColumnShape(n, NUMERIC) for n in LLM_OUTPUTS)
    prediction = ColumnShape("prediction", NUMERIC if service_kind == "regressor" else CATEGORICAL)
    confidence = ColumnShape("confidence", NUMERIC, tuple(CONFIDENCE_EDGES))
    return (prediction, confidence)
