"""Production windows read back: the rows replicas wrote, merged over a time span.

Each gateway replica keeps its own row per (service, version, window) in
``monitor_windows`` (:mod:`prodgate.monitor.tally`); a window's figures are the sum
of its rows, and a span's the sum of its windows, so merging is addition (min and max
by min and max). The result has the window shape (the plan's "current statistics"):
per column the counts binned on the reference profile, plus ``requests``,
``refused``, ``violations`` and ``calibration_counts``.

Windows binned on different reference profiles (a version re-profiled mid-span)
cannot be added bin by bin: a span merges the windows binned on the newest profile
among them (and the unbinned ones when there is none), and says how many it left out
(``skipped``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.store.tables import monitor_windows


@dataclass(frozen=True)
class WindowRow:
    """One replica's row of one window."""

    service: str
    version: int
    start_us: int
    length_us: int
    replica: str
    rows: int
    counts: dict[str, Any]
    updated_at_us: int

    @property
    def end_us(self) -> int:
        return self.start_us + self.length_us


@dataclass
class Merged:
    """A span's windows merged: ``counts`` has the window shape, summed."""

    service: str
    version: int | None
    start_us: int  # of the first window merged
    end_us: int  # of the last window merged
    counts: dict[str, Any]
    windows: int = 0  # distinct windows merged
    replicas: list[str] = field(default_factory=list)
    skipped: int = 0  # rows binned on another reference profile, left out

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.version,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "windows": self.windows,
            "replicas": self.replicas,
            "skipped": self.skipped,
            **self.counts,
        }


def read(
    conn: Connection,
    service: str,
    start_us: int,
    end_us: int,
    version: int | None = None,
) -> list[WindowRow]:
    """The rows of *service*'s windows that overlap ``[start_us, end_us)`` (of one
    *version*, or all), oldest first."""
    t = monitor_windows.c
    query = sa.select(monitor_windows).where(
        t.service == service,
        t.start_us < end_us,
        # A window is at most a day long in practice; the index is on (service, start).
        t.start_us + t.length_us > start_us,
    )
    if version is not None:
        query = query.where(t.version == version)
    rows = conn.execute(query.order_by(t.start_us, t.version, t.replica)).all()
    return [
        WindowRow(
            service=r.service,
            version=int(r.version),
            start_us=int(r.start_us),
            length_us=int(r.length_us),
            replica=r.replica,
            rows=int(r.rows),
            counts=orjson.loads(r.counts),
            updated_at_us=int(r.updated_at_us),
        )
        for r in rows
    ]


def merged(
    conn: Connection,
    service: str,
    start_us: int,
    end_us: int,
    version: int | None = None,
) -> Merged | None:
    """*service*'s (or one *version*'s) windows in the span merged into one; None when
    no replica wrote any."""
    return merge_rows(read(conn, service, start_us, end_us, version))


def per_window(
    conn: Connection,
    service: str,
    start_us: int,
    end_us: int,
    version: int | None = None,
) -> list[Merged]:
    """Each window of the span merged over replicas, oldest first (drift over time)."""
    by_start: dict[int, list[WindowRow]] = {}
    for row in read(conn, service, start_us, end_us, version):
        by_start.setdefault(row.start_us, []).append(row)
    out = [merge_rows(rows) for _, rows in sorted(by_start.items())]
    return [m for m in out if m is not None]


def merge_rows(rows: Sequence[WindowRow]) -> Merged | None:
    """*rows* (any replicas, windows and versions of one service) merged into one."""
    if not rows:
        return None
    newest = max((r.counts.get("reference") or 0) for r in rows)
    kept = [r for r in rows if (r.counts.get("reference") or 0) == newest]
    counts: dict[str, Any] | None = None
    for row in kept:
        counts = row.counts if counts is None else merge(counts, row.counts)
    assert counts is not None
    versions = {r.version for r in kept}
    return Merged(
        service=kept[0].service,
        version=versions.pop() if len(versions) == 1 else None,
        start_us=min(r.start_us for r in kept),
        end_us=max(r.end_us for r in kept),
        counts=counts,
        windows=len({(r.version, r.start_us) for r in kept}),
        replicas=sorted({r.replica for r in kept}),
        skipped=len(rows) - len(kept),
    )


def merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two windows' JSON (binned on the same reference) as one: everything summed."""
    out: dict[str, Any] = dict(a)
    for key in ("requests", "rows", "refused"):
        out[key] = int(a.get(key) or 0) + int(b.get(key) or 0)
    out["violations"] = _sum_maps(a.get("violations"), b.get("violations"))
    out["columns"] = _merge_columns(a.get("columns") or [], b.get("columns") or [])
    out["outputs"] = _merge_columns(a.get("outputs") or [], b.get("outputs") or [])
    if "calibration_counts" in a or "calibration_counts" in b:
        cal: dict[str, list[int]] = {
            k: list(v) for k, v in (a.get("calibration_counts") or {}).items()
        }
        for label, bins in (b.get("calibration_counts") or {}).items():
            mine = cal.get(label)
            cal[label] = list(bins) if mine is None else _sum_lists(mine, bins)
        out["calibration_counts"] = cal
    return out


def _merge_columns(
    a: Iterable[Mapping[str, Any]], b: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {c["name"]: dict(c) for c in a}
    for column in b:
        mine = by_name.get(column["name"])
        by_name[column["name"]] = dict(column) if mine is None else merge_column(mine, column)
    return list(by_name.values())


#: The maximum number of categories a merged column keeps (then "other").
MAX_CATEGORIES = 200


def merge_column(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Two counts of one column (the plan's "current statistics" column) summed."""
    out = dict(a)
    for key in ("rows", "nulls", "invalid", "under", "over", "values_other", "other"):
        if key in a or key in b:
            out[key] = int(a.get(key) or 0) + int(b.get(key) or 0)
    if a.get("kind") == "numeric":
        out["sum"] = float(a.get("sum") or 0.0) + float(b.get("sum") or 0.0)
        out["sumsq"] = float(a.get("sumsq") or 0.0) + float(b.get("sumsq") or 0.0)
        out["min"] = _extreme(min, a.get("min"), b.get("min"))
        out["max"] = _extreme(max, a.get("max"), b.get("max"))
        ca, cb = a.get("counts"), b.get("counts")
        out["counts"] = _sum_lists(ca, cb) if ca is not None and cb is not None else ca or cb
        va, vb = a.get("values"), b.get("values")
        out["values"] = _sum_maps(va, vb) if va is not None or vb is not None else None
    else:
        counts = dict(a.get("counts") or {})
        other = int(out.get("other") or 0)
        for cat, n in (b.get("counts") or {}).items():
            if cat in counts:
                counts[cat] += n
            elif len(counts) < MAX_CATEGORIES:
                counts[cat] = n
            else:
                other += n
        out["counts"] = counts
        out["other"] = other
    return out


def _extreme(pick: Any, x: Any, y: Any) -> Any:
    values = [v for v in (x, y) if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return pick(values) if values else None


def _sum_lists(a: Sequence[int], b: Sequence[int]) -> list[int]:
    if len(a) != len(b):  # not the same bins: keep the longer, as it was
        return list(a if len(a) >= len(b) else b)
    return [x + y for x, y in zip(a, b, strict=True)]


def _sum_maps(a: Mapping[str, int] | None, b: Mapping[str, int] | None) -> dict[str, int]:
    out = dict(a or {})
    for k, v in (b or {}).items():
        out[k] = out.get(k, 0) + v
    return out
