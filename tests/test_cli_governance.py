"""The governance commands of the CLI, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import pwd
import socket
from pathlib import Path

import pytest

import test_rollout_controller as rollouts
from feedback_support import insert_truth
from gateway_support import SPEC
from prodgate.registry import approvals, versions
from prodgate.rollout import split as deployments
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from test_cli import assert_one_line_error, run

#: Where every action taken through the CLI in these tests comes from.
OS_USER = pwd.getpwuid(os.getuid()).pw_name
ORIGIN = {"channel": "cli", "os_user": OS_USER, "host": socket.gethostname()}


@pytest.fixture
def two_versions(settings: Settings) -> Settings:
    Path(settings.config).write_text(SPEC)
    for ref in ("fixture_models:claims", "fixture_models:claims_v2"):
        assert run(settings, "register", "claims", ref).exit_code == 0
    return settings


def approve(settings: Settings, version: str, by: str = "bob") -> None:
    r = run(settings, "approve", "claims", version, "--by", by, "--override-gates", "--reason", "t")
    assert r.exit_code == 0, r.output


def test_approve_rules_on_the_cli(two_versions: Settings) -> None:
    s = two_versions
    assert_one_line_error(
        run(s, "approve", "claims", "1", "--by", "alice", "--override-gates", "--reason", "x"),
        "alice registered version 1",
    )
    assert_one_line_error(run(s, "approve", "claims", "1", "--by", "bob"), "no stored evaluation")
    assert_one_line_error(
        run(s, "approve", "claims", "1", "--by", "bob", "--override-gates"), "--reason"
    )
    approve(s, "1")
    assert_one_line_error(
        run(s, "approve", "claims", "1", "--by", "bob", "--override-gates", "--reason", "x"),
        "already approved",
    )


def test_rollout_rollback_kill_switch_shadow_history(two_versions: Settings) -> None:
    s = two_versions
    approve(s, "1")
    assert run(s, "deploy", "claims", "1").exit_code == 0
    assert_one_line_error(run(s, "rollout", "claims", "2"), "0 of 1 approval")
    approve(s, "2")
    r = run(s, "rollout", "claims", "2")
    assert r.exit_code == 0, r.output
    assert "canary of version 2 started at 5%" in r.output
    assert_one_line_error(run(s, "deploy", "claims", "2"), "rollout of version 2 is under way")
    r = run(s, "rollout", "status", "claims")
    assert "running, weight 5%" in r.output
    status = json.loads(run(s, "rollout", "status", "claims", "--json").output)
    assert (status["state"], status["canary_version"]) == ("running", 2)
    assert "paused" in run(s, "rollout", "pause", "claims").output
    assert "running" in run(s, "rollout", "resume", "claims").output
    assert "aborted" in run(s, "rollout", "abort", "claims", "--reason", "changed my mind").output
    assert_one_line_error(run(s, "rollout", "status"), "prodgate rollout status SERVICE")
    assert_one_line_error(run(s, "rollout", "claims"), "prodgate rollout SERVICE VERSION")

    assert run(s, "deploy", "claims", "2").exit_code == 0
    r = run(s, "rollback", "claims", "--reason", "v2 is worse")
    assert "version 1 is back in production (version 2 rolled back)" in r.output
    assert_one_line_error(run(s, "disable", "claims", "--reason", ""), "needs --reason")
    assert run(s, "disable", "claims", "--reason", "incident 42", "--by", "oncall").exit_code == 0
    assert_one_line_error(run(s, "disable", "claims", "--reason", "x"), "already disabled")
    assert run(s, "enable", "claims").exit_code == 0
    assert "version 2 runs in shadow" in run(s, "shadow", "claims", "2").output
    assert "shadow off" in run(s, "shadow", "claims", "--off").output

    history = json.loads(run(s, "history", "claims", "--json").output)
    actions = [h["action"] for h in history]
    assert actions == [
        "register",
        "register",
        "override",
        "deploy",
        "override",
        "rollout_start",
        "rollout_pause",
        "rollout_resume",
        "rollout_abort",
        "deploy",
        "rollback",
        "disable",
        "enable",
        "shadow",
        "shadow",
    ]
    rollback = history[actions.index("rollback")]
    assert (rollback["reason"], rollback["actor"]) == ("v2 is worse", "alice")
    assert history[actions.index("disable")]["actor"] == "oncall"
    assert all(h["origin"] == ORIGIN for h in history), history
    text = run(s, "history", "claims").output
    assert "reason=incident 42" in text
    assert run(s, "audit", "verify").exit_code == 0
    r = run(s, "metrics", "claims", "--window", "1h")
    assert "no decisions in the last 1h" in r.output
    assert_one_line_error(run(s, "metrics", "claims", "--window", "forever"), "window")


@pytest.fixture
def three_deployed(two_versions: Settings) -> Settings:
    s = two_versions
    assert run(s, "register", "claims", "fixture_models:slow").exit_code == 0
    for version in ("1", "2", "3"):
        approve(s, version)
        assert run(s, "deploy", "claims", version).exit_code == 0
    return s


def test_rollback_walks_back_then_refuses(three_deployed: Settings) -> None:
    s = three_deployed
    r = run(s, "rollback", "claims")
    assert r.exit_code == 0, r.output
    assert r.output == "claims: version 2 is back in production (version 3 rolled back)\n"
    r = run(s, "rollback", "claims")
    assert r.output == "claims: version 1 is back in production (version 2 rolled back)\n"
    assert_one_line_error(run(s, "rollback", "claims"), "no earlier production version than 1")
    listed = json.loads(run(s, "versions", "claims", "--json").output)
    assert [v["version"] for v in listed if v["production"]] == [1]


def test_rollback_to(three_deployed: Settings) -> None:
    s = three_deployed
    assert_one_line_error(run(s, "rollback", "claims", "--to", "3"), "already in production")
    assert_one_line_error(run(s, "rollback", "claims", "--to", "0"), "--to")
    r = run(s, "rollback", "claims", "--to", "1", "--reason", "back to the first")
    assert r.exit_code == 0, r.output
    assert r.output == "claims: version 1 is back in production (version 3 rolled back)\n"
    assert_one_line_error(
        run(s, "rollback", "claims", "--to", "2"),
        "version 2 is not an earlier production version",
        "prodgate deploy claims 2",
    )
    last = json.loads(run(s, "history", "claims", "--json").output)[-1]
    assert (last["action"], last["version"], last["rolled_back"]) == ("rollback", 1, 3)
    assert last["reason"] == "back to the first"


def test_history_text_says_what_each_row_changed(settings: Settings) -> None:
    Path(settings.config).write_text(rollouts.SPEC)  # steps 10, 50, 100
    store = open_store(settings)
    try:
        w = rollouts.setup(store)
        rollouts.start(store, w.svc, 2, actor="alice", now_us=rollouts.T0)
        for k in range(2):  # a step from 10% to 50%, then the promotion
            rollouts.healthy(store, rollouts.T0 + k * rollouts.MIN)
            rollouts.tick(store, w.spec, rollouts.T0 + (k + 1) * rollouts.MIN)
        v3 = versions.register(store, w.svc, "fixture_models:slow", actor="dev")
        approvals.approve(store, w.svc, v3.number, by="bob", override_gates=True, reason="t")
        rollouts.start(store, w.svc, v3.number, actor="alice", now_us=rollouts.T0 + 5)
        deployments.rollback(store, w.svc, actor="ops", reason="v2 is worse")
    finally:
        store.dispose()
    r = run(settings, "history", "claims")
    assert r.exit_code == 0, r.output
    header, *lines = r.output.splitlines()
    details = header.index("DETAILS")
    rows = {}
    for line in lines:  # TIME is two words: date and time
        _, _, action, version, actor = line[:details].split()
        rows[action] = (version, actor, line[details:])
    assert rows["rollout_step"] == (
        "2",
        "controller",
        "reason=checks passed at 10%; canary to 50%, weight=0.5",
    )
    assert rows["promote"] == ("2", "controller", "reason=automatic: every step passed, previous=1")
    assert rows["rollback"] == (
        "1",
        "ops",
        "reason=v2 is worse, rolled_back=2, aborted_canary=3",
    )


def test_rollout_status_shows_the_last_checks_readably(capsys: pytest.CaptureFixture[str]) -> None:
    from prodgate.cli.rollout import _print_status

    info = {
        "service": "claims",
        "canary_version": 2,
        "baseline_version": 1,
        "state": "running",
        "weight": 0.25,
        "step": 1,
        "failures": 1,
        "policy": {"steps": [5, 25, 100], "failure_threshold": 2},
        "reason": "",
        "last_judgement": {
            "checks": [
                {
                    "name": "error_rate",
                    "passed": False,
                    "canary_value": 0.2066115702479339,
                    "baseline_value": 0.0,
                    "limit": 0.01,
                },
                {
                    "name": "p95_latency",
                    "passed": True,
                    "canary_value": None,
                    "baseline_value": 153.567,
                    "limit": 3.0,
                },
            ]
        },
    }
    _print_status(info)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "claims: version 2 against 1: running, weight 25%, step 2 of 3, failures 1 of 2"
    )
    assert out[1].split() == ["CHECK", "RESULT", "CANARY", "PRODUCTION", "LIMIT"]
    assert out[2].split() == ["error_rate", "FAIL", "0.2066", "0", "0.01"]
    assert out[3].split() == ["p95_latency", "pass", "-", "153.6", "3"]
    assert {line.index(line.split()[0]) for line in out[1:]} == {2}  # one indented column
    _print_status({**info, "state": "promoted", "weight": 0.0, "last_judgement": {}})
    assert capsys.readouterr().out.strip() == (
        "claims: version 2 against 1: promoted, now in production, failures 1 of 2"
    )


def test_metrics_text_shows_the_gates_on_production_feedback(settings: Settings) -> None:
    from prodgate.audit import log
    from prodgate.audit.record import KIND_INFERENCE, Record
    from prodgate.store.engine import now_us, open_store
    from test_evaluation_store import SPEC as GATED  # a spec with gates and cohorts

    Path(settings.config).write_text(GATED)
    run(settings, "register", "claims", "fixture_models:claims")
    store = open_store(settings)
    records = [
        Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=now_us(),
            payload={
                "input": {"amount": 100.0 * (i + 1), "category": "auto"},
                "output": {"prediction": "routine"},
            },
            service="claims",
            version=1,
            status=200,
            decision="auto",
            latency_ms=2.0,
        )
        for i in range(10)
    ]
    with store.write() as conn:
        log.append(store, conn, records)
        for i, r in enumerate(records):  # right on 8 of 10: accuracy 0.8 < the 0.9 gate
            truth = "adjuster" if i < 2 else "routine"
            insert_truth(conn, r.id, truth, r.ts_us, version=1)
    store.dispose()
    r = run(settings, "metrics", "claims", "--window", "1h")
    assert r.exit_code == 0, r.output
    assert "v1 gate FAIL: accuracy is 0.8; needs >= 0.9" in r.output


def test_an_approval_records_the_os_user_and_host_beside_the_name(two_versions: Settings) -> None:
    s = two_versions
    # The declared name is what separation of duties compares; USER and LOGNAME are
    # anyone's to set, so the OS user comes from the process's user id.
    env = {"PRODGATE_USER": "dana", "USER": "mallory", "LOGNAME": "mallory"}
    r = run(
        s, "approve", "claims", "1", "--by", "bob", "--override-gates", "--reason", "t", env=env
    )
    assert r.exit_code == 0, r.output
    [record] = json.loads(run(s, "audit", "tail", "-n", "1", "--json").output)
    assert (record["action"], record["actor"]) == ("override", "bob")
    assert record["origin"] == ORIGIN
    assert run(s, "audit", "verify").exit_code == 0
    assert f"bob ({OS_USER}@{socket.gethostname()})" in run(s, "history", "claims").output


def test_by_defaults_to_prodgate_user_then_the_login_name(two_versions: Settings) -> None:
    s = two_versions
    args = ["--override-gates", "--reason", "t"]
    r = run(s, "approve", "claims", "1", *args, env={"PRODGATE_USER": "carol"})
    assert r.exit_code == 0, r.output
    assert "override of failed gates by carol recorded" in r.output
    r = run(s, "approve", "claims", "2", *args, env={"PRODGATE_USER": None})
    assert r.exit_code == 0, r.output
    assert f"override of failed gates by {OS_USER} recorded" in r.output
    history = json.loads(run(s, "history", "claims", "--json").output)
    assert [h["actor"] for h in history if h["action"] == "override"] == ["carol", OS_USER]
    assert_one_line_error(run(s, "approve", "claims", "1", "--by", " ", *args), "needs a name")


def test_evaluations_and_refusals_record_their_origin(settings: Settings, tmp_path: Path) -> None:
    from test_evaluation_store import ROWS
    from test_evaluation_store import SPEC as GATED

    Path(settings.config).write_text(GATED)
    ROWS.to_csv(tmp_path / "holdout.csv", index=False)
    assert run(settings, "register", "claims", "fixture_models:claims").exit_code == 0
    holdout = str(tmp_path / "holdout.csv")
    r = run(settings, "evaluate", "claims", "1", "--data", holdout, "--by", "erin")
    assert r.exit_code == 1, r.output  # a gate fails; the evaluation is recorded anyway
    assert_one_line_error(
        run(settings, "approve", "claims", "1", "--by", "bob"), "failed its gates"
    )
    history = json.loads(run(settings, "history", "claims", "--json").output)
    assert [(h["action"], h["actor"]) for h in history] == [
        ("register", "alice"),
        ("evaluate", "erin"),
        ("approve_refused", "bob"),
    ]
    assert all(h["origin"] == ORIGIN for h in history), history
