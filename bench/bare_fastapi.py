"""The baseline: a bare FastAPI endpoint serving the model the way most pilots do.

It loads the model once at start and answers ``POST /predict`` with
``{"inputs": {...}}`` by building a one-row DataFrame and calling ``predict_proba``,
one request at a time per threadpool worker. There is no input validation, no
batching, no audit trail: that is the baseline's advantage.

Run it by hand (the benchmark driver ``bench/gateway_vs_bare.py`` does this for you)::

    BARE_MODEL=/path/to/model.skops .venv/bin/uvicorn --app-dir bench bare_fastapi:app \\
        --port 8001 --workers 1 --no-access-log

``BARE_MODEL`` is the skops file to serve (the claims-triage example's
``model.skops``, written by ``prodgate --home DIR demo --no-serve`` under
``DIR/example``). Callers send a claim and its ``policy_id``; the model also reads the
policy's features, which the pilot looks up in a dict loaded at start from the
example's feature sources in ``BARE_POLICIES`` (``DIR/example``: its
``policies.parquet`` and ``policyholders.parquet``), the newest row of each policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import skops.io
from fastapi import FastAPI

MODEL_PATH = os.environ.get("BARE_MODEL", "model.skops")

model = skops.io.load(MODEL_PATH, trusted=skops.io.get_untrusted_types(file=MODEL_PATH))
CLASSES = [str(c) for c in model.classes_]


def _policies(folder: str | None) -> dict[str, dict[str, Any]]:
    """Each policy's features (the newest source row), by policy_id."""
    out: dict[str, dict[str, Any]] = {}
    if not folder:
        return out
    for name in ("policies.parquet", "policyholders.parquet"):
        frame = pd.read_parquet(Path(folder) / name).sort_values("updated_at", kind="stable")
        frame = frame.drop_duplicates("policy_id", keep="last").drop(columns="updated_at")
        for row in frame.astype(object).where(frame.notna(), None).to_dict(orient="records"):
            out.setdefault(str(row.pop("policy_id")), {}).update(row)
    return out


POLICIES = _policies(os.environ.get("BARE_POLICIES"))
app = FastAPI(title="bare predict_proba endpoint")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "alive"}


@app.post("/predict")
def predict(payload: dict[str, Any]) -> dict[str, Any]:
    row = payload["inputs"]
    frame = pd.DataFrame([{**row, **POLICIES.get(str(row.get("policy_id")), {})}])
    proba = model.predict_proba(frame)[0]
    best = int(proba.argmax())
    return {
        "label": CLASSES[best],
        "probabilities": dict(zip(CLASSES, proba.tolist(), strict=True)),
    }
