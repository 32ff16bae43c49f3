"""A numeric column's distribution rebuilt from its bins, for distances between CDFs.

Reference and current are put on one set of breakpoints: the reference's edges, the
exact values either side knows (``values``: point masses) and, for current data out of
the reference's range, its min and max. Between two breakpoints each side's remaining
mass is spread evenly (the CDF is linear there); at a breakpoint it may jump (a point
mass). On that representation the Wasserstein distance is an exact integral and the KS
statistic an exact maximum: exact for the data whenever the values are known (small and
few-valued references), and within a bin's width otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prodgate.monitor.columns import NumericCurrent, NumericReference


@dataclass
class Pair:
    """Breakpoints ``x`` (m), and per side point masses at them (m) and the mass spread
    over each gap (m - 1), as shares of the side's values."""

    x: np.ndarray
    ref_atoms: np.ndarray
    ref_gaps: np.ndarray
    cur_atoms: np.ndarray
    cur_gaps: np.ndarray

    def cdfs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Each side's CDF just before and just after each breakpoint."""
        return (*_cdf(self.ref_atoms, self.ref_gaps), *_cdf(self.cur_atoms, self.cur_gaps))

    def wasserstein(self) -> float:
        """The integral of |F_ref - F_cur| (piecewise linear between breakpoints)."""
        rb, ra, cb, ca = self.cdfs()
        d0 = (ra - ca)[:-1]  # just after breakpoint j
        d1 = (rb - cb)[1:]  # just before breakpoint j + 1
        width = np.diff(self.x)
        a0, a1 = np.abs(d0), np.abs(d1)
        same = d0 * d1 >= 0
        total = a0 + a1
        crossing = np.divide(d0 * d0 + d1 * d1, total, out=np.zeros_like(total), where=total > 0)
        return float(np.sum(width * np.where(same, (a0 + a1) / 2, crossing / 2)))

    def ks(self) -> float:
        """sup |F_ref - F_cur| (the KS statistic)."""
        rb, ra, cb, ca = self.cdfs()
        return float(max(np.max(np.abs(rb - cb)), np.max(np.abs(ra - ca))))

    def masses(self, bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each side's share in the bins ``[b_i, b_i+1)`` (the last one closed), as
        ``np.histogram`` counts them."""
        rb, ra, cb, ca = self.cdfs()
        ref = _at(self.x, rb, ra, self.ref_gaps, bounds)
        cur = _at(self.x, cb, ca, self.cur_gaps, bounds)
        ref[-1], cur[-1] = 1.0, 1.0  # the last bin is closed: everything up to its bound
        return np.maximum(np.diff(ref), 0.0), np.maximum(np.diff(cur), 0.0)


def _cdf(atoms: np.ndarray, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    after = np.cumsum(atoms)
    after[1:] += np.cumsum(gaps)
    return after - atoms, after


def _at(
    x: np.ndarray, before: np.ndarray, after: np.ndarray, gaps: np.ndarray, t: np.ndarray
) -> np.ndarray:
    """F(t-) for each t: the share strictly below t."""
    j = np.searchsorted(x, t, side="right") - 1
    out = np.zeros(len(t))
    below = j < 0
    exact = ~below & (x[np.maximum(j, 0)] == t)
    jj = np.maximum(j, 0)
    out[exact] = before[jj[exact]]
    inside = ~below & ~exact
    last = inside & (jj >= len(x) - 1)
    out[last] = after[-1]
    mid = inside & ~last
    jm = jj[mid]
    width = x[jm + 1] - x[jm]
    out[mid] = after[jm] + gaps[jm] * (t[mid] - x[jm]) / width
    return out


def _floats(values: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
    if not values:
        return np.zeros(0), np.zeros(0, np.int64)
    keys = np.array([float(k) for k in values], dtype=np.float64)
    counts = np.array(list(values.values()), dtype=np.int64)
    order = np.argsort(keys)
    return keys[order], counts[order]


def pair(ref: NumericReference, cur: NumericCurrent) -> Pair:
    """Reference and current on common breakpoints (both have values)."""
    edges = ref.edges
    ref_keys, ref_counts = _floats(ref.values)
    exact_ref = ref.values is not None and int(ref_counts.sum()) == ref.n
    cur_keys, cur_counts = _floats(cur.values)
    cur_keys, cur_counts = cur_keys[cur_counts > 0], cur_counts[cur_counts > 0]
    points = [edges, ref_keys, cur_keys]
    if cur.min is not None and cur.max is not None:
        points.append(np.array([cur.min, cur.max], dtype=np.float64))
    x = np.unique(np.concatenate(points))
    m = len(x)

    ref_atoms = np.zeros(m)
    ref_gaps = np.zeros(max(m - 1, 0))
    if exact_ref:
        ref_atoms[np.searchsorted(x, ref_keys)] = ref_counts
    elif len(edges) > 1:
        _spread(x, edges, ref.counts.astype(np.float64), ref_gaps)
    elif len(edges) == 1:
        ref_atoms[np.searchsorted(x, edges[0])] = ref.n

    cur_atoms = np.zeros(m)
    cur_gaps = np.zeros(max(m - 1, 0))
    cur_atoms[np.searchsorted(x, cur_keys)] = cur_counts
    if cur.n > int(cur_counts.sum()) and m > 1 and len(edges):
        # The mass not at known values: the reference's bins, and out of range below
        # e0 / above ek, less the known values there; spread evenly.
        k = len(edges) - 1
        low = min(float(cur.min), float(edges[0])) if cur.min is not None else edges[0]
        high = max(float(cur.max), float(edges[-1])) if cur.max is not None else edges[-1]
        bins = cur.counts if cur.counts is not None else np.zeros(max(k, 0))
        b = np.concatenate(([low], edges, [high])).astype(np.float64)
        masses = np.concatenate(([cur.under], bins, [cur.over])).astype(np.float64)
        # Known values (point masses) come off the bin that counted them.
        if len(cur_keys):
            where = np.searchsorted(b[1:-1], cur_keys, side="right")  # 0: under
            if k >= 1:
                where[(cur_keys == edges[-1])] = k  # the last bin is closed
            np.subtract.at(masses, where, cur_counts.astype(np.float64))
        np.maximum(masses, 0.0, out=masses)
        _spread_bins(x, b, masses, cur_gaps)

    ref_total, cur_total = ref_atoms.sum() + ref_gaps.sum(), cur_atoms.sum() + cur_gaps.sum()
    if ref_total > 0:
        ref_atoms /= ref_total
        ref_gaps /= ref_total
    if cur_total > 0:
        cur_atoms /= cur_total
        cur_gaps /= cur_total
    return Pair(x, ref_atoms, ref_gaps, cur_atoms, cur_gaps)


def _spread(x: np.ndarray, edges: np.ndarray, counts: np.ndarray, gaps: np.ndarray) -> None:
    """Each bin's count spread over the gaps of *x* inside it, by width."""
    _spread_bins(x, edges, counts, gaps)


def _spread_bins(x: np.ndarray, bounds: np.ndarray, masses: np.ndarray, gaps: np.ndarray) -> None:
    """Masses of the bins ``[bounds_i, bounds_i+1]`` spread over the gaps of *x* inside
    them in proportion to width (a zero-width bin puts its mass on the next gap)."""
    if len(x) < 2:
        return
    left = x[:-1]
    width = np.diff(x)
    which = np.searchsorted(bounds, left, side="right") - 1
    valid = (which >= 0) & (which < len(masses))
    which_c = np.clip(which, 0, len(masses) - 1)
    bin_width = bounds[np.minimum(which_c + 1, len(bounds) - 1)] - bounds[which_c]
    share = np.divide(width, bin_width, out=np.zeros_like(width), where=bin_width > 0)
    gaps += np.where(valid, masses[which_c] * share, 0.0)
    # Bins of zero width (cur min == e0, say) hold mass with no gap: put it at the bound.
    empty = np.flatnonzero((np.diff(bounds) <= 0) & (masses[: len(bounds) - 1] > 0))
    for i in empty:
        j = min(max(int(np.searchsorted(x, bounds[i], side="left")), 0), len(gaps) - 1)
        gaps[j] += masses[i]
