"""The statistics of one column: of the reference (a profile's column) and of current
data counted on the reference's bins (a window's or a batch file's column).

Their JSON shapes are a contract between the gateway's windows, the store and the drift
and quality tests (``format`` 1):

reference, numeric::

    {"name", "kind": "numeric", "dtype": "float"|"integer"|"boolean", "rows", "nulls",
     "min", "max", "mean", "std", "quantiles": {"0.01": x, ...},
     "edges": [e0 = min, ..., ek = max], "counts": [k counts],   # [e_i, e_i+1), last closed
     "values": {"1": n, ...} | null}

``std`` is the population standard deviation (``ddof=0``, as the normed Wasserstein
distance divides by). ``values`` holds exact value counts when the column has at most
:data:`FEW_VALUES` distinct values, or at most :data:`SMALL_REFERENCE` values in all
(then the KS and chi-squared tests are exact). Null counts NaN and infinities too.

reference, categorical::

    {"name", "kind": "categorical", "dtype": "string", "rows", "nulls",
     "counts": {category: n}, "other": n}      # the top categories, then the rest

current, numeric::

    {"name", "kind": "numeric", "rows", "nulls", "invalid", "min", "max", "sum", "sumsq",
     "counts": [...] | null, "under": n, "over": n, "values": {...} | null, "values_other": n}

current, categorical::

    {"name", "kind": "categorical", "rows", "nulls", "invalid", "counts": {cat: n}, "other": n}

Current statistics merge by summing (min and max by min and max).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodgate.exceptions import UsageError

#: Exact value counts are kept for columns with at most this many distinct values.
FEW_VALUES = 20
#: References with at most this many values keep every value (exact KS and chi-squared).
SMALL_REFERENCE = 1000
#: Categories a current column names one by one; the rest are counted in ``other``.
MAX_CURRENT_CATEGORIES = 200
#: The version of the profile and current JSON shapes.
FORMAT = 1
#: Quantiles every numeric reference column reports.
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def value_key(value: float) -> str:
    """The JSON key of a numeric value: ``"3"`` for integral values, else ``repr``."""
    if value.is_integer() and abs(value) < 2**63:
        return str(int(value))
    return repr(value)


def _num(value: Any) -> float | None:
    """A finite float for JSON, or None."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass
class NumericReference:
    name: str
    dtype: str
    rows: int
    nulls: int
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    quantiles: dict[str, float]
    edges: np.ndarray  # float64, sorted, distinct
    counts: np.ndarray  # int64, len(edges) - 1 (or 0 with one edge)
    values: dict[str, int] | None
    kind: str = "numeric"

    @property
    def n(self) -> int:
        """Values (rows that are not null)."""
        return self.rows - self.nulls

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "numeric",
            "dtype": self.dtype,
            "rows": self.rows,
            "nulls": self.nulls,
            "min": _num(self.min),
            "max": _num(self.max),
            "mean": _num(self.mean),
            "std": _num(self.std),
            "quantiles": dict(self.quantiles),
            "edges": [float(e) for e in self.edges],
            "counts": [int(c) for c in self.counts],
            "values": dict(self.values) if self.values is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NumericReference:
        values = d.get("values")
        return cls(
            name=d["name"],
            dtype=d.get("dtype", "float"),
            rows=int(d["rows"]),
            nulls=int(d.get("nulls", 0)),
            min=d.get("min"),
            max=d.get("max"),
            mean=d.get("mean"),
            std=d.get("std"),
            quantiles=dict(d.get("quantiles") or {}),
            edges=np.asarray(d.get("edges") or [], dtype=np.float64),
            counts=np.asarray(d.get("counts") or [], dtype=np.int64),
            values={str(k): int(v) for k, v in values.items()} if values is not None else None,
        )


@dataclass
class CategoricalReference:
    name: str
    rows: int
    nulls: int
    counts: dict[str, int]
    other: int
    dtype: str = "string"
    kind: str = "categorical"

    @property
    def n(self) -> int:
        return self.rows - self.nulls

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "categorical",
            "dtype": self.dtype,
            "rows": self.rows,
            "nulls": self.nulls,
            "counts": dict(self.counts),
            "other": self.other,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CategoricalReference:
        return cls(
            name=d["name"],
            rows=int(d["rows"]),
            nulls=int(d.get("nulls", 0)),
            counts={str(k): int(v) for k, v in (d.get("counts") or {}).items()},
            other=int(d.get("other", 0)),
            dtype=d.get("dtype", "string"),
        )


