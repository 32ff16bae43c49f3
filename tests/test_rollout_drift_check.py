"""Drift as a canary check: the Jensen-Shannon distance of the canary's outputs against
production's (agreeing with scipy), and the controller failing an interval on it when
the policy sets ``max_output_drift`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from scipy.spatial.distance import jensenshannon
from sqlalchemy.engine import Connection

from prodgate.rollout import drift_check
from prodgate.rollout.controller import start, tick
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.tables import monitor_windows
from test_rollout_controller import MIN, T0, audit, healthy, setup

CONFIDENCE_BINS = 20


def window(predictions: dict[str, int], confidences: list[int]) -> dict[str, Any]:
    """A window's outputs in the plan's "current statistics" shape."""
    rows = sum(predictions.values())
    return {
        "rows": rows,
        "columns": [],
        "outputs": [
            {"name": "prediction", "kind": "categorical", "rows": rows, "nulls": 0,
             "invalid": 0, "counts": predictions, "other": 0},
            {"name": "confidence", "kind": "numeric", "rows": rows, "nulls": 0, "invalid": 0,
             "counts": confidences, "under": 0, "over": 0},
        ],
    }  # fmt: skip


def _bins(*cells: tuple[int, int]) -> list[int]:
    counts = [0] * CONFIDENCE_BINS
    for i, n in cells:
        counts[i] = n
    return counts


def test_distances_agree_with_scipy() -> None:
    same = window({"routine": 30, "adjuster": 10}, _bins((15, 20), (19, 20)))
    assert drift_check.output_drift(same, same) == {"prediction": 0.0, "confidence": 0.0}
    canary = window({"adjuster": 40}, _bins((19, 40)))
    found = drift_check.output_drift(canary, same)
    # Categories a side lacks count as zero there: [adjuster, routine] + other.
    assert found["prediction"] == pytest.approx(jensenshannon([40, 0, 0], [10, 30, 0]))
    assert found["confidence"] == pytest.approx(
        jensenshannon([0, *_bins((19, 40)), 0], [0, *_bins((15, 20), (19, 20)), 0])
    )
    # Numeric counts on other bins are not comparable; too few rows are not measured.
    other_bins = window({"adjuster": 40}, [40])
    assert set(drift_check.output_drift(other_bins, same)) == {"prediction"}
    assert drift_check.output_drift(canary, same, min_rows=41) == {}


def _write_window(store: Store, version: int, start_us: int, counts: dict[str, Any]) -> None:
    with store.write() as conn:
        conn.execute(
            monitor_windows.insert().values(
                service="claims",
                version=version,
                start_us=start_us,
                replica="test",
                length_us=MIN,
                rows=counts["rows"],
                counts=orjson.dumps(counts).decode(),
                updated_at_us=start_us,
            )
        )


def _reader(
    conn: Connection, service: str, version: int, start_us: int, end_us: int
) -> dict[str, Any] | None:
    """The test's windows (one replica, one window per interval) as written."""
    t = monitor_windows.c
    text = conn.execute(
        sa.select(t.counts).where(
            t.service == service,
            t.version == version,
            t.start_us < end_us,
            t.start_us + t.length_us > start_us,
        )
    ).scalar()
    return orjson.loads(text) if text is not None else None


def _windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """The production windows' own reader where installed, else the test's."""
    if drift_check.tallies_reader() is None:
        monkeypatch.setattr(drift_check, "tallies_reader", lambda: _reader)


def _spec(store: Store, limit: float | None) -> Spec:
    w = setup(store)
    svc = w.svc
    checks = replace(svc.policy.rollout.checks, max_output_drift=limit)
    rollout = replace(svc.policy.rollout, checks=checks)
    svc = replace(svc, policy=replace(svc.policy, rollout=rollout))
    return Spec(w.spec.path, {**w.spec.services, "claims": svc})


def test_a_canary_answering_differently_fails_its_interval(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _windows(monkeypatch)
    spec = _spec(store, 0.1)
    start(store, spec.service("claims"), 2, actor="alice", now_us=T0, reason="new model")
    healthy(store, T0)
    _write_window(store, 1, T0, window({"routine": 30, "adjuster": 10}, _bins((15, 40))))
    _write_window(store, 2, T0, window({"adjuster": 40}, _bins((19, 40))))
    [t] = tick(store, spec, T0 + MIN)
    assert t.action == "rollout_check_failed"
    assert "output drift against production" in t.reason
    [failed] = audit(store, "rollout_check_failed")
    (check,) = [c for c in failed["checks"] if c["name"] == "output_drift"]
    assert not check["passed"]
    assert check["limit"] == 0.1
    assert check["canary_value"] == pytest.approx(jensenshannon([0] * 15 + [40], [40] + [0] * 15))

    # The next interval: the canary answers as production does, and steps up.
    healthy(store, T0 + MIN)
    same = window({"routine": 30, "adjuster": 10}, _bins((15, 40)))
    _write_window(store, 1, T0 + MIN, same)
    _write_window(store, 2, T0 + MIN, same)
    [t] = tick(store, spec, T0 + 2 * MIN)
    assert t.action == "rollout_step"
    [step] = audit(store, "rollout_step")
    assert [c["passed"] for c in step["checks"] if c["name"] == "output_drift"] == [True]


def test_without_windows_or_a_limit_the_check_is_left_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    _windows(monkeypatch)
    spec = _spec(store, 0.1)
    start(store, spec.service("claims"), 2, actor="alice", now_us=T0, reason="new model")
    healthy(store, T0)  # no windows: monitoring off
    [t] = tick(store, spec, T0 + MIN)
    assert t.action == "rollout_step"
    [step] = audit(store, "rollout_step")
    assert "output_drift" not in [c["name"] for c in step["checks"]]
