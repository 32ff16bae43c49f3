"""The online feature store: the latest value of each view's features, by entity.

Two of prodgate's own, one interface (:class:`Online`):

- :class:`RedisOnline` when ``PRODGATE_REDIS_URL`` is set: one hash per entity,
  ``{prefix}feature:{view}:{entity}``, a field per feature (its JSON) and ``_ts`` (the
  source's timestamp of the values, in microseconds). Written by pipelined ``HSET``s,
  read by one script call that ``HMGET``s every key of a batch: one round trip and one
  command for a whole micro-batch.
- :class:`StoreOnline` otherwise: the store's ``feature_values`` table (SQLite or
  PostgreSQL), one row per view and entity, read with one query per batch.

A team that runs Feast keeps it: a view whose source is ``feast`` is read from Feast's
own online store (:mod:`prodgate.features.feast`), through the same interface.

Entity keys are text on every side (``str`` of the request's value): a policy id sent
as 17 and one materialised from an integer column as 17 are the same key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from prodgate.exceptions import FeatureStoreError, UsageError
from prodgate.settings import Settings
from prodgate.spec.features import FeatureView
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import feature_values

logger = logging.getLogger("prodgate.features")

_COLUMNS = "SELECT entity, feature_values, event_us FROM feature_values WHERE view = "
_SQLITE_LOOKUP = _COLUMNS + "? AND entity IN (SELECT value FROM json_each(?))"
_POSTGRES_LOOKUP = _COLUMNS + "%s AND entity = ANY(%s)"
#: The hash field that holds the values' timestamp.
TS_FIELD = "_ts"


@dataclass(frozen=True, slots=True)
class Found:
    """One entity's values as the online store has them, and when the source had them."""

    values: dict[str, Any]
    event_us: int


