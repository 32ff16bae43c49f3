"""Data quality of current data against its reference, per column.

Figures per column: the null rate (reference, current, change), the share of values out
of the reference's range (numeric), categories the reference does not name (names and
share), values of the wrong type (``invalid``: text in a numeric column, a type change)
and, for a production window, contract violations per field. Each figure past its
tolerance raises a flag; alert rules in the spec set their own limits on the figures
(:meth:`QualityReport.figures`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from prodgate.monitor.columns import (
    CategoricalCurrent,
    CategoricalReference,
    CurrentColumn,
    NumericCurrent,
    NumericReference,
    ReferenceColumn,
)
from prodgate.monitor.profile import Current, Profile

#: Flag a column when its null rate rises by more than this (absolute).
NULL_RATE_CHANGE = 0.05
#: Flag a column when more than this share of its values is out of the reference range.
OUT_OF_RANGE = 0.01
#: Flag a column when more than this share of its values are categories the reference
#: does not name.
NEW_CATEGORIES = 0.01
#: New category names listed per column.
LISTED_CATEGORIES = 20

__all__ = ["ColumnQuality", "QualityReport", "column_quality", "quality"]


@dataclass
class ColumnQuality:
    column: str
    kind: str
    rows: int
    null_rate_reference: float | None
    null_rate: float | None
    out_of_range: float | None = None
    new_categories: list[str] | None = None
    new_category_share: float | None = None
    new_categories_certain: bool = True
    invalid: int = 0
    violations: int = 0
    flags: list[str] = field(default_factory=list)

    @property
    def null_rate_change(self) -> float | None:
        if self.null_rate is None or self.null_rate_reference is None:
            return None
        return self.null_rate - self.null_rate_reference

    @property
    def invalid_rate(self) -> float | None:
        return self.invalid / self.rows if self.rows else None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "column": self.column,
            "kind": self.kind,
            "rows": self.rows,
            "null_rate": {
                "reference": self.null_rate_reference,
                "current": self.null_rate,
                "change": self.null_rate_change,
            },
            "invalid": self.invalid,
            "invalid_rate": self.invalid_rate,
        }
        if self.kind == "numeric":
            out["out_of_range"] = self.out_of_range
        else:
            out["new_categories"] = {
                "names": self.new_categories or [],
                "share": self.new_category_share,
                "certain": self.new_categories_certain,
            }
        out["violations"] = self.violations
        out["flags"] = list(self.flags)
        return out


@dataclass
class QualityReport:
    columns: list[ColumnQuality]
    reference_rows: int
    current_rows: int
    violations: dict[str, int] = field(default_factory=dict)
    requests: int | None = None
    refused: int | None = None

    @property
    def violation_rate(self) -> float | None:
        """Refused requests (contract 422s) per request, in a production window."""
        if not self.requests:
            return None
        return (self.refused or 0) / self.requests

    @property
    def flagged(self) -> list[str]:
        return [c.column for c in self.columns if c.flags]

    def column(self, name: str) -> ColumnQuality | None:
        return next((c for c in self.columns if c.column == name), None)

    def figures(self) -> dict[str, float]:
        """Flat figures for alert rules: ``null_rate(col)``, ``out_of_range(col)``,
        ``new_categories(col)`` (share), ``invalid(col)`` (share), ``violation_rate``."""
        out: dict[str, float] = {}
        for c in self.columns:
            if c.null_rate is not None:
                out[f"null_rate({c.column})"] = c.null_rate
            if c.out_of_range is not None:
                out[f"out_of_range({c.column})"] = c.out_of_range
            if c.new_category_share is not None:
                out[f"new_categories({c.column})"] = c.new_category_share
            if c.invalid_rate is not None:
                out[f"invalid({c.column})"] = c.invalid_rate
        if self.violation_rate is not None:
            out["violation_rate"] = self.violation_rate
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": {"reference": self.reference_rows, "current": self.current_rows},
            "columns": [c.as_dict() for c in self.columns],
            "flagged": self.flagged,
            "violations": dict(self.violations),
            "requests": self.requests,
            "refused": self.refused,
            "violation_rate": self.violation_rate,
        }


def quality(reference: Profile, current: Current) -> QualityReport:
    """Data quality of every reference column (inputs, then outputs) found in *current*."""
    violations = {str(k): int(v) for k, v in (current.extra.get("violations") or {}).items()}
    columns = []
    for ref in (*reference.columns, *reference.outputs):
        cur = current.column(ref.name)
        if cur is None:
            continue
        result = column_quality(ref, cur)
        result.violations = violations.get(ref.name, 0)
        if result.violations:
            result.flags.append("violations")
        columns.append(result)
    requests = current.extra.get("requests")
    refused = current.extra.get("refused")
    return QualityReport(
        columns,
        reference.rows,
        current.rows,
        violations,
        int(requests) if requests is not None else None,
        int(refused) if refused is not None else None,
    )


def column_quality(ref: ReferenceColumn, cur: CurrentColumn) -> ColumnQuality:
    ref_rate = ref.nulls / ref.rows if ref.rows else None
    cur_rate = cur.nulls / cur.rows if cur.rows else None
    result = ColumnQuality(ref.name, ref.kind, cur.rows, ref_rate, cur_rate, invalid=cur.invalid)
    change = result.null_rate_change
    if change is not None and change > NULL_RATE_CHANGE:
        result.flags.append("null_rate")
    if cur.invalid:
        result.flags.append("type_change")
    if ref.kind != cur.kind:
        result.flags.append("kind_change")
        return result
    if isinstance(ref, NumericReference) and isinstance(cur, NumericCurrent):
        result.out_of_range = _out_of_range(ref, cur)
        if result.out_of_range is not None and result.out_of_range > OUT_OF_RANGE:
            result.flags.append("out_of_range")
    elif isinstance(ref, CategoricalReference) and isinstance(cur, CategoricalCurrent):
        new = sorted(
            ((k, n) for k, n in cur.counts.items() if k not in ref.counts and n > 0),
            key=lambda kv: (-kv[1], kv[0]),
        )
        unnamed = cur.other if not ref.other else 0
        share = (sum(n for _, n in new) + unnamed) / cur.n if cur.n else None
        result.new_categories = [k for k, _ in new[:LISTED_CATEGORIES]]
        result.new_category_share = share
        # A reference that counts a tail in "other" does not name all its categories.
        result.new_categories_certain = ref.other == 0
        if share is not None and share > NEW_CATEGORIES:
            result.flags.append("new_categories")
    return result


def _out_of_range(ref: NumericReference, cur: NumericCurrent) -> float | None:
    """The share of current values below the reference's min or above its max."""
    if not cur.n or ref.min is None or ref.max is None:
        return None
    out = cur.under + cur.over
    edges = ref.edges
    if cur.counts is not None and len(edges) > 1 and len(cur.counts) == len(edges) - 1:
        # Bins a batch comparison added past the reference's range (see profile's spans).
        below = edges[1:] <= ref.min
        above = edges[:-1] > ref.max
        out += int(np.sum(cur.counts[below])) + int(np.sum(cur.counts[above]))
    return out / cur.n
