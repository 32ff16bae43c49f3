"""The store on both engines: the URLs it accepts, and what a failed write tells callers."""

from __future__ import annotations

from pathlib import Path

import pytest

from prodgate.audit import log
from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.exceptions import StoreError, UsageError
from prodgate.settings import Settings
from prodgate.store.engine import ACCEPTED, Store, now_us, open_store, resolve_url

SECRET = "sk-live-0123456789abcdef"


def _record(record_id: str | None = None, secret: str = "") -> Record:
    extra = {"id": record_id} if record_id else {}
    return Record(
        kind=KIND_INFERENCE,
        action="predict",
        ts_us=now_us(),
        payload={"input": {"api_key": secret, "x": 1}},
        service="svc",
        **extra,
    )


def test_a_failed_write_says_one_line_without_sql_or_inputs(store: Store) -> None:
    first = _record()
    with store.write() as conn:
        log.append(store, conn, [first])
    # A group commit in which another caller's input (holding a secret) sits next to a
    # record whose id is already taken: the unique constraint fails the whole statement.
    with pytest.raises(StoreError) as info, store.write() as conn:
        log.append(store, conn, [_record(secret=SECRET), _record(first.id)])
    text = str(info.value)
    assert "\n" not in text
    assert "[SQL" not in text
    assert "[parameters" not in text
    assert "Background on this error" not in text
    assert SECRET not in text
    assert "unique" in text.lower()
    # The chained SQLAlchemy error (what a logged traceback shows) hides parameters too.
    assert SECRET not in str(info.value.__cause__)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_common_postgres_spellings_work_end_to_end(
    pg_url: str, tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}://{pg_url.partition('://')[2]}"
    settings = Settings.load({"home": str(tmp_path), "database_url": url}, env={})
    store = open_store(settings)
    try:
        assert store.dialect == "postgresql"
        record = _record()
        with store.write() as conn:
            log.append(store, conn, [record])
        with store.read() as conn:
            assert log.get(conn, record.id) is not None
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("postgres://u@db.example/claims", "postgresql+psycopg://u@db.example/claims"),
        (
            "postgresql://u@h:6432/x?sslmode=require",
            "postgresql+psycopg://u@h:6432/x?sslmode=require",
        ),
        ("postgresql+psycopg://u@h/x", "postgresql+psycopg://u@h/x"),
        ("POSTGRESQL+PSYCOPG2://u@h/x", "postgresql+psycopg://u@h/x"),
        ("sqlite:////var/lib/prodgate.db", "sqlite:////var/lib/prodgate.db"),
    ],
)
def test_url_spellings(text: str, url: str) -> None:
    assert resolve_url(text) == url


def test_a_bare_db_path_is_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "store" / "prodgate.db"
    assert resolve_url(str(path)) == f"sqlite:///{path.resolve()}"
    settings = Settings.load({"home": str(tmp_path), "database_url": str(path)}, env={})
    store = open_store(settings)
    try:
        record = _record()
        with store.write() as conn:
            log.append(store, conn, [record])
        assert store.is_sqlite
        assert path.exists()
    finally:
        store.dispose()


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("mysql://root:hunter2@h/db", "unsupported store 'mysql'"),
        ("postgresql+asyncpg://u@h/db", "unsupported store 'postgresql+asyncpg'"),
        ("user:hunter2@h/db", "neither a database URL"),
        ("sqlite://", "in-memory"),
        ("postgres://u:hunter2@h:port/db", "not a valid postgres:// URL"),
    ],
)
def test_other_urls_are_one_line_listing_what_is_accepted(text: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        resolve_url(text)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "hunter2" not in message  # a password never reaches the message
    if "unsupported" in needle or "neither" in needle:
        assert ACCEPTED in message
