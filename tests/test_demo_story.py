"""``prodgate demo --story`` tells the whole governance story by itself: claims-triage's,
then claims-letter's over the mock LLM (one run, checked for both: it is the slow part)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from prodgate.cli.main import cli


def test_story_runs_and_history_shows_each_step(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    runner = CliRunner()
    env = {"PRODGATE_DATABASE_URL": "", "PRODGATE_CONFIG": ""}
    r = runner.invoke(cli, ["--home", home, "demo", "--story"], env=env)
    assert r.exit_code == 0, r.output
    assert "The story ran as told." in r.output
    r_story = r.output
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
    _check_drift(history, r_story, runner, home, env)
    _check_review(r_story, runner, home, env)

    _check_letter(runner, home, env, r_story)

    r = runner.invoke(cli, ["--home", home, "audit", "verify"], env=env)
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli, ["--home", home, "demo", "--story"], env=env)
    assert r.exit_code == 2
    assert "fresh --home" in r.output


def _check_letter(runner: CliRunner, home: str, env: dict[str, str], output: str) -> None:
    """claims-letter: v2 refused on the fraud gate, v3 promoted through an outage."""
    assert "approval refused: version 2 failed its gates: accuracy >= 0.9 on fraud" in output
    assert "v2 costs $" in output
    assert "8.3x cheaper than v1" in output
    outage = re.search(
        r"during the outage: (\d+) requests, (\d+) of them to v3; (\d+) answered by the "
        r"fallback backup/large; (\d+) failed",
        output,
    )
    assert outage is not None, output
    requests, canary, fallbacks, failed = map(int, outage.groups())
    assert requests > canary > 0
    assert fallbacks == canary  # every canary call in the outage fell back...
    assert failed == 0  # ...and none failed
    breaker = re.search(r"circuit breaker of primary/small: (.*)", output)
    assert breaker is not None
    states = breaker.group(1).split(" (")[0].split(" -> ")
    assert states[0] == "open"
    assert states[-1] == "closed"
    assert "claims-letter: production is version 3" in output

    r = runner.invoke(cli, ["--home", home, "history", "claims-letter", "--json"], env=env)
    assert r.exit_code == 0, r.output
    history = json.loads(r.output)
    refused = [h for h in history if h["action"] == "approve_refused"]
    assert [h["version"] for h in refused] == [2]
    assert "accuracy >= 0.9 on fraud" in refused[0]["reason"]
    (failed_gate,) = refused[0]["failed_gates"]
    assert failed_gate["gate"] == "accuracy >= 0.9 on fraud"
    assert failed_gate["value"] == 0
    assert refused[0]["metrics"]["accuracy"] > 0.85  # good overall, refused all the same
    promoted = [h for h in history if h["action"] == "promote"]
    assert [h["version"] for h in promoted] == [3]
    assert promoted[0]["actor"] == "controller"
    assert promoted[0]["canary"]["requests"] > 0
    assert not [h for h in history if h["action"] == "rollback"]
    deployed = [h["version"] for h in history if h["action"] == "deploy"]
    assert deployed == [1]
    actions = [h["action"] for h in history]
    assert actions.index("approve_refused") < actions.index("rollout_start")
    assert actions.index("rollout_start") < actions.index("promote")
    _check_rails(history, output)


def _check_review(output: str, runner: CliRunner, home: str, env: dict[str, str]) -> None:
    """Step 8: every high-value claim reaches two people, 5% of the automatic ones one;
    the simulated adjusters empty the queue, and ``review stats`` gives their kappa,
    equal to scikit-learn's on the same decisions."""
    import sqlalchemy as sa
    from sklearn.metrics import cohen_kappa_score

    chapter = output.split("8. People review")[1].split("Production is version")[0]
    high = re.search(r"(\d+) of 20,000 or more, each to two people\s+\((\d+) of them", chapter)
    assert high is not None, chapter
    assert int(high.group(1)) == int(high.group(2)) > 0
    sampled = re.search(r"(\d+) decided automatically,\s+(\d+) sampled for review", chapter)
    assert sampled is not None, chapter
    share = int(sampled.group(2)) / int(sampled.group(1))
    assert 0.02 <= share <= 0.09, share  # 5% of some 900: a binomial's spread
    assert "queue: 0 open, 0 in adjudication" in chapter
    r = runner.invoke(cli, ["--home", home, "review", "stats", "claims-triage", "--json"], env=env)
    assert r.exit_code == 0, r.output
    stats = json.loads(r.output)
    overall = stats["agreement"]["overall"]
    assert overall["method"] == "cohen_kappa"
    engine = sa.create_engine(f"sqlite:///{home}/prodgate.db")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT a.label, b.label FROM review_decisions a JOIN review_decisions b "
                "ON a.item_id = b.item_id WHERE a.reviewer = 'adjuster-ana' "
                "AND b.reviewer = 'adjuster-ben' AND a.role = 'review' AND b.role = 'review'"
            )
        ).all()
    engine.dispose()
    assert len(rows) == overall["n"] > 50
    expected = cohen_kappa_score([a for a, _ in rows], [b for _, b in rows])
    assert overall["value"] == expected
    assert 0.4 < overall["value"] < 0.95  # two imperfect adjusters agree, not always
    assert stats["automatic"]["accuracy"]["n"] >= int(sampled.group(2))