@dataclass
class NumericCurrent:
    name: str
    rows: int = 0
    nulls: int = 0
    invalid: int = 0
    min: float | None = None
    max: float | None = None
    sum: float = 0.0
    sumsq: float = 0.0
    counts: np.ndarray | None = None  # on the reference's bins, or None without one
    under: int = 0
    over: int = 0
    values: dict[str, int] | None = None
    values_other: int = 0
    kind: str = "numeric"

    @property
    def n(self) -> int:
        """Values counted (not null, not invalid)."""
        return self.rows - self.nulls - self.invalid

    @property
    def mean(self) -> float | None:
        return self.sum / self.n if self.n else None

    @property
    def std(self) -> float | None:
        if not self.n:
            return None
        mean = self.sum / self.n
        return math.sqrt(max(self.sumsq / self.n - mean * mean, 0.0))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "numeric",
            "rows": self.rows,
            "nulls": self.nulls,
            "invalid": self.invalid,
            "min": _num(self.min),
            "max": _num(self.max),
            "sum": float(self.sum),
            "sumsq": float(self.sumsq),
            "counts": [int(c) for c in self.counts] if self.counts is not None else None,
            "under": self.under,
            "over": self.over,
            "values": dict(self.values) if self.values is not None else None,
            "values_other": self.values_other,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> NumericCurrent:
        counts = d.get("counts")
        values = d.get("values")
        return cls(
            name=d["name"],
            rows=int(d.get("rows", 0)),
            nulls=int(d.get("nulls", 0)),
            invalid=int(d.get("invalid", 0)),
            min=d.get("min"),
            max=d.get("max"),
            sum=float(d.get("sum", 0.0)),
            sumsq=float(d.get("sumsq", 0.0)),
            counts=np.asarray(counts, dtype=np.int64) if counts is not None else None,
            under=int(d.get("under", 0)),
            over=int(d.get("over", 0)),
            values={str(k): int(v) for k, v in values.items()} if values is not None else None,
            values_other=int(d.get("values_other", 0)),
        )


@dataclass
class CategoricalCurrent:
    name: str
    rows: int = 0
    nulls: int = 0
    invalid: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    other: int = 0
    kind: str = "categorical"

    @property
    def n(self) -> int:
        return self.rows - self.nulls - self.invalid

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": "categorical",
            "rows": self.rows,
            "nulls": self.nulls,
            "invalid": self.invalid,
            "counts": dict(self.counts),
            "other": self.other,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CategoricalCurrent:
        return cls(
            name=d["name"],
            rows=int(d.get("rows", 0)),
            nulls=int(d.get("nulls", 0)),
            invalid=int(d.get("invalid", 0)),
            counts={str(k): int(v) for k, v in (d.get("counts") or {}).items()},
            other=int(d.get("other", 0)),
        )


ReferenceColumn = NumericReference | CategoricalReference
CurrentColumn = NumericCurrent | CategoricalCurrent


def reference_column(d: dict[str, Any]) -> ReferenceColumn:
    if d.get("kind") == "categorical":
        return CategoricalReference.from_json(d)
    return NumericReference.from_json(d)


def current_column(d: dict[str, Any]) -> CurrentColumn:
    if d.get("kind") == "categorical":
        return CategoricalCurrent.from_json(d)
    return NumericCurrent.from_json(d)


