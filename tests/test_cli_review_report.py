"""``prodgate review stats`` and ``prodgate review export``: reports, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from prodgate.cli import main
from prodgate.settings import Settings
from prodgate.store.engine import Store, now_us
from review_report_support import HOUR, Item, add, load_spec, row


def run(settings: Settings, *args: str) -> Result:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(
        main.cli, ["--home", settings.home, "--config", settings.config, "review", *args], env=env
    )


@pytest.fixture
def reviewed(settings: Settings, store: Store) -> Settings:
    load_spec(settings)
    start = now_us() - 30 * HOUR
    items = []
    for i in range(12):
        final = "routine" if i % 4 else "adjuster"
        second = final if i % 3 else "adjuster"
        items.append(
            Item(
                row(100.0 * (i + 1)),
                "routine",
                reviews={"alice": final, "bob": second},
                adjudication=None if second == final else ("carol", final),
                final=final,
                created_us=start + i * HOUR,
            )
        )
    items.append(Item(row(50.0), "routine", created_us=now_us() - 2 * HOUR))  # overdue
    add(store, items)
    return settings


def test_stats_json_and_text(reviewed: Settings) -> None:
    r = run(reviewed, "stats", "claims", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["agreement"]["overall"]["method"] == "cohen_kappa"
    assert body["agreement"]["overall"]["n"] == 12
    assert body["queue"]["overdue"] == 1
    assert body["automatic"]["accuracy"]["n"] == 12
    r = run(reviewed, "stats", "claims", "--since", "1530m", "--json")
    assert json.loads(r.stdout)["items"]["decided"] == 7
    r = run(reviewed, "stats", "claims")
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "agreement (2 reviewers): Cohen's kappa" in out
    assert "(n=12)" in out
    assert "REVIEWER  REVIEWER  ITEMS  KAPPA" in out
    assert "AGREES WITH FINAL" in out
    assert "95% CI" in out
    assert "1 overdue" in out


def test_export_writes_a_file_evaluate_reads(reviewed: Settings, tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    r = run(reviewed, "export", "claims", "--reason", "sampled", "-o", str(path), "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["rows"] == 12
    assert len(pd.read_parquet(path)) == 12
    r = run(reviewed, "export", "claims", "--since", "1530m", "-o", str(tmp_path / "x.csv"))
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("wrote 7 reviewed inferences of claims to ")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["stats", "nope"], "unknown service 'nope'"),
        (["stats", "claims", "--since", "soon"], "--since 'soon'"),
        (["export", "nope", "-o", "{dir}/x.parquet"], "unknown service 'nope'"),
        (["export", "claims", "-o", "{dir}/x.xlsx"], "write .parquet or .csv"),
        (["export", "claims", "--since", "-3d", "-o", "{dir}/x.csv"], "--since '-3d'"),
        (["export", "claims"], "Missing option '-o'"),
    ],
)
def test_mistakes_are_one_line_exit_2(
    reviewed: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    r = run(reviewed, *(a.format(dir=tmp_path) for a in args))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("prodgate: error: ")
    assert needle in r.stderr
    assert "Traceback" not in r.output
    assert r.stdout == ""
