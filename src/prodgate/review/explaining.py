"""Filling in the explanation of each review item, off the request path.

An item enters review in the recorder's group commit with ``attributions`` NULL
(:mod:`prodgate.pipeline.review_entry`); this worker finds such items, oldest first and a batch
at a time, explains each decision (:func:`prodgate.review.explain.explain`) and
writes the JSON::

    {"method": "tree", "target": "adjuster", "space": "log-odds", "base": -2.61,
     "values": {"prior_claims": 5.08, "days_to_report": 2.08, ...}}

or ``{"error": "..."}`` when the decision cannot be explained (an LLM service, a
version that no longer loads, a model that fails on its own input), so an item is
tried once, never forever. A failure to reach the store is not such an answer: it
leaves the items as they were and the next pass tries again.

This module is the only writer of the ``attributions`` column, and writes nothing
else: one UPDATE per item, conditional on the column still being NULL, so two
replicas explaining the same item at once store one answer.

What is explained is the row as the model saw it (the inference record's ``input``,
with the features enrichment added) against the version's own recent traffic: the
``input`` of its newest :data:`BACKGROUND` answered inference records, read once per
version and pass. Each version is loaded once per worker (:class:`Models`, the last
:data:`MODELS_KEPT` kept).

``prodgate serve`` runs :func:`run_explainer` beside the gateway when some service
has review on; the CLI calls :func:`explain_pending` to explain what is waiting, for
example before showing an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE
from prodgate.exceptions import StoreError, UnavailableError
from prodgate.review.explain import explain
from prodgate.runtime.base import Model
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, review_items

logger = logging.getLogger(__name__)

#: Items explained per pass of the loop (one read, one write transaction).
BATCH = 32
#: Items explained at most per pass of :func:`run_explainer`, which looks at its stop
#: event between passes: one batch, so stopping the server waits for one at most.
PASS = BATCH
#: Seconds between passes of :func:`run_explainer` (the server's
#: ``PRODGATE_REVIEW_EXPLAIN_INTERVAL``): at most :data:`PASS` items an interval.
INTERVAL = 10.0
#: Seconds a version's background is kept before it is read again.
BACKGROUND_TTL_S = 60.0
#: Recent inputs of a version that make the background of its explanations.
BACKGROUND = 200
#: Loaded versions the worker keeps.
MODELS_KEPT = 8
#: Errors that say the store (or an upstream) is away, not that the item is bad.
_TRANSIENT = (StoreError, UnavailableError, sa.exc.SQLAlchemyError)


@dataclass(frozen=True)
class _Loaded:
    model: Model
    features: list[str]


class Models:
    """Versions loaded for explaining, the most recently used :data:`MODELS_KEPT`."""

    def __init__(self, store: Store, spec: Spec) -> None:
        self.store = store
        self.spec = spec
        self._loaded: OrderedDict[tuple[str, int], _Loaded] = OrderedDict()
        self._backgrounds: dict[tuple[str, int], tuple[float, list[dict[str, Any]]]] = {}
        # The server's explainer and reviewers' requests share one: a version loads once.
        self._lock = threading.Lock()

    def background(self, service: str, number: int) -> list[dict[str, Any]]:
        """The version's recent inputs (:func:`_background`), read again at most every
        :data:`BACKGROUND_TTL_S` seconds."""
        key = (service, number)
        found = self._backgrounds.get(key)
        if found is not None and time.monotonic() - found[0] < BACKGROUND_TTL_S:
            return found[1]
        with self.store.read() as conn:
            rows = _background(conn, service, number)
        self._backgrounds[key] = (time.monotonic(), rows)
        return rows

    def get(self, service: str, number: int) -> _Loaded:
        """The loaded version; raises ProdgateError (e.g. ArtifactError) when it cannot be."""
        with self._lock:
            return self._get(service, number)

    def _get(self, service: str, number: int) -> _Loaded:
        key = (service, number)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        from prodgate.registry import artifacts
        from prodgate.registry.versions import get_version
        from prodgate.runtime.base import ModelInfo
        from prodgate.runtime.loader import load_model

        spec = self.spec.service(service)
        if spec.kind == "llm":
            raise _Unexplainable("an LLM service's answers have no feature attributions")
        with self.store.read() as conn:
            version = get_version(conn, service, number)
        info = ModelInfo(spec.kind, spec.feature_names, spec.labels, version.trusted)
        loaded = _Loaded(
            load_model(artifacts.materialise(self.store, version), version.flavor, info),
            spec.feature_names,
        )
        self._loaded[key] = loaded
        while len(self._loaded) > MODELS_KEPT:
            self._loaded.popitem(last=False)
        return loaded


class _Unexplainable(Exception):
    """An item whose decision has nothing to explain with."""


def explain_pending(
    store: Store,
    spec: Spec,
    limit: int | None = None,
    *,
    models: Models | None = None,
    ids: Sequence[str] | None = None,
    waiting: bool = False,
    first: str | None = None,
) -> int:
    """Explain the items whose ``attributions`` are NULL, oldest first, at most *limit*
    of them (all when None), or only those of *ids*, or with *waiting* only those still
    waiting for a person, and item *first* before any other whatever its state (the
    one a reviewer opened); how many were written (explanations and errors alike).

    Raises :class:`StoreError` when the store cannot be reached; every other failure
    is the item's, and stored as its ``{"error": ...}``.
    """
    models = models or Models(store, spec)
    done = 0
    while limit is None or done < limit:
        size = BATCH if limit is None else min(BATCH, limit - done)
        with store.read() as conn:
            items = conn.execute(
                sa.select(review_items.c.id, review_items.c.service, review_items.c.version)
                .where(
                    review_items.c.attributions.is_(None),
                    sa.or_(
                        review_items.c.id == first if first is not None else sa.false(),
                        sa.and_(
                            review_items.c.id.in_(ids) if ids is not None else sa.true(),
                            review_items.c.state != "decided" if waiting else sa.true(),
                        ),
                    ),
                )
                .order_by(
                    *([sa.case((review_items.c.id == first, 0), else_=1)] if first else []),
                    review_items.c.created_us,
                    review_items.c.id,
                )
                .limit(size)
            ).all()
            if not items:
                break
            rows = _inputs(conn, [str(i.id) for i in items])
        answers = _explain_batch(store, models, items, rows)
        with store.write() as conn:
            for item_id, answer in answers.items():
                conn.execute(
                    review_items.update()
                    .where(review_items.c.id == item_id, review_items.c.attributions.is_(None))
                    .values(attributions=orjson.dumps(answer).decode())
                )
        done += len(answers)
    return done


def _explain_batch(
    store: Store, models: Models, items: Sequence[Any], rows: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Each item's JSON answer, the items of one version explained together."""
    answers: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, int], list[str]] = {}
    for item in items:
        item_id = str(item.id)
        if item.version is None:
            answers[item_id] = {"error": "the decision names no version to explain"}
        elif item_id not in rows:
            answers[item_id] = {"error": "the inference's input is not in the audit log"}
        else:
            groups.setdefault((str(item.service), int(item.version)), []).append(item_id)
    for (service, number), ids in groups.items():
        try:
            loaded = models.get(service, number)
        except _TRANSIENT:
            raise
        except Exception as exc:
            error = {"error": _reason(exc)}
            answers.update((i, error) for i in ids)
            continue
        background = models.background(service, number)
        answers.update(_explain_version(loaded, ids, rows, background))
    return answers


