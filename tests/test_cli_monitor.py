"""``prodgate monitor`` and ``GET /v1/services/{service}/monitor``: the same report,
for people and as JSON; clear answers when there is nothing to show (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway_support import running
from monitor_support import decisions, record_traffic, save_profile, set_alert, setup_service
from prodgate.settings import Settings
from prodgate.store.engine import now_us, open_store
from test_cli import assert_one_line_error, run


@pytest.fixture
def monitored(settings: Settings) -> Settings:
    """claims v1 evaluated and deployed, with a profile, 300 decisions in its windows
    (some with feedback, 12 refused) and one alert firing."""
    store = open_store(settings)
    try:
        setup = setup_service(settings, store)
        profile = save_profile(store, setup.frame)
        record_traffic(store, decisions(setup.rng, 300, 3000, 8000), profile=profile, refused=12)
        set_alert(store, "ages-missing", "firing", 0.2)
    finally:
        store.dispose()
    return settings


def test_monitor_prints_columns_accuracy_and_alerts(monitored: Settings) -> None:
    r = run(monitored, "monitor", "claims", "--window", "1h")
    assert r.exit_code == 0, r.output
    out = r.output
    lines = out.splitlines()
    assert lines[0].startswith("claims, last 1h (until ")
    assert "version 1 (production): 300 decisions, reference profile of 3,000 rows" in out
    header = next(line for line in lines if line.startswith("COLUMN"))
    assert header.split()[:5] == ["COLUMN", "METHOD", "SCORE", "THRESHOLD", "DRIFT"]
    assert "NEW CATEGORIES" in header
    age = next(line for line in lines if line.startswith("age "))
    assert "%" in age
    category = next(line for line in lines if line.startswith("category "))
    assert "(marine)" in category
    accuracy = next(line for line in lines if line.startswith("accuracy: "))
    assert "estimated 0." in accuracy
    assert "over 300 decisions" in accuracy
    assert "realised 0." in accuracy
    assert "of 100 labelled" in accuracy
    assert any(line.startswith("cost per decision: estimated ") for line in lines)
    assert any(line.startswith("operations: errors 0.0%") for line in lines)
    assert "  contract violations on amount: 12 (3.8%)" in lines
    assert any(line.startswith("cohort large: ") for line in lines)
    assert "alerts firing:" in lines
    assert any(line.startswith("  ages-missing (null_rate(age) > 0.10) since ") for line in lines)

    r = run(monitored, "monitor", "claims", "--json")
    assert r.exit_code == 0, (r.output, r.exception)
    body = json.loads(r.output)
    assert body["service"] == "claims"
    assert body["window_s"] == 3600
    assert body["firing"] == ["ages-missing"]
    (entry,) = body["versions"]
    assert entry["rows"] == 300
    assert {c["column"] for c in entry["columns"]} >= {"amount", "category", "age", "prediction"}
    assert entry["estimate"]["rows"] == 300
    only = json.loads(run(monitored, "monitor", "claims", "--version", "1", "--json").output)
    assert only["versions"][0]["version"] == 1


def test_monitor_answers_clearly_when_there_is_nothing(settings: Settings) -> None:
    store = open_store(settings)
    try:
        setup_service(settings, store)
    finally:
        store.dispose()
    quiet = run(settings, "monitor", "claims")
    assert quiet.exit_code == 0, quiet.output
    assert "version 1 (production): 0 decisions, no reference profile" in quiet.output
    assert "note: no reference profile for version 1" in quiet.output
    assert "note: no traffic in the last 1h" in quiet.output
    assert "alerts firing: none" in quiet.output
    idle = run(settings, "monitor", "idle")
    assert idle.exit_code == 0, idle.output
    assert "note: idle is not deployed: no production version to monitor" in idle.output
    assert_one_line_error(run(settings, "monitor", "nope"), "unknown service 'nope'")
    assert_one_line_error(run(settings, "monitor", "claims", "--window", "soon"), "window 'soon'")
    assert_one_line_error(
        run(settings, "monitor", "claims", "--version", "9"), "claims has no version 9"
    )


@pytest.mark.anyio
async def test_the_api_serves_the_same_report(monitored: Settings) -> None:
    # No alert loop here: the alerts are the ones the fixture stored.
    async with running(monitored.with_(controller=False, monitor_interval=0)) as client:
        r = await client.get("/v1/services/claims/monitor", params={"window": "1h"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["window_s"] == 3600
        assert body["firing"] == ["ages-missing"]
        assert body["versions"][0]["rows"] == 300
        assert body["versions"][0]["estimate"]["rows"] == 300
        default = (await client.get("/v1/services/claims/monitor")).json()
        assert default["window_s"] == 300  # the spec's monitor window
        assert (await client.get("/v1/services/claims/monitor?version=1")).status_code == 200
        for path, status in [
            ("/v1/services/nope/monitor", 404),
            ("/v1/services/claims/monitor?window=soon", 400),
            ("/v1/services/claims/monitor?version=9", 404),
            ("/v1/services/claims/monitor?version=x", 400),
            ("/v1/services/claims/monitor?version=", 400),
            ("/v1/services/claims/monitor?version=2147483648", 400),
            ("/v1/services/claims/monitor?window=", 400),
        ]:
            r = await client.get(path)
            assert r.status_code == status, (path, r.text)
            assert r.headers["content-type"].startswith("application/problem+json")


def test_drift_report_over_time_and_as_html(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings)
    try:
        setup = setup_service(settings, store)
        profile = save_profile(store, setup.frame)
        # Familiar traffic forty minutes ago, then amounts crowding into [4000, 6000].
        earlier = now_us() - 40 * 60_000_000
        familiar = decisions(setup.rng, 2000, 0, 10_000, familiar=True)
        record_traffic(store, familiar, profile=profile, end_us=earlier)
        # 700 rows (560 ages): a column is judged from monitor.drift.min_rows (500) values on.
        record_traffic(store, decisions(setup.rng, 700, 4000, 6000), profile=profile)
    finally:
        store.dispose()
    r = run(settings, "drift", "report", "claims", "--since", "2h", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert (body["service"], body["version"], body["rows"]) == ("claims", 1, 2700)
    assert body["drift"]["number_of_columns"] == 3
    first, second = body["over_time"]
    assert first["start_us"] < second["start_us"]
    assert (first["rows"], second["rows"]) == (2000, 700)
    assert first["drifted"] == []
    assert not first["dataset_drift"]
    assert second["drifted"] == ["amount", "category", "age"]
    assert second["dataset_drift"]

    page = tmp_path / "drift.html"
    r = run(settings, "drift", "report", "claims", "--since", "2h", "--html", str(page))
    assert r.exit_code == 0, r.output
    assert r.output.startswith("claims version 1, last 2h: 2,700 decisions against the reference")
    assert "drift over time (UTC):" in r.output
    assert f"HTML report: {page}" in r.output
    text = page.read_text()
    assert text.startswith("<!doctype html>")
    assert "Drift: claims version 1" in text
    assert "Drift over time" in text
    assert "<svg" in text
    assert "http" not in text.replace("http://www.w3.org/2000/svg", "")  # no CDN

    idle = run(settings, "drift", "report", "idle")
    assert idle.exit_code == 0, idle.output
    assert "note: idle is not deployed" in idle.output
    assert_one_line_error(
        run(settings, "drift", "report", "idle", "--html", str(page)), "idle is not deployed"
    )
    assert_one_line_error(run(settings, "drift", "report", "nope"), "unknown service 'nope'")
    assert_one_line_error(run(settings, "drift", "report", "claims", "--since", "x"), "since 'x'")


def test_drift_report_without_a_profile_says_so(settings: Settings, tmp_path: Path) -> None:
    store = open_store(settings)
    try:
        setup = setup_service(settings, store)
        record_traffic(store, decisions(setup.rng, 50, 0, 10_000))
    finally:
        store.dispose()
    r = run(settings, "drift", "report", "claims")
    assert r.exit_code == 0, r.output
    assert "50 decisions with no reference profile" in r.output
    assert "note: no reference profile for version 1" in r.output
    assert_one_line_error(
        run(settings, "drift", "report", "claims", "--html", str(tmp_path / "x.html")),
        "nothing to plot",
    )
