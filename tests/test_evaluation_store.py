"""Evaluating registered versions on a data file: stored, audited, read back by approval."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from pathlib import Path

import joblib
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from sklearn.dummy import DummyClassifier

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.verify import verify
from prodgate.evaluation import compare, evaluate_version
from prodgate.evaluation.evaluate import input_rows, pick_label_column
from prodgate.exceptions import ApprovalRefused, ArtifactError, UnknownVersionError, UsageError
from prodgate.registry import approvals, versions
from prodgate.registry.artifacts import materialise
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, parse_gate
from prodgate.store.engine import Store
from prodgate.store.tables import artifact_chunks, artifacts, evaluations

SPEC = """\
services:
  claims:
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        required: [amount, category]
        properties:
          amount: {type: number, minimum: 0}
          category: {type: string, enum: [auto, home, travel]}
          count: {type: [integer, "null"]}
    escalation: {confidence_below: 0.7}
    business:
      positive: adjuster
      costs:
        false_negative: {rate: 0.1, of: amount}
        false_positive: 40
        escalation: 25
    cohorts:
      large: {where: "amount >= 5000"}
      category: {by: category}
    gates:
      - accuracy >= 0.9
      - recall >= 0.6 on large
"""

# fixture_models:claims says P(adjuster) = amount / 10,000. So: TN, FN (200), two
# escalations (25 each), FP (40), TP; accuracy 4/6, recall 2/3, 1/1 on large.
ROWS = pd.DataFrame(
    {
        "amount": [1000.0, 2000.0, 4000.0, 6000.0, 9000.0, 12000.0],
        "category": ["auto", "home", "auto", "travel", "home", "auto"],
        "count": [1.0, None, 2.0, 0.0, 3.0, 1.0],
        "needs_adjuster": [0, 1, 0, 1, 0, 1],
    }
)


@pytest.fixture
def claims(settings: Settings) -> ServiceSpec:
    Path(settings.config).write_text(SPEC)
    return spec_module.load(settings.config).service("claims")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.csv"
    ROWS.to_csv(path, index=False)
    return path


def with_gates(service: ServiceSpec, *gates: str) -> ServiceSpec:
    parsed = tuple(parse_gate(g, service.kind) for g in gates)
    return dataclasses.replace(service, policy=dataclasses.replace(service.policy, gates=parsed))


def test_evaluation_is_stored_audited_and_read_back(
    store: Store, claims: ServiceSpec, data: Path
) -> None:
    versions.register(store, claims, "fixture_models:claims", actor="maker")
    messages: list[str] = []
    stored = evaluate_version(store, claims, 1, data, actor="tester", progress=messages.append)
    assert any("scoring 6 rows" in m for m in messages)
    result = stored.result
    assert stored.label_column == "needs_adjuster"
    assert stored.fingerprint["rows"] == 6
    assert result["metrics"]["accuracy"] == pytest.approx(4 / 6)
    assert result["escalation_rate"] == pytest.approx(2 / 6)
    assert result["business"]["total_cost"] == pytest.approx(200 + 25 + 25 + 40)
    assert [c["name"] for c in result["cohorts"]] == [
        "large",
        "category=auto",
        "category=home",
        "category=travel",
    ]
    assert [(g["gate"], g["passed"]) for g in result["gates"]] == [
        ("accuracy >= 0.9", False),
        ("recall >= 0.6 on large", True),
    ]
    assert result["passed"] is False

    with store.read() as conn:
        latest = approvals.latest_evaluation(conn, "claims", 1)
        row = conn.execute(sa.select(evaluations)).one()
        audit = [r for r in log.tail(conn, 10) if r["action"] == "evaluate"]
    assert latest is not None
    assert latest["id"] == stored.id
    assert latest["passed"] is False
    assert latest["metrics"] == result["metrics"]
    assert latest["gates"][0]["value"] == pytest.approx(4 / 6)
    assert row.label_column == "needs_adjuster"
    assert row.created_by == "tester"
    assert orjson.loads(row.dataset)["sha256"] == stored.fingerprint["sha256"]
    (record,) = audit
    assert record["actor"] == "tester"
    assert record["version"] == 1
    assert record["evaluation_id"] == stored.id
    assert record["passed"] is False
    assert record["dataset"]["sha256"] == stored.fingerprint["sha256"]
    assert record["metrics"] == result["metrics"]
    assert record["escalation_rate"] == pytest.approx(2 / 6)
    assert [g["passed"] for g in record["gates"]] == [False, True]
    assert record["result_sha256"] == hashlib.sha256(row.result.encode()).hexdigest()
    assert verify(store).ok

    # approval refuses the failed version; a passing evaluation is what it reads next
    with pytest.raises(ApprovalRefused, match=r"accuracy >= 0\.9"):
        approvals.approve(store, claims, 1, by="approver")
    lenient = with_gates(claims, "accuracy >= 0.6")
    again = evaluate_version(store, lenient, 1, data, actor="tester")
    assert again.result["passed"] is True
    with store.read() as conn:
        latest = approvals.latest_evaluation(conn, "claims", 1)
    assert latest is not None
    assert latest["id"] == again.id
    assert latest["passed"] is True
    approvals.approve(store, lenient, 1, by="approver")
    assert verify(store).ok


def test_compare_scores_both_versions_on_the_same_rows(
    store: Store, claims: ServiceSpec, data: Path
) -> None:
    versions.register(store, claims, "fixture_models:claims", actor="maker")
    versions.register(store, claims, "fixture_models:claims_v2", actor="maker")  # all adjuster
    result = compare(store, claims, 1, 2, data)
    assert result["a"]["version"] == 1
    assert result["b"]["version"] == 2
    assert result["b"]["metrics"]["recall"] == 1.0
    rows = {(d["cohort"], d["metric"]): d for d in result["differences"]}
    accuracy = rows[("overall", "accuracy")]
    assert (accuracy["a"], accuracy["b"]) == (pytest.approx(4 / 6), pytest.approx(3 / 6))
    assert accuracy["difference"] == pytest.approx(-1 / 6)
    assert rows[("overall", "roc_auc")]["difference"] is None  # v2 gives no probabilities
    assert rows[("category=home", "accuracy")]["rows"] == 2
    assert ("large", "business.cost_per_decision") in rows
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(evaluations)).scalar() == 0


def test_mistakes_are_usage_errors(
    store: Store, claims: ServiceSpec, data: Path, tmp_path: Path
) -> None:
    versions.register(store, claims, "fixture_models:claims", actor="maker")
    with pytest.raises(UnknownVersionError, match="claims has no version 3"):
        evaluate_version(store, claims, 3, data, actor="tester")
    with pytest.raises(UsageError, match="no such data file"):
        evaluate_version(store, claims, 1, tmp_path / "missing.csv", actor="tester")
    two = tmp_path / "two.csv"
    ROWS.assign(other=1).to_csv(two, index=False)
    with pytest.raises(UsageError, match="pass --label, one of: needs_adjuster, other"):
        evaluate_version(store, claims, 1, two, actor="tester")
    assert evaluate_version(store, claims, 1, two, "needs_adjuster", actor="t").result["rows"] == 6
    lacking = tmp_path / "lacking.csv"
    ROWS.drop(columns=["category"]).to_csv(lacking, index=False)
    with pytest.raises(UsageError, match="lacks required input field"):
        evaluate_version(store, claims, 1, lacking, actor="tester")
    strange = tmp_path / "strange.csv"
    ROWS.assign(needs_adjuster=["yes", "no", "no", "yes", "no", "maybe"]).to_csv(
        strange, index=False
    )
    with pytest.raises(UsageError, match="'yes', 'no', 'maybe' are not labels"):
        evaluate_version(store, claims, 1, strange, "needs_adjuster", actor="tester")
    with store.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(evaluations)).scalar() == 1
    assert verify(store).ok


def test_label_column_choice() -> None:
    fields = ["amount", "category"]
    assert pick_label_column(["amount", "category", "y"], fields, None) == "y"
    assert pick_label_column(["amount", "label", "y"], fields, None) == "label"
    assert pick_label_column(["amount", "label", "y"], fields, "y") == "y"
    with pytest.raises(UsageError, match="no column 'z'"):
        pick_label_column(["amount", "y"], fields, "z")
    with pytest.raises(UsageError, match="is an input field"):
        pick_label_column(["amount", "y"], fields, "amount")
    with pytest.raises(UsageError, match="no column besides the input fields"):
        pick_label_column(["amount", "category"], fields, None)


def test_rows_are_plain_python_restricted_to_the_inputs(claims: ServiceSpec) -> None:
    rows = input_rows(ROWS, claims)
    assert rows[0] == {"amount": 1000.0, "category": "auto", "count": 1}
    assert rows[1]["count"] is None  # NaN in the file
    assert type(rows[0]["count"]) is int  # a whole float in an integer field
    assert "needs_adjuster" not in rows[0]


def test_a_version_whose_code_or_file_changed_is_refused(
    store: Store, claims: ServiceSpec, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A callable from a module of the test's own: editing it changes what "version 1"
    # would do, so the version is refused until it is registered anew.
    package = tmp_path / "mods"
    package.mkdir()
    name = f"triage_rule_{uuid.uuid4().hex[:8]}"  # not one imported by another test
    module = package / f"{name}.py"
    module.write_text(
        "def model(rows):\n    return [{'routine': 0.9, 'adjuster': 0.1} for _ in rows]\n"
    )
    monkeypatch.syspath_prepend(str(package))
    versions.register(store, claims, f"{name}:model", actor="maker")
    evaluate_version(store, claims, 1, data, actor="tester")
    module.write_text(module.read_text() + "# tweaked after registration\n")
    with pytest.raises(ArtifactError, match=f"{name}:model' was changed after registration"):
        evaluate_version(store, claims, 1, data, actor="tester")

    # A file artifact's cached copy altered in HOME/artifacts is fetched again from the
    # store; with no copy in the store either, it is refused like the module.
    model = tmp_path / "model.joblib"
    joblib.dump(
        DummyClassifier(strategy="prior").fit([[0.0, 0.0]] * 2, ["routine", "adjuster"]), model
    )
    number = versions.register(
        store, claims, str(model), actor="maker", trust_pickle=True, check=False
    ).number
    with store.read() as conn:
        stored = versions.get_version(conn, "claims", number)
    path = Path(stored.location(store.settings.artifacts_path))
    good = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(good + b"\0")
    assert materialise(store, stored) == str(path)  # as evaluate_version loads it
    assert path.read_bytes() == good

    with store.write() as conn:  # as if registered before artifacts were stored
        conn.execute(artifact_chunks.delete())
        conn.execute(artifacts.delete())
    path.chmod(0o644)
    path.write_bytes(good + b"\0")
    with pytest.raises(ArtifactError, match="artifact was changed after registration"):
        evaluate_version(store, claims, number, data, actor="tester")
    path.unlink()
    with pytest.raises(
        ArtifactError,
        match=f"version {number}'s artifact is neither in the store nor in HOME/artifacts",
    ):
        evaluate_version(store, claims, number, data, actor="tester")


BINARY = """\
services:
  flagged:
    owner: {name: Ops, contact: ops@example.com}
    kind: classifier
    labels: LABELS
    contract:
      input: {type: object, properties: {x: {type: number}}}
