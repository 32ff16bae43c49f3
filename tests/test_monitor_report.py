"""The monitor report and its figures: windows against the reference profile, the
label-free estimate beside the realised figures, cohorts and alerts (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from monitor_support import decisions, record_traffic, save_profile, set_alert, setup_service
from prodgate.exceptions import UnknownServiceError, UnknownVersionError
from prodgate.monitor.report import figures, flatten, monitor_report
from prodgate.settings import Settings
from prodgate.store.engine import Store, open_store


@pytest.fixture
def db(settings: Settings) -> Iterator[Store]:
    store = open_store(settings)
    yield store
    store.dispose()


def test_report_of_a_monitored_classifier(settings: Settings, db: Store) -> None:
    setup = setup_service(settings, db)
    profile = save_profile(db, setup.frame)
    # Covariate shift: amounts crowd around 5,000, where the model is least sure.
    batch = decisions(setup.rng, 900, 3000, 8000)
    record_traffic(db, batch, profile=profile, refused=30)
    set_alert(db, "ages-missing", "firing", 0.2)
    set_alert(db, "estimated accuracy < 0.9 on large", "ok", 0.93)

    report = monitor_report(db, setup.spec, "claims", 3600)
    assert orjson.loads(orjson.dumps(report)) == report  # plain JSON, no numpy
    assert report["service"] == "claims"
    assert report["deployment"]["production"] == 1
    (entry,) = report["versions"]
    assert (entry["version"], entry["role"], entry["rows"]) == (1, "production", 900)
    assert entry["requests"] == 930
    assert entry["refused"] == 30
    assert entry["violation_rate"] == pytest.approx(30 / 930)
    assert entry["violations"]["amount"]["count"] == 30
    assert entry["profile"]["source"] == "holdout.csv"

    columns = {c["column"]: c for c in entry["columns"]}
    assert set(columns) == {"amount", "category", "age", "prediction", "confidence"}
    nulls = sum(d.age is None for d in batch)
    assert columns["age"]["null_rate"] == pytest.approx(nulls / 900)
    assert columns["age"]["reference_null_rate"] == 0
    old = sum(d.age is not None and d.age > 90 for d in batch)
    assert columns["age"]["out_of_range"] == pytest.approx(old / (900 - nulls))
    assert columns["amount"]["out_of_range"] == 0
    # Amounts crowd into [3000, 8000] of the reference's [0, 10000]: drifted.
    amount = columns["amount"]
    assert (amount["method"], amount["threshold"], amount["drifted"]) == ("wasserstein", 0.1, True)
    assert amount["drift"] == amount["statistic"] > 0.1
    assert amount["psi"] is not None
    assert entry["drift"]["share"] == 0.5
    assert entry["drift"]["number_of_columns"] == 3  # the inputs
    drifted = [c["column"] for c in entry["columns"] if c["drifted"]]
    assert entry["drift"]["share_drifted"] == pytest.approx(len(drifted) / 3)
    assert columns["prediction"]["drifted"] is None  # the reference has no outputs
    marine = sum(d.category == "marine" for d in batch)
    assert columns["category"]["new_categories"] == pytest.approx(marine / 900)
    assert columns["category"]["new_category_names"] == ["marine"]

    # The estimate tracks what the decisions really were, before most labels came.
    real = sum(d.prediction == d.truth for d in batch) / 900
    estimate = entry["estimate"]
    assert estimate["rows"] == 900
    assert estimate["accuracy"] == pytest.approx(real, abs=0.05)
    assert estimate["accuracy_low"] <= estimate["accuracy"] <= estimate["accuracy_high"]
    assert estimate["cost_per_decision"] > 0
    assert estimate["evaluation_id"] >= 1
    labelled = batch[::3]
    realised = entry["realised"]
    assert realised["labelled"] == len(labelled)
    right = sum(d.prediction == d.truth for d in labelled)
    assert realised["accuracy"] == pytest.approx(right / len(labelled))
    assert realised["error_rate"] == 0
    escalated = sum(d.confidence < 0.7 for d in batch)
    assert realised["escalation_rate"] == pytest.approx(escalated / 900)

    (large,) = entry["cohorts"]
    big = [d for d in batch if d.amount >= 5000]
    assert (large["name"], large["rows"]) == ("large", len(big))
    assert large["estimate"]["rows"] == len(big)
    assert large["labelled"] == sum(
        1 for i, d in enumerate(batch) if i % 3 == 0 and d.amount >= 5000
    )

    assert report["firing"] == ["ages-missing"]
    states = {a["rule"]: a for a in report["alerts"]}
    assert states["ages-missing"]["when"] == "null_rate(age) > 0.10"
    assert states["estimated accuracy < 0.9 on large"]["state"] == "ok"

    flat = flatten(report)
    assert flat["drift share"] == entry["drift"]["share_drifted"]
    assert flat["drift(amount)"] == amount["statistic"]
    assert flat["drifted(amount)"] == 1.0
    assert "drifted(prediction)" not in flat
    assert flat["null_rate(age)"] == pytest.approx(nulls / 900)
    assert flat["new_categories(category)"] == pytest.approx(marine / 900)
    assert flat["out_of_range(amount)"] == 0
    assert flat["violation_rate"] == pytest.approx(30 / 930)
    assert flat["violation_rate(amount)"] == pytest.approx(30 / 930)
    assert flat["violation_rate(age)"] == 0  # counted, none: a rule on it can resolve
    assert flat["estimated accuracy"] == estimate["accuracy"]
    assert flat["estimated cost"] == estimate["cost_per_decision"]
    assert flat["accuracy"] == realised["accuracy"]
    assert flat["cost"] == realised["cost_per_decision"]
    assert flat["error_rate"] == 0
    assert flat["estimated accuracy on large"] == large["estimate"]["accuracy"]
    assert flat["accuracy on large"] == large["accuracy"]
    assert all(isinstance(v, float) for v in flat.values())
    # figures() is the same, computed afresh (what the alert loop calls).
    again = figures(db, setup.spec, "claims", span_s=3600)
    assert again["null_rate(age)"] == flat["null_rate(age)"]
    assert again["estimated accuracy"] == pytest.approx(flat["estimated accuracy"])
    assert again["estimated accuracy on large"] == flat["estimated accuracy on large"]


def test_estimate_falls_with_the_shift_before_labels(settings: Settings, db: Store) -> None:
    setup = setup_service(settings, db)
    # Familiar traffic first: amounts spread as in the holdout.
    record_traffic(db, decisions(setup.rng, 600, 0, 10_000), labelled_every=None)
    before = figures(db, setup.spec, "claims", span_s=3600)
    assert "accuracy" not in before  # no feedback: nothing realised
    # Later, amounts drift toward 5,000: the model is unsure, the estimate drops.
    later = 30 * 60_000_000
    from prodgate.store.engine import now_us

    record_traffic(
        db, decisions(setup.rng, 600, 4000, 6000), labelled_every=None, end_us=now_us() + later
    )
    after = figures(db, setup.spec, "claims", span_s=600, now_us=now_us() + later)
    assert after["estimated accuracy"] < before["estimated accuracy"] - 0.15


def test_what_is_missing_is_said(settings: Settings, db: Store) -> None:
    setup = setup_service(settings, db)
    empty = monitor_report(db, setup.spec, "claims", 3600)
    (entry,) = empty["versions"]
    assert entry["rows"] == 0
    assert entry["columns"] == []
    assert entry["estimate"] is None
    assert any("no reference profile for version 1" in n for n in entry["notes"])
    assert "no traffic in the last 1h" in empty["notes"]
    assert flatten(empty) == {}

    # Monitoring off: the audit log has the decisions, no window counted them.
    record_traffic(db, decisions(setup.rng, 20, 0, 10_000), windows=False)
    unseen = monitor_report(db, setup.spec, "claims", 3600)
    (entry,) = unseen["versions"]
    assert (entry["rows"], entry["realised"]["answered"]) == (0, 20)
    assert any("no production windows of version 1" in n for n in entry["notes"])
    assert unseen["notes"] == []  # there was traffic

    record_traffic(db, decisions(setup.rng, 50, 0, 10_000))
    without_profile = monitor_report(db, setup.spec, "claims", 3600)
    (entry,) = without_profile["versions"]
    assert entry["drift"] is None
    columns = {c["column"]: c for c in entry["columns"]}
    assert columns["age"]["null_rate"] is not None  # quality needs no reference
    assert columns["age"]["out_of_range"] is None
    assert entry["estimate"]["rows"] == 50

    idle = monitor_report(db, setup.spec, "idle", 3600)
    assert idle["versions"] == []
    assert idle["notes"] == ["idle is not deployed: no production version to monitor"]
    with pytest.raises(UnknownServiceError, match="unknown service 'nope'"):
        monitor_report(db, setup.spec, "nope", 3600)
    with pytest.raises(UnknownVersionError):
        monitor_report(db, setup.spec, "claims", 3600, version=7)
    assert monitor_report(db, setup.spec, "claims", 3600, version=1)["versions"][0]["rows"] == 50


def test_alert_rules_judge_the_reports_figures(settings: Settings, db: Store) -> None:
    from prodgate.monitor.alerts import FiguresSource, firing, tick

    source: FiguresSource = figures  # the alert loop's source of figures
    setup = setup_service(settings, db)
    profile = save_profile(db, setup.frame)
    record_traffic(db, decisions(setup.rng, 400, 4000, 9000), profile=profile)
    done = tick(db, setup.spec, source)
    fired = {t.rule.name for t in done}
    # One in five ages arrives empty; the large claims' accuracy is estimated below 0.9.
    assert fired == {"ages-missing", "estimated accuracy < 0.9 on large"}
    with db.read() as conn:
        assert {s.rule for s in firing(conn, "claims")} == fired
    report = monitor_report(db, setup.spec, "claims", 3600)
    assert sorted(report["firing"]) == sorted(fired)


def test_a_canary_is_reported_beside_production(settings: Settings, db: Store) -> None:
    from prodgate.registry import approvals, versions
    from prodgate.rollout import commands

    setup = setup_service(settings, db)
    claims = setup.spec.service("claims")
    versions.register(db, claims, "fixture_models:claims", actor="maker")
    approvals.approve(db, claims, 2, by="approver", override_gates=True, reason="test")
    commands.start(db, claims, 2, actor="tester")
    record_traffic(db, decisions(setup.rng, 40, 0, 10_000))
    report = monitor_report(db, setup.spec, "claims", 3600)
    assert [(e["version"], e["role"]) for e in report["versions"]] == [
        (1, "production"),
        (2, "canary"),
    ]
    production, canary = report["versions"]
    assert production["rows"] == 40
    assert canary["rows"] == 0
    assert canary["estimate"] is None
    assert any("no reference profile for version 2" in n for n in canary["notes"])
    # Figures are production's; a canary is judged by the rollout's checks.
    assert flatten(report)["estimated accuracy"] == production["estimate"]["accuracy"]
    only = monitor_report(db, setup.spec, "claims", 3600, version=2)
    assert [(e["version"], e["role"]) for e in only["versions"]] == [(2, "canary")]
