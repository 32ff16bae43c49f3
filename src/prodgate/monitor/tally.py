"""Production windows, counted in the gateway: the data plane's side of monitoring.

Every decision the gateway records passes the recorder; once a group of records is
durable (committed, or journalled while the store is away), the recorder's writer
thread hands it to :meth:`Tally.observe`, which counts it into a running total per
(service, version, window): rows, nulls, values of the wrong type, min/max/sum/sumsq,
each value's bin on the reference profile's edges (``bisect``), categories, contract
violations per field, predictions and confidences. Nothing here does I/O or runs on
the event loop: the counting costs a few microseconds a record in a thread that is
otherwise waiting for the store.

The running totals go to ``monitor_windows`` in the transaction of a later group
(:meth:`Tally.pending` / :meth:`Tally.written`): at most every ``flush_s`` seconds,
and soon after a window closes. Each replica replaces its own row with its totals
so far, so a flush that fails (the store away) loses nothing: the next one writes
everything, and a closed window stays in memory until a flush of it committed.
Readers merge a window by summing its rows over replicas
(:mod:`prodgate.monitor.tallies`).

A window's JSON (the ``counts`` column) is the plan's "current statistics" shape::

    {"format": 1, "requests": n, "rows": n, "refused": n, "violations": {field: n},
     "reference": created_us of the profile binned on | null,
     "columns": [COLUMN...], "outputs": [COLUMN...],
     "calibration_counts": {predicted label: [20 counts by confidence bin]}}

Windows are aligned on the epoch (``start_us = ts_us // length_us * length_us``), so
replicas with the same window length count into the same windows. Records of
predict requests that no version answered (refused before routing) count under
version 0.
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.store.tables import monitor_windows

FORMAT = 1
#: A window keeps at most this many distinct categories per column, then "other".
MAX_CATEGORIES = 200
#: The confidence histogram's fixed edges: 0, 0.05, ..., 1.0 (20 bins).
CONFIDENCE_BINS = 20
CONFIDENCE_EDGES = [i / CONFIDENCE_BINS for i in range(CONFIDENCE_BINS + 1)]
#: The numeric outputs of an LLM service's records.
LLM_OUTPUTS = ("prompt_chars", "answer_chars", "prompt_tokens", "completion_tokens")
UNROUTED = 0  # the version refusals before routing count under
NUMERIC, CATEGORICAL = "numeric", "categorical"
_NUMBER_TYPES = (int, float, bool)


class _Numeric:
    """One numeric column's counts, binned on the reference's edges when there are any."""

    __slots__ = (
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
        self.edges = list(edges) if edges and len(edges) >= 2 else None
        self.lo = self.edges[0] if self.edges else 0.0
        self.hi = self.edges[-1] if self.edges else 0.0
        self.last = len(self.edges) - 2 if self.edges else 0  # the closed last bin
        #: The reference's exact values by number, as the reference spells them.
        self.keys = {float(k): k for k in values} if values is not None else None
        self.rows = self.nulls = self.invalid = 0
        self.min = math.inf
        self.max = -math.inf
        self.sum = self.sumsq = 0.0
        self.counts = [0] * (self.last + 1) if self.edges else None
        self.under = self.over = 0
        self.values: dict[str, int] | None = {} if self.keys is not None else None
        self.values_other = 0

    def add(self, v: Any) -> None:
        self.rows += 1
        if v is None:
            self.nulls += 1
            return
        if type(v) not in _NUMBER_TYPES:
            self.invalid += 1
            return
        x = float(v)
        if x != x:  # NaN is missing, as a data frame reads it
            self.nulls += 1
            return
        self.sum += x
        self.sumsq += x * x
        if x < self.min:
            self.min = x
        if x > self.max:
            self.max = x
        edges = self.edges
        if edges is not None:
            if x < self.lo:
                self.under += 1
            elif x > self.hi:
                self.over += 1
            else:
                i = bisect_right(edges, x) - 1
                self.counts[i if i <= self.last else self.last] += 1  # type: ignore[index]
        keys = self.keys
        if keys is not None:
            key = keys.get(x)
            if key is None:
                self.values_other += 1
            else:
                values = self.values
                values[key] = values.get(key, 0) + 1  # type: ignore[index,union-attr]

    def as_json(self) -> dict[str, Any]:
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
            "counts": list(self.counts) if self.counts is not None else None,
            "under": self.under,
            "over": self.over,
            "values": dict(self.values) if self.values is not None else None,
            "values_other": self.values_other,
        }


class _Categorical:
    """One categorical column's counts: at most :data:`MAX_CATEGORIES`, then "other"."""

    __slots__ = ("counts", "invalid", "name", "nulls", "other", "rows")

    def __init__(self, name: str):
        self.name = name
        self.rows = self.nulls = self.invalid = self.other = 0
        self.counts: dict[str, int] = {}

    def add(self, v: Any) -> None:
        self.rows += 1
        if v is None:
            self.nulls += 1
            return
        if type(v) is not str:
            self.invalid += 1
            return
        counts = self.counts
        n = counts.get(v)
        if n is not None:
            counts[v] = n + 1
        elif len(counts) < MAX_CATEGORIES:
            counts[v] = 1
        else:
            self.other += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": CATEGORICAL,
            "rows": self.rows,
            "nulls": self.nulls,
            "invalid": self.invalid,
            "counts": dict(self.counts),
            "other": self.other,
        }


