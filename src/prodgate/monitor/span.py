"""A version's production windows against its reference profile, column by column.

The monitor report's view of one version over a span: the windows merged over
replicas and windows (:mod:`prodgate.monitor.tallies`), the reference profile
(:mod:`prodgate.monitor.profiles`), the drift tests (:mod:`prodgate.monitor.drift`)
and the data quality (:mod:`prodgate.monitor.quality`), joined into one row per
column: ``{"column", "kind", "method", "statistic", "threshold", "drifted",
"p_value", "psi", "drift", "null_rate", "reference_null_rate", "out_of_range",
"new_categories", "new_category_names", "invalid_rate"}`` (``drift`` is the
statistic under its figure's name). Without a profile the quality figures that need
no reference are still there and the note says why drift is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection

from prodgate.monitor import drift as drift_module
from prodgate.monitor import profiles, tallies
from prodgate.monitor.profile import Current, Profile
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


def _quality(column: Mapping[str, Any], reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """The data-quality figures of one column (the spec's definitions, all shares)."""
    rows = int(column.get("rows", 0))
    nulls = int(column.get("nulls", 0))
    invalid = int(column.get("invalid", 0))
    present = rows - nulls
    out: dict[str, Any] = {
        "column": column["name"],
        "kind": column.get("kind"),
        "rows": rows,
        "null_rate": nulls / rows if rows else None,
        "invalid_rate": invalid / present if present else None,
        "reference_null_rate": None,
        "out_of_range": None,
        "new_categories": None,
        "new_category_names": [],
    }
    if reference is not None and int(reference.get("rows", 0)):
        out["reference_null_rate"] = int(reference.get("nulls", 0)) / int(reference["rows"])
    valid = present - invalid
    if column.get("kind") == "numeric" and reference is not None and "under" in column:
        outside = int(column.get("under", 0)) + int(column.get("over", 0))
        out["out_of_range"] = outside / valid if valid > 0 else None
    if column.get("kind") == "categorical" and reference is not None:
        known = set((reference.get("counts") or {}).keys())
        # A reference that kept its rare categories as "other" cannot call one new.
        if not reference.get("other"):
            new = {k: int(n) for k, n in (column.get("counts") or {}).items() if k not in known}
            out["new_category_names"] = sorted(new, key=lambda k: -new[k])[:20]
            seen = sum(new.values()) + (int(column.get("other", 0)) if known else 0)
            out["new_categories"] = seen / valid if valid > 0 else None
    return out


def _drift(
    service: ServiceSpec, reference: Mapping[str, Any], stats: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The dataset's drift (over the input columns) and each column's test (inputs and
    outputs), by :mod:`prodgate.monitor.drift` with the spec's overrides."""
    ref = Profile.from_json(dict(reference))
    cur = Current.from_json(dict(stats))
    overrides: dict[str, dict[str, Any]] = {}
    for name, o in service.monitor.drift_columns.items():
        spelled: dict[str, Any] = {"method": o.method, "threshold": o.threshold}
        overrides[name] = {k: v for k, v in spelled.items() if v is not None}
    inputs = [c.name for c in ref.columns if cur.column(c.name) is not None]
    report = drift_module.drift(
        ref, cur, columns=inputs, overrides=overrides, share=service.monitor.drift_share
    )
    tests = {c.column: c for c in report.columns}
    for out in ref.outputs:
        found = cur.column(out.name)
        if found is not None:
            given = overrides.get(out.name, {})
            tests[out.name] = drift_module.column_drift(
                out, found, given.get("method"), given.get("threshold")
            )
    summary = {k: v for k, v in report.as_dict().items() if k != "columns"}
    return summary, {name: t.as_dict() for name, t in tests.items()}


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
    by_name = {
        c["name"]: c
        for c in [*(reference or {}).get("columns", []), *(reference or {}).get("outputs", [])]
    }
    columns = [
        _quality(c, by_name.get(c["name"]) if binned else None)
        for c in [*(stats.get("columns") or []), *(stats.get("outputs") or [])]
    ]
    drift, tests = _drift(service, reference, stats) if binned and reference else (None, {})
    if int(stats.get("skipped") or 0):
        notes.append(
            f"{stats['skipped']} window row(s) counted on an older reference profile left out"
        )
    for row in columns:
        test = tests.get(row["column"], {})
        judged = test.get("method") is not None
        row.update(
            method=test.get("method"),
            statistic=test.get("statistic"),
            threshold=test.get("threshold"),
            p_value=test.get("p_value"),
            psi=test.get("psi"),
            drifted=test.get("drifted") if judged else None,
            drift=test.get("statistic") if judged else None,
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
