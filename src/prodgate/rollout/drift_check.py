"""Drift as a canary check: the canary's outputs against production's.

Traffic is split at random, so the canary and production see inputs from one
distribution; what may differ is what each *answers*. The check compares, over the
rollout interval, the two versions' production windows
(:mod:`prodgate.monitor.tallies`): the distribution of predictions (classes of a
classifier) and of confidences (the fixed 20 bins every window shares), or of a
regressor's predictions where both windows hold them on the same bins. Each pair is
measured with the Jensen-Shannon distance (natural log, as Evidently and
:mod:`prodgate.monitor.drift` use it, 0 for the same distribution and at most
sqrt(ln 2) ~ 0.83); the check fails when the largest exceeds the policy's
``checks.max_output_drift`` (unset: not checked).

Windows are counted per window length (the spec's ``monitor.window``), so an interval
shorter than a window is judged on the windows it overlaps. Without windows for both
versions (monitoring off, or too few answers on either side) the check is left out
rather than failed: the other checks still judge the interval.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from prodgate.rollout.analysis import CheckResult

#: A version's windows over a span, merged: the "current statistics" shape, or None.
WindowReader = Callable[[Connection, str, int, int, int], Mapping[str, Any] | None]

OUTPUTS = ("prediction", "confidence")


def tallies_reader() -> WindowReader | None:
    """The production windows' reader (``prodgate.monitor.tallies.merged``), where
    installed."""
    try:
        tallies = importlib.import_module("prodgate.monitor.tallies")
    except ImportError:
        return None

    def read(
        conn: Connection, service: str, version: int, start_us: int, end_us: int
    ) -> Mapping[str, Any] | None:
        merged = tallies.merged(conn, service, start_us, end_us, version)
        if merged is None:
            return None
        counts: Mapping[str, Any] = merged.counts
        return counts

    return read


def _column(window: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    for column in window.get("outputs") or ():
        if isinstance(column, Mapping) and column.get("name") == name:
            return column
    return None


def _pair(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[list[float], list[float]] | None:
    """The two columns' counts over the same cells, or None when they are not comparable
    (another kind, or numeric counts on different bins)."""
    if a.get("kind") != b.get("kind"):
        return None
    if a.get("kind") == "categorical":
        ca, cb = dict(a.get("counts") or {}), dict(b.get("counts") or {})
        keys = sorted(set(ca) | set(cb))
        left = [float(ca.get(k, 0)) for k in keys] + [float(a.get("other") or 0)]
        right = [float(cb.get(k, 0)) for k in keys] + [float(b.get("other") or 0)]
        return left, right
    la, lb = a.get("counts"), b.get("counts")
    if not isinstance(la, list) or not isinstance(lb, list) or len(la) != len(lb):
        return None
    left = [float(a.get("under") or 0), *map(float, la), float(a.get("over") or 0)]
    right = [float(b.get("under") or 0), *map(float, lb), float(b.get("over") or 0)]
    return left, right


def js_distance(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen-Shannon distance of two count vectors (natural log), as scipy computes it."""
    sp, sq = sum(p), sum(q)
    if sp <= 0 or sq <= 0:
        raise ValueError("both distributions need counts")
    divergence = 0.0
    for x, y in zip(p, q, strict=True):
        px, qy = x / sp, y / sq
        m = (px + qy) / 2
        if px > 0:
            divergence += px * math.log(px / m) / 2
        if qy > 0:
            divergence += qy * math.log(qy / m) / 2
    return math.sqrt(max(divergence, 0.0))


def output_drift(
    canary: Mapping[str, Any], baseline: Mapping[str, Any], min_rows: int = 1
) -> dict[str, float]:
    """Jensen-Shannon distance per output both windows hold comparably, with at least
    *min_rows* values on each side."""
    out: dict[str, float] = {}
    for name in OUTPUTS:
        a, b = _column(canary, name), _column(baseline, name)
        if a is None or b is None:
            continue
        pair = _pair(a, b)
        if pair is None or sum(pair[0]) < min_rows or sum(pair[1]) < min_rows:
            continue
        out[name] = js_distance(*pair)
    return out


def check(
    conn: Connection,
    service: str,
    canary_version: int,
    baseline_version: int,
    start_us: int,
    end_us: int,
    limit: float,
    *,
    min_rows: int = 1,
    read: WindowReader | None = None,
) -> CheckResult | None:
    """The output-drift check over ``[start_us, end_us)``, or None when it cannot be
    measured (no windows reader, no windows, too few answers)."""
    reader = read if read is not None else tallies_reader()
    if reader is None:
        return None
    canary = reader(conn, service, canary_version, start_us, end_us)
    baseline = reader(conn, service, baseline_version, start_us, end_us)
    if canary is None or baseline is None:
        return None
    distances = output_drift(canary, baseline, min_rows)
    if not distances:
        return None
    worst = max(distances, key=lambda k: distances[k])
    value = distances[worst]
    passed = value <= limit + 1e-9
    each = ", ".join(f"{k} {v:.3f}" for k, v in distances.items())
    detail = (
        f"output drift against production (Jensen-Shannon distance): {each}; "
        f"{worst} {'within' if passed else 'past'} the limit {limit:g}"
    )
    return CheckResult("output_drift", passed, value, None, limit, detail)