_Column = _Numeric | _Categorical


@dataclass(frozen=True)
class ColumnShape:
    """How one column is counted: its kind, and the reference's edges and values."""

    name: str
    kind: str
    edges: tuple[float, ...] | None = None
    values: tuple[str, ...] | None = None

    def start(self) -> _Column:
        if self.kind == NUMERIC:
            return _Numeric(self.name, self.edges, self.values)
        return _Categorical(self.name)


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


class Window:
    """What this replica counted for one version in one window."""

    __slots__ = (
        "calibration",
        "changes",
        "columns",
        "flushed",
        "layout",
        "length_us",
        "outputs",
        "refused",
        "requests",
        "rows",
        "service",
        "start_us",
        "version",
        "violations",
    )

    def __init__(self, service: str, version: int, start_us: int, length_us: int, layout: Layout):
        self.service = service
        self.version = version
        self.start_us = start_us
        self.length_us = length_us
        self.layout = layout
        self.requests = self.refused = self.rows = 0
        self.violations: dict[str, int] = {}
        self.columns = [(s.name, s.start()) for s in layout.columns]
        self.outputs = {s.name: s.start() for s in layout.outputs}
        self.calibration: dict[str, list[int]] = {}
        self.changes = 0  # records counted; ``flushed`` of them are in the store
        self.flushed = 0

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.service, self.version, self.start_us)

    def add(self, record: Record) -> None:
        self.requests += 1
        self.changes += 1
        status = record.status
        payload = record.payload
        if status == 200:
            self.rows += 1
            if self.layout.service_kind == "llm":
                self._add_llm(payload)
                return
            row = payload.get("input")
            if type(row) is dict:
                get = row.get
                for name, column in self.columns:
                    column.add(get(name))
            else:
                for _, column in self.columns:
                    column.add(None)
            out = payload.get("output")
            prediction = out.get("prediction") if type(out) is dict else None
            outputs = self.outputs
            predicted = outputs.get("prediction")
            if predicted is not None:
                predicted.add(prediction)
            confidence = record.confidence
            conf = outputs.get("confidence")
            if conf is not None:
                conf.add(confidence)
            if confidence is not None and type(prediction) is str:
                b = int(confidence * CONFIDENCE_BINS)
                b = 0 if b < 0 else CONFIDENCE_BINS - 1 if b >= CONFIDENCE_BINS else b
                bins = self.calibration.get(prediction)
                if bins is None:
                    if len(self.calibration) >= MAX_CATEGORIES:
                        return
                    bins = self.calibration[prediction] = [0] * CONFIDENCE_BINS
                bins[b] += 1
        elif status == 422:
            self.refused += 1
            violations = self.violations
            for error in payload.get("errors") or ():
                name = _field(error.get("path", "")) if type(error) is dict else "-"
                violations[name] = violations.get(name, 0) + 1

    def _add_llm(self, payload: Mapping[str, Any]) -> None:
        inp = payload.get("input")
        row = inp if type(inp) is dict else {}
        get = row.get
        for name, column in self.columns:
            column.add(get(name))
        out = payload.get("output")
        usage = (payload.get("llm") or {}).get("usage") or {}
        figures = {
            "prompt_chars": prompt_chars(inp),
            "answer_chars": len(out["text"])
            if type(out) is dict and type(out.get("text")) is str
            else None,
            "prompt_tokens": usage.get("input_tokens"),
            "completion_tokens": usage.get("output_tokens"),
        }
        for name, value in figures.items():
            found = self.outputs.get(name)
            if found is not None:
                found.add(value)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "requests": self.requests,
            "rows": self.rows,
            "refused": self.refused,
            "violations": dict(self.violations),
            "reference": self.layout.reference,
            "columns": [c.as_json() for _, c in self.columns],
            "outputs": [c.as_json() for c in self.outputs.values()],
        }
        if self.layout.service_kind == "classifier":
            out["calibration_counts"] = {k: list(v) for k, v in self.calibration.items()}
        return out


