"""Vectorised kernels for numeric columns: values out of Arrow chunks, bin counts on
sorted edges, exact value counts.

Binning a million values with ``np.searchsorted`` costs ~80 ns a value (a branchy binary
search). Here a value's bin comes from a uniform grid over the edges' range instead: its
cell is one multiply, a table maps the cell to its bin, and only the values in cells that
touch an edge (a few percent) are placed by binary search. The result is exact: the same
bins ``searchsorted`` gives, at a fraction of the cost.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: Text that reads as a number (for numeric columns that arrive as text, as in a CSV).
_NUMBER = r"^\s*[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|[iI]nf(inity)?|[nN]a[nN])\s*$"


def floats(chunk: pa.Array) -> tuple[np.ndarray, int, int]:
    """A chunk's finite values as float64, its nulls (NaN and infinities included) and its
    invalid values (text that is not a number: a type change)."""
    if pa.types.is_dictionary(chunk.type):
        chunk = chunk.dictionary_decode()
    kind = chunk.type
    nulls = chunk.null_count
    invalid = 0
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        present = chunk.drop_null() if nulls else chunk
        text = pc.utf8_trim_whitespace(present)
        blank = pc.equal(text, "")
        empty = int(pc.sum(blank).as_py() or 0)
        ok = pc.match_substring_regex(text, _NUMBER)
        numbers = text.filter(ok)
        invalid = len(present) - len(numbers) - empty
        nulls += empty
        x = to_numpy(pc.cast(numbers, pa.float64()))
    elif (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        present = chunk.drop_null() if nulls else chunk
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            present = pc.cast(present, pa.float64())
        x = to_numpy(present).astype(np.float64, copy=False)
    else:  # a date, bytes or a nested value where a number was expected
        invalid = len(chunk) - nulls
        x = np.empty(0, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.all():
        nulls += int(len(x) - np.count_nonzero(finite))
        x = x[finite]
    return x, nulls, invalid


def to_numpy(array: pa.Array) -> np.ndarray:
    """A primitive Arrow array without nulls as a numpy view of its buffer. (Not
    ``Array.to_numpy``: its first call imports pandas, 40 MB and half a second.)"""
    if array.null_count:
        array = array.drop_null()
    kind = array.type
    if pa.types.is_boolean(kind):
        array = pc.cast(array, pa.uint8())
        kind = array.type
    dtype = np.dtype(kind.to_pandas_dtype()) if not pa.types.is_float16(kind) else np.float16
    return np.frombuffer(
        array.buffers()[1], dtype=dtype, count=len(array), offset=array.offset * dtype.itemsize
    )


def grid_tables(edges: np.ndarray, cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """For a uniform grid of *cells* over ``[edges[0], edges[-1]]``: each cell's bin
    (-1 where an edge cuts the cell: its values are placed exactly) and the scale.

    A value's grid position ``(x - lo) * scale`` never decreases as ``x`` grows (each
    rounding step is monotone), so only the cell an edge's own position falls in can
    hold values on both sides of it; an edge that is the smallest value of its
    boundary's position (see :func:`aligned`) cuts no cell at all.
    """
    lo, hi = float(edges[0]), float(edges[-1])
    scale = cells / (hi - lo)
    inside = edges[1:-1]
    pos = (inside - lo) * scale
    inner = np.floor(pos).astype(np.intp)
    before = (np.nextafter(inside, -np.inf) - lo) * scale
    exact = (pos == inner) & (before < inner)
    np.clip(inner, 0, cells - 1, out=inner)
    marks = np.zeros(cells + 1, dtype=np.int32)
    np.add.at(marks, np.where(exact, inner, inner + 1), 1)
    dtype = np.int16 if len(edges) < 2**15 else np.int32
    cell_bin = np.cumsum(marks[:cells]).astype(dtype)
    cell_bin[inner[~exact]] = -1
    return cell_bin, np.empty(0), scale


def aligned(boundaries: np.ndarray, lo: float, scale: float) -> np.ndarray:
    """For each grid boundary ``c``, the smallest float whose position is ``>= c``: an
    edge there cuts no cell, every value of cell ``c`` is on its right."""
    v = lo + boundaries / scale
    for _ in range(16):
        low = (v - lo) * scale < boundaries
        if not low.any():
            break
        v[low] = np.nextafter(v[low], np.inf)
    for _ in range(16):
        prev = np.nextafter(v, -np.inf)
        still = (prev - lo) * scale >= boundaries
        if not still.any():
            break
        v[still] = prev[still]
    return v


def bin_counts(
    x: np.ndarray,
    edges: np.ndarray,
    tables: tuple[np.ndarray, np.ndarray, float] | None = None,
    *,
    inside: bool = False,
) -> tuple[np.ndarray, int, int]:
    """Counts of *x* in the bins ``[e_i, e_i+1)`` (the last one closed), and the values
    under ``e0`` and over ``ek`` (*inside*: the caller knows there are none). *tables*
    from :func:`grid_tables` for large inputs."""
    k = len(edges) - 1
    if k < 1:
        lo = edges[0]
        return np.zeros(0, np.int64), int(np.count_nonzero(x < lo)), int(np.count_nonzero(x > lo))
    lo, hi = edges[0], edges[-1]
    under = over = 0
    if not inside:
        under = int(np.count_nonzero(x < lo))
        over = int(np.count_nonzero(x > hi))
        if under or over:
            x = x[(x >= lo) & (x <= hi)]
    if tables is None or len(x) < 4096:
        idx = np.searchsorted(edges, x, side="right") - 1
        np.minimum(idx, k - 1, out=idx)
        return np.bincount(idx, minlength=k).astype(np.int64), under, over
    cell_bin, _, scale = tables
    cells = len(cell_bin)
    g = cell_of(x, lo, scale, cells)
    b = cell_bin[g]
    near = np.flatnonzero(b < 0)
    counts = np.bincount(b[b >= 0] if len(near) else b, minlength=k)[:k].astype(np.int64)
    if len(near):
        exact = np.searchsorted(edges, x[near], side="right") - 1
        np.minimum(exact, k - 1, out=exact)
        counts += np.bincount(exact, minlength=k)
    return counts, under, over


def cell_of(x: np.ndarray, lo: float, scale: float, cells: int) -> np.ndarray:
    """Each value's cell on a uniform grid from *lo* (one float temporary, int32 cells)."""
    f: np.ndarray = np.subtract(x, lo)
    f *= scale
    g: np.ndarray = f.astype(np.int32)
    del f
    np.clip(g, 0, cells - 1, out=g)
    return g


def match_values(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts of *x* equal to each of the sorted *values*, and the values of *x* that
    equal none of them."""
    if len(values) == 0:
        return np.zeros(0, np.int64), x
    idx = np.searchsorted(values, x)
    np.minimum(idx, len(values) - 1, out=idx)
    hit = values[idx] == x
    counts = np.bincount(idx[hit], minlength=len(values)).astype(np.int64)
    return counts, x[~hit]


def combine_stats(
    a: tuple[int, float, float], b: tuple[int, float, float]
) -> tuple[int, float, float]:
    """(n, mean, M2) of two parts combined (Chan et al.): a stable running variance."""
    na, ma, sa = a
    nb, mb, sb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    delta = mb - ma
    return n, ma + delta * nb / n, sa + sb + delta * delta * na * nb / n


def chunk_stats(x: np.ndarray) -> tuple[int, float, float]:
    if len(x) == 0:
        return 0, 0.0, 0.0
    mean = float(x.mean())
    d = x - mean
    np.multiply(d, d, out=d)  # not np.dot: BLAS threads spin on a busy machine
    return len(x), mean, float(d.sum())
