from __future__ import annotations

from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

import click
import pytest

from prodgate import settings
from prodgate.exceptions import SpecError, UsageError
from prodgate.settings import Settings, find_spec


def test_environment_then_overrides() -> None:
    s = Settings.load(
        {"port": 9001, "home": None}, env={"PRODGATE_PORT": "7000", "PRODGATE_HOME": "/x"}
    )
    assert s.port == 9001
    assert s.home == "/x"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PRODGATE_PORT": "eighty"}, "PRODGATE_PORT='eighty': a port is a whole number"),
        ({"PRODGATE_PORT": "70000"}, "from 1 to 65535"),
        ({"PRODGATE_MAX_QUEUE": "lots"}, "PRODGATE_MAX_QUEUE='lots': must be a whole number"),
        ({"PRODGATE_MAX_WAIT_MS": "soon"}, "must be a number"),
    ],
)
def test_bad_environment_value_is_a_usage_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Settings.load(env=env)


def test_sqlite_under_home_by_default(tmp_path: Path) -> None:
    s = Settings.load({"home": str(tmp_path)}, env={})
    assert s.store_url == f"sqlite:///{tmp_path.resolve()}/prodgate.db"


def test_docs_list_every_setting() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    assert doc == settings.markdown(), "regenerate: prodgate settings --markdown > docs/settings.md"


def test_the_dataclass_defaults_are_the_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no prodgate.yaml above to move the home
    defaults = {s.name: s.default for s in settings.TABLE}
    built = Settings()
    assert {name: getattr(built, name) for name in defaults} == defaults
    assert Settings.load(env={}) == built
    assert {f.name for f in fields(Settings)} - {"extra"} == set(defaults)


def _commands(command: click.Command) -> Iterator[click.Command]:
    yield command
    if isinstance(command, click.Group):  # groups load their commands on first use
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, name
            yield from _commands(sub)


#: Commands that serve something else than the gateway, on an address of their own.
OWN_ADDRESS = {"mock-llm"}


def test_every_cli_option_of_a_setting_names_its_variable_and_default() -> None:
    from prodgate.cli.main import cli

    by_option = {s.option: s for s in settings.TABLE if s.option}
    seen: dict[str, set[str]] = {option: set() for option in by_option}
    for command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            help_text = param.help or ""
            setting = next((by_option[o] for o in param.opts if o in by_option), None)
            if command.name in OWN_ADDRESS and param.name in ("host", "port"):
                setting = None  # the mock LLM's own address, not the gateway's
            if setting is None:
                assert "PRODGATE_" not in help_text, f"{command.name} {param.opts}: by hand?"
                continue
            assert f"[env {setting.env}; default {setting.default_text}]" in help_text
            if not setting.shown:  # the value itself, as the table has it
                assert f"default {setting.default}]" in help_text
            seen[setting.option].add(command.name or "")
    every = {c.name or "" for c in _commands(cli) if not isinstance(c, click.Group)}
    assert seen["--home"] >= every | {"prodgate"}
    assert seen["--config"] >= every | {"prodgate"}
    assert {"serve"} <= seen["--host"]
    assert {"serve"} <= seen["--port"]
    acting = {"register", "evaluate", "approve", "deploy", "rollback", "rollout", "shadow"}
    assert acting | {"disable", "enable"} <= seen["--by"]
    assert not {"versions", "history", "compare", "tail"} & seen["--by"]  # they only read


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding prodgate.yaml, with the current folder two levels below it."""
    if find_spec(tmp_path.parent) is not None:  # pragma: no cover - a stray spec above
        pytest.skip(f"a prodgate.yaml above {tmp_path} would be found")
    (tmp_path / "prodgate.yaml").write_text("version: 1\nservices: {}\n")
    sub = tmp_path / "models" / "v2"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    return tmp_path


def test_the_spec_is_found_in_a_folder_above_with_its_home(project: Path) -> None:
    s = Settings.load(env={})
    assert s.spec_path == project / "prodgate.yaml"
    assert s.home_path == project / ".prodgate"  # the project's store, not a new one here
    # A home that is set stays where it is set.
    assert Settings.load(env={"PRODGATE_HOME": "here"}).home_path == Path.cwd() / "here"


def test_the_nearest_spec_wins_and_config_wins_over_all(project: Path) -> None:
    nearer = project / "models" / "prodgate.yaml"
    nearer.write_text("version: 1\nservices: {}\n")
    assert Settings.load(env={}).spec_path == nearer
    other = project / "other.yaml"
    assert Settings.load({"config": str(other)}, env={}).spec_path == other
    assert Settings.load(env={"PRODGATE_CONFIG": str(other)}).spec_path == other
    (Path.cwd() / "prodgate.yaml").write_text("version: 1\nservices: {}\n")
    here = Settings.load(env={})
    assert here.spec_path == Path("prodgate.yaml")
    assert here.home == ".prodgate"


def test_no_spec_anywhere_says_where_it_looked(project: Path) -> None:
    (project / "prodgate.yaml").unlink()
    s = Settings.load(env={})
    with pytest.raises(SpecError) as info:
        _ = s.spec_path
    message = str(info.value)
    for folder in (Path.cwd(), Path.cwd().parent, project, Path("/")):
        assert str(folder) in message
    assert f"HOME {Path.cwd() / '.prodgate'}" in message
    assert "--config" in message
    # HOME/prodgate.yaml is the last resort.
    home = project / "home"
    home.mkdir()
    (home / "prodgate.yaml").write_text("version: 1\nservices: {}\n")
    assert Settings.load({"home": str(home)}, env={}).spec_path == home / "prodgate.yaml"