def merge_columns(a: CurrentColumn, b: CurrentColumn) -> CurrentColumn:
    """Two current statistics of the same column summed (min/max by min/max)."""
    if isinstance(a, NumericCurrent) and isinstance(b, NumericCurrent):
        if a.counts is not None and b.counts is not None and len(a.counts) != len(b.counts):
            raise ValueError(f"{a.name}: counted on different bins")
        counts = (
            a.counts if b.counts is None else b.counts if a.counts is None else a.counts + b.counts
        )
        values: dict[str, int] | None = None
        if a.values is not None or b.values is not None:
            values = _sum_counts(a.values or {}, b.values or {})
        return NumericCurrent(
            name=a.name,
            rows=a.rows + b.rows,
            nulls=a.nulls + b.nulls,
            invalid=a.invalid + b.invalid,
            min=_pick(min, a.min, b.min),
            max=_pick(max, a.max, b.max),
            sum=a.sum + b.sum,
            sumsq=a.sumsq + b.sumsq,
            counts=None if counts is None else np.array(counts, dtype=np.int64),
            under=a.under + b.under,
            over=a.over + b.over,
            values=values,
            values_other=a.values_other + b.values_other,
        )
    if isinstance(a, CategoricalCurrent) and isinstance(b, CategoricalCurrent):
        counts = _sum_counts(a.counts, b.counts)
        other = a.other + b.other
        if len(counts) > MAX_CURRENT_CATEGORIES:
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            other += sum(n for _, n in kept[MAX_CURRENT_CATEGORIES:])
            counts = dict(kept[:MAX_CURRENT_CATEGORIES])
        return CategoricalCurrent(
            name=a.name,
            rows=a.rows + b.rows,
            nulls=a.nulls + b.nulls,
            invalid=a.invalid + b.invalid,
            counts=counts,
            other=other,
        )
    raise ValueError(f"{a.name}: a numeric and a categorical column do not merge")


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for key, n in b.items():
        out[key] = out.get(key, 0) + n
    return out


def _pick(f: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(f(a, b))


@dataclass
class Profile:
    """A reference's statistics: inputs (``columns``) and model outputs (``outputs``)."""

    rows: int
    columns: list[ReferenceColumn]
    outputs: list[ReferenceColumn] = field(default_factory=list)
    created_us: int = 0

    def column(self, name: str) -> ReferenceColumn | None:
        for col in (*self.columns, *self.outputs):
            if col.name == name:
                return col
        return None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "columns": [c.to_json() for c in self.columns],
            "outputs": [c.to_json() for c in self.outputs],
            "created_us": self.created_us,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Profile:
        if d.get("format", FORMAT) != FORMAT:
            raise UsageError(f"profile format {d.get('format')!r} is not supported")
        return cls(
            rows=int(d["rows"]),
            columns=[reference_column(c) for c in d.get("columns") or []],
            outputs=[reference_column(c) for c in d.get("outputs") or []],
            created_us=int(d.get("created_us") or 0),
        )


@dataclass
class Current:
    """Current data counted on a reference's bins; windows add ``extra`` fields
    (``violations``, ``refused``, ``requests``, ``calibration_counts``), summed on merge."""

    rows: int
    columns: list[CurrentColumn]
    outputs: list[CurrentColumn] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def column(self, name: str) -> CurrentColumn | None:
        for col in (*self.columns, *self.outputs):
            if col.name == name:
                return col
        return None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "rows": self.rows,
            "columns": [c.to_json() for c in self.columns],
            "outputs": [c.to_json() for c in self.outputs],
        }
        out.update(self.extra)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Current:
        known = {"format", "rows", "columns", "outputs"}
        return cls(
            rows=int(d.get("rows", 0)),
            columns=[current_column(c) for c in d.get("columns") or []],
            outputs=[current_column(c) for c in d.get("outputs") or []],
            extra={k: v for k, v in d.items() if k not in known},
        )


def merge(a: Current, b: Current) -> Current:
    """Two current statistics summed (windows of several replicas, or of a time span)."""
    return Current(
        rows=a.rows + b.rows,
        columns=_merge_list(a.columns, b.columns),
        outputs=_merge_list(a.outputs, b.outputs),
        extra=_merge_extra(a.extra, b.extra),
    )


def _merge_list(a: list[CurrentColumn], b: list[CurrentColumn]) -> list[CurrentColumn]:
    by_name = {c.name: c for c in a}
    order = [c.name for c in a]
    for col in b:
        if col.name in by_name:
            by_name[col.name] = merge_columns(by_name[col.name], col)
        else:
            by_name[col.name] = col
            order.append(col.name)
    return [by_name[n] for n in order]


def _merge_extra(a: Any, b: Any) -> Any:
    """Numbers add, dicts merge key by key, lists add element by element."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = dict(a)
        for key, value in b.items():
            out[key] = _merge_extra(out[key], value) if key in out else value
        return out
    if isinstance(a, list) and isinstance(b, list):
        longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
        return [
            _merge_extra(x, shorter[i]) if i < len(shorter) else x for i, x in enumerate(longer)
        ]
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a + b
    return b
