"""Feature views read from an existing Feast repository's online store.

A team that already runs Feast keeps it: a view declared with ``source: {feast: REPO,
view: NAME}`` is served from the online store that Feast's ``feature_store.yaml``
names (SQLite, Redis, ...), through prodgate's :class:`~prodgate.features.online.Online`
interface, so enrichment, the view's policy (``ttl``, defaults, refusals) and the
records work as with prodgate's own store. Feast loads that store itself
(``feast materialize``); prodgate only reads it.

Why not the plain ``get_online_features(...).to_dict()``: it drops the values' event
timestamps (or rounds them to seconds), and prodgate needs them to tell a fresh value
from a stale one and to record when the source had it. The response's protobuf carries
each value's status and timestamp, so one ``get_online_features`` call per batch gives
both, through Feast's public API.

Feast is an optional dependency (``pip install 'prodgate[feast]'``), imported only
when a view reads from it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from prodgate.exceptions import FeatureStoreError, UsageError
from prodgate.features.online import Found, Online
from prodgate.spec.features import FeatureView

#: Feast's status of a value that its online store does not have (FieldStatus.NOT_FOUND).
NOT_FOUND = 3
#: One FeatureStore per repository (its registry and online store connection are shared).
_STORES: dict[Path, tuple[Any, threading.Lock]] = {}
_STORES_LOCK = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one prodgate view is read from Feast: the references and the key's type."""

    refs: list[str]
    names: list[str]
    join_key: str
    integer_key: bool


def feast_online(view: FeatureView, base: Path) -> Online:
    """The online store of *view*'s Feast repository (``source.feast``, relative to
    *base*, the spec file's folder). Raises :class:`UsageError` when Feast is not
    installed, or the repository or its feature view do not match the view."""
    if view.source.feast is None:
        raise UsageError(f"feature view {view.name!r} does not read from Feast")
    try:
        import feast  # noqa: F401
    except ImportError:
        raise UsageError(
            f"feature view {view.name!r} reads from Feast, which is not installed: "
            "pip install 'prodgate[feast]'"
        ) from None
    repo = Path(view.source.feast).expanduser()
    repo = (repo if repo.is_absolute() else base / repo).resolve()
    store, lock = _feature_store(repo, view.name)
    online = FeastOnline(store, lock, repo)
    online.plan(view)  # a view Feast does not have is a startup error, not a request's
    return online


def _feature_store(repo: Path, view_name: str) -> tuple[Any, threading.Lock]:
    with _STORES_LOCK:
        cached = _STORES.get(repo)
        if cached is not None:
            return cached
        if not (repo / "feature_store.yaml").is_file():
            raise UsageError(
                f"feature view {view_name!r}: {repo} is not a Feast repository "
                "(it has no feature_store.yaml)"
            )
        from feast import FeatureStore

        try:
            store = FeatureStore(repo_path=str(repo))
        except Exception as exc:  # Feast's own errors: a bad yaml, an unknown store type
            raise UsageError(
                f"feature view {view_name!r}: cannot open the Feast repository {repo}: {exc}"
            ) from None
        # Feast's SQLite online store shares one connection among threads: one read at a
        # time per repository (enrichment already sends one batch per view at a time).
        cached = _STORES[repo] = (store, threading.Lock())
        return cached


