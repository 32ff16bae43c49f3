"""Engine setup for the two supported stores, and migrations on start.

SQLite runs in WAL mode (readers never wait for the writer) with a busy timeout;
write transactions ask for ``BEGIN IMMEDIATE`` so that two writers queue instead of
failing on a lock upgrade. PostgreSQL is used as it is; writers that must be
serialised across replicas (the audit chain, migrations) take advisory locks.

Errors leave the store as one-line ``StoreError`` messages built from the driver's first
line only: SQLAlchemy's own text carries the SQL and its parameters, which hold callers'
inputs (several callers' in a group commit), and those must not reach responses or logs.
Engines are created with ``hide_parameters=True`` so the chained exception hides them too.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from prodgate.exceptions import StoreError, StoreUnreachableError, UsageError
from prodgate.settings import Settings
from prodgate.store.tables import state

#: Advisory lock keys (PostgreSQL); arbitrary but fixed.
LOCK_MIGRATE = 0x70726F64  # "prod"
LOCK_AUDIT = 0x61756474  # "audt"
LOCK_REGISTRY = 0x76657273  # "vers": numbering versions
LOCK_ARTIFACTS = 0x61727466  # "artf": storing artifact bytes


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


_INSERTS: dict[tuple[str, str, str, str], tuple[str, tuple[str, ...] | None]] = {}


def insert_many(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert *rows* (each with every column of *table*) through the driver's own
    executemany, the statement compiled once per table and dialect.

    Group commits insert thousands of rows a second. Through SQLAlchemy's executemany
    each row's parameters are processed in Python (about 17 us a row on the
    development machine, as much as the insert itself); the driver's executemany
    takes plain tuples or dicts.
    """
    if not rows:
        return
    dialect = conn.dialect
    # The SQL text depends on all of these.
    key = (table.name, dialect.name, dialect.driver, dialect.paramstyle)
    if key not in _INSERTS:
        compiled = table.insert().compile(
            dialect=dialect, column_keys=[c.name for c in table.columns]
        )
        order = tuple(compiled.positiontup or ()) if compiled.positional else None
        _INSERTS[key] = (compiled.string, order)
    sql, keys = _INSERTS[key]
    conn.exec_driver_sql(sql, [tuple(row[k] for k in keys) for row in rows] if keys else rows)


def _redact(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<invalid url>"


#: How people spell a PostgreSQL URL; all of them mean the installed driver, psycopg 3.
_POSTGRES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
_SQLITE = ("sqlite", "sqlite+pysqlite")
_SQLITE_FILES = (".db", ".sqlite", ".sqlite3")
ACCEPTED = (
    "postgresql://user@host/db (or postgres://, postgresql+psycopg://, "
    "postgresql+psycopg2://), sqlite:///path/to/file.db, or a path to a .db file"
)


def resolve_url(text: str) -> str:
    """The SQLAlchemy URL of the store *text* (``PRODGATE_DATABASE_URL``) names.

    Accepts the spellings in :data:`ACCEPTED`; anything else is a one-line UsageError
    that lists them. Errors name the scheme at most: the rest may hold a password.
    """
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        path = Path(text).expanduser()
        if path.suffix.lower() in _SQLITE_FILES:
            return f"sqlite:///{path.resolve()}"
        raise UsageError(
            "PRODGATE_DATABASE_URL is neither a database URL (no scheme://) nor a path to "
            f"a .db file; use {ACCEPTED}"
        )
    kind = scheme.lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]{0,31}", kind):
        raise UsageError(f"PRODGATE_DATABASE_URL is not a database URL; use {ACCEPTED}")
    if kind in _POSTGRES:
        url = "postgresql+psycopg://" + rest
    elif kind in _SQLITE:
        url = "sqlite://" + rest
    else:
        raise UsageError(f"unsupported store {scheme!r} in PRODGATE_DATABASE_URL; use {ACCEPTED}")
    try:
        parsed = sa.engine.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        raise UsageError(f"PRODGATE_DATABASE_URL is not a valid {scheme}:// URL") from None
    if kind in _SQLITE and parsed.database in (None, "", ":memory:"):
        raise UsageError(
            "PRODGATE_DATABASE_URL names an in-memory SQLite database, which no other "
            "connection or process would see; give a file: sqlite:///path/to/file.db"
        )
    return url


def _describe(exc: SQLAlchemyError) -> str:
    """One line about *exc* without SQL text or parameters: the DBAPI error's first line."""
    orig = getattr(exc, "orig", None)
    # Not a driver error: args[0] is SQLAlchemy's message without the background link.
    text = str(orig) if orig is not None else str(exc.args[0]) if exc.args else ""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    if len(first) > 200:
        first = first[:199] + "…"
    name = exc.__class__.__name__
    return f"{name}: {first}" if first else name


class Store:
    """The store: one SQLAlchemy engine plus the few helpers every plane needs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = resolve_url(settings.store_url)
        parsed = sa.engine.make_url(self.url)
        self.dialect = parsed.get_backend_name()
        self.engine = self._create_engine(parsed)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    def _create_engine(self, url: sa.engine.URL) -> Engine:
        if self.dialect == "sqlite":
            if url.database:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            engine = sa.create_engine(
                url,
                connect_args={"check_same_thread": False, "timeout": 30},
                pool_size=8,
                hide_parameters=True,
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
        return sa.create_engine(
            url,
            pool_size=8,
            max_overflow=8,
            pool_pre_ping=True,
            hide_parameters=True,
            # A store that does not answer should fail fast, not after TCP's minutes:
            # the recorder then spools to its journal instead of holding requests.
            connect_args={"connect_timeout": 5},
        )

    @property
    def display_url(self) -> str:
        """The store's URL without its password, to show people."""
        return _redact(self.url)

    def _error(self, exc: SQLAlchemyError) -> StoreError:
        text = f"store {_redact(self.url)}: {_describe(exc)}"
        # No connection (refused, dropped, timed out, or the database away): the same
        # statement may succeed later. Anything else the store said about the statement.
        lost = isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
        if lost or isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return StoreUnreachableError(text)
        return StoreError(text)

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite)."""
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(immediate=True)
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise self._error(exc) from exc

    @contextlib.contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A read transaction; with *snapshot*, every statement in it sees the same data.

        PostgreSQL's default (READ COMMITTED) gives each statement a fresh snapshot, so a
        reader that makes several queries can see writes committed between them; a
        snapshot read runs REPEATABLE READ and read-only instead. On SQLite (WAL) a read
        transaction already sees one snapshot from its first statement to its end.
        """
        try:
            with self.engine.connect() as conn:
                if snapshot and self.dialect == "postgresql":
                    conn = conn.execution_options(
                        isolation_level="REPEATABLE READ", postgresql_readonly=True
                    )
                with conn.begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise self._error(exc) from exc

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
