"""``prodgate evaluate`` and ``prodgate compare``: reports, JSON, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from prodgate.cli.main import cli
from prodgate.settings import Settings
from test_evaluation_store import ROWS, SPEC


def run(settings: Settings, *args: str) -> Result:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=env
    )


@pytest.fixture
def ready(settings: Settings, tmp_path: Path) -> Settings:
    """The spec, two registered versions, and ``holdout.csv`` in tmp_path."""
    Path(settings.config).write_text(SPEC)
    ROWS.to_csv(tmp_path / "holdout.csv", index=False)
    for ref in ("fixture_models:claims", "fixture_models:claims_v2"):
        assert run(settings, "register", "claims", ref).exit_code == 0
    return settings


def lenient(settings: Settings) -> None:
    text = SPEC.replace("accuracy >= 0.9", "accuracy >= 0.6")
    Path(settings.config).write_text(text)


def test_evaluate_reports_and_exits_1_when_a_gate_fails(ready: Settings, tmp_path: Path) -> None:
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "holdout.csv"))
    assert r.exit_code == 1, r.output
    out = r.stdout
    assert out.startswith("claims version 1 on holdout.csv: 6 rows, truth in 'needs_adjuster'")
    assert re.search(r"^stored as evaluation \d+$", out, re.MULTILINE)
    assert "accuracy 0.6667" in out
    assert "escalated to people: 33.3%" in out
    assert "business cost: 48.33 per decision, 290.00 in total" in out
    assert "category=home" in out
    assert "COST/DECISION" in out
    assert "FAIL    accuracy >= 0.9" in out
    assert "PASS    recall >= 0.6 on large" in out
    assert out.rstrip().endswith("FAILED: 1 of 2 gates failed")
    assert "scoring 6 rows" in r.stderr
    assert "warning" not in out  # every holdout row honours the contract

    lenient(ready)
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "holdout.csv"))
    assert r.exit_code == 0, r.output
    assert r.stdout.rstrip().endswith("PASSED")
    r = run(ready, "approve", "claims", "1", "--by", "bob")
    assert r.exit_code == 0, r.output
    assert run(ready, "audit", "verify").exit_code == 0


def test_evaluate_json(ready: Settings, tmp_path: Path) -> None:
    data = str(tmp_path / "holdout.csv")
    r = run(ready, "evaluate", "claims", "1", "--data", data, "--json")
    assert r.exit_code == 1
    body = json.loads(r.stdout)
    assert isinstance(body["id"], int)
    assert (body["service"], body["version"]) == ("claims", 1)
    assert body["label_column"] == "needs_adjuster"
    assert body["dataset"]["rows"] == 6
    assert body["passed"] is False
    assert body["metrics"]["accuracy"] == pytest.approx(4 / 6)
    assert [g["passed"] for g in body["gates"]] == [False, True]
    lenient(ready)
    r = run(ready, "evaluate", "claims", "1", "--data", data, "--label", "needs_adjuster", "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["passed"] is True


def test_compare_side_by_side(ready: Settings, tmp_path: Path) -> None:
    data = str(tmp_path / "holdout.csv")
    r = run(ready, "compare", "claims", "1", "2", "--data", data)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith("claims version 1 vs version 2 on holdout.csv: 6 rows")
    assert lines[2].split() == ["COHORT", "ROWS", "METRIC", "V1", "V2", "DIFF"]
    assert "overall 6 accuracy 0.6667 0.5000 -0.1667" in [" ".join(x.split()) for x in lines]
    assert any(x.split()[:3] == ["category=auto", "3", "accuracy"] for x in lines)
    words = [" ".join(x.split()) for x in lines]
    assert "accuracy >= 0.9 FAIL 0.6667 FAIL 0.5" in words
    assert words[-1] == "all gates FAILED FAILED"
    assert "scoring 6 rows with claims version 2" in r.stderr
    body = json.loads(run(ready, "compare", "claims", "1", "2", "--data", data, "--json").stdout)
    assert body["b"]["metrics"]["recall"] == 1.0
    assert body["differences"][0]["metric"] == "accuracy"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["evaluate", "claims", "9", "--data", "{data}"], "claims has no version 9"),
        (["evaluate", "nope", "1", "--data", "{data}"], "unknown service 'nope'"),
        (["evaluate", "claims", "1", "--data", "{missing}"], "no such data file"),
        (["evaluate", "claims", "1", "--data", "{data}", "--label", "z"], "no column 'z'"),
        (["compare", "claims", "1", "7", "--data", "{data}"], "claims has no version 7"),
    ],
)
def test_mistakes_are_one_line_exit_2(
    ready: Settings, tmp_path: Path, args: list[str], needle: str
) -> None:
    paths = {"data": str(tmp_path / "holdout.csv"), "missing": str(tmp_path / "nope.csv")}
    r = run(ready, *(a.format(**paths) for a in args))
    assert r.exit_code == 2, r.output
    assert r.stderr.startswith("prodgate: error: ")
    assert needle in r.stderr
    assert "Traceback" not in r.output
    assert r.stdout == ""


def test_evaluate_warns_of_rows_the_gateway_would_refuse(ready: Settings, tmp_path: Path) -> None:
    rows = ROWS.copy()
    rows.loc[0, "category"] = "boat"  # not in the contract's enum
    rows.loc[1, "amount"] = -5.0  # below its minimum
    rows.to_csv(tmp_path / "odd.csv", index=False)
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "odd.csv"))
    assert "warning: 2 of 6 rows break the input contract; the gateway would refuse them" in (
        r.stdout
    )
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "odd.csv"), "--json")
    assert json.loads(r.stdout)["contract_violations"] == 2
