"""A monitored classifier for the report's tests: spec, an evaluated and deployed
version, production decisions in the audit log with some feedback, their windows in
``monitor_windows`` and a reference profile (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from prodgate import spec as spec_module
from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.evaluation import evaluate_version
from prodgate.monitor import profiles
from prodgate.monitor.tally import UNROUTED, Layout, Window
from prodgate.registry import approvals, versions
from prodgate.rollout import split as deployments
from prodgate.settings import Settings
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import alert_states, feedback, monitor_windows

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
          category: {type: string}
          age: {type: [integer, "null"]}
    escalation: {confidence_below: 0.7}
    business:
      positive: adjuster
      costs:
        false_negative: {rate: 0.1, of: amount}
        false_positive: 40
        escalation: 25
    cohorts:
      large: {where: "amount >= 5000"}
    monitor:
      window: 5m
      alerts:
        - name: ages-missing
          when: null_rate(age) > 0.10
        - when: estimated accuracy < 0.9 on large
  idle:
    owner: {name: Nobody, contact: nobody@example.com}
    kind: classifier
    contract:
      input: {type: object, properties: {x: {type: number}}}
"""

#: The input contract of claims in SPEC, as the spec compiles it.
CONTRACT: dict[str, Any] = {
    "type": "object",
    "required": ["amount", "category"],
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "category": {"type": "string"},
        "age": {"type": ["integer", "null"]},
    },
}
AMOUNT_EDGES = [0.0, 2500.0, 5000.0, 7500.0, 10000.0]
AGE_EDGES = [18.0, 40.0, 65.0, 90.0]
MINUTE = 60_000_000


def p_adjuster(amount: float) -> float:
    """fixture_models:claims: P(adjuster) = amount / 10,000, within [0.01, 0.99]."""
    return min(0.99, max(0.01, amount / 10_000))


def holdout(rng: np.random.Generator, n: int = 3000) -> pd.DataFrame:
    """Labelled rows on which the model is calibrated: truth drawn with its odds."""
    amount = rng.uniform(0, 10_000, n).round(2)
    truth = np.where(rng.random(n) < np.minimum(0.99, np.maximum(0.01, amount / 10_000)), 1, 0)
    return pd.DataFrame(
        {
            "amount": amount,
            "category": rng.choice(["auto", "home", "travel"], n),
            "age": rng.integers(18, 90, n),
            "needs_adjuster": truth,
        }
    )


def reference_profile(frame: pd.DataFrame) -> dict[str, Any]:
    """The plan's reference profile shape for the holdout's inputs (coarse bins)."""

    def numeric(name: str, values: np.ndarray, edges: list[float]) -> dict[str, Any]:
        counts = np.histogram(values, bins=edges)[0]
        return {
            "name": name,
            "kind": "numeric",
            "dtype": "float",
            "rows": len(values),
            "nulls": 0,
            "min": float(values.min()),
            "max": float(values.max()),
            "mean": float(values.mean()),
            "std": float(values.std()),
            "quantiles": {},
            "edges": edges,
            "counts": counts.tolist(),
            "values": None,
        }

    cats = frame["category"].value_counts()
    return {
        "format": 1,
        "rows": len(frame),
        "columns": [
            numeric("amount", frame["amount"].to_numpy(), AMOUNT_EDGES),
            {
                "name": "category",
                "kind": "categorical",
                "dtype": "string",
                "rows": len(frame),
                "nulls": 0,
                "counts": {str(k): int(v) for k, v in cats.items()},
                "other": 0,
            },
            numeric("age", frame["age"].to_numpy(dtype=float), AGE_EDGES),
        ],
        "outputs": [],
        "created_us": now_us(),
    }


@dataclass
class Decision:
    amount: float
    category: str
    age: int | None
    prediction: str
    confidence: float
    truth: str


def decisions(
    rng: np.random.Generator, n: int, low: float, high: float, *, familiar: bool = False
) -> list[Decision]:
    """Production decisions of fixture_models:claims with amounts in [low, high]; unless
    *familiar*, one in ten of a new category (marine), one in five ages missing and
    ages up to 99 (the reference's end at 89)."""
    out = []
    for _ in range(n):
        amount = float(round(rng.uniform(low, high), 2))
        p = p_adjuster(amount)
        truth = "adjuster" if rng.random() < p else "routine"
        prediction = "adjuster" if p >= 0.5 else "routine"
        out.append(
            Decision(
                amount=amount,
                category=str(rng.choice(["auto", "home", "travel"]))
                if familiar
                else str(rng.choice(["auto", "home", "travel", "marine"], p=[0.4, 0.3, 0.2, 0.1])),
                age=int(rng.integers(18, 90))
                if familiar
                else None
                if rng.random() < 0.2
                else int(rng.integers(18, 100)),
                prediction=prediction,
                confidence=max(p, 1 - p),
                truth=truth,
            )
        )
    return out