"""


@pytest.mark.parametrize(
    ("labels", "classes"),
    [("[false, true]", "False, True"), ("[0, 1]", "0, 1"), ('["0", "1"]', "0, 1")],
)
def test_truth_as_0_and_1_for_labels_written_as_booleans_or_integers(
    store: Store,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    labels: str,
    classes: str,
) -> None:
    # The labels as the spec keeps them, the truth as 0/1 in the file: the same rule
    # as feedback's (see test_monitor_feedback.py) maps one onto the other.
    service = spec_module.parse(BINARY.replace("LABELS", labels), Path("x.yaml")).service("flagged")
    name = f"flag_rule_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        f"NO, YES = {classes}\n"
        "def model(rows):\n"
        "    return [{NO: 1 - r['x'] / 10, YES: r['x'] / 10} for r in rows]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    versions.register(store, service, f"{name}:model", actor="maker")
    holdout = tmp_path / "holdout.csv"
    # The model says yes above x = 5: right on 4 of 6.
    pd.DataFrame({"x": [1, 2, 3, 7, 8, 9], "truth": [0, 0, 1, 1, 1, 0]}).to_csv(
        holdout, index=False
    )
    result = evaluate_version(store, service, 1, holdout, actor="tester").result
    assert result["metrics"]["accuracy"] == pytest.approx(4 / 6)
    assert result["metrics"]["recall"] == pytest.approx(2 / 3)  # of the last label
