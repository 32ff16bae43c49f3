"""A version's production windows against its reference profile, column by column.

The monitor report's view of one version over a span: the windows merged over
replicas and windows (:mod:`prodgate.monitor.tallies`), the reference profile
(:mod:`prodgate.monitor.profiles`), the drift tests (:mod:`prodgate.monitor.drift`)
and the data quality (:mod:`prodgate.monitor.quality`), joined into one row per
column: ``{"column", "kind", "method", "statistic", "threshold", "drifted",
"p_value", "psi", "drift", "null_rate", "reference_null_rate", "out_of_range",
"new_categories", "new_category_names", "invalid_rate", "flags"}`` (``drift`` is
the statistic under its figure's name). Without a profile the quality figures that
need no reference are still there and the note says why drift is not; windows counted
before the stored profile (the gateway bins on the profile it had loaded) are not
judged against it either. :func:`timeline` is drift over time, window by window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from prodgate.monitor import drift as drift_module
from prodgate.monitor import profiles, tallies
from prodgate.monitor.drift import DriftReport
from prodgate.monitor.profile import Current, Profile
from prodgate.monitor.quality import ColumnQuality, quality
from prodgate.spec import ServiceSpec


@dataclass(frozen=True)
class Compared:
    """One version's span: the merged statistics and the per-column verdicts."""

    current: dict[str, Any] | None
    rows: int = 0
    profile: dict[str, Any] | None = None  # what the reference is (not its statistics)
    drift: dict[str, Any] | None = None  # share_drifted, dataset_drift, share
    columns: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def current(
    conn: Connection, service: ServiceSpec, version: int, start_us: int, end_us: int
) -> dict[str, Any] | None:
    """The windows of *version* that overlap ``[start_us, end_us)``, merged over
    replicas and windows (the window shape, plus ``skipped``: rows binned on an older
    reference profile, left out); None when there are none."""
    merged = tallies.merged(conn, service.name, start_us, end_us, version)
    if merged is None:
        return None
    return {**merged.counts, "skipped": merged.skipped, "windows": merged.windows}


def column_means(stats: Mapping[str, Any]) -> dict[str, float]:
    """The mean of each numeric input column of merged window statistics."""
    out: dict[str, float] = {}
    for column in stats.get("columns") or []:
        if column.get("kind") != "numeric":
            continue
        n = int(column.get("rows", 0)) - int(column.get("nulls", 0)) - int(column.get("invalid", 0))
        total = column.get("sum")
        if n > 0 and isinstance(total, (int, float)):
            out[str(column["name"])] = float(total) / n
    return out


def _plain_quality(column: Mapping[str, Any]) -> dict[str, Any]:
    """The quality figures a column has without a reference: nulls and wrong types."""
    rows = int(column.get("rows", 0))
    return {
        "column": column["name"],
        "kind": column.get("kind"),
        "rows": rows,
        "null_rate": int(column.get("nulls", 0)) / rows if rows else None,
        "reference_null_rate": None,
        "invalid_rate": int(column.get("invalid", 0)) / rows if rows else None,
        "out_of_range": None,
        "new_categories": None,
        "new_category_names": [],
        "flags": [],
    }


def _quality(found: ColumnQuality) -> dict[str, Any]:
    """A column's row from :func:`prodgate.monitor.quality.column_quality`."""
    return {
        "column": found.column,
        "kind": found.kind,
        "rows": found.rows,
        "null_rate": found.null_rate,
        "reference_null_rate": found.null_rate_reference,
        "invalid_rate": found.invalid_rate,
        "out_of_range": found.out_of_range,
        "new_categories": found.new_category_share,
        "new_category_names": list(found.new_categories or []),
        "flags": list(found.flags),
    }


def overrides(service: ServiceSpec) -> dict[str, dict[str, Any]]:
    """The spec's per-column drift overrides as :func:`prodgate.monitor.drift.drift`
    takes them."""
    out: dict[str, dict[str, Any]] = {}
    for name, o in service.monitor.drift_columns.items():
        spelled: dict[str, Any] = {"method": o.method, "threshold": o.threshold}
        out[name] = {k: v for k, v in spelled.items() if v is not None}
    return out


def drift_of(service: ServiceSpec, ref: Profile, cur: Current) -> DriftReport:
    """The dataset's drift over the reference's input columns that *cur* has."""
    inputs = [c.name for c in ref.columns if cur.column(c.name) is not None]
    return drift_module.drift(
        ref,
        cur,
        columns=inputs,
        overrides=overrides(service),
        share=service.monitor.drift_share,
        min_values=service.monitor.drift_min_rows,
    )


