"""``prodgate features dataset``: entities in, point-in-time features out, and a summary."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import click
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from prodgate.cli import main
from prodgate.cli.context import add_shared_options
from prodgate.cli.features_dataset import dataset
from prodgate.settings import Settings

SPEC = """\
features:
  policy:
    entity: policy_id
    source: {path: data/policies.csv, timestamp: updated_at}
    ttl: 30d
    features:
      policy_age_years: {type: integer, minimum: 0}
      prior_claims: {type: integer, minimum: 0, default: 0}
  region:
    entity: region
    source: {query: "SELECT region, day, risk FROM regions", timestamp: day}
    features:
      risk: {type: number, default: 0.5}
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, policy_id, region]
        properties:
          amount: {type: number, minimum: 0}
          policy_id: {type: string}
          region: {type: string}
    features: [policy.*, region.risk]
"""


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> click.Group:
    """The CLI with ``features dataset``: the ``features`` group once it exists, else one
    holding only this command."""
    if "features" not in main.COMMANDS:
        group = click.Group("features")
        group.add_command(dataset)
        add_shared_options(group)
        monkeypatch.setitem(main.cli.commands, "features", group)
    return main.cli


@pytest.fixture
def ready(sqlite_settings: Settings, tmp_path: Path) -> Settings:
    """The spec; policies.csv next to it; the region view's table in the store (SQLite)."""
    Path(sqlite_settings.config).write_text(SPEC)
    (tmp_path / "data").mkdir()
    pd.DataFrame(
        {
            "policy_id": ["p1", "p1", "p1", "p2"],
            "updated_at": [
                "2024-01-01T00:00:00Z",
                "2024-01-10T00:00:00Z",
                "2024-01-20T00:00:00Z",  # after the events of p1 below
                "2024-01-01T00:00:00Z",
            ],
            "policy_age_years": [3, 4, 50, 7],
            "prior_claims": [1, 2, 50, None],
        }
    ).to_csv(tmp_path / "data" / "policies.csv", index=False)
    db = Path(sqlite_settings.home) / "prodgate.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE regions (region TEXT, day TEXT, risk REAL)")
        conn.executemany(
            "INSERT INTO regions VALUES (?, ?, ?)",
            [("north", "2024-01-01", 0.2), ("north", "2024-01-16", 0.9)],
        )
    pd.DataFrame(
        {
            "policy_id": ["p1", "p1", "p2", "p9"],
            "region": ["north", "north", "south", "north"],
            "amount": [100.0, 200.0, 300.0, 400.0],
            "at": ["2024-01-05", "2024-01-15", "2024-01-05", "2024-01-05"],
            "label": [0, 1, 0, 1],
        }
    ).to_csv(tmp_path / "events.csv", index=False)
    return sqlite_settings


def run(cli: click.Group, settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env={}
    )


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_dataset_writes_point_in_time_rows_and_a_summary(
    cli: click.Group, ready: Settings, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"train{suffix}"
    args = ["features", "dataset", "claims", "--entities", str(tmp_path / "events.csv")]
    r = run(cli, ready, *args, "--at", "at", "-o", str(out))
    assert r.exit_code == 0, r.output
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert list(frame.columns) == [
        "policy_id",
        "region",
        "amount",
        "at",
        "label",
        "policy_age_years",
        "prior_claims",
        "risk",
    ]
    # p9 is unknown and policy_age_years has no default: dropped. p1 on the 15th sees the
    # value of the 10th, not the 20th's; north's risk of the 16th is never seen.
    assert frame["amount"].tolist() == [100.0, 200.0, 300.0]
    assert frame["policy_age_years"].tolist() == [3, 4, 7]
    assert frame["prior_claims"].tolist() == [1, 2, 0]
    assert frame["risk"].tolist() == [0.2, 0.2, 0.5]
    assert r.stdout.splitlines() == [
        f"claims: 4 rows in, 3 rows out -> {out}",
        "  view policy: 3 fresh, 0 stale, 1 missing (at each row's time)",
        "  view region: 3 fresh, 0 stale, 1 missing (at each row's time)",
        "  defaults taken (rows kept): prior_claims 1, risk 1",
        "  dropped 1 rows without a value at their time for a feature that has no default: "
        "policy_age_years 1",
    ]


def test_dataset_json(cli: click.Group, ready: Settings, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    events = str(tmp_path / "events.csv")
    args = ["features", "dataset", "claims", "--entities", events, "--at", "at"]
    r = run(cli, ready, *args, "-o", str(out), "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body == {
        "service": "claims",
        "entities": events,
        "at": "at",
        "output": str(out),
        "rows_in": 4,
        "rows_out": 3,
        "views": {
            "policy": {"fresh": 3, "stale": 0, "missing": 1},
            "region": {"fresh": 3, "stale": 0, "missing": 1},
        },
        "defaulted": {"prior_claims": 1, "risk": 1},
        "dropped": 1,
        "refused": {"policy_age_years": 1},
    }


def test_dataset_mistakes_are_one_line_and_exit_2(
    cli: click.Group, ready: Settings, tmp_path: Path
) -> None:
    events = str(tmp_path / "events.csv")
    base = ["features", "dataset", "claims", "--entities", events]
    r = run(cli, ready, *base, "--at", "when", "-o", str(tmp_path / "x.parquet"))
    assert r.exit_code == 2
    assert r.stderr.startswith("prodgate: error: no column 'when'")
    r = run(cli, ready, *base, "--at", "at", "-o", str(tmp_path / "x.xlsx"))
    assert r.exit_code == 2
    assert "write the dataset as .parquet or .csv" in r.stderr
    pd.read_csv(events).assign(risk=1.0).to_csv(tmp_path / "with.csv", index=False)
    r = run(
        cli,
        ready,
        *["features", "dataset", "claims", "--entities", str(tmp_path / "with.csv")],
        *["--at", "at", "-o", str(tmp_path / "x.parquet")],
    )
    assert r.exit_code == 2
    assert "already has risk" in r.stderr
    assert not (tmp_path / "x.parquet").exists()
