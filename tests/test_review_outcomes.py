"""A reviewed label is ground truth everywhere ground truth is read: production
metrics, the canary's accuracy check, and the evaluation of the exported file.

Decisions go through the real gateway, enter review by the spec's sample, and are
decided through the queue; nothing is sent as feedback directly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway_support import GOOD, SPEC, register_and_approve, register_and_deploy, running
from gateway_support import write_spec as write
from prodgate import spec as spec_module
from prodgate.monitor.window import window_stats
from prodgate.review import queue
from prodgate.review.export import export
from prodgate.rollout.analysis import compare
from prodgate.settings import Settings
from prodgate.spec import Checks
from prodgate.store.engine import now_us, open_store
from test_cli import run

#: Every decision is sampled, so each one reaches a reviewer.
EVERYTHING = SPEC.replace(
    "    escalation:\n",
    "    review: {sample: 100%, separation_of_duties: false}\n    escalation:\n",
    1,
)
AMOUNTS = [100.0 * (i + 1) for i in range(24)]  # v1 says routine, sure of it (below 3,000)
#: What the reviewers find: a claim of 2,000 or more needed an adjuster after all.
TRUTH = {a: ("adjuster" if a >= 2000 else "routine") for a in AMOUNTS}


async def _decisions(client: Any) -> dict[str, float]:
    """One decision per amount; the inference ids and their amounts."""
    body = {"instances": [{**GOOD, "amount": a} for a in AMOUNTS]}
    response = await client.post("/v1/services/claims/predict", json=body)
    assert response.status_code == 200, response.text
    return {p["id"]: a for p, a in zip(response.json()["predictions"], AMOUNTS, strict=True)}


@pytest.mark.anyio
async def test_a_reviewed_label_is_ground_truth(settings: Settings, tmp_path: Path) -> None:
    write(settings, EVERYTHING)
    spec = spec_module.load(settings.config)
    started = now_us()
    register_and_deploy(settings)  # v1: P(adjuster) = amount / 10,000
    register_and_approve(settings, "fixture_models:claims_v2")  # v2: always adjuster
    async with running(settings) as client:
        first = await _decisions(client)
        deployed = await client.post("/v1/services/claims/deploy", json={"version": 2})
        assert deployed.status_code == 200, deployed.text
        second = await _decisions(client)
    store = open_store(settings)
    try:
        for item_id, amount in {**first, **second}.items():
            decided = queue.decide(store, spec, item_id, "rita", {"label": TRUTH[amount]})
            assert decided["state"] == "decided"
            assert decided["feedback"]["written"] is True
        with store.read() as conn:
            v1 = window_stats(conn, "claims", 1, started, now_us(), None)
            v2 = window_stats(conn, "claims", 2, started, now_us(), None)
    finally:
        store.dispose()
    right_v1 = sum(TRUTH[a] == "routine" for a in AMOUNTS) / len(AMOUNTS)  # 19 of 24
    right_v2 = sum(TRUTH[a] == "adjuster" for a in AMOUNTS) / len(AMOUNTS)  # 5 of 24

    # 1. prodgate metrics: the reviewed labels are each version's labelled decisions.
    shown = run(settings, "metrics", "claims", "--json")
    assert shown.exit_code == 0, shown.output
    quality = {v["version"]: v["quality"] for v in json.loads(shown.stdout)["versions"]}
    assert quality[1]["rows"] == len(AMOUNTS)
    assert quality[1]["metrics"]["accuracy"] == pytest.approx(right_v1)
    assert quality[2]["metrics"]["accuracy"] == pytest.approx(right_v2)

    # 2. The canary's accuracy check, on the same windows the controller reads.
    assert v1.graded == v2.graded == len(AMOUNTS)
    assert v2.accuracy == pytest.approx(right_v2)
    checks = {c.name: c for c in compare(v2, v1, Checks(min_feedback=10))}
    assert checks["accuracy"].passed is False
    assert checks["accuracy"].canary_value == pytest.approx(right_v2)
    assert checks["accuracy"].baseline_value == pytest.approx(right_v1)

    # 3. The export, evaluated as it is: version 1 scores what the reviewers found.
    path = tmp_path / "reviewed.parquet"
    store = open_store(settings)
    try:
        summary = export(store, spec, "claims", path)
    finally:
        store.dispose()
    assert summary["rows"] == 2 * len(AMOUNTS)
    evaluated = run(settings, "evaluate", "claims", "1", "--data", str(path), "--json")
    assert evaluated.exit_code in (0, 1), evaluated.output  # 1: a gate failed
    body = json.loads(evaluated.stdout)
    assert body["dataset"]["rows"] == 2 * len(AMOUNTS)
    assert body["metrics"]["accuracy"] == pytest.approx(right_v1)
