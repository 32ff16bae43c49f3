"""Evaluation and the reference profile: a classifier's outputs referenced on held-out
rows (not its training rows), and the ``drift.share`` gate on the evaluation data.

The model is an unpruned random forest on the claims-triage example's data: sure of
itself on the rows it learnt (confidence near 1), less so on new ones, which is what
makes outputs profiled from training data look drifted on ordinary traffic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from prodgate import spec as spec_module
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.evaluation import evaluate_version
from prodgate.evaluation.evaluate import _predict, input_rows
from prodgate.evaluation.report import evaluation_text
from prodgate.examples.claims_triage.generate import FEATURES, LABEL, generate
from prodgate.examples.claims_triage.spec import SERVICE, spec_document
from prodgate.examples.claims_triage.train import CATEGORICAL, PASSTHROUGH, save
from prodgate.monitor import profiles, span
from prodgate.monitor.drift import column_drift
from prodgate.monitor.estimate import confidence_bins
from prodgate.monitor.profile import Profile, count_column
from prodgate.monitor.tally import Layout, Window
from prodgate.registry import versions
from prodgate.runtime.base import Prediction
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, parse_gate
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import audit_log, monitor_windows

MINUTE = 60_000_000


@dataclass(frozen=True)
class Files:
    model: Path
    train: Path
    holdout: Path
    traffic: pd.DataFrame  # production drawn like the holdout


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Files:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    root = tmp_path_factory.mktemp("forest")
    train = generate(3_000, seed=1)
    features = ColumnTransformer(
        [
            ("c", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
            ("v", "passthrough", PASSTHROUGH),
        ]
    )
    model = Pipeline(
        [("f", features), ("m", RandomForestClassifier(n_estimators=25, random_state=0))]
    )
    model.fit(train[FEATURES], train[LABEL].to_numpy())
    save(model, root / "forest.skops")
    train.to_parquet(root / "train.parquet", index=False)
    generate(2_000, seed=2).to_parquet(root / "holdout.parquet", index=False)
    return Files(
        root / "forest.skops",
        root / "train.parquet",
        root / "holdout.parquet",
        generate(2_000, seed=3),
    )


def service_of(settings: Settings, gates: Sequence[str] = ()) -> ServiceSpec:
    document = spec_document()
    document["services"][SERVICE]["gates"] = list(gates)
    Path(settings.config).write_text(yaml.safe_dump(document, sort_keys=False))
    return spec_module.load(settings.config).service(SERVICE)


def stored(store: Store, version: int = 1) -> profiles.StoredProfile:
    with store.read() as conn:
        found = profiles.load(conn, SERVICE, version)
    assert found is not None
    return found


def confidence_drift(reference: dict[str, Any], confidences: Sequence[float]) -> Any:
    ref = Profile.from_json(reference).column("confidence")
    assert ref is not None
    return column_drift(ref, count_column(ref, np.asarray(confidences)))


def answers(store: Store, service: ServiceSpec, frame: pd.DataFrame) -> list[Prediction]:
    with store.read() as conn:
        version = versions.get_version(conn, SERVICE, 1)
    return _predict(store, service, version, input_rows(frame, service))


def test_evaluate_replaces_the_outputs_with_the_held_out_ones(
    settings: Settings, store: Store, files: Files
) -> None:
    service = service_of(settings)
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    trained = stored(store)
    assert trained.source == "train.parquet"
    traffic = [p.confidence or 0.0 for p in answers(store, service, files.traffic)]
    before = confidence_drift(trained.profile, traffic)
    assert before.drifted  # sure on its training rows, ordinary traffic looks drifted

    evaluation = evaluate_version(store, service, 1, files.holdout, actor="tester")
    after = stored(store)
    # The inputs are the training data's; the outputs the holdout's predictions.
    assert after.profile["columns"] == trained.profile["columns"]
    assert after.rows == trained.rows
    outputs = {c["name"]: c for c in after.profile["outputs"]}
    held_out = answers(store, service, pd.read_parquet(files.holdout))
    expected = np.bincount(confidence_bins([p.confidence for p in held_out]), minlength=20)
    assert outputs["confidence"]["counts"] == expected.tolist()
    assert sum(outputs["prediction"]["counts"].values()) == 2_000
    assert outputs["prediction"]["counts"] == {
        k: int(v) for k, v in pd.Series([str(p.value) for p in held_out]).value_counts().items()
    }
    # Where they came from: the profile, its source and the audit log say so.
    assert after.profile["outputs_source"] == {
        "evaluation_id": evaluation.id,
        "data": "holdout.parquet",
        "rows": 2_000,
    }
    assert after.profile["inputs_source"] == "train.parquet"
    assert after.source == f"train.parquet (outputs: evaluation {evaluation.id} on holdout.parquet)"
    with store.read() as conn:
        last = conn.execute(
            sa.select(audit_log.c.action, audit_log.c.payload).order_by(audit_log.c.seq.desc())
        ).first()
    assert last is not None
    assert last.action == "profile"
    assert json.loads(last.payload)["outputs_from"]["evaluation_id"] == evaluation.id
    # The confidence's bins are fixed: windows binned before stay comparable.
    assert after.profile["created_us"] == trained.profile["created_us"]

    now_drift = confidence_drift(after.profile, traffic)
    assert not now_drift.drifted
    assert now_drift.statistic < before.statistic / 10  # 0.84 -> 0.02 (Wasserstein)


def record_windows(store: Store, service: ServiceSpec, frame: pd.DataFrame, start_us: int) -> None:
    """*frame* answered by version 1 as the gateway records it, counted by one
    replica's window binned on the stored profile (as the gateway bins it)."""
    layout = Layout.from_profile("classifier", stored(store).profile)
    window = Window(SERVICE, 1, start_us, 5 * MINUTE, layout)
    for i, (row, p) in enumerate(
        zip(input_rows(frame, service), answers(store, service, frame), strict=True)
    ):
        window.add(
            Record(
                kind=KIND_INFERENCE,
                action="predict",
                ts_us=start_us + i,
                payload={
                    "input": row,
                    "output": {"prediction": p.value, "probabilities": p.probabilities},
                },
                service=SERVICE,
                version=1,
                status=200,
                decision="auto",
                confidence=p.confidence,
                latency_ms=1.0,
            )
        )
    with store.write() as conn:
        conn.execute(
            monitor_windows.insert().values(
                service=SERVICE,
                version=1,
                start_us=start_us,
                replica="r1",
                length_us=5 * MINUTE,
                rows=window.rows,
                counts=orjson.dumps(window.as_json()).decode(),
                updated_at_us=now_us(),
            )
        )


