"""The product's point, on the claims-triage example: accurate overall, failing where it hurts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from prodgate import spec as spec_module
from prodgate.audit.verify import verify
from prodgate.cli.main import cli
from prodgate.evaluation import evaluate_version
from prodgate.examples.claims_triage.build import BuildResult, build
from prodgate.examples.claims_triage.spec import SERVICE, spec_document
from prodgate.registry import approvals, versions
from prodgate.settings import Settings
from prodgate.store.engine import Store

POLICY: dict[str, Any] = {
    "business": {
        "positive": "adjuster",
        "costs": {
            "false_negative": {"rate": 0.1, "of": "claim_amount"},
            "false_positive": 40,
            "escalation": 25,
        },
    },
    "cohorts": {"high_value": {"where": "claim_amount >= 20000"}, "region": {"by": "region"}},
    "gates": [
        "accuracy >= 0.9",
        "recall >= 0.6 on high_value",
        "business.cost_per_decision <= 120",
        "no cohort recall more than 0.1 below overall",
    ],
}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> BuildResult:
    return build(tmp_path_factory.mktemp("claims-triage"))


@pytest.fixture
def spec_file(settings: Settings) -> Settings:
    document = spec_document()
    document["services"][SERVICE].update(POLICY)
    Path(settings.config).write_text(yaml.safe_dump(document, sort_keys=False))
    return settings


def test_accurate_overall_yet_failing_on_high_value_claims(
    spec_file: Settings, store: Store, example: BuildResult
) -> None:
    service = spec_module.load(spec_file.config).service(SERVICE)
    versions.register(store, service, str(example.model), actor="maker", data=example.train_data)
    stored = evaluate_version(store, service, 1, example.holdout_data, actor="tester")
    result = stored.result
    assert stored.label_column == "needs_adjuster"
    assert result["rows"] == 5_000
    assert result["metrics"]["accuracy"] == pytest.approx(example.accuracy, abs=1e-3)
    assert result["metrics"]["accuracy"] > 0.9
    assert result["metrics"]["recall"] == pytest.approx(example.recall, abs=1e-3)
    high = next(c for c in result["cohorts"] if c["name"] == "high_value")
    assert high["metrics"]["recall"] == pytest.approx(example.recall_high_value, abs=1e-3)
    assert high["metrics"]["recall"] < 0.5
    assert high["metrics"]["accuracy"] == pytest.approx(example.accuracy_high_value, abs=1e-3)
    # the big claims cost far more per decision than the average one
    assert high["business"]["cost_per_decision"] > 5 * result["business"]["cost_per_decision"]
    assert len([c for c in result["cohorts"] if c["cohort"] == "region"]) == 5

    verdicts = {g["gate"]: g for g in result["gates"]}
    assert verdicts["accuracy >= 0.9"]["passed"] is True
    assert verdicts["recall >= 0.6 on high_value"]["passed"] is False
    assert verdicts["business.cost_per_decision <= 120"]["passed"] is True
    relative = verdicts["no cohort recall more than 0.1 below overall"]
    assert relative["passed"] is False
    assert relative["detail"].startswith("worst: high_value recall")
    assert result["passed"] is False

    with store.read() as conn:
        latest = approvals.latest_evaluation(conn, SERVICE, 1)
    assert latest is not None
    assert latest["passed"] is False
    assert latest["id"] == stored.id
    assert verify(store).ok


def test_cli_evaluate_fails_the_example(spec_file: Settings, example: BuildResult) -> None:
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": spec_file.database_url}

    def run(*args: str) -> Any:
        base = ["--home", spec_file.home, "--config", spec_file.config]
        return CliRunner().invoke(cli, [*base, *args], env=env)

    assert run("register", SERVICE, str(example.model)).exit_code == 0
    holdout = str(example.holdout_data)
    r = run("evaluate", SERVICE, "1", "--data", holdout)
    assert r.exit_code == 1, r.output
    assert "scoring 5,000 rows" in r.stderr
    gate_lines = [x for x in r.stdout.splitlines() if x.split()[:1] in (["PASS"], ["FAIL"])]
    assert [x.split()[0] for x in gate_lines] == ["PASS", "FAIL", "PASS", "FAIL"]
    assert "recall on high_value is 0.39" in r.stdout
    body = json.loads(run("evaluate", SERVICE, "1", "--data", holdout, "--json").stdout)
    assert body["passed"] is False
    r = run("approve", SERVICE, "1", "--by", "bob")
    assert r.exit_code == 2
    assert "recall >= 0.6 on high_value" in r.stderr
    assert run("audit", "verify").exit_code == 0
