"""A self-contained HTML drift report: inline CSS and SVG, no script, no CDN.

Per column the reference's and the current data's distributions overlaid (numeric: the
fine bins merged into a few coarse ones over both sides' range; categorical: the most
frequent categories), the verdict table (method, statistic, threshold, PSI, data
quality flags) and, optionally, drift over time (the share of drifted columns per
window).
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from prodgate.monitor.columns import (
    CategoricalCurrent,
    CategoricalReference,
    NumericCurrent,
    NumericReference,
)
from prodgate.monitor.distribution import pair
from prodgate.monitor.drift import ColumnDrift, DriftReport
from prodgate.monitor.profile import Current, Profile
from prodgate.monitor.quality import ColumnQuality, QualityReport

#: Coarse bins of a numeric column's overlay.
COARSE_BINS = 30
#: Categories shown per categorical column.
SHOWN_CATEGORIES = 12
REF_COLOUR = "#4c78a8"
CUR_COLOUR = "#f58518"

__all__ = ["render"]

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.sub{color:#666;margin-bottom:16px}
table{border-collapse:collapse;margin:8px 0}th,td{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left;font-variant-numeric:tabular-nums}th{background:#f4f4f4}
.drift{color:#b00020;font-weight:600}.ok{color:#1b7f3b}
.summary{font-size:16px;padding:10px 14px;border-radius:6px;display:inline-block}
.yes{background:#fde7ea}.no{background:#e6f4ea}
.cols{display:flex;flex-wrap:wrap;gap:18px}
.card{border:1px solid #ddd;border-radius:6px;padding:8px 10px;width:440px}
.card h3{font-size:14px;margin:0 0 4px}.meta{color:#555;font-size:12px}
.legend span{display:inline-block;width:10px;height:10px;margin:0 4px 0 10px}
.flag{background:#fff3cd;border-radius:3px;padding:0 4px;margin-right:4px;font-size:12px}
"""


def render(
    reference: Profile,
    current: Current,
    report: DriftReport,
    quality: QualityReport | None = None,
    *,
    title: str = "Drift report",
    subtitle: str | None = None,
    over_time: Sequence[tuple[Any, float]] | None = None,
) -> str:
    """The report as one HTML document. *over_time*: (window start, share of drifted
    columns) points, the start a datetime, an ISO string or epoch seconds."""
    e = html.escape
    verdict = "yes" if report.dataset_drift else "no"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        f"<div class='sub'>{e(subtitle or _default_subtitle(reference, current))}</div>",
        f"<div class='summary {verdict}'>Dataset drift: <b>{verdict}</b> &mdash; "
        f"{len(report.drifted_columns)} of {len(report.columns)} columns drifted "
        f"({report.share_drifted:.0%}; the dataset drifts at {report.share:.0%})</div>",
    ]
    if over_time:
        parts.append("<h2>Drift over time</h2>")
        parts.append(_timeline(over_time, report.share))
    parts.append("<h2>Columns</h2>")
    parts.append(_table(report, quality))
    parts.append("<h2>Distributions</h2>")
    parts.append(
        f"<div class='legend'><span style='background:{REF_COLOUR}'></span>reference"
        f"<span style='background:{CUR_COLOUR}'></span>current</div><div class='cols'>"
    )
    for result in report.columns:
        ref = reference.column(result.column)
        cur = current.column(result.column)
        if ref is None or cur is None:
            continue
        parts.append(_card(result, ref, cur, quality.column(result.column) if quality else None))
    parts.append("</div></body></html>")
    return "".join(parts)


def _default_subtitle(reference: Profile, current: Current) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"reference: {reference.rows:,} rows; current: {current.rows:,} rows; made {when}"


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "&ndash;"
    return f"{value:.{digits}g}"


