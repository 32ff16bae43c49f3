"""``prodgate demo --story`` tells the whole governance story by itself."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from prodgate.cli.main import cli


def test_story_runs_and_history_shows_each_step(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    env = {"PRODGATE_DATABASE_URL": "", "PRODGATE_CONFIG": ""}
    r = runner.invoke(cli, ["--home", home, "demo", "--story"], env=env)
    assert r.exit_code == 0, r.output
    assert "The story ran as told." in r.output
    assert "approval refused: version 2 failed its gates" in r.output
    assert "v3: promoted" in r.output
    assert "v4: rolled_back" in r.output

    r = runner.invoke(cli, ["--home", home, "history", "claims-triage", "--json"], env=env)
    assert r.exit_code == 0, r.output
    history = json.loads(r.output)
    refused = [h for h in history if h["action"] == "approve_refused"]
    assert [h["version"] for h in refused] == [2]
    assert "accuracy >= 0.58 on high_value" in refused[0]["reason"]
    assert refused[0]["metrics"]["accuracy"] > 0.94  # better overall, refused all the same
    promoted = [h for h in history if h["action"] == "promote"]
    assert [h["version"] for h in promoted] == [3]
    assert promoted[0]["actor"] == "controller"
    assert promoted[0]["canary"]["requests"] > 0
    assert promoted[0]["baseline"]["requests"] > 0
    rollback = [h for h in history if h["action"] == "rollback"]
    assert len(rollback) == 1
    assert rollback[0]["reason"].startswith("automatic:")
    assert rollback[0]["canary"]["version"] == 4
    assert rollback[0]["canary"]["error_rate"] > 0
    failed_checks = [h for h in history if h["action"] == "rollout_check_failed"]
    assert len(failed_checks) >= 2
    # Every action in order, each with who did it.
    actions = [h["action"] for h in history]
    assert actions.index("approve_refused") < actions.index("promote") < actions.index("rollback")
    assert all(h["actor"] for h in history)

    r = runner.invoke(cli, ["--home", home, "audit", "verify"], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--home", home, "demo", "--story"], env=env)
    assert r.exit_code == 2
    assert "fresh --home" in r.output
