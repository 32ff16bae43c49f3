"""The enrich stage: the features a service's model reads, looked up by entity key.

The lookup is made once per micro-batch, not per row or per request: the model's
batcher (:mod:`prodgate.pipeline.batcher`) hands every batch it takes to
:meth:`Enrichment.prepare` before the model call, which asks the online store once per
view for every key in the batch (one script call to Redis, one query to the store, one
``get_online_features`` to Feast), adds the features each row needs, and gives each
request back its rows as the model sees them. Nothing waits for its own lookup: the
requests of a batch share one, and the stage costs a request no suspension of its own.
(A first version gathered lookups in a queue of their own in front of the batcher; the
enrichment benchmark measured its futures, its extra turn of the event loop per request
and the smaller model batches it caused at about a sixth of the gateway's CPU per
request.)

Each row then follows its view's policy (:func:`prodgate.features.lookup.resolve`):
fresh values are used; a missing entity, a stale value (older than the view's ttl)
or a null takes the feature's default, and a feature without one refuses that request
(422, naming the row and key) while the rest of the batch is answered. The record keeps
what the model saw: ``input`` is the row with its features, and ``features`` says per
view which entity, as of when, fresh or not, and which features took defaults, so the
decision can be replayed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prodgate.exceptions import FeatureStoreError, FeatureUnavailableError, ProdgateError, Violation
from prodgate.features.lookup import FRESH, MISSING, STALE, Resolved, resolve
from prodgate.features.online import Found, Online, entity_key
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.metrics import Metrics
from prodgate.spec.features import FeatureView, ServiceFeatures, ViewUse
from prodgate.store.engine import now_us

Rows = Sequence[Mapping[str, Any]]


class Enricher:
    """The online store each view is read from, and the services' enrich stages."""

    def __init__(
        self, views: dict[str, FeatureView], online: Online | None, base: Path, metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.stores: dict[str, Online] = {}
        self._opened: list[Online] = [online] if online is not None else []
        for name, view in views.items():
            if view.source.kind == "feast":
                from prodgate.features.feast import feast_online

                store = feast_online(view, base)
                self._opened.append(store)
            elif online is None:
                continue
            else:
                store = online
            self.stores[name] = store

    def stage(self, service: str, features: ServiceFeatures) -> Enrichment | None:
        """The enrich stage of a service, or None when it reads no features."""
        if not features.on:
            return None
        return Enrichment(service, features, self)

    async def close(self) -> None:
        for store in self._opened:
            await store.close()


class _View:
    """One view a service reads: where from, and the metrics its lookups move."""

    def __init__(self, service: str, use: ViewUse, store: Online, m: Metrics) -> None:
        name = use.view.name
        self.use, self.store, self.name, self.entity = use, store, name, use.view.entity
        self.seconds = m.feature_lookup_seconds.labels(name, store.target)
        self.batch = m.feature_batch_size.labels(name)
        self.age = m.feature_age.labels(name)
        self.counts = {
            s: m.feature_lookups.labels(service, name, s) for s in (FRESH, STALE, MISSING)
        }
        self.defaults = {n: m.feature_defaults.labels(service, name, n) for n in use.names}


class Enrichment:
    """One service's enrich stage, run by the model's batcher on each batch."""

    def __init__(self, service: str, features: ServiceFeatures, enricher: Enricher) -> None:
        self.views = [
            _View(service, use, enricher.stores[use.view.name], enricher.metrics)
            for use in features.uses
        ]

    async def prepare(self, units: Sequence[tuple[Rows, Any]]) -> list[Rows | Exception]:
        """Each request's rows (*units*: its rows and its :class:`Exchange`) with their
        features, or the error that refuses it. Sets each answered exchange's ``rows``
        (as the model sees them) and ``features`` (what its records keep)."""
        count = sum(len(rows) for rows, _ in units)
        added: list[dict[str, Any]] = [{} for _ in range(count)]
        seen: list[dict[str, Any]] = [{} for _ in range(count)]
        refused: dict[int, list[Violation]] = {}  # by unit
        for view in self.views:
            entity = view.entity
            keys = [entity_key(row.get(entity)) for rows, _ in units for row in rows]
            asked = [k for k in keys if k is not None]
            try:
                found = await self._lookup(view, asked)
            except ProdgateError as exc:
                return [exc] * len(units)
            self._resolve(view, units, keys, found, added, seen, refused)
        out: list[Rows | Exception] = []
        start = 0
        for u, (rows, ex) in enumerate(units):
            stop = start + len(rows)
            if u in refused:
                out.append(FeatureUnavailableError(refused[u]))
            else:
                enriched = [
                    {**row, **extra} for row, extra in zip(rows, added[start:stop], strict=True)
                ]
                if isinstance(ex, Exchange):
                    ex.rows = enriched
                    ex.features = (seen[start:stop], added[start:stop])
                out.append(enriched)
            start = stop
        return out

    async def _lookup(self, view: _View, keys: list[str]) -> list[Found | None]:
        if not keys:
            return []
        started = time.perf_counter()
        try:
            found = await view.store.lookup(view.use.view, keys)
        except ProdgateError:
            raise
        except Exception as exc:  # a store's own error: say which, not how
            why = f"the online feature store did not answer ({type(exc).__name__})"
            raise FeatureStoreError(why) from None
        view.seconds.observe(time.perf_counter() - started)
        view.batch.observe(len(keys))
        return found

    def _resolve(
        self,
        view: _View,
        units: Sequence[tuple[Rows, Any]],
        keys: list[str | None],
        found: list[Found | None],
        added: list[dict[str, Any]],
        seen: list[dict[str, Any]],
        refused: dict[int, list[Violation]],
    ) -> None:
        """The view's policy on every row of the batch; its metrics moved once a batch."""
        use, name, entity = view.use, view.name, view.entity
        now = now_us()
        statuses = {FRESH: 0, STALE: 0, MISSING: 0}
        defaults: dict[str, int] = {}
        oldest: int | None = None
        hits = iter(found)
        i = 0
        for u, (rows, ex) in enumerate(units):
            single = getattr(ex, "single", len(rows) == 1)
            for r in range(len(rows)):
                key = keys[i]
                hit = next(hits) if key is not None else None
                resolved = resolve(use, hit, now)
                statuses[resolved.status] += 1
                if hit is not None and (oldest is None or hit.event_us < oldest):
                    oldest = hit.event_us
                for feature in resolved.defaulted:
                    defaults[feature] = defaults.get(feature, 0) + 1
                if resolved.refused:
                    where = "/inputs" if single else f"/instances/{r}"
                    refused.setdefault(u, []).append(
                        Violation(f"{where}/{entity}", _why(name, entity, key, resolved))
                    )
                added[i].update(resolved.values)
                seen[i][name] = resolved.record(key)
                i += 1
        for status, n in statuses.items():
            if n:
                view.counts[status].inc(n)
        for feature, n in defaults.items():
            view.defaults[feature].inc(n)
        if oldest is not None:
            view.age.observe(max(0.0, (now - oldest) / 1e6))


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
