"""Evidently's side of the drift benchmark, run by the Python of its own virtual
environment (``bench/.venvs/evidently``): standard library, pandas and Evidently only.

It does what an Evidently user does with two Parquet files: reads them with pandas,
wraps them in ``Dataset``s with an explicit ``DataDefinition`` (the numeric and the
categorical columns named, so both tools agree on each column's type), runs a
``Report`` with ``DataDriftPreset()`` (its defaults: methods chosen per column, drift
share 0.5; ``include_tests=True`` so that each column's verdict comes from Evidently
itself), and reads the result with ``snapshot.dict()``. It writes one JSON file:
per column the method (the stattest's short name, e.g. ``wasserstein``), the drift
score, the threshold and the verdict, the count and share of drifted columns, and the
seconds of each phase::

    bench/.venvs/evidently/bin/python bench/drift_evidently.py REF CUR \\
        --numeric a,b --categorical c --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("DO_NOT_TRACK", "1")  # no usage telemetry from the library


def stattest_names() -> dict[str, str]:
    """Evidently's registered stattests: display name -> short name."""
    from evidently.legacy.calculations.stattests import registry

    out: dict[str, str] = {}
    for by_type in registry._registered_stat_tests.values():
        for test in by_type.values():
            out[test.display_name] = test.name
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("reference")
    p.add_argument("current")
    p.add_argument("--numeric", default="")
    p.add_argument("--categorical", default="")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    numeric = [c for c in args.numeric.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]
    phases: dict[str, float] = {}

    t = time.perf_counter()
    import evidently
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    phases["import"] = time.perf_counter() - t

    t = time.perf_counter()
    ref_df = pd.read_parquet(args.reference)
    cur_df = pd.read_parquet(args.current)
    phases["read"] = time.perf_counter() - t

    t = time.perf_counter()
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    reference = Dataset.from_pandas(ref_df, data_definition=definition)
    current = Dataset.from_pandas(cur_df, data_definition=definition)
    report = Report([DataDriftPreset()], include_tests=True)
    snapshot = report.run(current_data=current, reference_data=reference)
    phases["run"] = time.perf_counter() - t

    t = time.perf_counter()
    result = snapshot.dict()
    phases["result"] = time.perf_counter() - t

    names = stattest_names()
    verdicts = {}  # metric id -> drifted, from the tests
    for test in result.get("tests", []):
        metric_id = (test.get("metric_config") or {}).get("metric_id")
        if test.get("id") == "drift" and metric_id:
            verdicts[metric_id] = test.get("status") == "FAIL"
    columns = []
    summary = {}
    for metric in result["metrics"]:
        config = metric["config"]
        kind = config.get("type", "")
        if kind.endswith(":DriftedColumnsCount"):
            summary = {
                "count_drifted": metric["value"]["count"],
                "share_drifted": metric["value"]["share"],
                "drift_share": config.get("drift_share", 0.5),
            }
        elif kind.endswith(":ValueDrift"):
            method = config.get("method") or ""
            columns.append(
                {
                    "column": config["column"],
                    "method": names.get(method, method),
                    "method_display": method,
                    "statistic": float(metric["value"]),
                    "threshold": config.get("threshold"),
                    "drifted": verdicts.get(metric["id"]),
                }
            )
    if summary:
        summary["dataset_drift"] = summary["share_drifted"] >= summary["drift_share"]
    out = {
        "evidently": evidently.__version__,
        "pandas": pd.__version__,
        "columns": columns,
        **summary,
        "phases": phases,
    }
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
