from __future__ import annotations

from pathlib import Path

import pytest

from prodgate import settings
from prodgate.exceptions import UsageError
from prodgate.settings import Settings


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
