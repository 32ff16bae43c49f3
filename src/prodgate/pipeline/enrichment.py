"""The enrich stage: the features a service's model reads, looked up by entity key.

After the contract, each row's entity keys (``policy_id``) are looked up in the online
store, and the features the service needs are added to the row the model sees. The
lookup is batched across requests, not made per row: each view has one
:class:`Lookups`, which takes the keys of every request waiting and asks the store once
(a pipelined ``HMGET`` per key in one round trip to Redis, one ``IN`` query to the
store); while that lookup is out, the next batch gathers by itself, as the model's
micro-batcher does. Nothing waits for a batch to fill.

Each row then follows its view's policy (:func:`prodgate.features.lookup.resolve`):
fresh values are used; a missing entity, a stale value (older than the view's ttl)
or a null takes the feature's default, and a feature without one refuses the request
(422, naming the row and key). The record keeps what the model saw: ``input`` is the
row with its features, and ``features`` says per view which entity, as of when, fresh
or not, and which features took defaults, so the decision can be replayed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prodgate.exceptions import FeatureStoreError, FeatureUnavailableError, ProdgateError, Violation
from prodgate.features.lookup import FRESH, MISSING, STALE, Resolved, resolve
from prodgate.features.online import Found, Online, entity_key
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.metrics import Metrics
from prodgate.spec.features import FeatureView, ServiceFeatures
from prodgate.store.engine import now_us

Waiting = tuple[list[str], asyncio.Future[list[Found | None]]]


class Lookups:
    """One view's lookups, coalesced: concurrent requests share one call to the store."""

    def __init__(self, view: FeatureView, online: Online, metrics: Metrics) -> None:
        self.view = view
        self.online = online
        self._waiting: list[Waiting] = []
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._seconds = metrics.feature_lookup_seconds.labels(view.name, online.target)
        self._batch = metrics.feature_batch_size.labels(view.name)

    async def get(self, keys: list[str]) -> list[Found | None]:
        """The online values of *keys*, from a lookup shared with concurrent requests."""
        fut: asyncio.Future[list[Found | None]] = asyncio.get_running_loop().create_future()
        self._waiting.append((keys, fut))
        if not self._busy:
            self._busy = True
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        try:
            # One turn of the loop first: requests already read in this turn join.
            await asyncio.sleep(0)
            while self._waiting:
                batch, self._waiting = self._waiting, []
                keys = [k for ks, _ in batch for k in ks]
                started = time.perf_counter()
                try:
                    found = await self.online.lookup(self.view, keys)
                except ProdgateError as exc:
                    _fail(batch, exc)
                    continue
                except Exception as exc:  # a store's own error: say which, not how
                    why = f"the feature store did not answer ({type(exc).__name__})"
                    _fail(batch, FeatureStoreError(why))
                    continue
                self._seconds.observe(time.perf_counter() - started)
                self._batch.observe(len(keys))
                start = 0
                for ks, fut in batch:
                    if not fut.done():
                        fut.set_result(found[start : start + len(ks)])
                    start += len(ks)
        finally:
            self._busy = False


def _fail(batch: list[Waiting], exc: ProdgateError) -> None:
    for _, fut in batch:
        if not fut.done():
            fut.set_exception(exc)


class Enricher:
    """Every view's :class:`Lookups`, on the online store each is read from."""

    def __init__(
        self, views: dict[str, FeatureView], online: Online | None, base: Path, metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.lookups: dict[str, Lookups] = {}
        self._stores: list[Online] = [online] if online is not None else []
        for name, view in views.items():
            if view.source.kind == "feast":
                from prodgate.features.feast import feast_online

                store = feast_online(view, base)
                self._stores.append(store)
            elif online is None:
                continue
            else:
                store = online
            self.lookups[name] = Lookups(view, store, metrics)

    def stage(self, service: str, features: ServiceFeatures) -> Enrichment | None:
        """The enrich stage of a service, or None when it reads no features."""
        if not features.on:
            return None
        return Enrichment(service, features, self)

    async def close(self) -> None:
        for store in self._stores:
            await store.close()


class Enrichment:
    """One service's enrich stage."""

    def __init__(self, service: str, features: ServiceFeatures, enricher: Enricher) -> None:
        m = enricher.metrics
        self.uses = [
            (use, enricher.lookups[use.view.name], use.view.entity) for use in features.uses
        ]
        self.counts = {
            use.view.name: {
                s: m.feature_lookups.labels(service, use.view.name, s)
                for s in (FRESH, STALE, MISSING)
            }
            for use in features.uses
        }
        self.defaults = {
            (use.view.name, n): m.feature_defaults.labels(service, use.view.name, n)
            for use in features.uses
            for n in use.names
        }
        self.age = {use.view.name: m.feature_age.labels(use.view.name) for use in features.uses}

    async def __call__(self, ex: Exchange) -> None:
        """Add each row's features to it, or raise :class:`FeatureUnavailableError`."""
        rows = ex.rows
        added: list[dict[str, Any]] = [{} for _ in rows]
        meta: list[dict[str, Any]] = [{} for _ in rows]
        violations: list[Violation] = []
        for use, lookups, entity in self.uses:
            keys = [entity_key(row.get(entity)) for row in rows]
            asked = [k for k in keys if k is not None]
            found_asked = await lookups.get(asked) if asked else []
            it = iter(found_asked)
            now = now_us()
            name = use.view.name
            tally = {FRESH: 0, STALE: 0, MISSING: 0}
            oldest = None  # the oldest value's timestamp: one observation per request
            for i, key in enumerate(keys):
                found = next(it) if key is not None else None
                resolved = resolve(use, found, now)
                tally[resolved.status] += 1
                if found is not None and (oldest is None or found.event_us < oldest):
                    oldest = found.event_us
                for feature in resolved.defaulted:
                    self.defaults[(name, feature)].inc()
                if resolved.refused:
                    where = "/inputs" if ex.single else f"/instances/{i}"
                    violations.append(
                        Violation(f"{where}/{entity}", _why(name, entity, key, resolved))
                    )
                added[i].update(resolved.values)
                meta[i][name] = resolved.record(key)
            if oldest is not None:
                self.age[name].observe(max(0.0, (now - oldest) / 1e6))
            for status, n in tally.items():
                if n:
                    self.counts[name][status].inc(n)
        if violations:
            raise FeatureUnavailableError(violations)
        ex.rows = [{**row, **extra} for row, extra in zip(rows, added, strict=True)]
        ex.features = (meta, added)


def _why(view: str, entity: str, key: str | None, resolved: Resolved) -> str:
    """Why a row is refused: which features, of which key, and what was wrong."""
    names = ", ".join(resolved.refused)
    if key is None:
        return f"no {entity} given, and {names} from feature view {view!r} have no default"
    if resolved.status == MISSING:
        what = f"{entity} {key!r} is not in feature view {view!r}"
    elif resolved.status == STALE:
        what = f"the values of {entity} {key!r} in feature view {view!r} are older than its ttl"
    else:
        what = f"{names} of {entity} {key!r} in feature view {view!r} are null"
    return f"{what}, and {names} {'has' if len(resolved.refused) == 1 else 'have'} no default"


def with_features(rows: Sequence[Any], ex: Exchange) -> list[Any]:
    """*rows* (the caller's, masked by the input guard) with each row's features added
    back, as the model saw them."""
    if ex.features is None:
        return list(rows)
    added = ex.features[1]
    return [{**row, **extra} for row, extra in zip(rows, added, strict=True)]
