"""Shared fixtures: settings on a fresh store, on SQLite and on PostgreSQL.

PostgreSQL tests run against the server at 127.0.0.1:5432 (trust auth) in a
database created for this test session and dropped at its end; each test gets
its tables emptied. Set PRODGATE_TEST_PG_URL to point elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from prodgate.settings import Settings
from prodgate.store.engine import Store, open_store
from prodgate.store.tables import metadata

PG_ADMIN_URL = os.environ.get(
    "PRODGATE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"prodgate_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:  # pragma: no cover - environment problem
        admin.dispose()
        pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _empty(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        existing = set(sa.inspect(conn).get_table_names())
        for table in reversed(metadata.sorted_tables):
            if table.name in existing:
                conn.execute(table.delete())
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings with a fresh home; the store is SQLite or PostgreSQL (both run)."""
    home = tmp_path / "home"
    overrides: dict[str, object] = {
        "home": str(home),
        "config": str(tmp_path / "prodgate.yaml"),
        "refresh_interval": 0.1,
        "user": "tester",
    }
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        _empty(url)
        overrides["database_url"] = url
    return Settings.load(overrides, env={})


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """Settings on SQLite only, for tests whose subject is not the store."""
    return Settings.load(
        {
            "home": str(tmp_path / "home"),
            "config": str(tmp_path / "prodgate.yaml"),
            "refresh_interval": 0.1,
            "user": "tester",
        },
        env={},
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = open_store(settings)
    yield s
    s.dispose()


@pytest.fixture
def anyio_backend() -> str:
    """The async tests (``pytest.mark.anyio``) run on asyncio, as the server does."""
    return "asyncio"


@pytest.fixture
def deployed(settings: Settings) -> Settings:
    """The test spec (``gateway_support.SPEC``) with version 1 of ``claims`` deployed."""
    from gateway_support import register_and_deploy, write_spec

    write_spec(settings)
    register_and_deploy(settings)
    return settings
