"""Exporting reviewed inferences: the file's columns, lineage back to the audit log, the
export's audit record, and ``prodgate evaluate`` scoring a version on the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from prodgate.audit import log
from prodgate.audit.verify import verify
from prodgate.exceptions import UsageError
from prodgate.review.export import COLUMNS, export
from prodgate.settings import Settings
from prodgate.store.engine import Store
from review_report_support import HOUR, NOW, Item, add, load_spec, row
from test_evaluation_cli import run


def model(amount: float) -> str:
    """What ``fixture_models:claims`` answers: P(adjuster) = amount / 10,000."""
    return "adjuster" if amount / 10_000 > 0.5 else "routine"


AMOUNTS = [800.0, 1500.0, 2500.0, 4200.0, 6100.0, 7700.0, 9300.0, 12000.0, 25000.0, 300.0]
# What people decided: four of ten differ from the model.
FINALS = ["routine", "adjuster", "routine", "adjuster", "adjuster", "routine", "adjuster",
          "adjuster", "routine", "routine"]  # fmt: skip


def items() -> list[Item]:
    out = []
    for i, (amount, final) in enumerate(zip(AMOUNTS, FINALS, strict=True)):
        huge = amount >= 20000
        out.append(
            Item(
                row(amount, ("auto", "home", "travel")[i % 3], None if i == 4 else i),
                model(amount),
                decision="escalated" if huge else "auto",
                reasons=("rule:huge",) if huge else ("sampled",),
                cohort="large" if amount >= 5000 else None,
                reviews={"alice": final, "bob": final} if huge else {"alice": final},
                created_us=NOW - (20 - i) * HOUR,
            )
        )
    return out


def test_export_columns_lineage_and_audit(settings: Settings, store: Store, tmp_path: Path) -> None:
    spec = load_spec(settings)
    ids = add(store, [*items(), Item(row(100.0), "routine")])  # the last one is still open
    path = tmp_path / "reviewed.parquet"
    summary = export(store, spec, "claims", path, actor="carol")
    assert summary["rows"] == 10
    assert summary["label_column"] == "label"
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["amount", "category", "count", *COLUMNS]
    assert frame["label"].tolist() == FINALS
    assert frame["prediction"].tolist() == [model(a) for a in AMOUNTS]
    assert frame["amount"].tolist() == AMOUNTS
    assert frame["override"].tolist() == [
        f != model(a) for a, f in zip(AMOUNTS, FINALS, strict=True)
    ]
    assert frame["reviewers"].iloc[8] == "alice,bob"
    assert frame["reasons"].iloc[8] == "rule:huge"
    assert frame["cohort"].iloc[5] == "large"
    assert str(frame["decided_at"].dtype).startswith("datetime64")
    with store.read() as conn:
        for (inference_id, seq), got_id, got_seq in zip(
            ids, frame["inference_id"], frame["audit_seq"], strict=False
        ):
            assert (got_id, int(got_seq)) == (inference_id, seq)
            stored = log.get(conn, got_id)
            assert stored is not None
            assert stored["seq"] == seq
            assert (
                stored["input"]["amount"] == frame.set_index("inference_id").loc[got_id, "amount"]
            )
        (record,) = [r for r in log.tail(conn, 50) if r["action"] == "review_export"]
    assert record["actor"] == "carol"
    assert record["rows"] == 10
    assert record["path"] == str(path.resolve())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["id"] == summary["audit_id"]
    assert verify(store).ok

    # Filters: a reason, and the items that entered review since a time.
    sampled = export(store, spec, "claims", tmp_path / "sampled.csv", reason="sampled")
    assert sampled["rows"] == 9
    assert sampled["format"] == "csv"
    assert "rule:huge" not in pd.read_csv(tmp_path / "sampled.csv")["reasons"].tolist()
    assert export(store, spec, "claims", tmp_path / "r.csv", reason="rule")["rows"] == 1
    recent = export(store, spec, "claims", tmp_path / "recent.parquet", since_us=NOW - 15 * HOUR)
    assert recent["rows"] == 5


def test_export_refuses_what_it_cannot_write(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    spec = load_spec(settings)
    with pytest.raises(UsageError, match=r"write \.parquet or \.csv"):
        export(store, spec, "claims", tmp_path / "out.xlsx")
    with pytest.raises(UsageError, match="no such folder"):
        export(store, spec, "claims", tmp_path / "missing" / "out.parquet")


def test_evaluate_reads_the_export_as_it_is(
    settings: Settings, store: Store, tmp_path: Path
) -> None:
    spec = load_spec(settings)
    assert run(settings, "register", "claims", "fixture_models:claims").exit_code == 0
    add(store, items())
    path = tmp_path / "reviewed.parquet"
    export(store, spec, "claims", path)
    r = run(settings, "evaluate", "claims", "1", "--data", str(path), "--json")
    assert r.exit_code in (0, 1), r.output  # 1: a gate failed, which is the data's business
    body = json.loads(r.stdout)
    assert body["label_column"] == "label"
    assert body["dataset"]["rows"] == 10
    right = sum(model(a) == f for a, f in zip(AMOUNTS, FINALS, strict=True))
    assert body["metrics"]["accuracy"] == pytest.approx(right / 10)
