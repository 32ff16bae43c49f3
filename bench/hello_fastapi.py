"""The ceiling: a hello-world FastAPI endpoint that does no work at all.

It answers ``POST /predict`` with the same bodies the other servers get
(``{"inputs": {...}}``) and returns a constant JSON object. The endpoint is an
``async def`` (no threadpool hop) that still takes the body as ``dict[str, Any]``, so
FastAPI reads and parses the JSON and serialises the answer as a real endpoint
would. No model, no validation beyond "a JSON object", no record: whatever this
server cannot do on one CPU, no Python web service on the same stack can.

Run it by hand (the benchmark driver ``bench/gateway_vs_bare.py`` does this for you)::

    .venv/bin/uvicorn --app-dir bench hello_fastapi:app --port 8002 --workers 1 --no-access-log
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ANSWER: dict[str, Any] = {"message": "hello, world"}
app = FastAPI(title="hello-world endpoint")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@app.post("/predict")
async def predict(payload: dict[str, Any]) -> dict[str, Any]:
    return ANSWER
