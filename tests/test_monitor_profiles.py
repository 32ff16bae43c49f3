"""Reference profiles: ``register --data`` stores one, ``prodgate profile`` computes or
shows one, and a gateway bins its next windows on a profile saved while it runs."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway_support import GOOD, SPEC, register_and_deploy, running, write_spec
from prodgate.cli.main import cli
from prodgate.monitor import profiles
from prodgate.monitor.tally import CONFIDENCE_EDGES
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from prodgate.store.tables import audit_log, monitor_windows


def run(settings: Settings, *args: str) -> Result:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=env
    )


def training_csv(path: Path, rows: int = 300, seed: int = 3) -> Path:
    rng = random.Random(seed)
    lines = ["amount,category,count,label"]
    for _ in range(rows):
        amount = round(rng.uniform(0, 12_000), 2)
        category = rng.choice(["auto", "home", "travel"])
        lines.append(f"{amount},{category},{rng.randint(0, 3)},routine")
    path.write_text("\n".join(lines) + "\n")
    return path


def stored(settings: Settings, version: int) -> profiles.StoredProfile:
    store = open_store(settings)
    try:
        with store.read() as conn:
            found = profiles.load(conn, "claims", version)
    finally:
        store.dispose()
    assert found is not None
    return found


def test_register_with_data_stores_the_versions_profile(settings: Settings, tmp_path: Path) -> None:
    write_spec(settings)
    data = training_csv(tmp_path / "train.csv")
    r = run(settings, "register", "claims", "fixture_models:claims", "--data", str(data))
    assert r.exit_code == 0, r.output
    found = stored(settings, 1)
    assert (found.source, found.rows, found.created_by) == ("train.csv", 300, "alice")
    profile = found.profile
    names = [c["name"] for c in profile["columns"]]
    assert names == ["amount", "category", "count"]  # the contract's fields, not the label
    amount = profile["columns"][0]
    assert amount["kind"] == "numeric"
    assert sum(amount["counts"]) == 300
    category = profile["columns"][1]
    assert category["kind"] == "categorical"
    assert set(category["counts"]) == {"auto", "home", "travel"}
    outputs = {c["name"]: c for c in profile["outputs"]}
    assert outputs["prediction"]["kind"] == "categorical"
    assert sum(outputs["prediction"]["counts"].values()) == 300
    assert outputs["confidence"]["edges"] == pytest.approx(CONFIDENCE_EDGES)
    assert sum(outputs["confidence"]["counts"]) == 300
    # The registration's record says a profile was stored with it.
    store = open_store(settings)
    try:
        with store.read() as conn:
            actions = conn.execute(sa.select(audit_log.c.action, audit_log.c.version)).all()
            payload = conn.execute(sa.select(audit_log.c.payload)).scalar_one()
    finally:
        store.dispose()
    assert [tuple(a) for a in actions] == [("register", 1)]  # the profile is part of it
    assert json.loads(payload)["profile"]["columns"] == ["amount", "category", "count"]


def test_profile_command_replaces_and_shows(settings: Settings, tmp_path: Path) -> None:
    write_spec(settings)
    r = run(settings, "register", "claims", "fixture_models:claims")
    assert r.exit_code == 0, r.output
    r = run(settings, "profile", "claims", "1")
    assert r.exit_code == 2
    assert "has no reference profile" in r.output
    assert "Traceback" not in r.output
    data = training_csv(tmp_path / "more.csv", rows=500, seed=9)
    r = run(settings, "profile", "claims", "1", "--data", str(data))
    assert r.exit_code == 0, r.output
    assert "profiled claims version 1 from more.csv: 500 rows, 3 input columns" in r.output
    assert "outputs: prediction, confidence" in r.output
    r = run(settings, "profile", "claims", "1", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.output)
    assert (shown["rows"], shown["source"]) == (500, "more.csv")
    assert shown["profile"]["columns"][0]["name"] == "amount"
    r = run(settings, "profile", "claims", "7", "--data", str(data))
    assert r.exit_code == 2
    assert "claims has no version 7" in r.output
    bad = tmp_path / "bad.csv"
    bad.write_text("x,y\n1,2\n")
    r = run(settings, "profile", "claims", "1", "--data", str(bad))
    assert r.exit_code == 2
    assert "none of claims's input fields" in r.output


@pytest.mark.anyio
async def test_a_gateway_bins_on_a_profile_saved_while_it_runs(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    settings = sqlite_settings
    write_spec(settings, SPEC)
    register_and_deploy(settings)
    async with running(settings) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        assert gateway.tally.layout("claims", 1).reference is None
        store = open_store(settings)
        try:
            computed = profiles.compute_for_version(
                store,
                gateway.spec.service("claims"),
                gateway.fleet.services["claims"].production.version,
                training_csv(tmp_path / "t.csv"),
            )
            profiles.save(store, "claims", 1, computed, source="t.csv", actor="tester")
        finally:
            store.dispose()
        for _ in range(50):
            if gateway.tally.layout("claims", 1).reference is not None:
                break
            await asyncio.sleep(0.05)
        assert gateway.tally.layout("claims", 1).reference == computed["created_us"]
        r = await client.post("/v1/services/claims/predict", json={"inputs": GOOD})
        assert r.status_code == 200


@pytest.mark.anyio
async def test_monitoring_off_counts_nothing(sqlite_settings: Settings) -> None:
    settings = sqlite_settings.with_(monitor=False)
    write_spec(settings, SPEC)
    register_and_deploy(settings)
    async with running(settings) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        assert gateway.tally is None
        assert gateway.recorder.tally is None
        r = await client.post("/v1/services/claims/predict", json={"inputs": GOOD})
        assert r.status_code == 200
    store = open_store(settings)
    try:
        with store.read() as conn:
            assert (
                conn.execute(sa.select(sa.func.count()).select_from(monitor_windows)).scalar() == 0
            )
    finally:
        store.dispose()
