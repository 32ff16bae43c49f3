"""Drift of the evaluation data from a version's reference profile (the ``drift.*`` gates).

An evaluation proves a version on one data file; a gate such as ``drift.share <= 0.3``
also asks whether that file looks like the data the version's reference profile was
made from (its training data, as registered with ``--data``). The file's input
columns are counted on the stored profile's bins (:func:`prodgate.monitor.profile.against`)
and tested as production windows are (:func:`prodgate.monitor.span.drift_of`: the
method per column as Evidently chooses it, the spec's ``monitor.drift`` overrides
and share). Without a stored profile there is nothing to compare with: the report
says so in ``note`` and a drift gate fails as not measurable.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store


def data_drift(
    store: Store, service: ServiceSpec, version: int, frame: pd.DataFrame
) -> dict[str, Any]:
    """The drift report of *frame*'s input columns against *version*'s stored profile.

    ``{"reference": {"source" (of its inputs), "rows", "created_at_us"}, "columns": [...],
    "number_of_columns", "number_of_drifted_columns", "share_drifted", "share",
    "dataset_drift"}`` (the columns as ``drift compare --json`` shows them); without a
    profile, with no profiled input column in *frame*, or with no column of enough
    values to judge (the spec's ``monitor.drift.min_rows``), ``share_drifted`` is
    None and ``note`` says why."""
    from prodgate.monitor import profiles
    from prodgate.monitor.profile import Profile, against
    from prodgate.monitor.span import drift_of

    with store.read() as conn:
        stored = profiles.load(conn, service.name, version)
    if stored is None:
        return {
            "reference": None,
            "share_drifted": None,
            "note": (
                f"version {version} has no reference profile to compare the data with "
                f"(register it with --data, or run prodgate profile {service.name} "
                f"{version} --data FILE)"
            ),
        }
    reference = Profile.from_json(dict(stored.profile))
    # The inputs' source (a profile whose outputs came from an evaluation names both).
    source = str(stored.profile.get("inputs_source") or stored.source)
    summary = {"source": source, "rows": stored.rows, "created_at_us": stored.created_at_us}
    names = [c.name for c in reference.columns if c.name in frame.columns]
    if not names:
        return {
            "reference": summary,
            "share_drifted": None,
            "note": "none of the reference profile's input columns is in the data",
        }
    current = against(reference, frame[names], columns=names)
    report = drift_of(service, reference, current).as_dict()
    if not report["number_of_tested_columns"]:
        # No column had the values a test needs: the share is unknown, not 0.
        return {
            "reference": summary,
            **report,
            "share_drifted": None,
            "note": (
                f"no column could be judged: {len(frame):,} rows, drift needs at least "
                f"{service.monitor.drift_min_rows:,} values of a column (monitor.drift.min_rows)"
            ),
        }
    return {"reference": summary, **report}
