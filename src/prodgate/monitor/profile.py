"""Reference profiles, and current data counted on their bins.

``profile(source)`` reads a table once per column pass (two or three passes over a
column, one column in memory at a time) and returns a :class:`Profile`: per numeric
column quantile bins with exact counts, per categorical column the top categories.
``against(reference, source)`` counts other data on the reference's bins (a
:class:`Current`); ``merge`` adds two of those up, as windows from several replicas merge.

Numeric bins come from a fine uniform grid (2**18 cells over the column's range): one
pass counts values per cell, the edges are placed on cell boundaries at the quantiles of
those counts, and a last pass counts the values per bin exactly (see :mod:`.binning`).
No sort, no sample: the quantiles are exact to a millionth of the range.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prodgate.exceptions import UsageError
from prodgate.monitor.binning import (
    aligned,
    bin_counts,
    cell_of,
    chunk_stats,
    combine_stats,
    floats,
    grid_tables,
    match_values,
    to_numpy,
)
from prodgate.monitor.columns import (
    FEW_VALUES,
    MAX_CURRENT_CATEGORIES,
    QUANTILES,
    SMALL_REFERENCE,
    CategoricalCurrent,
    CategoricalReference,
    Current,
    CurrentColumn,
    NumericCurrent,
    NumericReference,
    Profile,
    ReferenceColumn,
    merge,
    value_key,
)
from prodgate.monitor.sources import COLUMN_BUDGET, Chunks, Source, open_source

#: Bins of a numeric reference column (edges: at most one more).
MAX_BINS = 1000
#: Categories a reference column names one by one (all of them in a small reference).
TOP_CATEGORIES = 100
#: Cells of the uniform grid the reference's edges are placed on.
GRID = 1 << 18
#: The weight of the values' share (against the range's) in placing numeric edges.
MASS_SHARE = 0.8
#: Values processed at once (2 MB of float64): the size of every temporary array.
BLOCK = 1 << 18
#: Cells of the grid used to count current data on a reference's bins.
CURRENT_GRID = 1 << 18

__all__ = [
    "Current",
    "Profile",
    "against",
    "count_column",
    "merge",
    "profile",
    "profile_column",
]


# --------------------------------------------------------------------------- profile


def profile(
    data: Any,
    *,
    columns: Sequence[str] | None = None,
    categorical: Iterable[str] = (),
    numeric: Iterable[str] = (),
    spans: Mapping[str, tuple[float, float]] | None = None,
) -> Profile:
    """The reference profile of *data* (a DataFrame, a pyarrow Table, a Parquet or CSV
    path). *categorical* / *numeric* force a column's kind (numbers as categories);
    otherwise numbers and booleans are numeric, text is categorical, other types skipped.

    *spans* widens a numeric column's bins to cover ``(lo, hi)`` as well: a batch
    comparison passes the current data's range, so that values out of the reference's
    range fall in bins too (the edges then reach past the reference's min and max)."""
    source = open_source(data, label="reference")
    names = _select(source, columns)
    forced_cat, forced_num = set(categorical), set(numeric)
    out: list[ReferenceColumn] = []
    for name in names:
        kind = _kind(source.type(name), name in forced_cat, name in forced_num)
        if kind is None:
            continue
        chunks = source.chunks(name)
        span = (spans or {}).get(name)
        out.append(_profile(name, chunks, kind, source.rows, source.type(name), None, span))
    return Profile(rows=source.rows, columns=out, created_us=time.time_ns() // 1000)


def _select(source: Source, columns: Sequence[str] | None) -> list[str]:
    if columns is None:
        return source.names
    missing = [c for c in columns if c not in source.names]
    if missing:
        raise UsageError(f"no column {', '.join(missing)} in the data")
    return list(columns)


def _kind(kind: pa.DataType, categorical: bool, numeric: bool) -> str | None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if categorical:
        return "categorical"
    if numeric:
        return "numeric"
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        return "numeric"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return "categorical"
    return None


def profile_column(
    name: str,
    data: Chunks | pa.Array | pa.ChunkedArray | np.ndarray | Sequence[Any],
    *,
    kind: str | None = None,
    rows: int | None = None,
    edges: Sequence[float] | None = None,
) -> ReferenceColumn:
    """One column's reference statistics. *edges* fixes a numeric column's bins (a
    model's confidence: ``[0, 0.05, ..., 1]``) instead of the quantile ones."""
    chunks = _as_chunks(data)
    first = next(iter(chunks()), None)
    arrow_type = first.type if first is not None else pa.float64()
    if kind is None:
        kind = _kind(arrow_type, False, False) or "categorical"
    if rows is None:
        rows = sum(len(c) for c in chunks())
    return _profile(name, chunks, kind, rows, arrow_type, edges, None)


def _profile(
    name: str,
    chunks: Chunks,
    kind: str,
    rows: int,
    arrow_type: pa.DataType,
    edges: Sequence[float] | None,
    span: tuple[float, float] | None,
) -> ReferenceColumn:
    if kind == "categorical":
        return _profile_categorical(name, chunks, rows, arrow_type)
    return _profile_numeric(name, chunks, rows, arrow_type, edges, span)


def _as_chunks(data: Any) -> Chunks:
    if callable(data):
        return data  # type: ignore[no-any-return]
    if isinstance(data, pa.ChunkedArray):
        parts = list(data.chunks)
    elif isinstance(data, pa.Array):
        parts = [data]
    else:
        array = np.asarray(data)
        parts = [pa.array(array if array.dtype != object else list(array), from_pandas=True)]

    def gen() -> Iterator[pa.Array]:
        yield from parts

    return gen


def _dtype(kind: pa.DataType) -> str:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "integer"
    return "float"


FloatChunks = Callable[[], Iterator[tuple[np.ndarray, int, int]]]


def _float_chunks(chunks: Chunks, rows: int) -> FloatChunks:
    """The column's values as float64, in blocks of at most :data:`BLOCK` values:
    converted once and kept when the column fits the memory budget, converted again on
    each pass otherwise. Blocks keep every temporary array small (a few MB), so they are
    reused from the heap instead of mapped and faulted in afresh for each step."""
    if rows * 8 <= COLUMN_BUDGET:
        parts = [floats(c) for c in chunks()]
        return lambda: _blocks(parts)
    return lambda: _blocks(floats(c) for c in chunks())


def _blocks(
    parts: Iterable[tuple[np.ndarray, int, int]],
) -> Iterator[tuple[np.ndarray, int, int]]:
    for x, nulls, invalid in parts:
        if len(x) <= BLOCK:
            yield x, nulls, invalid
            continue
        for start in range(0, len(x), BLOCK):
            first = start == 0
            yield x[start : start + BLOCK], nulls if first else 0, invalid if first else 0


def _profile_numeric(
    name: str,
    chunks: Chunks,
    rows: int,
    arrow_type: pa.DataType,
    fixed: Sequence[float] | None,
    span: tuple[float, float] | None = None,
) -> NumericReference:
    passes = _float_chunks(chunks, rows)
    # Pass 1: range, moments, nulls; every value while the column is small.
    stats = (0, 0.0, 0.0)
    nulls = 0
    lo, hi = math.inf, -math.inf
    small: list[np.ndarray] | None = []
    for x, n_null, n_invalid in passes():
        nulls += n_null + n_invalid
        if len(x) == 0:
            continue
        stats = combine_stats(stats, chunk_stats(x))
        lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
        if small is not None:
            small.append(x)
            if stats[0] > SMALL_REFERENCE:
                small = None
    n, mean, m2 = stats
    dtype = _dtype(arrow_type)
    if n == 0:
        empty = np.asarray(fixed if fixed is not None else [], dtype=np.float64)
        return NumericReference(
            name, dtype, rows, nulls, None, None, None, None, {}, empty,
            np.zeros(max(len(empty) - 1, 0), np.int64), None,
        )  # fmt: skip
    std = math.sqrt(m2 / n)
    values: dict[str, int] | None = None
    if small is not None:
        uniq, counts = np.unique(np.concatenate(small), return_counts=True)
        values = {value_key(float(v)): int(c) for v, c in zip(uniq, counts, strict=True)}
        quantiles = np.quantile(np.concatenate(small), QUANTILES)
        edges, bins = _edges_of_values(uniq, counts)
    else:
        if dtype != "float" and hi - lo < 2**16:
            few = _few_integers(passes, lo, hi)
        else:
            few = _few_values(passes, n)
        if few is not None:
            uniq, counts = few
            values = {value_key(float(v)): int(c) for v, c in zip(uniq, counts, strict=True)}
            edges, bins = _edges_of_values(uniq, counts)
            cum = np.cumsum(counts)
            quantiles = uniq[
                np.minimum(np.searchsorted(cum, np.array(QUANTILES) * n), len(uniq) - 1)
            ]
        else:
            wide = (lo, hi)
            if span is not None and all(map(math.isfinite, span)):
                wide = (min(lo, span[0]), max(hi, span[1]))
            edges, quantiles = _quantile_edges(passes, n, *wide)
            quantiles = np.clip(quantiles, lo, hi)
            # The reference's own range stays exact: [.., min) and (max, ..] bins are
            # out of its range (quality counts them), [min, .., max] in it.
            bounds = []
            if wide[0] < lo:
                bounds.append(lo)
            if wide[1] > hi:
                bounds.append(float(np.nextafter(hi, np.inf)))
            if bounds:
                edges = np.unique(np.concatenate((edges, bounds)))
            bins = np.zeros(len(edges) - 1, np.int64)
    if fixed is not None:
        edges = np.asarray(fixed, dtype=np.float64)
        bins = np.zeros(len(edges) - 1, np.int64)
    if fixed is not None or (values is None and len(edges) > 1):
        tables = grid_tables(edges, GRID) if len(edges) > 1 and n > 4096 else None
        for x, _, _ in passes():
            got, _, _ = bin_counts(x, edges, tables, inside=fixed is None and span is None)
            bins += got
    return NumericReference(
        name=name,
        dtype=dtype,
        rows=rows,
        nulls=nulls,
        min=lo,
        max=hi,
        mean=mean,
        std=std,
        quantiles={str(q): float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        edges=edges,
        counts=bins,
        values=values,
    )


def _edges_of_values(uniq: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges on the distinct values themselves: bin i holds value i (the last bin the
    last two values)."""
    if len(uniq) == 1:
        return uniq.astype(np.float64), np.zeros(0, np.int64)
    bins = counts[:-1].astype(np.int64).copy()
    bins[-1] += counts[-1]
    return uniq.astype(np.float64), bins


def _few_integers(
    passes: FloatChunks, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """Like :func:`_few_values` for integers in a short range: one bincount."""
    counts = np.zeros(int(hi - lo) + 1, np.int64)
    for x, _, _ in passes():
        if len(x):
            counts += np.bincount((x - lo).astype(np.int64), minlength=len(counts))
    present = np.flatnonzero(counts)
    if len(present) > FEW_VALUES:
        return None
    return lo + present.astype(np.float64), counts[present]


def _few_values(passes: FloatChunks, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The distinct values and their counts when there are at most FEW_VALUES of them."""
    candidates: np.ndarray | None = None
    found: dict[float, int] = {}
    counts: np.ndarray | None = None
    for x, _, _ in passes():
        if len(x) == 0:
            continue
        if candidates is None:
            candidates = np.unique(x[:: max(1, len(x) // 4096)])
            if len(candidates) > FEW_VALUES:
                return None
            counts = np.zeros(len(candidates), np.int64)
        assert counts is not None
        got, rest = match_values(x, candidates)
        counts += got
        if len(rest):
            uniq, c = np.unique(rest, return_counts=True)
            for v, k in zip(uniq.tolist(), c.tolist(), strict=True):
                found[v] = found.get(v, 0) + k
            if len(candidates) + len(found) > FEW_VALUES:
                return None
    if candidates is None or counts is None:
        return None
    merged = dict(zip(candidates.tolist(), counts.tolist(), strict=True))
    merged.update(found)
    keys = np.array(sorted(merged), dtype=np.float64)
    return keys, np.array([merged[k] for k in keys.tolist()], dtype=np.int64)


def _quantile_edges(
    passes: FloatChunks, n: int, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Edges at the quantiles of a uniform grid's cell counts, on cell boundaries; and
    the reported quantiles, interpolated within their cell."""
    scale = GRID / (hi - lo)
    cells = np.zeros(GRID, np.int64)
    for x, _, _ in passes():
        if len(x):
            cells += np.bincount(cell_of(x, lo, scale, GRID), minlength=GRID)
    cum = np.cumsum(cells)
    # Edges at equal steps of a blend of the values' share and the range's share: bins
    # hold at most ~1/800 of the values and span at most ~1/200 of the range, so that a
    # long tail is not one wide bin (the CDF is taken as linear within a bin).
    blend = cum * (MASS_SHARE / n) + np.arange(1, GRID + 1) * ((1 - MASS_SHARE) / GRID)
    levels = np.arange(1, MAX_BINS) / MAX_BINS
    boundary = np.unique(np.searchsorted(blend, levels, side="left") + 1)
    boundary = boundary[(boundary > 0) & (boundary < GRID)]
    inner = aligned(boundary.astype(np.float64), lo, scale)
    inner = inner[(inner > lo) & (inner < hi)]
    edges = np.unique(np.concatenate(([lo], inner, [hi])))
    target = np.array(QUANTILES) * n
    cell = np.minimum(np.searchsorted(cum, target, side="left"), GRID - 1)
    before = np.where(cell > 0, cum[np.maximum(cell - 1, 0)], 0)
    inside = np.maximum(cells[cell], 1)
    frac = np.clip((target - before) / inside, 0.0, 1.0)
    quantiles = lo + (cell + frac) / scale
    return edges, quantiles


def _profile_categorical(
    name: str, chunks: Chunks, rows: int, arrow_type: pa.DataType
) -> CategoricalReference:
    keys, counts, nulls, _ = _category_counts(chunks)
    n = int(counts.sum())
    top = len(keys) if n <= SMALL_REFERENCE else TOP_CATEGORIES
    order = np.lexsort((keys, -counts))[:top] if len(keys) else np.zeros(0, np.intp)
    kept = {str(keys[i]): int(counts[i]) for i in order}
    dtype = "string" if _kind(arrow_type, False, False) != "numeric" else _dtype(arrow_type)
    return CategoricalReference(
        name=name, rows=rows, nulls=nulls, counts=kept, other=n - sum(kept.values()), dtype=dtype
    )


def _category_counts(chunks: Chunks) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Distinct categories (as text) and their counts over all chunks, the nulls and
    the rows."""
    values: list[pa.Array] = []
    counts: list[pa.Array] = []
    nulls = rows = 0
    for chunk in chunks():
        rows += len(chunk)
        chunk, missing = _as_text(chunk)
        nulls += missing
        vc = pc.value_counts(chunk)
        v, c = vc.field("values"), vc.field("counts")
        if v.null_count:
            keep = pc.is_valid(v)
            v, c = v.filter(keep), c.filter(keep)
        if pa.types.is_dictionary(v.type):
            v = v.dictionary_decode()
        values.append(v.cast(pa.string()))
        counts.append(c)
    if not values:
        return np.zeros(0, object), np.zeros(0, np.int64), nulls, rows
    if len(values) == 1:
        keys, totals = values[0], counts[0]
    else:
        table = pa.table({"k": pa.concat_arrays(values), "n": pa.concat_arrays(counts)})
        grouped = table.group_by("k").aggregate([("n", "sum")])
        keys, totals = (
            grouped.column("k").combine_chunks(),
            grouped.column("n_sum").combine_chunks(),
        )
    return (
        np.asarray(keys.to_pylist(), dtype=object),
        to_numpy(totals).astype(np.int64),
        nulls,
        rows,
    )


def _as_text(chunk: pa.Array) -> tuple[pa.Array, int]:
    """A chunk as text categories (dictionaries kept), with NaN counted as null."""
    kind = chunk.type.value_type if pa.types.is_dictionary(chunk.type) else chunk.type
    nulls = chunk.null_count
    if pa.types.is_floating(kind) and not pa.types.is_dictionary(chunk.type):
        nan = pc.is_nan(chunk)
        n_nan = int(pc.sum(nan).as_py() or 0)
        if n_nan:
            chunk = chunk.filter(pc.invert(pc.fill_null(nan, True)))
            nulls += n_nan
        if chunk.null_count:
            chunk = chunk.drop_null()
        chunk = pa.array([value_key(v) for v in chunk.to_pylist()], type=pa.string())
    elif pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        if pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_decode()
        chunk = chunk.cast(pa.string())
    elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        chunk = chunk.cast(pa.string())
    return chunk, nulls


# --------------------------------------------------------------------------- against


def against(reference: Profile, data: Any, *, columns: Sequence[str] | None = None) -> Current:
    """*data* counted on the *reference*'s bins and categories, column by column. A
    reference column missing from *data* is counted as all null."""
    source = open_source(data, label="current")
    wanted = list(columns) if columns is not None else reference.names
    out: list[CurrentColumn] = []
    for name in wanted:
        ref = reference.column(name)
        if ref is None:
            raise UsageError(f"no column {name} in the reference profile")
        if name not in source.names:
            col: CurrentColumn
            if isinstance(ref, NumericReference):
                col = NumericCurrent(name, rows=source.rows, nulls=source.rows)
            else:
                col = CategoricalCurrent(name, rows=source.rows, nulls=source.rows)
            out.append(col)
            continue
        out.append(count_column(ref, source.chunks(name)))
    return Current(rows=source.rows, columns=out)


def count_column(ref: ReferenceColumn, data: Any) -> CurrentColumn:
    """One column of current data counted on the reference column's bins."""
    chunks = _as_chunks(data)
    if isinstance(ref, CategoricalReference):
        return _count_categorical(ref, chunks)
    return _count_numeric(ref, chunks)


def _count_numeric(ref: NumericReference, chunks: Chunks) -> NumericCurrent:
    cur = NumericCurrent(ref.name)
    edges = ref.edges
    k = len(edges) - 1
    if len(edges):
        cur.counts = np.zeros(max(k, 0), np.int64)
    ref_values = (
        np.array(sorted(float(v) for v in ref.values), dtype=np.float64)
        if ref.values is not None
        else None
    )
    matched = np.zeros(len(ref_values), np.int64) if ref_values is not None else None
    new: dict[float, int] = {}
    track_new = ref.values is not None and len(ref.values) <= FEW_VALUES
    tables = None
    for chunk in chunks():
        x, nulls, invalid = floats(chunk)
        cur.rows += len(chunk)
        cur.nulls += nulls
        cur.invalid += invalid
        if len(x) == 0:
            continue
        lo, hi = float(x.min()), float(x.max())
        cur.min = lo if cur.min is None else min(cur.min, lo)
        cur.max = hi if cur.max is None else max(cur.max, hi)
        cur.sum += float(x.sum())
        cur.sumsq += float(np.square(x).sum())
        if cur.counts is not None:
            if tables is None and k >= 1 and len(x) > 4096:
                tables = grid_tables(edges, CURRENT_GRID)
            got, under, over = bin_counts(x, edges, tables)
            cur.counts += got
            cur.under += under
            cur.over += over
        if ref_values is not None and matched is not None:
            got, rest = match_values(x, ref_values)
            matched += got
            if len(rest):
                if track_new and len(new) <= FEW_VALUES:
                    uniq, c = np.unique(rest, return_counts=True)
                    for v, m in zip(uniq.tolist(), c.tolist(), strict=True):
                        new[v] = new.get(v, 0) + m
                else:
                    cur.values_other += len(rest)
    if ref_values is not None and matched is not None:
        values = {
            value_key(v): int(c) for v, c in zip(ref_values.tolist(), matched.tolist(), strict=True)
        }
        kept = sorted(new.items(), key=lambda kv: -kv[1])
        for v, count in kept[:FEW_VALUES]:
            values[value_key(v)] = count
        cur.values_other += sum(count for _, count in kept[FEW_VALUES:])
        cur.values = values
    return cur


def _count_categorical(ref: CategoricalReference, chunks: Chunks) -> CategoricalCurrent:
    keys, counts, nulls, rows = _category_counts(chunks)
    known = np.array([k in ref.counts for k in keys.tolist()], dtype=bool)
    # The reference's categories first, then the most frequent new ones.
    order = np.lexsort((keys, -counts, ~known)) if len(keys) else np.zeros(0, np.intp)
    kept = {str(keys[i]): int(counts[i]) for i in order[:MAX_CURRENT_CATEGORIES]}
    return CategoricalCurrent(
        name=ref.name,
        rows=rows,
        nulls=nulls,
        counts=kept,
        other=int(counts.sum()) - sum(kept.values()),
    )
