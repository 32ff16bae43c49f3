"""The CLI: thin commands, one-line errors with exit 2, never a traceback."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from gateway_support import SPEC
from prodgate.cli.main import cli
from prodgate.settings import Settings, markdown
from prodgate.store.engine import open_store
from prodgate.store.tables import audit_log


def run(settings: Settings, *args: str, env: dict[str, str | None] | None = None) -> Result:
    full_env: dict[str, str | None] = {
        "PRODGATE_USER": "alice",
        "PRODGATE_DATABASE_URL": settings.database_url,
    }
    full_env.update(env or {})
    return CliRunner().invoke(
        cli, ["--home", settings.home, "--config", settings.config, *args], env=full_env
    )


def assert_one_line_error(result: Result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("prodgate: error: ")
    for needle in needles:
        assert needle in lines[0]
    assert "Traceback" not in result.output


@pytest.fixture
def spec_file(settings: Settings) -> Settings:
    Path(settings.config).write_text(SPEC)
    return settings


def test_register_versions_deploy_verify(spec_file: Settings, tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("amount,category\n1.5,auto\n3.0,home\n")
    r = run(
        spec_file,
        "register",
        "claims",
        "fixture_models:claims",
        "--data",
        str(data),
        "--note",
        "first",
    )
    assert r.exit_code == 0, r.output
    assert "registered claims version 1 (callable" in r.output
    assert "data 2 rows" in r.output
    r = run(spec_file, "register", "claims", "fixture_models:claims_v2")
    assert "version 2" in r.output
    assert "note:" not in r.output
    r = run(spec_file, "deploy", "claims", "1")
    assert_one_line_error(r, "0 of 1 approval", "prodgate approve claims 1")
    r = run(
        spec_file, "approve", "claims", "1", "--by", "bob", "--override-gates", "--reason", "pilot"
    )
    assert r.exit_code == 0, r.output
    assert "override of failed gates by bob recorded (1 of 1 needed)" in r.output
    r = run(spec_file, "deploy", "claims", "1", "--reason", "launch")
    assert r.exit_code == 0, r.output
    r = run(spec_file, "versions", "claims")
    assert r.exit_code == 0
    assert "1 *" in r.output
    assert "first" in r.output
    listed = json.loads(run(spec_file, "versions", "claims", "--json").output)
    assert [v["version"] for v in listed] == [1, 2]
    assert listed[0]["production"] is True
    assert listed[0]["data"]["rows"] == 2
    assert listed[0]["data"]["columns"]["amount"] == "float64"
    assert listed[0]["created_by"] == "alice"
    r = run(spec_file, "audit", "verify")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("ok: 4 records verified")
    tail = json.loads(run(spec_file, "audit", "tail", "--json").output)
    assert [t["action"] for t in tail] == ["register", "register", "override", "deploy"]
    assert tail[3]["actor"] == "alice"
    assert tail[3]["reason"] == "launch"
    shown = json.loads(run(spec_file, "audit", "show", tail[0]["id"]).output)
    assert shown["note"] == "first"


def test_audit_verify_fails_naming_the_record(spec_file: Settings) -> None:
    run(spec_file, "register", "claims", "fixture_models:claims")
    run(spec_file, "approve", "claims", "1", "--by", "bob", "--override-gates", "--reason", "x")
    store = open_store(spec_file)
    with store.write() as conn:
        rid = conn.execute(sa.select(audit_log.c.id).where(audit_log.c.seq == 2)).scalar()
        conn.execute(audit_log.update().where(audit_log.c.seq == 2).values(actor="mallory"))
    store.dispose()
    r = run(spec_file, "audit", "verify")
    assert r.exit_code == 1
    assert f"seq 2 (id {rid}) was changed" in r.output


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["register", "nope", "fixture_models:claims"], ["unknown service 'nope'", "claims"]),
        (["register", "claims", "missing.skops"], ["missing.skops"]),
        (["register", "claims", "fixture_models:absent"], ["absent"]),
        (["deploy", "claims", "7"], ["claims has no version 7"]),
        (["audit", "show", "nope"], ["no audit record"]),
        (["versions", "nope"], ["unknown service"]),
        (["metrics", "claims", "--window", "0s"], ["window '0s': must be longer than zero"]),
    ],
)
def test_user_mistakes_are_one_line_exit_2(
    spec_file: Settings, args: list[str], needles: list[str]
) -> None:
    assert_one_line_error(run(spec_file, *args), *needles)


def test_pickle_needs_explicit_trust(spec_file: Settings, tmp_path: Path) -> None:
    model = tmp_path / "model.pkl"
    model.write_bytes(b"not even a pickle")
    assert_one_line_error(run(spec_file, "register", "claims", str(model)), "--trust-pickle")


def test_register_a_skops_file_with_a_custom_type_needs_its_types_trusted(
    spec_file: Settings, tmp_path: Path
) -> None:
    import numpy as np
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    from custom_estimators import Doubler

    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = make_pipeline(Doubler(), LogisticRegression()).fit(x, ["low", "low", "high", "high"])
    path = tmp_path / "custom.skops"
    sio.dump(model, path)
    r = run(spec_file, "register", "idle", str(path))
    assert_one_line_error(
        r, "custom_estimators.Doubler", "--trust-types custom_estimators.Doubler", str(path)
    )
    r = run(spec_file, "register", "idle", str(path), "--trust-pickle")
    assert_one_line_error(r, "--trust-pickle does not apply", "--trust-types")
    r = run(spec_file, "register", "idle", str(path), "--trust-types", "custom_estimators.Doubler")
    assert r.exit_code == 0, r.output
    assert "registered idle version 1 (skops" in r.output
    assert "trusted types: custom_estimators.Doubler" in r.output
    listed = json.loads(run(spec_file, "versions", "idle", "--json").output)
    assert listed[0]["trusted_types"] == ["custom_estimators.Doubler"]
    assert listed[0]["trusted_pickle"] is False


def test_broken_spec_is_file_line_field(settings: Settings) -> None:
    Path(settings.config).write_text(SPEC.replace("kind: classifier", "kind: oracle", 1))
    assert_one_line_error(
        run(settings, "versions", "claims"), f"{settings.config}:6: services.claims.kind"
    )


def test_bad_database_url_is_one_line(spec_file: Settings) -> None:
    r = run(spec_file, "versions", "claims", env={"PRODGATE_DATABASE_URL": "mysql://x/y"})
    assert_one_line_error(r, "unsupported store")


def test_bad_setting_is_one_line(spec_file: Settings) -> None:
    assert_one_line_error(
        run(spec_file, "versions", "claims", env={"PRODGATE_PORT": "x"}), "PRODGATE_PORT"
    )


def test_init_writes_a_loadable_spec_and_will_not_overwrite(sqlite_settings: Settings) -> None:
    r = run(sqlite_settings, "init", "fraud-check")
    assert r.exit_code == 0, r.output
    from prodgate.spec import load

    policy = load(sqlite_settings.config).service("fraud-check").policy
    # The governance a user fills in is there to edit, and in force as written.
    assert policy.business is not None
    assert [c.name for c in policy.cohorts] == ["large", "category"]
    assert len(policy.gates) == 3
    assert policy.approvals.separation_of_duties
    assert_one_line_error(run(sqlite_settings, "init"), "--force")
    assert_one_line_error(run(sqlite_settings, "init", "Bad Name", "--force"), "not a service name")


def test_settings_markdown_matches_docs(sqlite_settings: Settings) -> None:
    r = run(sqlite_settings, "settings", "--markdown")
    assert r.output == markdown()
    r = run(sqlite_settings, "settings")
    assert "PRODGATE_HOME" in r.output
    assert sqlite_settings.home in r.output


def test_demo_builds_registers_deploys_and_reuses(settings: Settings) -> None:
    r = run(settings, "demo", "--no-serve", "--port", "8123")
    assert r.exit_code == 0, r.output
    assert "registered version 1" in r.output
    assert "gates passed" in r.output
    assert "approved by claims-lead" in r.output
    assert "approved by risk-officer" in r.output
    assert "version 1 deployed to production" in r.output
    assert "curl -s -X POST http://127.0.0.1:8123/v1/services/claims-triage/predict" in r.output
    again = run(settings, "demo", "--no-serve")
    assert again.exit_code == 0, again.output
    assert "already built" in again.output
    assert "version 1 is in production" in again.output
    assert "registered" not in again.output
    # The example's folder removed by hand: the demo builds it again, link and all.
    link = Path(settings.home) / "prodgate.yaml"
    shutil.rmtree(link.resolve().parent)
    assert link.is_symlink()
    assert not link.exists()
    rebuilt = run(settings, "demo", "--no-serve")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert link.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["deploy", "claims"], ["Missing argument 'VERSION'", "prodgate deploy [OPTIONS]"]),
        (["deploy", "claims", "1", "--bogus"], ["No such option '--bogus'"]),
        (["audit", "nope"], ["No such command 'nope'"]),
        (["deploy", "claims", "one"], ["'one' is not a version number (1, 2, 3, ...)"]),
        (["deploy", "claims", "99999999999"], ["'99999999999' is not a version number"]),
        (["serve", "--port", "99999"], ["a port is a whole number from 1 to 65535"]),
        (["audit", "tail", "-n", "-3"], ["not in the range x>=1"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], needles: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert_one_line_error(result, *needles)


def test_home_and_config_may_follow_the_command(spec_file: Settings, tmp_path: Path) -> None:
    r = run(spec_file, "register", "claims", "fixture_models:claims")
    assert r.exit_code == 0, r.output
    env = {"PRODGATE_USER": "alice", "PRODGATE_DATABASE_URL": spec_file.database_url}
    after = ["--home", spec_file.home, "--config", spec_file.config]
    r = CliRunner().invoke(cli, ["versions", "claims", *after], env=env)
    assert r.exit_code == 0, r.output
    assert "callable" in r.output
    # Given after the command, they win over the ones before it.
    r = CliRunner().invoke(
        cli, ["--config", str(tmp_path / "absent.yaml"), "versions", "claims", *after], env=env
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["versions", "claims", "--config", str(tmp_path / "no.yaml")])
    assert_one_line_error(r, "no.yaml")


def test_demo_shows_commands_as_they_were_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from prodgate.cli.demo import invoked_as

    monkeypatch.setattr("sys.argv", [".venv/bin/prodgate", "demo"])
    assert invoked_as() == ".venv/bin/prodgate"  # what 'make demo' runs
    monkeypatch.setattr("sys.argv", ["/usr/lib/python3/site-packages/prodgate/cli/main.py"])
    assert invoked_as() == "prodgate"


def test_serve_on_a_port_in_use_is_one_line(spec_file: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run(spec_file, "serve", "--port", str(port))
    assert_one_line_error(r, f"cannot listen on 127.0.0.1:{port}", "choose another --port")


def test_registering_the_same_artifact_again_says_so(spec_file: Settings) -> None:
    run(spec_file, "register", "claims", "fixture_models:claims")
    r = run(spec_file, "register", "claims", "fixture_models:claims")
    assert r.exit_code == 0, r.output
    assert "registered claims version 2" in r.output
    assert "note: the same artifact as version 1" in r.output


def test_a_subfolder_of_a_project_uses_its_spec_and_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prodgate.yaml").write_text(SPEC)
    sub = tmp_path / "notebooks" / "experiments"
    sub.mkdir(parents=True)
    env: dict[str, str | None] = {"PRODGATE_USER": "alice"}
    env.update(dict.fromkeys(("PRODGATE_HOME", "PRODGATE_CONFIG", "PRODGATE_DATABASE_URL")))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(cli, ["register", "claims", "fixture_models:claims"], env=env)
    assert r.exit_code == 0, r.output
    monkeypatch.chdir(sub)
    r = CliRunner().invoke(cli, ["versions", "claims"], env=env)
    assert r.exit_code == 0, r.output
    assert "callable" in r.output  # the version registered in the project folder
    assert not (sub / ".prodgate").exists()
    (tmp_path / "prodgate.yaml").unlink()
    r = CliRunner().invoke(cli, ["versions", "claims"], env=env)
    assert_one_line_error(r, f"no prodgate.yaml in {sub}, {sub.parent}, {tmp_path},", "HOME")


def test_the_cli_starts_without_the_heavy_libraries() -> None:
    """Every command pays for what ``prodgate`` imports at start: scikit-learn and pandas
    (seconds) only when a command uses them."""
    import subprocess
    import sys

    code = (
        "import sys, prodgate.cli.main; "
        "print(sorted(m for m in ('sklearn', 'pandas', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_command_table_names_every_command_of_every_module() -> None:
    """Commands load from their module on first use, so a command missing from the
    table would silently vanish from ``prodgate``."""
    import importlib
    import pkgutil

    import prodgate.cli
    from prodgate.cli.main import COMMANDS

    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(prodgate.cli.__path__):
        if info.name == "main":
            continue
        module = importlib.import_module(f"prodgate.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            found.setdefault(command.name, info.name)
    assert found == COMMANDS


def test_a_quick_command_does_not_import_the_store() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from prodgate.cli.main import cli; "
        "cli.get_command(None, 'drift'); print('sqlalchemy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
