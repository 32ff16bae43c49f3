"""Engine setup for the two supported stores, and migrations on start.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout;
write transactions ask for ``BEGIN IMMEDIATE`` so that two writers queue instead of
failing on a lock upgrade. PostgreSQL is used as it is; writers that must be
serialised across replicas (the audit chain, migrations) take advisory locks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from prodgate.exceptions import StoreError, UsageError
from prodgate.settings import Settings
from prodgate.store.tables import state

#: Advisory lock keys (PostgreSQL); arbitrary but fixed.
LOCK_MIGRATE = 0x70726F64  # "prod"
LOCK_AUDIT = 0x61756474  # "audt"


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"


class Store:
    """The store: one SQLAlchemy engine plus the few helpers every plane needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.store_url
        try:
            parsed = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            raise UsageError(f"PRODGATE_DATABASE_URL is not a database URL: {self.url!r}") from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise UsageError(f"unsupported store {self.dialect!r}: use SQLite or PostgreSQL")
        self.engine = self._create_engine(parsed)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _create_engine(self, url: sa.engine.URL) -> Engine:
        if self.dialect == "sqlite":
            if url.database:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8
            )
            synchronous = self.settings.sqlite_synchronous

            @sa.event.listens_for(engine, "connect")
            def _on_connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={synchronous}")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @sa.event.listens_for(engine, "begin")
            def _on_begin(conn: Connection) -> None:
                immediate = conn.get_execution_options().get("immediate", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

            return engine
        return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(immediate=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {_redact(self.url)}: {exc.__class__.__name__}: {exc}") from exc

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"store {_redact(self.url)}: {exc.__class__.__name__}: {exc}") from exc

    def lock(self, conn: Connection, key: int) -> None:
        """Serialise writers across processes for the rest of *conn*'s transaction."""
        if self.dialect == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        # SQLite: BEGIN IMMEDIATE already holds the one write lock.

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe with replicas)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", "prodgate.store:migrations")
        with self.write() as conn:
            self.lock(conn, LOCK_MIGRATE)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    def generation(self, conn: Connection | None = None) -> int:
        """The control-plane generation; it moves on every change gateways must see."""
        q = sa.select(state.c.value).where(state.c.key == "generation")
        if conn is None:
            with self.read() as c:
                return int(c.execute(q).scalar() or 0)
        return int(conn.execute(q).scalar() or 0)

    def bump_generation(self, conn: Connection) -> None:
        updated = conn.execute(
            state.update().where(state.c.key == "generation").values(value=state.c.value + 1)
        )
        if updated.rowcount == 0:
            conn.execute(state.insert().values(key="generation", value=1))

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(settings: Settings, migrate: bool = True) -> Store:
    store = Store(settings)
    if migrate:
        store.migrate()
    return store