def prompt_chars(inp: Any) -> int | None:
    """Characters of the text an LLM caller sent: its variables' string values, or its
    messages' contents (the same measure a reference computes from a data file)."""
    if type(inp) is not dict:
        return None
    messages = inp.get("messages")
    if type(messages) is list:
        total = 0
        for m in messages:
            content = m.get("content") if type(m) is dict else None
            if type(content) is str:
                total += len(content)
            elif type(content) is list:
                for part in content:
                    text = part.get("text") if type(part) is dict else None
                    if type(text) is str:
                        total += len(text)
        return total
    return sum(len(v) for v in inp.values() if type(v) is str)


def _field(path: str) -> str:
    """The top-level input field of a violation's JSON Pointer (``-`` for the root),
    as :attr:`prodgate.exceptions.Violation.field` names it."""
    parts = [p for p in path.split("/") if p]
    while parts and (parts[0] in ("inputs", "instances") or parts[0].isdigit()):
        parts.pop(0)
    return parts[0] if parts else "-"


@dataclass
class Pending:
    """Rows to write in the next transaction, and what they hold (for :meth:`Tally.written`)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    marks: list[tuple[Window, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rows)


class Tally:
    """This replica's running windows, per (service, version, window start).

    *kinds* maps each service to its kind (``classifier``, ``regressor``, ``llm``),
    *contracts* to its input contract (the columns counted without a profile),
    *lengths* to its window length in seconds. :meth:`observe`, :meth:`pending` and
    :meth:`written` run in one thread (the recorder's writer); :meth:`use_profiles`
    may be called from another: it swaps a dictionary in one assignment.
    """

    def __init__(
        self,
        replica: str,
        kinds: Mapping[str, str],
        contracts: Mapping[str, Mapping[str, Any]],
        lengths: Mapping[str, float],
        flush_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replica = replica
        self.kinds = dict(kinds)
        self.lengths_us = {name: max(1, int(s * 1_000_000)) for name, s in lengths.items()}
        self.flush_s = flush_s
        self.clock = clock
        self._plain = {
            name: Layout.from_contract(kind, contracts.get(name) or {})
            for name, kind in self.kinds.items()
        }
        self._layouts: dict[tuple[str, int], Layout] = {}
        self._windows: dict[tuple[str, int, int], Window] = {}
        self._open: dict[tuple[str, int], Window] = {}  # the newest window of each version
        self._flushed_at = clock()
        self._retry_at = 0.0  # after a failed flush: not before then
        self._closed = False  # a window closed since the last flush
        #: Counts the store has not seen (read from the event loop: a plain flag).
        self.dirty = False

    # -- profiles (from the gateway's refresh) -------------------------------------------

    def use_profiles(self, profiles: Mapping[tuple[str, int], Mapping[str, Any]]) -> None:
        """Bin the windows that open from now on on these reference profiles (JSON), by
        (service, version); versions without one count unbinned."""
        self._layouts = {
            key: Layout.from_profile(self.kinds[key[0]], profile)
            for key, profile in profiles.items()
            if key[0] in self.kinds
        }

    def layout(self, service: str, version: int) -> Layout:
        found = self._layouts.get((service, version))
        return found if found is not None else self._plain[service]

    # -- counting (the writer thread) ----------------------------------------------------

    def observe(self, records: Iterable[Record]) -> None:
        """Count the inference records of a durable group."""
        windows = self._open
        lengths = self.lengths_us
        for record in records:
            if record.kind != KIND_INFERENCE or record.action != "predict":
                continue
            service = record.service
            length = lengths.get(service)  # type: ignore[arg-type]
            if length is None or record.status is None:
                continue  # a service this gateway does not serve (a made-up name)
            version = record.version or UNROUTED
            start = record.ts_us - record.ts_us % length
            window = windows.get((service, version))  # type: ignore[arg-type]
            if window is None or window.start_us != start:
                window = self._window(service, version, start, length)  # type: ignore[arg-type]
            window.add(record)
            self.dirty = True

    def _window(self, service: str, version: int, start: int, length: int) -> Window:
        key = (service, version, start)
        window = self._windows.get(key)
        if window is None:
            window = Window(service, version, start, length, self.layout(service, version))
            self._windows[key] = window
        newest = self._open.get((service, version))
        if newest is None or newest.start_us <= start:
            if newest is not None and newest.start_us < start:
                self._closed = True
            self._open[(service, version)] = window
        return window

    # -- flushing (in a group's transaction) ---------------------------------------------

    def due(self) -> bool:
        """Whether the next transaction should carry a flush."""
        if not self.dirty:
            return False
        now = self.clock()
        return now >= self._retry_at and (self._closed or now - self._flushed_at >= self.flush_s)

    def due_in(self) -> float | None:
        """Seconds until a flush is due (0: now); None when there is nothing to flush."""
        if not self.dirty:
            return None
        now = self.clock()
        wait = 0.0 if self._closed else self.flush_s - (now - self._flushed_at)
        return max(0.0, wait, self._retry_at - now)

    def failed(self) -> None:
        """A flush did not commit: everything stays, and the next try waits ``flush_s``."""
        self._retry_at = self.clock() + self.flush_s

    def pending(self, now_us: int) -> Pending:
        """The rows of every window with counts the store has not seen yet."""
        out = Pending()
        for window in self._windows.values():
            if window.changes == window.flushed:
                continue
            out.rows.append(
                {
                    "service": window.service,
                    "version": window.version,
                    "start_us": window.start_us,
                    "replica": self.replica,
                    "length_us": window.length_us,
                    "rows": window.rows,
                    "counts": orjson.dumps(window.as_json()).decode(),
                    "updated_at_us": now_us,
                }
            )
            out.marks.append((window, window.changes))
        return out

    def written(self, pending: Pending) -> None:
        """*pending* committed: forget the closed windows it held in full."""
        for window, changes in pending.marks:
            window.flushed = changes
        self._flushed_at = self.clock()
        self._closed = False
        open_windows = set(map(id, self._open.values()))
        for key, window in list(self._windows.items()):
            if window.changes == window.flushed and id(window) not in open_windows:
                del self._windows[key]
        self.dirty = any(w.changes != w.flushed for w in self._windows.values())

    @property
    def windows(self) -> list[Window]:
        """The windows held in memory (open ones, and closed ones not yet flushed)."""
        return list(self._windows.values())


def write(conn: Connection, pending: Pending) -> None:
    """Replace this replica's rows of *pending*'s windows (upsert), in *conn*'s
    transaction: the one writer of ``monitor_windows``."""
    if not pending.rows:
        return
    dialect = conn.dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    stmt = insert(monitor_windows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["service", "version", "start_us", "replica"],
        set_={
            "length_us": stmt.excluded.length_us,
            "rows": stmt.excluded.rows,
            "counts": stmt.excluded.counts,
            "updated_at_us": stmt.excluded.updated_at_us,
        },
    )
    conn.execute(stmt, pending.rows)
