"""The data plane's front: every service's request path, and what the routes may ask.

The gateway keeps in memory everything a request needs (each service's compiled
contract and :class:`~prodgate.pipeline.path.ServicePath`, the fleet of loaded
versions and their batchers), so a request never touches the database except through
the recorder's group commit. A background task polls the store's *generation*
counter and swaps in new deployments live; requests already in flight finish on the
version they started with.

The HTTP routes use only the narrow API below (:meth:`predict`, :meth:`refuse`,
:meth:`readiness`, :meth:`describe`, :meth:`describe_all`, :meth:`feedback`,
:meth:`inference`, :meth:`refresh`). The rollout controller is control plane: the server starts it
beside the gateway, and nothing here imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit import log
from prodgate.contract import Contract
from prodgate.exceptions import (
    ContractViolationError,
    ProdgateError,
    UnknownInferenceError,
    Violation,
)
from prodgate.identity.keyring import ANONYMOUS_PRINCIPAL, KeyRing, Principal, read_keys
from prodgate.limits import build_limiter
from prodgate.limits.budget import build_ledger
from prodgate.llm.runtime import LlmRuntime
from prodgate.monitor import feedback
from prodgate.monitor import profiles as profile_store
from prodgate.monitor.tally import Tally
from prodgate.pipeline.completion import LlmPath
from prodgate.pipeline.decision import AUTO, ESCALATED, REJECTED
from prodgate.pipeline.enrichment import Enricher
from prodgate.pipeline.exchange import Exchange, Outcome
from prodgate.pipeline.fleet import Fleet
from prodgate.pipeline.guarding import Rails, check_request, check_text
from prodgate.pipeline.journal import Journal
from prodgate.pipeline.limiting import Limits
from prodgate.pipeline.llm_answers import parse_chat_body
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.path import ServicePath
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import inference_record
from prodgate.pipeline.refusal import Refusal
from prodgate.pipeline.shadow import Shadows
from prodgate.pipeline.spending import Spending
from prodgate.rollout.router import Router
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, Spec
from prodgate.spec.guard import text_fields
from prodgate.spec.monitor import OFF as NO_MONITOR
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import review_items
from prodgate.telemetry import Telemetry, build_telemetry

logger = logging.getLogger("prodgate.gateway")

MAX_ID = 64  # characters of an inference id worth looking up

#: Allocations (net of frees) between young collections. The request path frees what
#: it allocates by reference counting; CPython's default (700) ran a young collection
#: every few dozen requests and a full one every few seconds.
GC_YOUNG_THRESHOLD = 50_000


def settle_heap() -> None:
    """Collect once, then keep what is loaded (models, libraries) out of later collections.

    A full collection walks every object that survived earlier ones, and a process
    holding scikit-learn, pandas and a model has millions: on the 2-core development
    machine each took about 250 ms, every few seconds under load, which was 11% of
    the gateway's CPU and most of its p99. Frozen objects are never walked again, and
    with a higher young threshold collections under load became rare (server CPU per
    request 0.93 ms -> 0.61 ms in the same profile run). Called once models are
    loaded, and again after a refresh loads or retires a version: what was frozen
    is thawed first, so a retired model's cycles are collected too.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def thaw_heap(threshold: tuple[int, int, int]) -> None:
    """Undo :func:`settle_heap`: collections walk everything again, at *threshold*."""
    gc.unfreeze()
    gc.set_threshold(*threshold)


def monitor_tally(settings: Settings, spec: Spec) -> Tally:
    """The tally of this replica: each service's kind, contract and window length (its
    spec's ``monitor.window`` when it has a ``monitor:`` section, else
    ``PRODGATE_MONITOR_WINDOW``)."""
    lengths = {
        name: service.monitor.window_s
        if service.monitor is not NO_MONITOR
        else settings.monitor_window
        for name, service in spec.services.items()
    }
    replica = settings.monitor_replica or (
        f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
    )
    return Tally(
        replica,
        {n: s.kind for n, s in spec.services.items()},
        {n: _monitored(s) for n, s in spec.services.items()},
        lengths,
        flush_s=settings.monitor_flush,
    )


def _monitored(service: ServiceSpec) -> dict[str, Any]:
    """The schema of the rows a service's windows count: what the model sees (the
    contract's fields and the features), less the entity keys (ids, not signals)."""
    schema = service.model_contract
    if not service.features.on:
        return schema
    keys = set(service.features.entities)
    properties = {k: v for k, v in schema.get("properties", {}).items() if k not in keys}
    required = [k for k in schema.get("required", []) if k not in keys]
    return {**schema, "properties": properties, "required": required}


