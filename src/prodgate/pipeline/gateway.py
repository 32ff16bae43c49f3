"""The data plane: contract -> micro-batch -> decide -> record, per service.

The gateway keeps in memory everything a request needs (each service's compiled
contract, its deployed version's loaded model and batcher), so a request never
touches the database except through the recorder's group commit. A background task
polls the store's *generation* counter and swaps in new deployments live; requests
already in flight finish on the version they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.contract import Contract
from prodgate.exceptions import (
    ContractViolationError,
    MalformedJSONError,
    ModelError,
    NotDeployedError,
    OverloadedError,
    ProdgateError,
    ServiceDisabledError,
    UnavailableError,
    UnknownServiceError,
    Violation,
)
from prodgate.pipeline.fleet import Fleet, Live
from prodgate.pipeline.journal import Journal
from prodgate.pipeline.metrics import UNKNOWN, Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.rollout.controller import run_controller
from prodgate.rollout.router import Router
from prodgate.runtime.base import Prediction
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store, now_us

logger = logging.getLogger("prodgate.gateway")

RAW_KEEP = 4096  # bytes of an unparseable body kept in its audit record
MAX_NESTING = 32  # levels of arrays and objects a request body may have


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether *value* nests arrays and objects more than *limit* levels deep."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class Gateway:
    def __init__(self, settings: Settings, spec: Spec, store: Store, metrics: Metrics) -> None:
        self.settings = settings
        self.spec = spec
        self.store = store
        self.metrics = metrics
        self.contracts = {name: Contract(s.contract) for name, s in spec.services.items()}
        self.examples = {name: c.example() for name, c in self.contracts.items()}
        self.fleet = Fleet(settings, spec, store, metrics)
        self.recorder = Recorder(
            store,
            metrics,
            settings.record_batch_size,
            journal=Journal(settings.home_path / "journal"),
            retry_s=settings.journal_retry_s,
        )
        self.router = Router()
        self.started = False
        self._refresher: asyncio.Task[None] | None = None
        self._controller: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.recorder.start()
        await self.fleet.refresh()
        loop = asyncio.get_running_loop()
        self._refresher = loop.create_task(self._refresh_loop())
        if self.settings.controller:
            # Canary analysis runs beside the gateway; on a shared store only one
            # replica at a time drives a given rollout (the controller takes a lock).
            self._controller = loop.create_task(
                run_controller(
                    self.store, self.spec, self.settings.controller_interval, stop=self._stopping
                )
            )
        self.started = True

    async def stop(self) -> None:
        # Ask the loops to stop and wait: cancelling would leave a worker thread
        # holding a store connection while the store is being closed.
        self._stopping.set()
        for task in (self._controller, self._refresher):
            if task is not None:
                await task
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.fleet.close()
        await self.recorder.close()

    async def _refresh_loop(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.refresh_interval)
            if self._stopping.is_set():
                return
            try:
                await self.fleet.refresh()
            except Exception:  # keep serving what is loaded; say why once per failure
                logger.exception("refreshing deployments failed")

    async def refresh(self) -> None:
        await self.fleet.refresh()

    @property
    def load_errors(self) -> dict[str, str]:
        return self.fleet.load_errors

    @property
    def ready(self) -> bool:
        """Every deployed version is loaded."""
        return self.started and not self.load_errors

    # -- the request path ----------------------------------------------------------

    def service(self, name: str) -> ServiceSpec:
        return self.spec.service(name)

    async def predict(
        self, name: str, body: bytes, started: float, routing_key: str | None = None
    ) -> Outcome:
        """Serve one predict request whose raw JSON *body* arrived at *started*."""
        try:
            service = self.spec.service(name)
        except UnknownServiceError as exc:
            return await self.reject(name, exc, started, raw=body)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return await self.reject(
                name, MalformedJSONError(f"the body is not JSON: {exc}"), started, raw=body
            )
        if body.count(b"{") + body.count(b"[") > MAX_NESTING and _deeper_than(payload, MAX_NESTING):
            # The validator and the audit log's JSON stop at a few hundred levels; no
            # input row needs more than a few. Kept as raw text in the record.
            deep = ContractViolationError(
                [Violation("", f"the body is nested deeper than {MAX_NESTING} levels")]
            )
            return await self.reject(name, deep, started, raw=body)
        state = self.fleet.services[name]
        if state.disabled:
            off = ServiceDisabledError(f"{name} is disabled: {state.disabled_reason}")
            return await self.reject(name, off, started, payload=payload)
        if isinstance(payload, dict) and isinstance(payload.get("routing_key"), str):
            routing_key = payload["routing_key"]
        number = self.router.choose(name, state.split, routing_key) if state.split else None
        live = state.versions.get(number) if number is not None else None
        try:
            rows, _prefixes, single = self._rows(service, payload)
        except ContractViolationError as exc:
            return await self.reject(name, exc, started, payload=payload, version=number)
        if live is None:
            why = state.error
            missing: ProdgateError = NotDeployedError(
                f"{name} cannot serve: {why}"
                if why
                else f"{name} has no deployed version; run 'prodgate deploy {name} VERSION'"
            )
            return await self.reject(name, missing, started, payload=payload)
        try:
            predictions = await live.batcher.predict(rows)
        except OverloadedError as exc:
            self.metrics.shed.labels(name).inc()
            return await self.reject(name, exc, started, payload=payload, version=number)
        except Exception as exc:
            # One line per failed batch; the traceback only when debugging.
            logger.warning(
                "%s v%s failed on a batch: %s: %s", name, number, type(exc).__name__, exc
            )
            logger.debug("model failure", exc_info=exc)
            err = ModelError(f"the model failed: {type(exc).__name__}: {exc}")
            return await self.reject(name, err, started, payload=payload, version=number)
        shadow = state.shadow
        if shadow is not None and shadow.version.number != number:
            task = asyncio.get_running_loop().create_task(self._shadow(shadow, rows, started))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return await self._accept(live, rows, predictions, started, single)

    async def _shadow(self, live: Live, rows: list[Mapping[str, Any]], started: float) -> None:
        """Run a copy on the shadow version and record it; its answer goes to nobody."""
        service, number = live.spec, live.version.number
        try:
            predictions = await live.batcher.predict(rows)
        except Exception as exc:  # a shadow's failure must never touch the caller
            rec = Record(
                kind=KIND_INFERENCE,
                action="shadow",
                ts_us=now_us(),
                payload={"input": rows, "error": f"{type(exc).__name__}: {exc}"},
                service=service.name,
                version=number,
                status=500,
                decision="rejected",
            )
            with contextlib.suppress(ProdgateError):
                await self.recorder.record([rec])
            return
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        records = [
            Record(
                kind=KIND_INFERENCE,
                action="shadow",
                ts_us=now_us(),
                payload={
                    "input": row,
                    "output": {"prediction": p.value, "probabilities": p.probabilities},
                },
                service=service.name,
                version=number,
                status=200,
                decision=self._decide(service, p),
                confidence=p.confidence,
                latency_ms=latency_ms,
            )
            for row, p in zip(rows, predictions, strict=True)
        ]
        with contextlib.suppress(ProdgateError):
            await self.recorder.record(records)

    def _rows(
        self, service: ServiceSpec, payload: Any
    ) -> tuple[list[Mapping[str, Any]], list[str], bool]:
        contract = self.contracts[service.name]
        if not isinstance(payload, dict):
            raise ContractViolationError(
                [
                    Violation(
                        "", 'the body must be an object: {"inputs": {...}} or {"instances": [...]}'
                    )
                ]
            )
        violations: list[Violation] = []
        extra = sorted(set(payload) - {"inputs", "instances", "routing_key"})
        violations.extend(Violation(f"/{k}", "unknown field") for k in extra)
        key = payload.get("routing_key")
        if key is not None and not isinstance(key, str):
            violations.append(Violation("/routing_key", "must be a string"))
        if ("inputs" in payload) == ("instances" in payload):
            violations.append(
                Violation("", 'give exactly one of "inputs" (one row) or "instances" (many rows)')
            )
            raise ContractViolationError(violations)
        if "inputs" in payload:
            rows, prefixes, single = [payload["inputs"]], ["/inputs"], True
        else:
            rows, single = payload["instances"], False
            if not isinstance(rows, list) or not rows:
                violations.append(Violation("/instances", "must be a non-empty array of rows"))
                raise ContractViolationError(violations)
            limit = self.settings.max_queue
            if len(rows) > limit:
                violations.append(Violation("/instances", f"at most {limit} rows per request"))
                raise ContractViolationError(violations)
            prefixes = [f"/instances/{i}" for i in range(len(rows))]
        for row, prefix in zip(rows, prefixes, strict=True):
            if not contract.is_valid(row):
                violations.extend(contract.violations(row, prefix))
        if violations:
            raise ContractViolationError(violations)
        return rows, prefixes, single

    def _decide(self, service: ServiceSpec, p: Prediction) -> str:
        threshold = service.escalation_below
        confidence = p.confidence
        if threshold is not None and confidence is not None and confidence < threshold:
            return "escalated"
        return "auto"

    async def _accept(
        self,
        live: Live,
        rows: list[Mapping[str, Any]],
        predictions: list[Prediction],
        started: float,
        single: bool,
    ) -> Outcome:
        service, number = live.spec, live.version.number
        version_label = str(number)
        ts = now_us()
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        records: list[Record] = []
        answers: list[dict[str, Any]] = []
        escalated = 0
        for row, p in zip(rows, predictions, strict=True):
            decision = self._decide(service, p)
            escalated += decision == "escalated"
            confidence = p.confidence
            rec = Record(
                kind=KIND_INFERENCE,
                action="predict",
                ts_us=ts,
                payload={
                    "input": row,
                    "output": {"prediction": p.value, "probabilities": p.probabilities},
                },
                service=service.name,
                version=number,
                status=200,
                decision=decision,
                confidence=confidence,
                latency_ms=latency_ms,
            )
            records.append(rec)
            answers.append(
                {
                    "id": rec.id,
                    "service": service.name,
                    "version": number,
                    "prediction": p.value,
                    "probabilities": p.probabilities,
                    "confidence": confidence,
                    "decision": decision,
                    "latency_ms": latency_ms,
                }
            )
        m = self.metrics
        try:
            await self.recorder.record(records)
        except ProdgateError as exc:  # not durable, so not acknowledged
            m.requests.labels(service.name, version_label, str(exc.status)).inc()
            return Outcome(exc.status, exc.problem(), {})
        m.requests.labels(service.name, version_label, "200").inc()
        m.latency.labels(service.name).observe(time.perf_counter() - started)
        m.decisions.labels(service.name, version_label, "auto").inc(len(rows) - escalated)
        if escalated:
            m.decisions.labels(service.name, version_label, "escalated").inc(escalated)
            m.escalations.labels(service.name, version_label).inc(escalated)
        body = answers[0] if single else {"predictions": answers}
        return Outcome(200, body, {})

    async def reject(
        self,
        name: str,
        exc: ProdgateError,
        started: float,
        *,
        payload: Any = None,
        raw: bytes | None = None,
        version: int | None = None,
        instance: str | None = None,
    ) -> Outcome:
        """Record a refused request, count it, and answer with its problem document."""
        known = name in self.spec.services
        label = name if known else UNKNOWN
        detail: dict[str, Any] = {"problem": exc.slug, "detail": exc.detail}
        if isinstance(exc, ContractViolationError):
            detail["errors"] = [v.as_dict() for v in exc.violations]
            # Field names a caller made up would make a label per name: count them as one.
            declared = self.contracts[name].fields if known else ()
            for v in exc.violations:
                field = v.field if v.field == "-" or v.field in declared else UNKNOWN
                self.metrics.violations.labels(label, field).inc()
        if payload is not None:
            detail["input"] = payload
        elif raw is not None:
            detail["raw"] = raw[:RAW_KEEP].decode("utf-8", "replace")
            detail["raw_bytes"] = len(raw)
        latency_ms = round((time.perf_counter() - started) * 1000.0, 3)
        rec = Record(
            kind=KIND_INFERENCE,
            action="predict",
            ts_us=now_us(),
            payload=detail,
            # A made-up name is kept, bounded and without NUL (text columns refuse it).
            service=name[:128].replace("\x00", "\ufffd"),
            version=version,
            status=exc.status,
            decision="rejected",
            latency_ms=latency_ms,
        )
        headers: dict[str, str] = {}
        if isinstance(exc, OverloadedError):
            headers["Retry-After"] = str(exc.retry_after)
        try:
            await self.recorder.record([rec])
            body = exc.problem(instance)
            body["id"] = rec.id
        except ProdgateError as store_exc:
            # Not recorded, so not acknowledged: say so rather than pretend.
            exc = UnavailableError(
                f"{exc.detail}; and it could not be recorded: {store_exc.detail}"
            )
            body = exc.problem(instance)
        self.metrics.requests.labels(label, str(version or "-"), str(exc.status)).inc()
        self.metrics.latency.labels(label).observe(time.perf_counter() - started)
        return Outcome(exc.status, body, headers)