def test_production_windows_are_judged_after_evaluate_and_after_a_re_evaluation(
    settings: Settings, store: Store, files: Files
) -> None:
    service = service_of(settings)
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    # The common path: register -> evaluate -> deploy, then traffic.
    evaluate_version(store, service, 1, files.holdout, actor="tester")
    start = (now_us() // (5 * MINUTE) - 1) * 5 * MINUTE
    record_windows(store, service, files.traffic, start)
    end = start + 10 * MINUTE
    with store.read() as conn:
        seen = span.compare(conn, service, 1, start, end)
    assert seen.rows == 2_000
    assert seen.drift is not None
    confidence = next(c for c in seen.columns if c["column"] == "confidence")
    assert confidence["drifted"] is False
    # Re-evaluating the deployed version on other held-out rows replaces the outputs
    # again; the windows already counted are still judged (none left out).
    evaluate_version(store, service, 1, files.holdout, actor="tester")
    with store.read() as conn:
        again = span.compare(conn, service, 1, start, end)
    assert again.rows == 2_000
    assert again.drift is not None
    assert int((again.current or {}).get("skipped") or 0) == 0
    assert not any("counted before" in n for n in again.notes)


def test_a_drift_gate_passes_on_alike_data_and_fails_on_shifted_data(
    settings: Settings, store: Store, files: Files, tmp_path: Path
) -> None:
    gates = ["drift.share <= 0.3", "drift.share <= 0.1"]
    service = service_of(settings, gates)
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    alike = evaluate_version(store, service, 1, files.holdout, actor="tester").result
    assert alike["drift"]["share_drifted"] == 0.0
    assert alike["drift"]["reference"]["source"] == "train.parquet"
    assert len(alike["drift"]["columns"]) == len(FEATURES)
    assert all(g["passed"] for g in alike["gates"])
    assert alike["passed"] is True

    inflated = tmp_path / "inflated.parquet"
    generate(2_000, seed=4, inflation=2.0).to_parquet(inflated, index=False)
    result = evaluate_version(store, service, 1, inflated, actor="tester").result
    assert result["drift"]["share_drifted"] == pytest.approx(1 / len(FEATURES))
    verdicts = {g["gate"]: g for g in result["gates"]}
    assert verdicts["drift.share <= 0.3"]["passed"] is True  # one column in eight
    strict = verdicts["drift.share <= 0.1"]
    assert strict["passed"] is False
    assert strict["value"] == pytest.approx(0.125)
    assert strict["detail"] == "drift.share is 0.125; needs <= 0.1 (drifted: claim_amount)"
    text = evaluation_text(
        result, service=SERVICE, version=1, dataset={}, label_column=LABEL, evaluation_id=2
    )
    assert (
        "inputs against the reference profile (train.parquet): 1 of 8 columns drifted "
        "(claim_amount)"
    ) in text

    # A new claim type too: two columns of eight. (customer_age arriving empty is a
    # data-quality change, not drift: nulls are left out of the drift tests.)
    moved = tmp_path / "moved.parquet"
    generate(
        2_000, seed=5, inflation=2.0, new_claim_type_rate=0.3, missing_age_rate=0.6
    ).to_parquet(moved, index=False)
    result = evaluate_version(store, service, 1, moved, actor="tester").result
    drifted = {c["column"] for c in result["drift"]["columns"] if c["drifted"]}
    assert drifted == {"claim_amount", "claim_type"}
    assert [g["passed"] for g in result["gates"]] == [True, False]
    assert result["passed"] is False


def test_a_drift_gate_without_a_profile_is_not_measurable(
    settings: Settings, store: Store, files: Files
) -> None:
    service = service_of(settings, ["drift.share <= 0.3"])
    versions.register(store, service, str(files.model), actor="maker")  # no --data
    result = evaluate_version(store, service, 1, files.holdout, actor="tester").result
    assert result["drift"]["share_drifted"] is None
    [gate] = result["gates"]
    assert gate["passed"] is False
    assert gate["value"] is None
    assert gate["detail"].startswith(
        "drift.share is not measurable: version 1 has no reference profile"
    )
    assert "prodgate profile claims-triage 1 --data FILE" in gate["detail"]
    assert result["passed"] is False
    with store.read() as conn:  # and evaluate stored none
        assert profiles.load(conn, SERVICE, 1) is None


def test_drift_gates_are_whole_data_gates() -> None:
    assert parse_gate("drift.share <= 0.3", "classifier").metric == "drift.share"
    assert parse_gate("drift.share <= 0.3", "regressor").metric == "drift.share"
    with pytest.raises(ValueError, match="not per cohort"):
        parse_gate("drift.share <= 0.3 on high_value", "classifier")
    with pytest.raises(ValueError, match="not per cohort"):
        parse_gate("no cohort drift.share more than 0.1 above overall", "classifier")
    with pytest.raises(ValueError, match=r"unknown metric 'drift\.share'"):
        parse_gate("drift.share <= 0.3", "llm")


def test_outputs_on_other_bins_get_a_new_reference_stamp(
    settings: Settings, store: Store, files: Files, tmp_path: Path
) -> None:
    """The forest's confidence takes few values (k/25), so the profile counts them
    exactly and windows count on those values. An evaluation whose confidences take
    other values changes what windows count: the profile gets a new created_us, the
    gateways bin their next windows on it, and windows binned before are no longer
    judged against it (the report notes them as counted before the profile)."""
    service = service_of(settings)
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    trained = stored(store)
    small = tmp_path / "small.parquet"
    generate(40, seed=6).to_parquet(small, index=False)
    evaluate_version(store, service, 1, small, actor="tester")
    after = stored(store)

    def values(profile: dict[str, Any]) -> set[str]:
        found = next(c for c in profile["outputs"] if c["name"] == "confidence")
        return set(found["values"])

    assert values(after.profile) != values(trained.profile)
    assert after.profile["created_us"] > trained.profile["created_us"]
    assert after.profile["outputs_source"]["rows"] == 40


def test_a_drift_gate_on_too_few_rows_is_not_measurable(
    settings: Settings, store: Store, files: Files, tmp_path: Path
) -> None:
    service = service_of(settings, ["drift.share <= 0.3"])
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    few = tmp_path / "few.parquet"
    generate(100, seed=7, inflation=3.0).to_parquet(few, index=False)
    result = evaluate_version(store, service, 1, few, actor="tester").result
    assert result["drift"]["share_drifted"] is None
    assert result["drift"]["number_of_tested_columns"] == 0
    [gate] = result["gates"]
    assert gate["passed"] is False
    assert gate["detail"] == (
        "drift.share is not measurable: no column could be judged: 100 rows, drift needs "
        "at least 500 values of a column (monitor.drift.min_rows)"
    )


def test_profiling_again_keeps_the_outputs_an_evaluation_referenced(
    settings: Settings, store: Store, files: Files
) -> None:
    service = service_of(settings)
    versions.register(store, service, str(files.model), actor="maker", data=files.train)
    evaluation = evaluate_version(store, service, 1, files.holdout, actor="tester")
    evaluated = stored(store)
    with store.read() as conn:
        version = versions.get_version(conn, SERVICE, 1)
    again = profiles.compute_for_version(store, service, version, files.train)
    assert again["outputs"] == evaluated.profile["outputs"]
    assert again["outputs_source"]["evaluation_id"] == evaluation.id