def _explain_version(
    loaded: _Loaded,
    ids: list[str],
    rows: dict[str, dict[str, Any]],
    background: list[dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Explain *ids* together; when that fails, one by one, so one bad row costs only
    its own explanation."""
    try:
        found = explain(loaded.model, [rows[i] for i in ids], background, features=loaded.features)
        return {i: e.as_dict() for i, e in zip(ids, found, strict=True)}
    except _TRANSIENT:
        raise
    except Exception as exc:
        if len(ids) == 1:
            return {ids[0]: {"error": _reason(exc)}}
    out: dict[str, dict[str, Any]] = {}
    for i in ids:
        out.update(_explain_version(loaded, [i], rows, background))
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _Unexplainable):
        return str(exc)
    return f"cannot explain: {type(exc).__name__}: {exc}"


def _inputs(conn: Connection, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The ``input`` of each inference record among *ids* that has a row as input."""
    found = conn.execute(
        sa.select(audit_log.c.id, audit_log.c.payload).where(audit_log.c.id.in_(ids))
    ).all()
    out = {}
    for record_id, payload in found:
        row = orjson.loads(payload).get("input")
        if isinstance(row, dict):
            out[str(record_id)] = row
    return out


def _background(conn: Connection, service: str, number: int) -> list[dict[str, Any]]:
    """The inputs of the version's newest :data:`BACKGROUND` answered decisions."""
    payloads = conn.execute(
        sa.select(audit_log.c.payload)
        .where(
            audit_log.c.kind == KIND_INFERENCE,
            audit_log.c.service == service,
            audit_log.c.version == number,
            audit_log.c.status == 200,
        )
        .order_by(audit_log.c.seq.desc())
        .limit(BACKGROUND)
    ).scalars()
    rows = (orjson.loads(p).get("input") for p in payloads)
    return [r for r in rows if isinstance(r, dict)]


def explained(
    store: Store, spec: Spec, item: dict[str, Any], models: Models | None = None
) -> dict[str, Any]:
    """*item* (as :func:`prodgate.review.items.show` gives it) with its explanation,
    computed now when the server's explainer has not come to it yet: what a reviewer
    is shown, on the command line and over the API (the server passes its *models*,
    so a version is loaded once, not per request)."""
    if item.get("attributions") is not None:
        return item
    try:
        # With the items that wait after it: explaining a batch costs little more than
        # one (a pipeline's fixed cost per call dominates), so the reviewer's next
        # items are ready when they come to them.
        explain_pending(store, spec, BATCH, models=models, waiting=True, first=item["id"])
        with store.read() as conn:
            found = conn.execute(
                sa.select(review_items.c.attributions).where(review_items.c.id == item["id"])
            ).scalar()
    except StoreError as exc:  # the item is shown (or claimed) all the same
        logger.warning("explaining review item %s on demand failed: %s", item["id"], exc)
        return item
    return {**item, "attributions": orjson.loads(found) if found else None}


async def run_explainer(
    store: Store,
    spec: Spec,
    interval_s: float,
    stop: asyncio.Event | None = None,
    models: Models | None = None,
) -> None:
    """Explain waiting items, at most :data:`PASS` every *interval_s* seconds, until
    *stop* is set (or the task is cancelled), the work in a thread so the event loop
    keeps serving.

    The pace is bounded on purpose: the explainer shares the gateway's process (and
    its interpreter lock), and explaining every item as fast as items enter cost the
    gateway half its throughput when a fifth of the decisions entered review
    (``bench/review_overhead.py``: 0.46x, CPU per request 2.3x; 0.98x without the
    explainer). People decide far fewer items a second than that; the explainer keeps
    ahead of them oldest first, skips items already decided, and ``review show`` (or
    ``next``) explains an item on the spot when it has not come to it yet.

    A failure is logged and the loop goes on; the items stay NULL and the next pass
    tries them again. Does nothing when no service has review on.
    """
    if not any(s.review.on for s in spec.services.values()):
        return
    models = models or Models(store, spec)
    while stop is None or not stop.is_set():
        try:
            await asyncio.to_thread(explain_pending, store, spec, PASS, models=models, waiting=True)
        except Exception:
            logger.exception("explaining review items failed")
        if stop is None:
            await asyncio.sleep(interval_s)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)