def _check_drift(
    history: list[dict[str, Any]], output: str, runner: CliRunner, home: str, env: dict[str, str]
) -> None:
    """Step 7: the drift is named column by column, the policyholder feed goes stale (the
    gateway counts the stale lookups and serves customer_age null), its alerts fire and
    resolve (in the audit log, by the monitor), and the estimate falls before the labels
    come."""
    before = output.split("7. Production drifts")[0]
    loaded = re.findall(r"feature view (policy|policyholder): ([\d,]+) policies loaded", before)
    assert {view for view, _ in loaded} == {"policy", "policyholder"}, before
    chapter = output.split("7. Production drifts")[1].split("Production is version")[0]
    assert "claim_amount: drifted" in chapter
    # 30% of the drifted claims' policyholders are stale: customer_age takes its default.
    stale = re.search(r"policyholder lookups stale \(older than the view's ttl\): (\d+)", chapter)
    assert stale is not None, chapter
    assert int(stale.group(1)) > 0
    empty = re.search(r"customer_age: empty in (\d+)% of rows \(reference 2%\)", chapter)
    assert empty is not None, chapter
    assert 20 <= int(empty.group(1)) <= 40
    assert "claim_type: " in chapter
    assert "refused by the contract" in chapter
    assert "before any label (realised: unknown)" in chapter
    assert "firing: none (the alerts resolved)" in chapter
    alerts = [h for h in history if h["action"] == "alert"]
    assert all(h["actor"] == "monitor" for h in alerts)
    for name in (
        "claim-amounts-moving",
        "customer-age-missing",
        "policyholder-feed-stale",
        "contract-violations",
    ):
        states = [h["state"] for h in alerts if h["alert"] == name]
        assert states[:1] == ["firing"], (name, states)
        assert states[-1] == "resolved", (name, states)
    # The records keep which policyholder rows were stale and that customer_age defaulted.
    tail = ["audit", "tail", "-n", "100000", "--service", "claims-triage", "--json"]
    r = runner.invoke(cli, ["--home", home, *tail], env=env)
    assert r.exit_code == 0, r.output
    records = json.loads(r.output)
    holders = [
        rec["features"]["policyholder"]
        for rec in records
        if isinstance(rec.get("features"), dict) and "policyholder" in rec["features"]
    ]
    assert holders, "no record kept the features the model saw"
    stale_records = [f for f in holders if f["status"] == "stale"]
    assert stale_records
    assert all(f["defaulted"] == ["customer_age"] for f in stale_records)
    r = runner.invoke(cli, ["--home", home, "monitor", "claims-triage", "--json"], env=env)
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["versions"][0]["version"] == 3
    assert {c["column"] for c in report["versions"][0]["columns"]} >= {"claim_amount", "confidence"}


def _check_rails(history: list[dict[str, Any]], output: str) -> None:
    """Step 5: an injection blocked, a card redacted before the model saw it, a leaked
    system prompt caught in a streamed answer; each in the history and the audit log."""
    assert "an injection in a claimant's message: 400 guard-blocked (injection" in output
    assert "a card number: 200, answered; the model saw" in output
    assert "[CARD]" in output
    assert (
        "4539 1488 0343 6467" not in output.split("5. The guard rails")[1].split("the model saw")[1]
    )
    streamed = re.search(r"a streamed answer quoting the prompt: (\d+) chunks sent, then", output)
    assert streamed is not None, output
    guard = [h for h in history if h["action"] == "guard"]
    verdicts = [
        (direction, v["verdict"], {f["category"] for f in v["findings"]})
        for h in guard
        for direction, v in h["guard"].items()
    ]
    assert ("input", "block", {"injection"}) in verdicts
    assert ("input", "redact", {"pii"}) in verdicts
    assert ("output", "block", {"leak"}) in verdicts
    leak = next(h for h in guard if "output" in h["guard"])
    assert leak["status"] == 422