class Online(Protocol):
    """What enrichment reads and materialisation writes."""

    #: ``redis``, ``store`` or ``feast``: recorded with each materialisation and shown.
    target: str

    async def lookup(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        """The values of *keys* (one per key, None where the entity is unknown)."""
        ...

    def write(self, view: FeatureView, rows: Iterable[tuple[str, dict[str, Any], int]]) -> int:
        """Store each ``(entity, values, event_us)`` as the entity's latest values (the
        store keeps a newer row it already has); return how many were written."""
        ...

    async def close(self) -> None: ...


def entity_key(value: Any) -> str | None:
    """A request's (or a source's) entity value as the online store's key; None for
    none (null, or an empty text)."""
    if value is None or value == "" or (isinstance(value, float) and value != value):
        return None  # null, empty, or NaN (an empty cell of a numeric column)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 17.0 from a CSV column is the entity 17
    return str(value)


class StoreOnline:
    """The online store in the store's ``feature_values`` table."""

    target = "store"

    def __init__(self, store: Store) -> None:
        self.store = store

    async def lookup(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        return await asyncio.to_thread(self.read, view, keys)

    def read(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        """:meth:`lookup`, in the caller's thread: one statement for all *keys*, its SQL
        text fixed per dialect (the keys go as one JSON array on SQLite, one array on
        PostgreSQL), so nothing is compiled per lookup."""
        found: dict[str, Found] = {}
        unique = list(dict.fromkeys(keys))
        if self.store.is_sqlite:
            sql, param = _SQLITE_LOOKUP, orjson.dumps(unique).decode()
        else:
            sql, param = _POSTGRES_LOOKUP, unique  # type: ignore[assignment]
        loads = orjson.loads
        try:
            with self.store.engine.connect() as conn:
                rows = conn.exec_driver_sql(sql, (view.name, param)).fetchall()
        except Exception as exc:
            raise _unavailable("the store", exc) from None
        for entity, values, event_us in rows:
            found[entity] = Found(loads(values), int(event_us))
        return [found.get(k) for k in keys]

    def write(self, view: FeatureView, rows: Iterable[tuple[str, dict[str, Any], int]]) -> int:
        t = feature_values.c
        written = now_us()
        batch = [
            {
                "view": view.name,
                "entity": entity,
                "feature_values": orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
                "event_us": event_us,
                "written_us": written,
            }
            for entity, values, event_us in rows
        ]
        if not batch:
            return 0
        insert: Any
        if self.store.is_sqlite:
            from sqlalchemy.dialects.sqlite import insert
        else:
            from sqlalchemy.dialects.postgresql import insert
        stmt = insert(feature_values)
        # An older value never replaces a newer one (a run --since an earlier time).
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.view, t.entity],
            set_={
                "feature_values": stmt.excluded.feature_values,
                "event_us": stmt.excluded.event_us,
                "written_us": stmt.excluded.written_us,
            },
            where=stmt.excluded.event_us >= t.event_us,
        )
        with self.store.write() as conn:
            conn.execute(stmt, batch)
        return len(batch)

    async def close(self) -> None:
        return None


class RedisOnline:
    """The online store in Redis: a hash per entity, read and written in pipelines."""

    target = "redis"

    def __init__(self, url: str, prefix: str, timeout_ms: float) -> None:
        import redis
        import redis.asyncio as aredis

        self.prefix = prefix
        timeout = timeout_ms / 1000.0
        self._client = aredis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._url, self._timeout = url, timeout
        self._sync: redis.Redis | None = None
        self._fields: dict[str, list[str]] = {}
        self._script = self._client.register_script(_HMGET_ALL)

    def key(self, view: str, entity: str) -> str:
        return f"{self.prefix}feature:{view}:{entity}"

    async def lookup(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        """One ``EVALSHA`` for the whole batch: the script ``HMGET``s each hash inside
        Redis. A pipeline of one ``HMGET`` per key cost about 16 µs of the gateway's CPU
        per key in redis-py (a command built and a reply parsed per key); one command
        with one nested reply costs a fraction of that."""
        names = self._fields.get(view.name)
        if names is None:
            names = self._fields[view.name] = [*view.features, TS_FIELD]
        prefix = f"{self.prefix}feature:{view.name}:"
        try:
            replies = await self._script(keys=[prefix + k for k in keys], args=names)
        except Exception as exc:
            raise _unavailable("Redis", exc) from None
        out: list[Found | None] = []
        loads = orjson.loads
        features = names[:-1]
        for reply in replies:
            ts = reply[-1]
            if ts is None:
                out.append(None)
                continue
            values = {n: loads(v) for n, v in zip(features, reply, strict=False) if v is not None}
            out.append(Found(values, int(ts)))
        return out

    def write(self, view: FeatureView, rows: Iterable[tuple[str, dict[str, Any], int]]) -> int:
        import redis

        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self._url, socket_timeout=max(self._timeout, 5.0), socket_connect_timeout=5.0
            )
        dumps = orjson.dumps
        n = 0
        pipe = self._sync.pipeline(transaction=False)
        for entity, values, event_us in rows:
            mapping: dict[str | bytes, bytes | str] = {
                name: dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)
                for name, value in values.items()
            }
            mapping[TS_FIELD] = str(event_us)
            pipe.hset(self.key(view.name, entity), mapping=mapping)  # type: ignore[arg-type]
            n += 1
            if n % 1000 == 0:
                pipe.execute()
        pipe.execute()
        return n

    async def close(self) -> None:
        await self._client.aclose()
        if self._sync is not None:
            self._sync.close()


#: Every key's ``HMGET`` of the same fields, in one call.
_HMGET_ALL = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('HMGET', key, unpack(ARGV))
end
return out
"""


def _unavailable(where: str, exc: Exception) -> FeatureStoreError:
    """The caller's error for a lookup that failed: retry later; the cause (which may
    name hosts) goes to the log, once per failure."""
    logger.warning("feature lookup in %s failed: %s: %s", where, type(exc).__name__, exc)
    return FeatureStoreError("the online feature store did not answer; retry shortly")


def build_online(settings: Settings, store: Store) -> Online:
    """The online store this deployment uses: Redis when ``PRODGATE_REDIS_URL`` is set
    (and ``PRODGATE_FEATURES_ONLINE`` is not ``store``), else the store."""
    if settings.features_online == "redis" and not settings.redis_url:
        raise UsageError("PRODGATE_FEATURES_ONLINE=redis needs PRODGATE_REDIS_URL")
    if settings.redis_url and settings.features_online != "store":
        return RedisOnline(settings.redis_url, settings.redis_prefix, settings.redis_timeout_ms)
    return StoreOnline(store)
