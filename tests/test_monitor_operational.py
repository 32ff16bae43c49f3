"""The figures the audit log alone answers (error, violation and escalation rates),
and sources combined with a later one's known values winning. SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.monitor.alerts import Figures
from prodgate.monitor.operational import combined, operational_figures
from prodgate.spec import Spec, loading
from prodgate.store.engine import Store

SPEC = """\
services:
  claims:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input: {type: object, properties: {amount: {type: number}}}
"""

S = 1_000_000
T0 = 1_700_000_000 * S


@pytest.fixture
def spec(tmp_path: Path) -> Spec:
    path = tmp_path / "prodgate.yaml"
    path.write_text(SPEC)
    return loading.load(path)


def _records(store: Store, rows: list[tuple[int, int | None, str | None, int | None]]) -> None:
    with store.write() as conn:
        log.append(
            store,
            conn,
            [
                Record(
                    kind=KIND_INFERENCE,
                    action="predict",
                    ts_us=ts,
                    payload={"input": {"amount": 1.0}},
                    service="claims",
                    version=version,
                    status=status,
                    decision=decision,
                )
                for ts, status, decision, version in rows
            ],
        )


def test_rates_over_the_span_and_refusals_before_routing(store: Store, spec: Spec) -> None:
    now = T0 + 60 * S
    _records(
        store,
        [
            (T0 - 1, 500, None, 1),  # before the span
            (T0 + 1 * S, 200, "auto", 1),
            (T0 + 2 * S, 200, "escalated", 1),
            (T0 + 3 * S, 200, "auto", 2),
            (T0 + 4 * S, 422, "rejected", None),  # refused before a version was chosen
            (T0 + 5 * S, 500, None, 1),
            (now, 422, "rejected", None),  # the span is half-open
        ],
    )
    figures = operational_figures(store, spec, "claims", span_s=60, now_us=now)
    assert figures["error_rate"] == pytest.approx(1 / 5)
    assert figures["violation_rate"] == pytest.approx(1 / 5)
    assert figures["escalation_rate"] == pytest.approx(1 / 3)
    assert figures["accuracy"] is None  # nothing deployed, no feedback
    empty = operational_figures(store, spec, "claims", span_s=1, now_us=T0 - 10 * S)
    assert set(empty.values()) == {None}


def test_a_later_source_wins_where_it_knows(store: Store, spec: Spec) -> None:
    def first(store: Store, spec: Spec, service: str, *, span_s: float, now_us: int) -> Figures:
        return {"error_rate": 0.1, "violation_rate": 0.2, "accuracy": None}

    def second(store: Store, spec: Spec, service: str, *, span_s: float, now_us: int) -> Figures:
        return {"violation_rate": 0.3, "error_rate": None, "drift share": 0.5}

    both = combined(first, second)(store, spec, "claims", span_s=1, now_us=T0)
    assert both == {
        "error_rate": 0.1,
        "violation_rate": 0.3,
        "accuracy": None,
        "drift share": 0.5,
    }
