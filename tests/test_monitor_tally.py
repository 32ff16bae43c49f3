"""The gateway's production windows: counting records against a reference's bins, and
the flush of the running totals with the recorder's group commits."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.audit.record import KIND_ACTION, Record
from prodgate.monitor import tally as tally_module
from prodgate.monitor.tally import CONFIDENCE_BINS, MAX_CATEGORIES, Layout, Tally
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import inference_record
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, monitor_windows

MINUTE_US = 60_000_000
T0 = 1_700_000_040_000_000  # a minute boundary
CONTRACT = {
    "type": "object",
    "properties": {
        "amount": {"type": "number"},
        "category": {"type": "string", "enum": ["auto", "home"]},
        "count": {"type": ["integer", "null"]},
        "tags": {"type": "array"},
    },
}
PROFILE: dict[str, Any] = {
    "format": 1,
    "rows": 100,
    "created_us": 123,
    "columns": [
        {"name": "amount", "kind": "numeric", "edges": [0, 10, 20, 30], "counts": [1, 1, 1]},
        {"name": "category", "kind": "categorical", "counts": {"auto": 1}, "other": 0},
        {
            "name": "count",
            "kind": "numeric",
            "edges": [1, 2, 3],
            "counts": [1, 1],
            "values": {"1": 5, "2": 3, "3": 2},
        },
    ],
    "outputs": [{"name": "prediction", "kind": "categorical", "counts": {}, "other": 0}],
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_tally(flush_s: float = 5.0, clock: Clock | None = None) -> Tally:
    return Tally(
        "r1",
        {"claims": "classifier", "price": "regressor"},
        {"claims": CONTRACT, "price": CONTRACT},
        {"claims": 60.0, "price": 60.0},
        flush_s=flush_s,
        clock=clock or Clock(),
    )


def answered(
    row: dict[str, Any],
    prediction: Any = "routine",
    confidence: float | None = 0.9,
    ts_us: int = T0,
    version: int | None = 1,
    service: str = "claims",
) -> Record:
    return inference_record(
        action="predict",
        service=service,
        version=version,
        status=200,
        decision="auto",
        payload={"input": row, "output": {"prediction": prediction, "probabilities": None}},
        ts_us=ts_us,
        latency_ms=1.0,
        confidence=confidence,
    )


def refused(paths: list[str], version: int | None = 1, ts_us: int = T0) -> Record:
    return inference_record(
        action="predict",
        service="claims",
        version=version,
        status=422,
        decision="rejected",
        payload={"problem": "contract", "errors": [{"path": p, "message": "bad"} for p in paths]},
        ts_us=ts_us,
        latency_ms=1.0,
    )


def counts(tally: Tally, version: int = 1, start: int = T0) -> dict[str, Any]:
    (window,) = [w for w in tally.windows if (w.version, w.start_us) == (version, start)]
    return window.as_json()


def column(window: dict[str, Any], name: str, part: str = "columns") -> dict[str, Any]:
    (found,) = [c for c in window[part] if c["name"] == name]
    return found


def test_numeric_values_are_binned_on_the_reference_edges() -> None:
    tally = make_tally()
    tally.use_profiles({("claims", 1): PROFILE})
    amounts = [0, 5, 10, 19.5, 20, 30, -1, 31, None, "12", float("nan"), True]
    tally.observe([answered({"amount": a, "count": 2}) for a in amounts])
    amount = column(counts(tally), "amount")
    # [0,10) [10,20) [20,30] (the last bin closed); True is 1; NaN is missing.
    assert amount["counts"] == [3, 2, 2]
    assert (amount["under"], amount["over"]) == (1, 1)
    assert (amount["rows"], amount["nulls"], amount["invalid"]) == (12, 2, 1)
    seen = [0, 5, 10, 19.5, 20, 30, -1, 31, 1]
    assert (amount["min"], amount["max"]) == (-1, 31)
    assert amount["sum"] == pytest.approx(sum(seen))
    assert amount["sumsq"] == pytest.approx(sum(x * x for x in seen))


def test_exact_values_are_counted_under_the_reference_names() -> None:
    tally = make_tally()
    tally.use_profiles({("claims", 1): PROFILE})
    tally.observe([answered({"count": c}) for c in (1, 2, 2.0, 3, 7, None)])
    count = column(counts(tally), "count")
    assert count["values"] == {"1": 1, "2": 2, "3": 1}
    assert count["values_other"] == 1
    assert count["over"] == 1
    assert count["nulls"] == 1


def test_categories_are_capped_then_other() -> None:
    tally = make_tally()
    rows = [{"category": f"c{i}"} for i in range(MAX_CATEGORIES + 5)]
    rows += [{"category": "c0"}, {"category": 3}, {"category": None}, {}]
    tally.observe([answered(r) for r in rows])
    category = column(counts(tally), "category")
    assert len(category["counts"]) == MAX_CATEGORIES
    assert category["counts"]["c0"] == 2
    assert category["other"] == 5
    assert (category["invalid"], category["nulls"]) == (1, 2)


def test_without_a_profile_the_contract_says_what_is_counted_unbinned() -> None:
    tally = make_tally()
    tally.observe([answered({"amount": 5, "category": "auto", "tags": ["x"]})])
    window = counts(tally)
    assert [c["name"] for c in window["columns"]] == ["amount", "category", "count"]
    amount = column(window, "amount")
    assert amount["counts"] is None
    assert amount["values"] is None
    assert (amount["rows"], amount["min"], amount["max"]) == (1, 5, 5)
    assert window["reference"] is None
    assert Layout.from_contract("classifier", CONTRACT).columns[2].kind == "numeric"


def test_outputs_confidence_and_calibration_counts() -> None:
    tally = make_tally()
    tally.observe(
        [
            answered({}, "routine", 0.92),
            answered({}, "routine", 0.97),
            answered({}, "adjuster", 0.51),
            answered({}, "adjuster", 1.0),
            answered({}, "adjuster", None),
        ]
    )
    window = counts(tally)
    prediction = column(window, "prediction", "outputs")
    assert prediction["counts"] == {"routine": 2, "adjuster": 3}
    confidence = column(window, "confidence", "outputs")
    assert len(confidence["counts"]) == CONFIDENCE_BINS
    assert confidence["counts"][18] == 1
    assert confidence["counts"][19] == 2
    assert confidence["counts"][10] == 1
    assert confidence["nulls"] == 1
    calibration = window["calibration_counts"]
    assert calibration["routine"][18] == 1
    assert calibration["routine"][19] == 1
    assert calibration["adjuster"][10] == 1
    assert calibration["adjuster"][19] == 1
    assert sum(calibration["adjuster"]) == 2


def test_a_regressors_prediction_is_numeric() -> None:
    tally = make_tally()
    tally.observe(
        [answered({}, 12.5, None, service="price"), answered({}, 7, None, service="price")]
    )
    (window,) = [w.as_json() for w in tally.windows]
    prediction = column(window, "prediction", "outputs")
    assert prediction["kind"] == "numeric"
    assert prediction["sum"] == 19.5
    assert "calibration_counts" not in window


def test_refusals_count_violations_per_field_and_unrouted_ones_under_version_0() -> None:
    tally = make_tally()
    tally.observe(
        [
            refused(["/inputs/amount", "/inputs/category"]),
            refused(["/instances/3/amount"]),
            refused(["/inputs"], version=None),
            answered({"amount": 1}),
        ]
    )
    window = counts(tally)
    assert window["violations"] == {"amount": 2, "category": 1}
    assert (window["requests"], window["refused"], window["rows"]) == (3, 2, 1)
    unrouted = counts(tally, version=0)
    assert unrouted["violations"] == {"-": 1}
    assert unrouted["refused"] == 1


def test_only_predict_inference_records_of_served_services_count() -> None:
    tally = make_tally()
    shadow = answered({"amount": 1})
    shadow.action = "shadow"
    action = Record(kind=KIND_ACTION, action="deploy", ts_us=T0, payload={}, service="claims")
    tally.observe([shadow, action, answered({"amount": 1}, service="made-up")])
    assert tally.windows == []
    assert not tally.dirty


def test_windows_are_aligned_on_the_epoch_and_a_closed_one_flushes_then_goes() -> None:
    clock = Clock()
    tally = make_tally(clock=clock)
    tally.observe([answered({"amount": 1}, ts_us=T0 + 5), answered({"amount": 2}, ts_us=T0 + 59)])
    assert [w.start_us for w in tally.windows] == [T0]
    assert tally.dirty
    assert not tally.due()
    assert tally.due_in() == 5.0
    tally.observe([answered({"amount": 3}, ts_us=T0 + MINUTE_US)])
    assert tally.due()
    assert tally.due_in() == 0.0
    pending = tally.pending(1)
    assert [(r["start_us"], r["rows"], r["replica"]) for r in pending.rows] == [
        (T0, 2, "r1"),
        (T0 + MINUTE_US, 1, "r1"),
    ]
    tally.observe([answered({"amount": 4}, ts_us=T0 + MINUTE_US + 1)])  # after the snapshot
    tally.written(pending)
    assert [w.start_us for w in tally.windows] == [T0 + MINUTE_US]  # the closed one went
    assert tally.dirty  # the open one has a count the store has not seen
    clock.now = 5.0
    assert tally.due()
    (row,) = tally.pending(2).rows
    assert row["rows"] == 2
    assert orjson.loads(row["counts"])["rows"] == 2


def test_a_failed_flush_keeps_everything_and_waits_before_trying_again() -> None:
    clock = Clock()
    tally = make_tally(clock=clock)
    tally.observe([answered({"amount": 1}, ts_us=T0)])
    tally.observe([answered({"amount": 1}, ts_us=T0 + MINUTE_US)])
    assert tally.due()
    tally.failed()
    assert not tally.due()
    assert tally.due_in() == 5.0
    clock.now = 5.0
    assert tally.due()
    assert len(tally.pending(1).rows) == 2


def test_a_new_profile_applies_to_windows_that_open_after_it() -> None:
    tally = make_tally()
    tally.observe([answered({"amount": 5})])
    tally.use_profiles({("claims", 1): PROFILE})
    tally.observe([answered({"amount": 5}), answered({"amount": 5}, ts_us=T0 + MINUTE_US)])
    first, second = sorted(tally.windows, key=lambda w: w.start_us)
    assert first.as_json()["reference"] is None
    assert column(first.as_json(), "amount")["rows"] == 2
    assert second.as_json()["reference"] == 123
    assert column(second.as_json(), "amount")["counts"] == [1, 0, 0]


def test_llm_records_count_lengths_and_tokens() -> None:
    tally = Tally("r", {"letter": "llm"}, {"letter": {}}, {"letter": 60.0})
    rec = inference_record(
        action="predict",
        service="letter",
        version=2,
        status=200,
        decision="auto",
        payload={
            "input": {"name": "Ann", "claim": "hail"},
            "output": {"text": "Dear Ann"},
            "llm": {"usage": {"input_tokens": 30, "output_tokens": 4}},
        },
        ts_us=T0,
        latency_ms=1.0,
    )
    chat = inference_record(
        action="predict",
        service="letter",
        version=2,
        status=200,
        decision="auto",
        payload={
            "input": {"messages": [{"role": "user", "content": "hello"}]},
            "output": {"text": "hi"},
            "llm": {"usage": {"input_tokens": 9, "output_tokens": 1}},
        },
        ts_us=T0,
        latency_ms=1.0,
    )
    tally.observe([rec, chat])
    (window,) = [w.as_json() for w in tally.windows]
    got = {c["name"]: (c["sum"], c["rows"]) for c in window["outputs"]}
    assert got == {
        "prompt_chars": (7 + 5, 2),
        "answer_chars": (8 + 2, 2),
        "prompt_tokens": (39, 2),
        "completion_tokens": (5, 2),
    }


# -- the flush with the recorder's group commits (a real store) -------------------------


def stored(store: Store) -> dict[tuple[int, int], tuple[str, dict[str, Any]]]:
    with store.read() as conn:
        rows = conn.execute(sa.select(monitor_windows)).all()
    return {(r.version, r.start_us): (r.replica, orjson.loads(r.counts)) for r in rows}


@pytest.mark.anyio
async def test_the_windows_are_flushed_in_a_groups_transaction(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    tally = make_tally(flush_s=5.0, clock=clock)
    recorder = Recorder(store, Metrics(), tally=tally)
    seen: list[tuple[str, int]] = []
    append, write = log.append, tally_module.write

    def spy_append(store_: Store, conn: Any, records: Any) -> None:
        seen.append(("audit", id(conn)))
        append(store_, conn, records)

    def spy_write(conn: Any, pending: Any) -> None:
        seen.append(("windows", id(conn)))
        write(conn, pending)

    monkeypatch.setattr("prodgate.pipeline.recorder.log.append", spy_append)
    monkeypatch.setattr(tally_module, "write", spy_write)
    recorder.start()
    try:
        await recorder.record([answered({"amount": 5})])
        assert stored(store) == {}
        assert tally.dirty
        clock.now = 5.0
        await recorder.record([answered({"amount": 7})])
        # The first group's counts rode on the second group's transaction.
        assert seen[-2][0] == "audit"
        assert seen[-1] == ("windows", seen[-2][1])
        replica, window = stored(store)[(1, T0)]
        assert replica == "r1"
        assert window["rows"] == 1
    finally:
        await recorder.close()
    # Closing flushes what is left: both rows now.
    assert stored(store)[(1, T0)][1]["rows"] == 2
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar() == 2


@pytest.mark.anyio
async def test_an_idle_recorder_flushes_once_due(store: Store) -> None:
    tally = Tally("r1", {"claims": "classifier"}, {"claims": CONTRACT}, {"claims": 60.0}, 0.2)
    recorder = Recorder(store, Metrics(), tally=tally)
    recorder.start()
    try:
        await recorder.record([answered({"amount": 5}), refused(["/inputs/amount"])])
        for _ in range(50):
            if stored(store):
                break
            await asyncio.sleep(0.05)
        window = stored(store)[(1, T0)][1]
        assert (window["rows"], window["refused"], window["violations"]) == (1, 1, {"amount": 1})
        assert not tally.dirty
    finally:
        await recorder.close()


def test_the_window_json_has_the_plans_shape() -> None:
    tally = make_tally()
    tally.use_profiles({("claims", 1): PROFILE})
    tally.observe([answered({"amount": 5, "category": "auto", "count": 1})])
    window = counts(tally)
    assert set(window) == {
        "format",
        "requests",
        "rows",
        "refused",
        "violations",
        "reference",
        "columns",
        "outputs",
        "calibration_counts",
    }
    assert set(column(window, "amount")) == {
        "name",
        "kind",
        "rows",
        "nulls",
        "invalid",
        "min",
        "max",
        "sum",
        "sumsq",
        "counts",
        "under",
        "over",
        "values",
        "values_other",
    }
    assert set(column(window, "category")) == {
        "name",
        "kind",
        "rows",
        "nulls",
        "invalid",
        "counts",
        "other",
    }
    assert not math.isinf(column(window, "amount")["min"])


def rounded(value: Any) -> Any:
    """*value* with every float to 9 significant digits (sums in another order)."""
    if isinstance(value, float):
        return float(f"{value:.9g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


def test_two_tallies_merged_equal_one_that_saw_everything() -> None:
    from prodgate.monitor import tallies

    records = [
        answered({"amount": a, "category": c, "count": n}, p, conf)
        for a, c, n, p, conf in [
            (5, "auto", 1, "routine", 0.9),
            (25, "home", 2, "adjuster", 0.55),
            (-3, "boat", None, "routine", 0.99),
            (12.5, None, 3, "adjuster", None),
            (40, "auto", 7, "routine", 0.71),
        ]
    ] + [refused(["/inputs/amount"]), refused(["/inputs/category"], version=None)]
    one, left, right = make_tally(), make_tally(), make_tally()
    for tally in (one, left, right):
        tally.use_profiles({("claims", 1): PROFILE})
    one.observe(records)
    left.observe(records[::2])
    right.observe(records[1::2])

    def rows(tally: Tally, replica: str) -> list[tallies.WindowRow]:
        return [
            tallies.WindowRow(
                "claims", w.version, w.start_us, w.length_us, replica, w.rows, w.as_json(), 0
            )
            for w in tally.windows
        ]

    for version in (0, 1):
        whole = tallies.merge_rows([r for r in rows(one, "a") if r.version == version])
        parts = [r for r in rows(left, "b") + rows(right, "c") if r.version == version]
        merged = tallies.merge_rows(parts)
        assert whole is not None
        assert merged is not None
        assert rounded(merged.counts) == rounded(whole.counts)
        assert merged.replicas == sorted({p.replica for p in parts})
