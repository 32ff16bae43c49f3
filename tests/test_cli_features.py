"""``prodgate features``: materialize (incremental, --since, --full), get, list, errors."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import orjson
import pandas as pd
import pytest
from click.testing import Result

from features_support import NOW, write
from prodgate.audit import log
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from test_cli import assert_one_line_error, run

REDIS = "redis://127.0.0.1:6379/0"


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def as_json(result: Result) -> dict:
    return orjson.loads(ok(result).output)


@pytest.fixture(params=["store", "redis"])
def online_env(request: pytest.FixtureRequest) -> dict[str, str | None]:
    if request.param == "store":
        return {"PRODGATE_REDIS_URL": None}
    return {"PRODGATE_REDIS_URL": REDIS, "PRODGATE_REDIS_PREFIX": f"c{uuid.uuid4().hex[:8]}:"}


def test_materialize_loads_the_newest_values_then_only_what_is_new(
    settings: Settings, online_env: dict[str, str | None]
) -> None:
    write(settings)
    first = as_json(run(settings, "features", "materialize", "policy", "--json", env=online_env))
    assert first["entities"] == 4
    assert first["source_rows"] == 5
    assert first["since_us"] is None
    assert first["target"] == ("redis" if online_env["PRODGATE_REDIS_URL"] else "store")
    got = as_json(
        run(settings, "features", "get", "policy", "P1", "P2", "P9", "--json", env=online_env)
    )
    p1, p2, p9 = got["entities"]
    assert p1["values"] == {"policy_age_years": 3, "prior_claims": 1, "customer_age": 41}
    assert p1["status"] == "fresh"
    assert p2["status"] == "stale"
    assert p2["refused"] == ["policy_age_years"]  # no default
    assert p9["status"] == "missing"

    # Nothing new: the next run loads nothing and keeps the watermark.
    again = as_json(run(settings, "features", "materialize", "policy", "--json", env=online_env))
    assert again["source_rows"] == 0
    assert again["since_us"] == first["watermark_us"]
    assert again["watermark_us"] == first["watermark_us"]

    # A newer row for P2 arrives: only it is loaded, and P2 is fresh again.
    source = Path(settings.config).parent / "policies.parquet"
    frame = pd.read_parquet(source)
    newer = pd.DataFrame(
        {
            "policy_id": ["P2"],
            "updated_at": [NOW + dt.timedelta(seconds=1)],
            "policy_age_years": [8],
            "prior_claims": [5],
            "customer_age": pd.array([56], dtype="Int64"),
        }
    )
    pd.concat([frame, newer], ignore_index=True).to_parquet(source)
    third = as_json(run(settings, "features", "materialize", "policy", "--json", env=online_env))
    assert third["source_rows"] == 1
    assert third["entities"] == 1
    got = as_json(run(settings, "features", "get", "policy", "P2", "--json", env=online_env))
    assert got["entities"][0]["status"] == "fresh"
    assert got["entities"][0]["values"]["policy_age_years"] == 8

    # Each run is in the audit log.
    store = open_store(settings)
    try:
        with store.read() as conn:
            runs = [r for r in log.tail(conn, 50) if r["action"] == "materialize"]
    finally:
        store.dispose()
    assert [r["source_rows"] for r in runs] == [5, 0, 1]
    assert all(r["actor"] == "alice" for r in runs)


def test_since_and_full(sqlite_settings: Settings) -> None:
    write(sqlite_settings)
    env: dict[str, str | None] = {"PRODGATE_REDIS_URL": None}
    recent = as_json(
        run(
            sqlite_settings, "features", "materialize", "policy", "--since", "3d", "--json", env=env
        )
    )
    # Rows of the last 3 days only: P1's newer row, P3, P4.
    assert recent["source_rows"] == 3
    full = as_json(
        run(sqlite_settings, "features", "materialize", "policy", "--full", "--json", env=env)
    )
    assert full["source_rows"] == 5
    at = as_json(
        run(
            sqlite_settings,
            "features",
            "materialize",
            "policy",
            "--since",
            "2000-01-01",
            "--json",
            env=env,
        )
    )
    assert at["source_rows"] == 5
    assert_one_line_error(
        run(sqlite_settings, "features", "materialize", "policy", "--since", "soon", env=env),
        "--since 'soon'",
    )
    assert_one_line_error(
        run(
            sqlite_settings, "features", "materialize", "policy", "--since", "1d", "--full", env=env
        ),
        "not both",
    )


def test_text_output_and_list(sqlite_settings: Settings) -> None:
    write(sqlite_settings)
    env: dict[str, str | None] = {"PRODGATE_REDIS_URL": None}
    out = ok(run(sqlite_settings, "features", "materialize", "policy", env=env)).output
    assert "materialized policy into the store: 4 entities from 5 source rows" in out
    listed = as_json(run(sqlite_settings, "features", "list", "--json", env=env))
    (view,) = listed["views"]
    assert view["name"] == "policy"
    assert view["entity"] == "policy_id"
    assert view["services"] == ["claims"]
    assert view["ttl_s"] == 30 * 86400
    assert view["last_load"]["entities"] == 4
    text = ok(run(sqlite_settings, "features", "list", env=env)).output
    assert "policy_id" in text
    assert "30d" in text
    shown = ok(run(sqlite_settings, "features", "get", "policy", "P2", env=env)).output
    assert "stale" in shown
    assert "policy_age_years" in shown


def test_errors_are_one_line(sqlite_settings: Settings) -> None:
    write(sqlite_settings)
    assert_one_line_error(
        run(sqlite_settings, "features", "materialize", "nope"), "no feature view 'nope'", "policy"
    )
    (Path(sqlite_settings.config).parent / "policies.parquet").unlink()
    assert_one_line_error(
        run(sqlite_settings, "features", "materialize", "policy"), "no such source file"
    )
    pd.DataFrame({"policy_id": ["P1"], "updated_at": [NOW]}).to_parquet(
        Path(sqlite_settings.config).parent / "policies.parquet"
    )
    assert_one_line_error(
        run(sqlite_settings, "features", "materialize", "policy"),
        "no column 'policy_age_years', 'prior_claims', 'customer_age'",
    )
    pd.DataFrame(
        {
            "policy_id": ["P1"],
            "updated_at": ["not a time"],
            "policy_age_years": [1],
            "prior_claims": [0],
            "customer_age": [30],
        }
    ).to_parquet(Path(sqlite_settings.config).parent / "policies.parquet")
    assert_one_line_error(
        run(sqlite_settings, "features", "materialize", "policy"), "not a timestamp"
    )


def test_a_view_pointed_at_another_source_is_loaded_in_full(sqlite_settings: Settings) -> None:
    write(sqlite_settings)
    env: dict[str, str | None] = {"PRODGATE_REDIS_URL": None}
    first = as_json(run(sqlite_settings, "features", "materialize", "policy", "--json", env=env))
    assert first["source_rows"] == 5
    # Another file, all of it older than the first run's watermark: an incremental run
    # of the old definition would load none of it.
    folder = Path(sqlite_settings.config).parent
    older = pd.read_parquet(folder / "policies.parquet")
    older["policy_id"] = [f"Q{i}" for i in range(len(older))]
    older["updated_at"] = older["updated_at"] - dt.timedelta(days=3)
    older.to_parquet(folder / "other.parquet")
    config = Path(sqlite_settings.config)
    config.write_text(config.read_text().replace("policies.parquet", "other.parquet"))
    second = as_json(run(sqlite_settings, "features", "materialize", "policy", "--json", env=env))
    assert second["since_us"] is None
    assert second["source_rows"] == 5
    assert second["definition"] != first["definition"]
    got = as_json(run(sqlite_settings, "features", "get", "policy", "Q0", "--json", env=env))
    assert got["entities"][0]["status"] == "fresh"


def test_a_spec_reached_through_a_link_reads_its_sources_beside_its_target(
    sqlite_settings: Settings, tmp_path: Path
) -> None:
    """The demo links HOME/prodgate.yaml to the example's spec: relative source paths
    are read beside the file itself, not beside the link."""
    write(sqlite_settings)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    link = elsewhere / "prodgate.yaml"
    link.symlink_to(Path(sqlite_settings.config).resolve())
    linked = sqlite_settings.with_(config=str(link))
    env: dict[str, str | None] = {"PRODGATE_REDIS_URL": None}
    loaded = as_json(run(linked, "features", "materialize", "policy", "--full", "--json", env=env))
    assert loaded["source_rows"] == 5
