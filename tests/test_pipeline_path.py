"""The request path as stages: their order, and what each stage owns."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest

from gateway_support import GOOD, register_and_approve, register_and_deploy, running, write_spec
from prodgate import spec as spec_module
from prodgate.rollout import split as deployments
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from prodgate.store.tables import versions as version_table

pytestmark = pytest.mark.anyio

PREDICT = "/v1/services/claims/predict"


def _change_split(settings: Settings, action: str, *args: object, **kwargs: object) -> None:
    spec = spec_module.load(settings.config)
    store = open_store(settings)
    try:
        getattr(deployments, action)(store, spec.service("claims"), *args, actor="ops", **kwargs)
    finally:
        store.dispose()


def _break(settings: Settings, number: int) -> None:
    """Point version *number*'s callable at nothing: it can no longer load."""
    store = open_store(settings)
    with store.write() as conn:
        conn.execute(
            version_table.update()
            .where(version_table.c.number == number)
            .values(artifact="fixture_models:gone")
        )
    store.dispose()


async def test_the_contract_is_checked_before_routing(deployed: Settings) -> None:
    # With the kill switch on, a broken input still hears of its own mistake first.
    _change_split(deployed, "set_disabled", True, reason="incident 7")
    async with running(deployed) as client:
        bad = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": -1}})
        assert bad.status_code == 422, bad.text
        assert [e["path"] for e in bad.json()["errors"]] == ["/inputs/amount"]
        refused = (await client.get(f"/v1/inferences/{bad.json()['id']}")).json()
        assert refused["version"] is None  # a disabled service chooses no version
        good = await client.post(PREDICT, json={"inputs": GOOD})
        assert good.status_code == 503
        assert "incident 7" in good.json()["detail"]
        stored = (await client.get(f"/v1/inferences/{good.json()['id']}")).json()
        assert (stored["problem"], stored["input"]) == ("disabled", {"inputs": GOOD})


async def test_a_refusal_for_the_contract_counts_against_the_version_chosen(
    deployed: Settings,
) -> None:
    # Canary analysis compares violation rates per version: a 422 names its version.
    async with running(deployed) as client:
        bad = await client.post(PREDICT, json={"inputs": {**GOOD, "amount": -1}})
        assert bad.status_code == 422
        refused = (await client.get(f"/v1/inferences/{bad.json()['id']}")).json()
        assert (refused["version"], refused["status"]) == (1, 422)


async def test_a_shadow_that_cannot_load_leaves_the_gateway_ready(deployed: Settings) -> None:
    shadow = register_and_approve(deployed, "fixture_models:claims_v2")
    _break(deployed, shadow)
    _change_split(deployed, "set_shadow", shadow)
    async with running(deployed) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["services"] == {"claims": 1}
        [warning] = ready.json()["warnings"]
        assert warning.startswith(f"claims: shadow version {shadow}: ")
        view = (await client.get("/v1/services/claims")).json()
        assert view["shadow_error"].startswith(f"shadow version {shadow}")
        assert "error" not in view
        metrics = (await client.get("/metrics")).text
        line = (
            f'prodgate_version_load_failed{{role="shadow",service="claims",version="{shadow}"}} 1.0'
        )
        assert line in metrics
        r = await client.post(PREDICT, json={"inputs": GOOD})
        assert (r.status_code, r.json()["version"]) == (200, 1)


async def test_a_canary_that_cannot_load_makes_the_gateway_unready(deployed: Settings) -> None:
    canary = register_and_approve(deployed, "fixture_models:claims_v2")
    _break(deployed, canary)
    store = open_store(deployed)
    try:
        from prodgate.rollout import commands

        spec = spec_module.load(deployed.config)
        commands.start(store, spec.service("claims"), canary, actor="ops")
    finally:
        store.dispose()
    async with running(deployed) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert f"claims: version {canary}" in ready.json()["detail"]
        metrics = (await client.get("/metrics")).text
        assert (
            f'prodgate_version_load_failed{{role="serving",service="claims",version="{canary}"}}'
            in metrics
        )


async def test_a_request_in_flight_finishes_on_the_version_it_started_on(
    settings: Settings,
) -> None:
    write_spec(settings)
    register_and_deploy(settings, "fixture_models:slow")  # 0.2 s a call
    async with running(settings) as client:
        gateway = client.app.state.gateway  # type: ignore[attr-defined]
        old = gateway.fleet.services["claims"].production
        in_flight = asyncio.create_task(client.post(PREDICT, json={"inputs": GOOD}))
        await asyncio.sleep(0.05)  # its row is now in the slow model's call
        number = register_and_approve(settings, "fixture_models:claims_v2")
        _change_split(settings, "deploy", number)
        await gateway.refresh()  # retires version 1 while its call runs
        assert gateway.fleet.services["claims"].production.version.number == number
    # The retired batcher finished its call and stopped; its caller got version 1.
    assert old.batcher._task.done()
    assert (await in_flight).json()["version"] == 1


def test_the_data_plane_imports_nothing_of_the_control_plane() -> None:
    code = (
        "import sys, prodgate.pipeline.gateway, prodgate.pipeline.path\n"
        "bad = sorted(m for m in sys.modules if m.startswith(("
        "'prodgate.rollout.controller', 'prodgate.rollout.commands', 'prodgate.evaluation', "
        "'prodgate.cli', 'prodgate.server', 'prodgate.readiness', 'prodgate.review')))\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_predict_skips_the_router_and_still_answers_every_error_as_a_problem(
    deployed: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(deployed) as client:
        app = client.app  # type: ignore[attr-defined]
        gateway = app.state.gateway

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("a bug, not the caller's mistake")

        gateway.predict = broken
        with caplog.at_level("ERROR", logger="prodgate.server"):
            r = await client.post(PREDICT, json={"inputs": GOOD})
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"].endswith("internal")
        assert "a bug" not in r.text  # the traceback is in the log, not the answer
        assert any("unexpected error on POST" in m for m in caplog.messages)
        # Other methods on the predict path still reach the router: 405 with Allow.
        r = await client.get(PREDICT)
        assert (r.status_code, r.headers["allow"]) == (405, "POST")
