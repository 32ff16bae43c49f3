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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.monitor.columns import Current
from prodgate.monitor.columns import merge as merge_current
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
    """Two windows' JSON (binned on the same reference) as one: everything summed, by
    the statistics core's :func:`~prodgate.monitor.columns.merge`."""
    reference = a.get("reference", b.get("reference"))
    merged = merge_current(_current(a), _current(b)).to_json()
    merged["reference"] = reference
    return merged


def _current(window: Mapping[str, Any]) -> Current:
    return Current.from_json({k: v for k, v in window.items() if k != "reference"})
