"""Reference profiles in the store: one per version, saved once, read by every comparison.

The one writer of the ``profiles`` table. A profile is the JSON of
:class:`prodgate.monitor.profile.Profile` (the plan's "reference profile" shape):
computed from the data a version was registered with (``register --data``) or later
(``prodgate profile SERVICE VERSION --data FILE``), replacing the one before. Saving
moves the store's generation, so running gateways bin their next windows on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import profiles


@dataclass(frozen=True)
class StoredProfile:
    """A version's reference profile as stored."""

    service: str
    version: int
    profile: dict[str, Any]
    source: str
    rows: int
    created_by: str
    created_at_us: int

    def summary(self) -> dict[str, Any]:
        """What was stored, without the statistics themselves."""
        return {
            "service": self.service,
            "version": self.version,
            "source": self.source,
            "rows": self.rows,
            "columns": [c.get("name") for c in self.profile.get("columns") or ()],
            "outputs": [c.get("name") for c in self.profile.get("outputs") or ()],
            "created_by": self.created_by,
            "created_at_us": self.created_at_us,
        }


def save(
    store: Store,
    service: str,
    version: int,
    profile: dict[str, Any],
    *,
    source: str,
    actor: str,
    conn: Connection | None = None,
) -> StoredProfile:
    """Store *profile* as *version*'s reference (replacing any), record it in the audit
    log, and move the generation so gateways load it. In *conn*'s transaction if given."""
    created_us = now_us()
    row: dict[str, Any] = {
        "service": service,
        "version": version,
        "profile": orjson.dumps(profile, option=orjson.OPT_SERIALIZE_NUMPY).decode(),
        "source": source,
        "rows": int(profile.get("rows") or 0),
        "created_by": actor,
        "created_at_us": created_us,
    }

    def write(c: Connection) -> None:
        c.execute(
            profiles.delete().where(profiles.c.service == service, profiles.c.version == version)
        )
        c.execute(profiles.insert().values(**row))
        log.append(
            store,
            c,
            [
                log.action(
                    "profile",
                    actor=actor,
                    service=service,
                    version=version,
                    source=source,
                    rows=row["rows"],
                )
            ],
        )
        store.bump_generation(c)

    if conn is not None:
        write(conn)
    else:
        with store.write() as c:
            write(c)
    return StoredProfile(service, version, profile, source, row["rows"], actor, created_us)


def load(conn: Connection, service: str, version: int) -> StoredProfile | None:
    """*version*'s reference profile, or None when it has none."""
    row = conn.execute(
        sa.select(profiles).where(profiles.c.service == service, profiles.c.version == version)
    ).first()
    return _stored(row) if row is not None else None


def load_many(conn: Connection, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Any]:
    """The profiles' JSON of the (service, version) pairs in *keys* that have one."""
    wanted = set(keys)
    if not wanted:
        return {}
    services = sorted({s for s, _ in wanted})
    rows = conn.execute(
        sa.select(profiles.c.service, profiles.c.version, profiles.c.profile).where(
            profiles.c.service.in_(services)
        )
    )
    return {
        (r.service, int(r.version)): orjson.loads(r.profile)
        for r in rows
        if (r.service, int(r.version)) in wanted
    }


def _stored(row: Any) -> StoredProfile:
    m = row._mapping
    return StoredProfile(
        service=m["service"],
        version=int(m["version"]),
        profile=orjson.loads(m["profile"]),
        source=m["source"],
        rows=int(m["rows"]),
        created_by=m["created_by"],
        created_at_us=int(m["created_at_us"]),
    )