def _pct(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def _table(report: DriftReport, quality: QualityReport | None) -> str:
    e = html.escape
    head = (
        "<table><tr><th>column</th><th>kind</th><th>method</th><th>statistic</th>"
        "<th>threshold</th><th>drift</th><th>PSI</th>"
    )
    if quality is not None:
        head += "<th>nulls (ref &rarr; cur)</th><th>out of range / new</th><th>flags</th>"
    rows = [head + "</tr>"]
    for c in report.columns:
        cls, word = ("drift", "DRIFT") if c.drifted else ("ok", "ok" if c.method else "&ndash;")
        cells = [
            e(c.column),
            e(c.kind),
            e(c.method or "-"),
            _fmt(c.statistic),
            _fmt(c.threshold),
            f"<span class='{cls}'>{word}</span>",
            _fmt(c.psi),
        ]
        q = quality.column(c.column) if quality is not None else None
        if quality is not None:
            cells.extend(_quality_cells(q))
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return "".join(rows) + "</table>"


def _quality_cells(q: ColumnQuality | None) -> list[str]:
    if q is None:
        return ["&ndash;"] * 3
    nulls = f"{_pct(q.null_rate_reference)} &rarr; {_pct(q.null_rate)}"
    if q.kind == "numeric":
        extra = _pct(q.out_of_range)
    else:
        names = ", ".join(q.new_categories or [])
        extra = _pct(q.new_category_share) + (f" ({html.escape(names)})" if names else "")
    flags = "".join(f"<span class='flag'>{html.escape(f)}</span>" for f in q.flags)
    return [nulls, extra, flags or "&ndash;"]


def _card(result: ColumnDrift, ref: Any, cur: Any, q: ColumnQuality | None) -> str:
    e = html.escape
    verdict = (
        "<span class='drift'>drift</span>" if result.drifted else "<span class='ok'>no drift</span>"
    )
    meta = (
        f"{e(result.method or '-')} {_fmt(result.statistic)} (threshold {_fmt(result.threshold)})"
        f" &middot; PSI {_fmt(result.psi)} &middot; {verdict}"
    )
    if isinstance(ref, NumericReference) and isinstance(cur, NumericCurrent):
        labels, r, c = _numeric_overlay(ref, cur)
    elif isinstance(ref, CategoricalReference) and isinstance(cur, CategoricalCurrent):
        labels, r, c = _categorical_overlay(ref, cur)
    else:
        labels, r, c = [], np.zeros(0), np.zeros(0)
    chart = _bars(labels, r, c) if len(labels) else "<p class='meta'>no values to plot</p>"
    return (
        f"<div class='card'><h3>{e(result.column)}</h3><div class='meta'>{meta}</div>{chart}</div>"
    )


def _numeric_overlay(
    ref: NumericReference, cur: NumericCurrent
) -> tuple[list[str], np.ndarray, np.ndarray]:
    if ref.n == 0 or cur.n == 0 or ref.min is None or cur.min is None:
        return [], np.zeros(0), np.zeros(0)
    if ref.values is not None and len(ref.values) <= SHOWN_CATEGORIES and cur.values is not None:
        keys = sorted(set(ref.values) | {k for k, n in cur.values.items() if n}, key=float)
        r = np.array([ref.values.get(k, 0) for k in keys], dtype=float) / ref.n
        c = np.array([cur.values.get(k, 0) for k in keys], dtype=float) / cur.n
        return keys, r, c
    lo = min(float(ref.min), float(cur.min))
    hi = max(float(ref.max), float(cur.max))  # type: ignore[arg-type]
    if hi <= lo:
        return [_fmt(lo)], np.ones(1), np.ones(1)
    bounds = np.linspace(lo, hi, COARSE_BINS + 1)
    r, c = pair(ref, cur).masses(bounds)
    labels = [f"{_fmt(a, 3)}&ndash;{_fmt(b, 3)}" for a, b in itertools.pairwise(bounds)]
    return labels, r, c


def _categorical_overlay(
    ref: CategoricalReference, cur: CategoricalCurrent
) -> tuple[list[str], np.ndarray, np.ndarray]:
    if ref.n == 0 and cur.n == 0:
        return [], np.zeros(0), np.zeros(0)
    shares: dict[str, tuple[float, float]] = {}
    for k in set(ref.counts) | set(cur.counts):
        shares[k] = (ref.counts.get(k, 0) / max(ref.n, 1), cur.counts.get(k, 0) / max(cur.n, 1))
    top = sorted(shares, key=lambda k: (-max(shares[k]), k))[:SHOWN_CATEGORIES]
    r = np.array([shares[k][0] for k in top])
    c = np.array([shares[k][1] for k in top])
    rest_r, rest_c = 1.0 - r.sum(), 1.0 - c.sum()
    if rest_r > 1e-9 or rest_c > 1e-9:
        top.append("(other)")
        r = np.append(r, max(rest_r, 0.0))
        c = np.append(c, max(rest_c, 0.0))
    return [html.escape(k) for k in top], r, c


def _bars(labels: list[str], ref: np.ndarray, cur: np.ndarray) -> str:
    """Side-by-side bars per bin (reference, current), shares on the y axis."""
    width, height, pad_left, pad_bottom = 420, 170, 34, 20
    n = len(labels)
    top = float(max(ref.max(initial=0.0), cur.max(initial=0.0))) or 1.0
    slot = (width - pad_left) / n
    bar = max(slot * 0.42, 0.5)
    out = [
        f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "xmlns='http://www.w3.org/2000/svg' role='img'>",
        f"<line x1='{pad_left}' y1='{height - pad_bottom}' x2='{width}' "
        f"y2='{height - pad_bottom}' stroke='#999'/>",
        f"<text x='0' y='10' font-size='10' fill='#666'>{top:.0%}</text>",
    ]
    plot = height - pad_bottom - 12
    for i, label in enumerate(labels):
        x = pad_left + i * slot
        for j, (share, colour) in enumerate(((ref[i], REF_COLOUR), (cur[i], CUR_COLOUR))):
            h = plot * float(share) / top
            out.append(
                f"<rect x='{x + j * bar:.1f}' y='{height - pad_bottom - h:.1f}' "
                f"width='{bar:.1f}' height='{h:.1f}' fill='{colour}'>"
                f"<title>{label}: {'reference' if j == 0 else 'current'} {share:.2%}</title></rect>"
            )
        if n <= SHOWN_CATEGORIES + 1:
            text = label if len(label) <= 10 else label[:9] + "&hellip;"
            out.append(
                f"<text x='{x + bar:.1f}' y='{height - 6}' font-size='9' "
                f"text-anchor='middle' fill='#444'>{text}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.strftime("%m-%d %H:%M")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC).strftime("%m-%d %H:%M")
    return str(value)


def _timeline(points: Sequence[tuple[Any, float]], share: float) -> str:
    """The share of drifted columns per window, with the dataset-drift line."""
    width, height, pad_left, pad_bottom = 900, 200, 40, 24
    n = len(points)
    step = (width - pad_left - 10) / max(n - 1, 1)
    plot = height - pad_bottom - 10

    def y(v: float) -> float:
        return height - pad_bottom - plot * min(max(v, 0.0), 1.0)

    coords = [(pad_left + i * step, y(float(v))) for i, (_, v) in enumerate(points)]
    path = " ".join(f"{x:.1f},{yy:.1f}" for x, yy in coords)
    out = [
        f"<svg width='{width}' height='{height}' viewBox='0 0 {width} {height}' "
        "xmlns='http://www.w3.org/2000/svg' role='img'>",
        f"<line x1='{pad_left}' y1='{y(0):.1f}' x2='{width}' y2='{y(0):.1f}' stroke='#999'/>",
        f"<line x1='{pad_left}' y1='{y(share):.1f}' x2='{width}' y2='{y(share):.1f}' "
        "stroke='#b00020' stroke-dasharray='4 3'/>",
        f"<text x='2' y='{y(share) + 4:.1f}' font-size='10' fill='#b00020'>{share:.0%}</text>",
        f"<text x='2' y='{y(1) + 4:.1f}' font-size='10' fill='#666'>100%</text>",
        f"<polyline points='{path}' fill='none' stroke='{REF_COLOUR}' stroke-width='2'/>",
    ]
    for (x, yy), (when, v) in zip(coords, points, strict=True):
        out.append(
            f"<circle cx='{x:.1f}' cy='{yy:.1f}' r='3' fill='{REF_COLOUR}'>"
            f"<title>{html.escape(_when(when))}: {float(v):.0%} of columns drifted</title></circle>"
        )
    for i in sorted({0, n // 2, n - 1}):
        out.append(
            f"<text x='{coords[i][0]:.1f}' y='{height - 6}' font-size='10' text-anchor='middle' "
            f"fill='#444'>{html.escape(_when(points[i][0]))}</text>"
        )
    out.append("</svg>")
    return "".join(out)