def _enricher(settings: Settings, spec: Spec, store: Store, metrics: Metrics) -> Enricher:
    """The lookups of the views services read, on the deployment's online store (Redis or
    the store; Feast's own for a view whose source is Feast)."""
    used = {u.view.name: u.view for s in spec.services.values() for u in s.features.uses}
    online = None
    if any(v.source.kind != "feast" for v in used.values()):
        from prodgate.features.online import build_online

        online = build_online(settings, store)
    return Enricher(used, online, spec.path.parent, metrics)


#: A ``/guard`` check's record: ``rejected`` when a rail blocks, ``escalated`` when one
#: escalates, else ``auto``.
_GUARD_DECISIONS = {"block": REJECTED, "escalate": ESCALATED}


@dataclass(frozen=True)
class Readiness:
    """Whether the gateway can serve, why not, and what it serves."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # wrong, but not stopping traffic
    services: dict[str, int] = field(default_factory=dict)  # production version of each

    @property
    def ready(self) -> bool:
        return not self.problems


class Gateway:
    def __init__(
        self,
        settings: Settings,
        spec: Spec,
        store: Store,
        metrics: Metrics,
        keyring: KeyRing | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring if keyring is not None else KeyRing(settings.admin_token)
        self.spec = spec
        self.store = store
        self.metrics = metrics
        self.contracts = {name: Contract(s.contract) for name, s in spec.services.items()}
        self.examples = {name: c.example() for name, c in self.contracts.items()}
        self.llm = LlmRuntime(spec, metrics)
        self.enricher = _enricher(settings, spec, store, metrics)
        stages = {n: self.enricher.stage(n, s.features) for n, s in spec.services.items()}
        self.fleet = Fleet(
            settings,
            spec,
            store,
            metrics,
            self.llm.route,
            prepare={n: stage.prepare for n, stage in stages.items() if stage is not None},
        )
        self.recorder = Recorder(
            store,
            metrics,
            settings.record_batch_size,
            journal=Journal(settings.home_path / "journal"),
            retry_s=settings.journal_retry_s,
        )
        self.llm.record = self.recorder.record
        #: The production windows this replica counts (None: PRODGATE_MONITOR=off), and
        #: the generation its reference profiles were read at.
        self.tally = monitor_tally(settings, spec) if settings.monitor else None
        self.recorder.tally = self.tally
        self._profiles_generation = -1
        self.masks: dict[str, Any] = {}  # filled with each service's rails below
        self.refusal = Refusal(
            self.recorder, metrics, {n: c.fields for n, c in self.contracts.items()}, self.masks
        )
        self.shadows = Shadows(self.recorder)
        self.limiter = build_limiter(settings)
        metrics.limits_store_up.set_function(lambda: 1.0 if self.limiter.healthy else 0.0)
        self.limits = limits = Limits(
            self.limiter, {n: s.limits for n, s in spec.services.items()}, metrics
        )
        self.telemetry = telemetry if telemetry is not None else build_telemetry(settings)
        self.ledger = build_ledger(settings)
        self.spending = Spending(self.ledger, spec.services, metrics)
        router = Router()
        self.paths: dict[str, ServicePath | LlmPath] = {}
        self.rails: dict[str, Rails] = {}
        for name, service in spec.services.items():
            rails = self.rails[name] = Rails(service, metrics, text_fields(service.contract))
            if rails.input.on:
                self.masks[name] = rails.mask
            if service.kind == "llm":
                self.paths[name] = LlmPath(
                    service,
                    self.contracts[name],
                    fleet=self.fleet,
                    router=router,
                    recorder=self.recorder,
                    refusal=self.refusal,
                    metrics=metrics,
                    limits=limits,
                    spending=self.spending,
                    rails=rails,
                    telemetry=self.telemetry,
                )
                continue
            self.paths[name] = ServicePath(
                service,
                self.contracts[name],
                fleet=self.fleet,
                router=router,
                recorder=self.recorder,
                refusal=self.refusal,
                shadows=self.shadows,
                metrics=metrics,
                limits=limits,
                max_rows=settings.max_queue,
                rails=rails,
                telemetry=self.telemetry,
            )
        self.started = False
        self._gc_threshold = gc.get_threshold()
        self._refresher: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self._gc_threshold = gc.get_threshold()
        self.recorder.start()
        await self._reload_keys(await asyncio.to_thread(self.store.generation))
        await self.fleet.refresh()
        await self._load_profiles()
        settle_heap()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        self.started = True

    async def stop(self) -> None:
        # Ask the loop to stop and wait: cancelling would leave a worker thread
        # holding a store connection while the store is being closed.
        self._stopping.set()
        try:
            if self._refresher is not None:
                await self._refresher
            await self.shadows.close()
            for path in self.paths.values():
                if isinstance(path, LlmPath):
                    await path.close()
            await self.fleet.close()
            await self.enricher.close()
            await self.llm.close()
            await self.limiter.close()
            await self.ledger.close()
            await self.telemetry.close()
        finally:
            await self.recorder.close()  # what was acknowledged is committed or journalled
            thaw_heap(self._gc_threshold)

    async def _refresh_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.refresh_interval)
            if self._stopping.is_set():
                return
            try:
                await self.refresh()
            except Exception:  # keep serving what is loaded; say why once per failure
                logger.exception("refreshing deployments failed")

    async def refresh(self) -> None:
        """Apply changes (keys, splits, kill switches) now rather than at the next poll."""
        generation = await asyncio.to_thread(self.store.generation)
        if generation != self.keyring.generation:
            await self._reload_keys(generation)
        changed = await self.fleet.refresh()
        if self.tally is not None and self.fleet.generation != self._profiles_generation:
            await self._load_profiles()
        if changed:
            settle_heap()

    async def _load_profiles(self) -> None:
        """The reference profiles of the loaded versions, for the windows that open next."""
        if self.tally is None:
            return
        generation = self.fleet.generation
        loaded = [(n, v) for n, state in self.fleet.services.items() for v in state.versions]

        def read() -> dict[tuple[str, int], Any]:
            with self.store.read() as conn:
                return profile_store.load_many(conn, loaded)

        self.tally.use_profiles(await asyncio.to_thread(read))
        self._profiles_generation = generation

    async def _reload_keys(self, generation: int) -> None:
        """Every key, read at *generation* or later (so none older is kept)."""
        keys = await asyncio.to_thread(read_keys, self.store)
        self.keyring.load(keys, generation)
        self.metrics.keys_loaded.set(len(keys))

    # -- what the routes ask ---------------------------------------------------------

    async def predict(
        self,
        name: str,
        body: bytes,
        started: float,
        routing_key: str | None = None,
        caller: Principal = ANONYMOUS_PRINCIPAL,
    ) -> Outcome:
        """Serve one predict request from *caller* whose raw JSON *body* arrived at
        *started*."""
        ex = Exchange(name, body, started, routing_key, caller=caller)
        path = self.paths.get(name)
        if path is None:
            return await self.refusal(ex, self.spec.unknown(name))
        return await path.handle(ex)

    async def chat(
        self,
        body: bytes,
        started: float,
        routing_key: str | None = None,
        caller: Principal = ANONYMOUS_PRINCIPAL,
        payload: Any = None,
    ) -> Outcome:
        """Serve one OpenAI chat request; its ``model`` names the LLM service. *payload*
        is the body's JSON when the access check parsed it already."""
        ex = Exchange("", body, started, routing_key, caller=caller)
        if payload is not None:
            ex.payload, ex.parsed = payload, True
        try:
            chat = parse_chat_body(ex)
        except ProdgateError as exc:
            return await self.refusal(ex, exc)
        path = self.paths.get(chat.service)
        if path is None:
            return await self.refusal(ex, self.spec.unknown(chat.service))
        if not isinstance(path, LlmPath):
            kind = self.spec.services[chat.service].kind
            why = f"{chat.service} is a {kind}, not an LLM service: call its predict route"
            return await self.refusal(ex, ContractViolationError([Violation("/model", why)]))
        return await path.chat(ex)

    async def guard(self, name: str, payload: Any, caller: Principal) -> dict[str, Any]:
        """``POST /v1/services/{name}/guard``: one text through the service's rails,
        recorded (action ``guard``: the masked text and the verdict)."""
        rails = self.rails.get(name)
        if rails is None:
            raise self.spec.unknown(name)
        text, direction, question = check_request(payload)
        live = self.fleet.services[name].production
        endpoint = live.endpoint if live is not None else None
        started = time.perf_counter()
        verdict = await check_text(
            rails,
            text,
            direction,
            question,
            endpoint.prompt if endpoint is not None else None,
            live.version.number if live is not None else None,
        )
        record = inference_record(
            action="guard",
            service=name,
            version=live.version.number if live is not None else None,
            status=200,
            decision=_GUARD_DECISIONS.get(verdict.verdict, AUTO),
            payload={"input": verdict.masked, "direction": direction, "guard": verdict.record()},
            ts_us=now_us(),
            latency_ms=round((time.perf_counter() - started) * 1000.0, 3),
            caller=caller,
        )
        await self.recorder.record([record])
        return {"id": record.id, **verdict.as_dict()}

    async def refuse(
        self,
        name: str,
        exc: ProdgateError,
        started: float,
        body: bytes,
        caller: Principal = ANONYMOUS_PRINCIPAL,
    ) -> Outcome:
        """Refuse a predict request before its stages ran (a body too large or in an
        unknown encoding, not sent as JSON)."""
        return await self.refusal(Exchange(name, body, started, caller=caller), exc)

    async def readiness(self) -> Readiness:
        """Whether this gateway can answer: models loaded. A store that does not answer
        is a warning, not a problem: answers go on, each record journalled before it
        is acknowledged, and a balancer that took every replica out over it would turn
        a store outage into a full one."""
        problems: list[str] = []
        if not self.started:
            problems.append("models are still loading")
        problems.extend(f"{name}: {why}" for name, why in self.fleet.load_errors.items())
        warnings = [f"{name}: {why}" for name, why in self.fleet.shadow_errors.items()]
        if not await asyncio.to_thread(self.store.ping):
            warnings.append("the store does not answer; records go to the local journal")
        spooled = self.recorder.spooled
        if spooled:
            warnings.append(f"{spooled} audit records wait in the local journal for the store")
        services = {
            n: state.production.version.number
            for n, state in self.fleet.services.items()
            if state.production is not None
        }
        return Readiness(problems, warnings, services)

    def describe(self, name: str, full: bool = True) -> dict[str, Any]:
        """A service as callers see it: owner, deployed version, split; with *full*,
        its contract, an example input and the deployed version's registration."""
        service = self.spec.service(name)
        state = self.fleet.services[name]
        live = state.production
        split = state.split
        view: dict[str, Any] = {
            "name": name,
            "description": service.description,
            "owner": {"name": service.owner.name, "contact": service.owner.contact},
            "kind": service.kind,
            "labels": list(service.labels) if service.labels else None,
            "escalation": {"confidence_below": service.escalation_below},
            "deployed_version": live.version.number if live else None,
            "canary": {"version": split.canary, "weight": split.canary_weight}
            if split and split.canary
            else None,
            "shadow_version": split.shadow if split else None,
            "disabled": state.disabled,
            "predict": f"/v1/services/{name}/predict",
        }
        if state.disabled:
            view["disabled_reason"] = state.disabled_reason
        if state.error:
            view["error"] = state.error
        if state.shadow_error:
            view["shadow_error"] = state.shadow_error
        if service.features.on:
            view["features"] = {
                u.view.name: {"entity": u.view.entity, "features": list(u.names)}
                for u in service.features.uses
            }
        if full:
            view["contract"] = service.contract
            view["example"] = {"inputs": self.examples[name]}
            if live:
                # Where the registrant's file was is theirs, not every caller's to see.
                view["version"] = {k: v for k, v in live.version.as_dict().items() if k != "source"}
        return view

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(n, full=False) for n in self.spec.services]

    async def feedback(self, record_id: str, payload: Any) -> dict[str, Any]:
        """Store the true label (or value) of a past decision."""
        return await asyncio.to_thread(feedback.submit, self.store, self.spec, record_id, payload)

    async def inference(self, record_id: str) -> dict[str, Any]:
        """The stored record of one decision."""

        def read() -> dict[str, Any] | None:
            with self.store.read() as conn:
                record = log.get(conn, record_id)
                review = _review(conn, record_id) if record is not None else None
            if review is not None and record is not None:
                record["review"] = review
            return record

        record = await asyncio.to_thread(read) if len(record_id) <= MAX_ID else None
        if record is None:
            raise UnknownInferenceError(f"no inference with id {record_id!r}")
        return record


def _review(conn: Connection, record_id: str) -> dict[str, Any] | None:
    """What the caller of a decision learns of its review, when it has one: the item's
    state and reasons, the final label, whether it overrode the model, and when."""
    row = conn.execute(
        sa.select(
            review_items.c.state,
            review_items.c.reasons,
            review_items.c.final,
            review_items.c.override,
            review_items.c.decided_us,
        ).where(review_items.c.id == record_id)
    ).first()
    if row is None:
        return None
    decided = row.decided_us
    return {
        "state": row.state,
        "reasons": orjson.loads(row.reasons),
        "final": orjson.loads(row.final) if row.final is not None else None,
        "override": row.override,
        "decided_at": None
        if decided is None
        else dt.datetime.fromtimestamp(decided / 1e6, dt.UTC).isoformat().replace("+00:00", "Z"),
    }