class FeastOnline:
    """A Feast repository's online store, read through prodgate's Online interface."""

    target = "feast"

    def __init__(self, store: Any, lock: threading.Lock, repo: Path) -> None:
        self.store = store
        self.repo = repo
        self._lock = lock
        self._plans: dict[str, _Plan] = {}

    def plan(self, view: FeatureView) -> _Plan:
        """What to ask Feast for *view*, checked against Feast's registry once."""
        plan = self._plans.get(view.name)
        if plan is None:
            with self._lock:
                plan = self._plans[view.name] = self._make_plan(view)
        return plan

    def _make_plan(self, view: FeatureView) -> _Plan:
        from feast.value_type import ValueType

        name = view.source.feast_view or view.name
        label = f"feature view {view.name!r}"
        try:
            fv = self.store.get_feature_view(name)
        except Exception:
            known = ", ".join(sorted(v.name for v in self.store.list_feature_views())) or "none"
            raise UsageError(
                f"{label}: the Feast repository {self.repo} has no feature view {name!r} "
                f"(it has: {known}; run feast apply after changing its definitions)"
            ) from None
        have = [f.name for f in fv.features]
        missing = [n for n in view.features if n not in have]
        if missing:
            raise UsageError(
                f"{label}: Feast's feature view {name!r} has no feature "
                f"{', '.join(map(repr, missing))} (it has: {', '.join(have)})"
            )
        if len(fv.entities) != 1:
            raise UsageError(
                f"{label}: Feast's feature view {name!r} has {len(fv.entities)} entities; "
                "prodgate reads views keyed by one"
            )
        entity = self.store.get_entity(fv.entities[0])
        if entity.join_key != view.entity:
            raise UsageError(
                f"{label}: its entity is {view.entity!r}, Feast's view {name!r} is keyed "
                f"by {entity.join_key!r}"
            )
        integer = entity.value_type in (ValueType.INT64, ValueType.INT32)
        if not integer and entity.value_type != ValueType.STRING:
            raise UsageError(
                f"{label}: Feast's entity {entity.name!r} is of type "
                f"{entity.value_type.name}; prodgate reads integer or string keys"
            )
        names = list(view.features)
        return _Plan([f"{name}:{n}" for n in names], names, entity.join_key, integer)

    async def lookup(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        """One Feast read for all of *keys*, off the event loop."""
        if not keys:
            return []
        return await asyncio.to_thread(self.read, view, keys)

    def read(self, view: FeatureView, keys: Sequence[str]) -> list[Found | None]:
        """:meth:`lookup`, in the caller's thread."""
        from feast.type_map import feast_value_type_to_python_type

        plan = self.plan(view)
        # prodgate's keys are text; Feast matches keys by their type. A key that is not
        # a number for an integer entity names no entity: missing, not an error.
        asked: list[int] = []
        values: list[int | str] = []
        for i, key in enumerate(keys):
            value = _as_key(key, plan.integer_key)
            if value is not None:
                asked.append(i)
                values.append(value)
        out: list[Found | None] = [None] * len(keys)
        if not values:
            return out
        try:
            with self._lock:
                response = self.store.get_online_features(
                    features=plan.refs, entity_rows={plan.join_key: values}
                )
        except Exception as exc:
            raise FeatureStoreError(f"the feature store (Feast) did not answer: {exc}") from None
        proto = response.proto
        by_name = dict(zip(proto.metadata.feature_names.val, proto.results, strict=True))
        columns = [by_name[n] for n in plan.names]
        for row, i in enumerate(asked):
            found: dict[str, Any] = {}
            event_us: int | None = None
            for name, column in zip(plan.names, columns, strict=True):
                if column.statuses[row] == NOT_FOUND:
                    continue
                found[name] = _plain(feast_value_type_to_python_type(column.values[row]))
                ts = column.event_timestamps[row]
                stamp = ts.seconds * 1_000_000 + ts.nanos // 1000
                event_us = stamp if event_us is None else min(event_us, stamp)
            if event_us is not None:
                out[i] = Found(found, event_us)
        return out

    def write(self, view: FeatureView, rows: Iterable[tuple[str, dict[str, Any], int]]) -> int:
        raise UsageError(
            f"feature view {view.name!r} is read from Feast's online store; Feast loads "
            f"it itself: run feast materialize in {self.repo}"
        )

    async def close(self) -> None:
        return None


def _as_key(key: str, integer: bool) -> int | str | None:
    if not integer:
        return key
    try:
        return int(key)
    except ValueError:
        return None


def _plain(value: Any) -> Any:
    """A Feast value as JSON can hold it (timestamps as ISO 8601 text)."""
    if isinstance(value, datetime):
        return value.isoformat()
    return value
