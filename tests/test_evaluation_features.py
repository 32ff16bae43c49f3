"""Evaluating a service that reads feature views on data with only the entity keys:
the features are joined point-in-time, as a training set's are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner, Result

from prodgate import spec as spec_module
from prodgate.cli.main import cli
from prodgate.monitor import profiles
from prodgate.settings import Settings

SPEC = """\
features:
  policy:
    entity: policy_id
    source: {path: policies.csv, timestamp: updated_at}
    features:
      policy_age_years: {type: integer, minimum: 0}
      prior_claims: {type: integer, minimum: 0, default: 0}
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, policy_id]
        properties:
          amount: {type: number, minimum: 0}
          policy_id: {type: string}
    features: [policy.*]
    gates:
      - accuracy >= 0.9
"""


def triage(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Adjuster when the policy had two or more prior claims (a feature, not an input)."""
    out = []
    for row in rows:
        p = 0.9 if row["prior_claims"] >= 2 else 0.1
        out.append({"routine": 1 - p, "adjuster": p})
    return out


def run(settings: Settings, *args: str) -> Result:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": settings.database_url}
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=env
    )


@pytest.fixture
def ready(settings: Settings, tmp_path: Path) -> Settings:
    """The spec, its view's source, a registered version and ``holdout.csv`` of events."""
    Path(settings.config).write_text(SPEC)
    pd.DataFrame(
        {
            "policy_id": ["p1", "p1", "p2"],
            "updated_at": ["2024-01-01", "2024-02-01", "2024-01-01"],
            "policy_age_years": [3, 4, 9],
            "prior_claims": [0, 4, 4],  # p1's claims of February come after its first event
        }
    ).to_csv(tmp_path / "policies.csv", index=False)
    pd.DataFrame(
        {
            "policy_id": ["p1", "p1", "p2", "p3"],
            "amount": [100.0, 200.0, 300.0, 400.0],
            "at": ["2024-01-15", "2024-02-15", "2024-01-15", "2024-01-15"],
            "needs_adjuster": ["routine", "adjuster", "adjuster", "routine"],
        }
    ).to_csv(tmp_path / "holdout.csv", index=False)
    # Registering smoke-tests the model on an example of the rows it sees: with features.
    r = run(settings, "register", "claims", "test_evaluation_features:triage")
    assert r.exit_code == 0, r.output
    return settings


def test_entity_only_data_is_evaluated_on_point_in_time_features(
    ready: Settings, tmp_path: Path
) -> None:
    data = str(tmp_path / "holdout.csv")
    r = run(ready, "evaluate", "claims", "1", "--data", data, "--at", "at", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    # p1 in January had no prior claims yet (4 arrive in February): routine is right. A
    # join that looked ahead would call it adjuster, and accuracy would be 2/3.
    assert body["metrics"]["accuracy"] == 1.0
    assert body["rows"] == 3
    assert body["label_column"] == "needs_adjuster"
    assert body["features"] == {
        "at": "at",
        "rows_in": 4,
        "rows_out": 3,
        "views": {"policy": {"fresh": 3, "stale": 0, "missing": 1}},
        "defaulted": {},
        "dropped": 1,
        "refused": {"policy_age_years": 1},
    }
    assert body["contract_violations"] == 0

    r = run(ready, "evaluate", "claims", "1", "--data", data, "--at", "at")
    assert r.exit_code == 0, r.output
    assert "features joined as of 'at': policy 3 fresh, 0 stale, 1 missing" in r.stdout
    assert "not scored: 1 of 4 rows without a value for a feature that has no default" in (r.stdout)


def test_entity_only_data_without_at_is_refused(ready: Settings, tmp_path: Path) -> None:
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "holdout.csv"))
    assert r.exit_code == 2
    assert "lacks claims's features (policy_age_years, prior_claims); pass --at COLUMN" in (
        r.stderr
    )


def test_data_with_every_feature_is_used_as_it_is(ready: Settings, tmp_path: Path) -> None:
    frame = pd.read_csv(tmp_path / "holdout.csv").drop(columns=["at"])
    frame["policy_age_years"] = 1
    frame["prior_claims"] = [4, 4, 4, 4]  # not the views': these are the data's own
    frame.to_csv(tmp_path / "joined.csv", index=False)
    r = run(ready, "compare", "claims", "1", "1", "--data", str(tmp_path / "joined.csv"), "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.stdout)
    assert body["a"]["rows"] == 4
    assert body["a"]["metrics"]["accuracy"] == 0.5  # everything called adjuster
    assert "features" not in body["a"]
    frame.drop(columns=["prior_claims"]).to_csv(tmp_path / "part.csv", index=False)
    r = run(ready, "evaluate", "claims", "1", "--data", str(tmp_path / "part.csv"))
    assert r.exit_code == 2
    assert "has some of claims's features (policy_age_years) but not prior_claims" in r.stderr


def test_profiles_hold_the_models_fields_but_not_entity_keys(ready: Settings) -> None:
    service = spec_module.load(ready.config).service("claims")
    assert profiles.profiled_fields(service) == ["amount", "policy_age_years", "prior_claims"]
    assert profiles.profiled_fields(service, ["policy_id", "prior_claims", "x"]) == ["prior_claims"]


def test_a_profile_of_entity_only_data_joins_the_features(ready: Settings, tmp_path: Path) -> None:
    data = str(tmp_path / "holdout.csv")
    r = run(ready, "profile", "claims", "1", "--data", data, "--at", "at", "--json")
    assert r.exit_code == 0, r.output
    assert "claims: 4 rows in, 3 rows out" in r.stderr
    body = json.loads(r.stdout)
    assert body["rows"] == 3
    assert body["columns"] == ["amount", "policy_age_years", "prior_claims"]
    # The joined values, point-in-time: p1 had no prior claims in January.
    stored = {c["name"]: c for c in body["profile"]["columns"]}
    assert stored["prior_claims"]["min"] == 0
    r = run(ready, "profile", "claims", "1", "--at", "at")
    assert r.exit_code == 2
    assert "--at joins features into --data: give both" in r.stderr
