"""Loading a view's latest values into the online store, incrementally.

A run reads the source rows newer than the last run's watermark (the newest source
timestamp it loaded; of a run of the same definition: source, entity, features), or
than ``--since``, keeps the newest row of each entity, and
writes those online in chunks (pipelined ``HSET``s for Redis, one multi-row upsert per
chunk for the store). Each run is a row of ``feature_loads`` and an audit record
(action ``materialize``), written after its values are online: a run that fails half
way leaves the previous watermark, so the next run loads those rows again (writes are
idempotent: the same latest values).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.features.online import Online
from prodgate.features.sources import TS, latest, plain, read_source, source_path
from prodgate.spec.features import FeatureView
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import feature_loads

#: Entities written per chunk (and per progress step).
CHUNK = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Load:
    """One materialisation run, as recorded."""

    view: str
    target: str
    definition: str
    since_us: int | None
    watermark_us: int | None
    source_rows: int
    entities: int
    at_us: int
    actor: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def definition(view: FeatureView, base: Path) -> str:
    """What a run loads, as a hash: the source (its file, resolved, or its query and
    URL), the entity, the timestamp column and the features. A run continues from the
    watermark of the last run of the same definition only: a view pointed at another
    file, or given another feature, is loaded in full the next time."""
    source = view.source
    where = str(source_path(view, base).resolve()) if source.kind == "file" else ""
    text = orjson.dumps(
        [where, source.query, source.url, view.entity, source.timestamp, sorted(view.features)]
    )
    return hashlib.sha256(text).hexdigest()[:32]


def last_load(
    store: Store, view: str, target: str | None = None, definition: str | None = None
) -> Load | None:
    """The latest run for *view* (into *target*, of *definition*, when given)."""
    t = feature_loads.c
    query = sa.select(feature_loads).where(t.view == view)
    if target is not None:
        query = query.where(t.target == target)
    if definition is not None:
        query = query.where(t.definition == definition)
    with store.read() as conn:
        row = conn.execute(query.order_by(t.id.desc()).limit(1)).mappings().first()
    if row is None:
        return None
    return Load(
        view=row["view"],
        target=row["target"],
        definition=row["definition"],
        since_us=row["since_us"],
        watermark_us=row["watermark_us"],
        source_rows=row["source_rows"],
        entities=row["entities"],
        at_us=row["at_us"],
        actor=row["actor"],
    )


def materialize(
    view: FeatureView,
    base: Path,
    online: Online,
    store: Store,
    actor: str,
    *,
    since_us: int | None = None,
    full: bool = False,
    progress: Progress | None = None,
) -> Load:
    """Load *view*'s values newer than *since_us* (default: the watermark of the last
    run of the same :func:`definition` into the same store; *full*: every row) into
    *online*; record and return the run."""
    defined = definition(view, base)
    if since_us is None and not full:
        previous = last_load(store, view.name, online.target, defined)
        since_us = previous.watermark_us if previous is not None else None
    frame = read_source(view, base, store.settings.store_url, since_us=since_us)
    newest = latest(frame, view.entity)
    total = len(newest)
    if progress is not None:
        progress(0, total)
    done = 0
    for chunk in _chunks(newest, view):
        done += online.write(view, chunk)
        if progress is not None:
            progress(done, total)
    watermark = int(frame[TS].max()) if len(frame) else None
    if watermark is None and since_us is not None:
        watermark = since_us  # nothing newer: the next run starts from the same place
    load = Load(
        view=view.name,
        target=online.target,
        definition=defined,
        since_us=since_us,
        watermark_us=watermark,
        source_rows=len(frame),
        entities=done,
        at_us=now_us(),
        actor=str(actor),
    )
    with store.write() as conn:
        conn.execute(feature_loads.insert().values(**load.as_dict()))
        record = log.action(
            "materialize",
            actor=actor,
            service=None,
            view=view.name,
            target=online.target,
            since_us=since_us,
            watermark_us=watermark,
            source_rows=len(frame),
            entities=done,
        )
        log.append(store, conn, [record])
    return load


def _chunks(frame: Any, view: FeatureView) -> Iterator[list[tuple[str, dict[str, Any], int]]]:
    """The frame's rows as ``(entity, values, event_us)``, :data:`CHUNK` at a time."""
    names = list(view.features)
    entities = frame[view.entity].tolist()
    stamps = frame[TS].tolist()
    columns = [plain(frame[n], view.features[n].schema) for n in names]
    for start in range(0, len(entities), CHUNK):
        stop = min(start + CHUNK, len(entities))
        yield [
            (
                entities[i],
                {n: col[i] for n, col in zip(names, columns, strict=True)},
                int(stamps[i]),
            )
            for i in range(start, stop)
        ]