def setup_service(settings: Settings, store: Store, seed: int = 5) -> ServiceSpecAndData:
    """Write the spec; register, evaluate (calibration), approve and deploy v1."""
    Path(settings.config).write_text(SPEC)
    spec = spec_module.load(settings.config)
    claims = spec.service("claims")
    rng = np.random.default_rng(seed)
    frame = holdout(rng)
    path = Path(settings.config).parent / "holdout.csv"
    frame.to_csv(path, index=False)
    versions.register(store, claims, "fixture_models:claims", actor="maker")
    evaluate_version(store, claims, 1, path, actor="tester")
    approvals.approve(store, claims, 1, by="approver", override_gates=True, reason="test")
    deployments.deploy(store, claims, 1, actor="tester")
    return ServiceSpecAndData(spec, frame, rng)


@dataclass
class ServiceSpecAndData:
    spec: spec_module.Spec
    frame: pd.DataFrame
    rng: np.random.Generator


def save_profile(store: Store, frame: pd.DataFrame, version: int = 1) -> dict[str, Any]:
    """Store the holdout's profile as *version*'s reference; the profile."""
    profile = reference_profile(frame)
    profiles.save(store, "claims", version, profile, source="holdout.csv", actor="tester")
    return profile


def record_traffic(
    store: Store,
    batch: Sequence[Decision],
    *,
    profile: dict[str, Any] | None = None,
    labelled_every: int | None = 3,
    refused: int = 0,
    end_us: int | None = None,
    windows: bool = True,
) -> int:
    """The decisions as inference records of claims v1 over the last minutes (every
    *labelled_every*-th with feedback; None: none) and *refused* contract violations
    on ``amount``, counted by two replicas' windows (the gateway's tally, binned on
    *profile* when given) in ``monitor_windows`` unless not *windows* (monitoring
    off); the window start used."""
    now = end_us if end_us is not None else now_us()
    start = now - 4 * MINUTE
    records = []
    for i, d in enumerate(batch):
        escalated = d.confidence < 0.7
        records.append(
            Record(
                kind=KIND_INFERENCE,
                action="predict",
                ts_us=start + i * 1000,
                payload={
                    "input": {"amount": d.amount, "category": d.category, "age": d.age},
                    "output": {
                        "prediction": d.prediction,
                        "probabilities": {
                            "adjuster": p_adjuster(d.amount),
                            "routine": 1 - p_adjuster(d.amount),
                        },
                    },
                },
                service="claims",
                version=1,
                status=200,
                decision="escalated" if escalated else "auto",
                confidence=d.confidence,
                latency_ms=2.0,
            )
        )
    refusals = [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=start + i,
            payload={
                "input": {"amount": -1, "category": "auto"},
                "errors": [{"path": "/amount", "message": "must be at least 0"}],
            },
            service="claims",
            version=None,
            status=422,
            decision="rejected",
        )
        for i in range(refused)
    ]
    plain = Layout.from_contract("classifier", CONTRACT)
    layout = Layout.from_profile("classifier", profile) if profile is not None else plain
    half = len(records) // 2
    counted = [
        (1, "r1", records[:half]),
        (1, "r2", records[half:]),
        (UNROUTED, "r1", refusals),
    ]
    with store.write() as conn:
        log.append(store, conn, records + refusals)
        for i, (record, d) in enumerate(zip(records, batch, strict=True)):
            if labelled_every and i % labelled_every == 0:
                conn.execute(
                    feedback.insert().values(
                        inference_id=record.id,
                        service="claims",
                        version=1,
                        value=orjson.dumps(d.truth).decode(),
                        source="t",
                        observed_at_us=now,
                        received_at_us=now,
                    )
                )
        for version, replica, part in counted if windows else []:
            if not part:
                continue
            window = Window("claims", version, start, 5 * MINUTE, layout if version else plain)
            for record in part:
                window.add(record)
            conn.execute(
                monitor_windows.insert().values(
                    service="claims",
                    version=version,
                    start_us=start,
                    replica=replica,
                    length_us=5 * MINUTE,
                    rows=window.rows,
                    counts=orjson.dumps(window.as_json()).decode(),
                    updated_at_us=now,
                )
            )
    return start


def set_alert(store: Store, rule: str, state: str, value: float) -> None:
    now = now_us()
    with store.write() as conn:
        conn.execute(
            alert_states.insert().values(
                service="claims",
                rule=rule,
                state=state,
                value=value,
                streak=1,
                since_us=now - MINUTE,
                updated_at_us=now,
            )
        )