def _drift(
    service: ServiceSpec, reference: Mapping[str, Any], stats: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The dataset's drift (over the input columns) and each column's test (inputs and
    outputs), by :mod:`prodgate.monitor.drift` with the spec's overrides."""
    ref = Profile.from_json(dict(reference))
    cur = Current.from_json(dict(stats))
    report = drift_of(service, ref, cur)
    tests = {c.column: c for c in report.columns}
    given = overrides(service)
    for out in ref.outputs:
        found = cur.column(out.name)
        if found is not None:
            mine = given.get(out.name, {})
            tests[out.name] = drift_module.column_drift(
                out,
                found,
                mine.get("method"),
                mine.get("threshold"),
                service.monitor.drift_min_rows,
            )
    summary = {k: v for k, v in report.as_dict().items() if k != "columns"}
    return summary, {name: t.as_dict() for name, t in tests.items()}


def binned(
    conn: Connection, service: ServiceSpec, version: int, start_us: int, end_us: int
) -> tuple[Profile, Current] | None:
    """*version*'s reference and its span's windows, when they are counted on it."""
    stats = current(conn, service, version, start_us, end_us)
    stored = profiles.load(conn, service.name, version)
    if stats is None or stored is None or not int(stats.get("rows") or 0):
        return None
    if stats.get("reference") != stored.profile.get("created_us"):
        return None
    return Profile.from_json(dict(stored.profile)), Current.from_json(dict(stats))


def compare(
    conn: Connection, service: ServiceSpec, version: int, start_us: int, end_us: int
) -> Compared:
    """*version*'s windows in the span against its reference profile."""
    stats = current(conn, service, version, start_us, end_us)
    stored = profiles.load(conn, service.name, version)
    notes: list[str] = []
    summary = None
    if stored is not None:
        summary = {
            "rows": stored.rows,
            "source": stored.source,
            "created_by": stored.created_by,
            "created_at_us": stored.created_at_us,
        }
    else:
        notes.append(
            f"no reference profile for version {version}: drift cannot be judged "
            f"(register with --data, or run prodgate profile {service.name} {version} --data FILE)"
        )
    if stats is None or not int(stats.get("rows", 0)):
        return Compared(stats, int((stats or {}).get("rows", 0)), summary, None, [], notes)
    reference = stored.profile if stored else None
    binned = reference is not None and stats.get("reference") == reference.get("created_us")
    if reference is not None and not binned:
        # Windows count on the profile the gateway had loaded; these predate this one.
        notes.append(
            f"the windows of version {version} in this span were counted before its "
            "reference profile was stored: drift is judged from the next window on"
        )
    judged: dict[str, ColumnQuality] = {}
    if binned and reference is not None:
        found = quality(Profile.from_json(dict(reference)), Current.from_json(dict(stats)))
        judged = {c.column: c for c in found.columns}
    columns = [
        _quality(judged[c["name"]]) if c["name"] in judged else _plain_quality(c)
        for c in [*(stats.get("columns") or []), *(stats.get("outputs") or [])]
    ]
    drift, tests = _drift(service, reference, stats) if binned and reference else (None, {})
    if int(stats.get("skipped") or 0):
        notes.append(
            f"{stats['skipped']} window row(s) counted on an older reference profile left out"
        )
    for row in columns:
        test = tests.get(row["column"], {})
        tested = test.get("method") is not None
        row.update(
            method=test.get("method"),
            statistic=test.get("statistic"),
            threshold=test.get("threshold"),
            p_value=test.get("p_value"),
            psi=test.get("psi"),
            drifted=test.get("drifted") if tested else None,
            drift=test.get("statistic") if tested else None,
        )
        if test.get("note"):
            row["drift_note"] = test["note"]
    return Compared(stats, int(stats.get("rows", 0)), summary, drift, columns, notes)


def timeline(
    conn: Connection, service: ServiceSpec, version: int, start_us: int, end_us: int
) -> list[dict[str, Any]]:
    """Drift over time: per window of *version* in the span (merged over replicas),
    ``{"start_us", "end_us", "rows", "share_drifted", "dataset_drift", "drifted"}``;
    windows not binned on the stored profile have None figures."""
    stored = profiles.load(conn, service.name, version)
    reference = stored.profile if stored is not None else None
    out: list[dict[str, Any]] = []
    for window in tallies.per_window(conn, service.name, start_us, end_us, version):
        stats = window.counts
        point: dict[str, Any] = {
            "start_us": window.start_us,
            "end_us": window.end_us,
            "rows": int(stats.get("rows") or 0),
            "share_drifted": None,
            "dataset_drift": None,
            "drifted": [],
        }
        binned = reference is not None and stats.get("reference") == reference.get("created_us")
        if binned and reference is not None and point["rows"]:
            summary, tests = _drift(service, reference, stats)
            inputs = {c["name"] for c in reference.get("columns") or []}
            point["share_drifted"] = summary["share_drifted"]
            point["dataset_drift"] = summary["dataset_drift"]
            point["drifted"] = [n for n, t in tests.items() if t.get("drifted") and n in inputs]
        out.append(point)
    return out
