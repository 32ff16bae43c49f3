"""The request path of one service, stage by stage, top to bottom.

::

    authenticate                     the server's access check (server.access): key, scope
    parse        envelope.parse      JSON and the {"inputs"} / {"instances"} envelope
    limit        Limits.admit        the key's and the service's rates, rows, concurrency
    route        routing.choose      the version the split sends it to (sticky by key)
    contract     validation.validate every row against the compiled contract
    guard input  Rails.check_rows    injections, PII, secrets in the free-text fields
    route        routing.admit       the kill switch; nothing loaded to answer
    infer        inference.infer     the micro-batched model call; a service that reads
                                     feature views has them looked up for the whole batch
                                     first (enrichment.Enrichment.prepare)
    decide       records.decided     auto, or escalated to a person (decision.decide);
                 Entry.mark          review's rules escalate, a sample enters review
    record       Recorder.record     group commit; the answer waits until it is durable
    respond      Outcome

A stage that refuses raises a :class:`~prodgate.exceptions.ProdgateError`; the path
hands it to :class:`~prodgate.pipeline.refusal.Refusal`, which records and answers
it. A stage never touches the store: what it needs is in memory (the compiled
contract here, the split and models in the fleet).

With telemetry on, a request is a ``prodgate.predict`` span and each stage a child
span of that name (``route`` for choose, ``admit`` for the kill switch, ``refuse``
for a refusal's record); the path holds each stage's function wrapped once, at
construction, so with telemetry off it holds the plain functions and pays nothing.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from prodgate.audit.record import Record
from prodgate.contract import Contract
from prodgate.exceptions import ProdgateError
from prodgate.guard.policy import Verdict
from prodgate.pipeline.decision import AUTO, ESCALATED
from prodgate.pipeline.enrichment import with_features
from prodgate.pipeline.envelope import parse
from prodgate.pipeline.exchange import Exchange, Outcome
from prodgate.pipeline.fleet import Fleet
from prodgate.pipeline.guarding import Rails
from prodgate.pipeline.inference import infer
from prodgate.pipeline.limiting import Limits
from prodgate.pipeline.metrics import Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import answer, decided
from prodgate.pipeline.refusal import Refusal
from prodgate.pipeline.review_entry import Entry
from prodgate.pipeline.routing import admit, choose
from prodgate.pipeline.shadow import Shadows
from prodgate.pipeline.validation import validate
from prodgate.rollout.router import Router
from prodgate.spec import ServiceSpec
from prodgate.store.engine import now_us
from prodgate.telemetry import Telemetry

REQUEST_SPAN = "prodgate.predict"


class ServicePath:
    """Every stage a predict request to one service goes through, in order."""

    handle: Callable[[Exchange], Awaitable[Outcome]]
    """Serve one predict request: :meth:`_serve`, inside the request's span when
    telemetry is on. Chosen once, when the path is built: an untraced path pays
    nothing for the choice, where a test per request and one more coroutine would
    cost about 0.2 µs."""

    def __init__(
        self,
        service: ServiceSpec,
        contract: Contract,
        *,
        fleet: Fleet,
        router: Router,
        recorder: Recorder,
        refusal: Refusal,
        shadows: Shadows,
        metrics: Metrics,
        limits: Limits,
        max_rows: int,
        rails: Rails | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.name = service.name
        self.contract = contract
        self.fleet = fleet
        self.router = router
        self.recorder = recorder
        self.refusal = refusal
        self.shadows = shadows
        self.metrics = metrics
        self.limits = limits
        self.max_rows = max_rows
        self.threshold = service.escalation_below
        self.entry = Entry(service)
        self.rails = rails if rails is not None and rails.on else None
        self._counts: dict[int, _Counts] = {}
        self.telemetry = telemetry = telemetry if telemetry is not None else Telemetry()
        # Each stage in a span of its name when telemetry is on; the function itself when off.
        staged = telemetry.staged
        self._parse = staged("parse", parse)
        self._limit = staged("limit", limits.admit)
        self._choose = staged("route", choose)
        self._validate = staged("contract", validate)
        self._guard: Callable[[Exchange], Awaitable[list[Verdict] | None]] | None = (
            staged("guard_input", self.rails.check_rows)
            if self.rails is not None and self.rails.input.on
            else None
        )
        self._guard_out = (
            staged("guard_output", self.rails.check_predictions)
            if self.rails is not None and self.rails.output.on
            else None
        )
        self._admit = staged("admit", admit)
        self._infer = staged("infer", infer)
        self._store = staged("record", recorder.record)
        self._refuse = staged("refuse", refusal.__call__)
        self.handle = self._traced if telemetry.on else self._serve

    async def _traced(self, ex: Exchange) -> Outcome:
        """:meth:`_serve` in the request's span, which starts when the request arrived."""
        with self.telemetry.request(
            REQUEST_SPAN, service=self.name, key_id=ex.caller.key_id, started=ex.started
        ) as span:
            outcome = await self._serve(ex)
            span.answered(outcome.status, version=ex.version)
        return outcome

    async def _serve(self, ex: Exchange) -> Outcome:
        """Serve one predict request."""
        try:
            outcome = await self._handle(ex)
        finally:
            if ex.lease is not None:  # concurrency slots are held until the answer
                await self.limits.release(ex)
        if ex.limit_headers and outcome.status != 429:
            outcome.headers = {**ex.limit_headers, **(outcome.headers or {})}
        return outcome

    async def _handle(self, ex: Exchange) -> Outcome:
        try:
            self._parse(ex, self.max_rows)
            await self._limit(ex)
            state = self.fleet.services[self.name]
            chosen = self._choose(ex, state, self.router)
            self._validate(ex, self.contract)
            verdicts = await self._guard(ex) if self._guard is not None else None
            live = self._admit(ex, state, chosen)
            predictions = await self._infer(ex, live)
            answered = None
            if self._guard_out is not None:
                predictions, answered = await self._guard_out(ex, predictions)
        except ProdgateError as exc:
            return await self._refuse(ex, exc)
        # The split may have moved while the model ran: copy to the shadow of now, not
        # to one that was retired meanwhile (its batcher refuses, a false failure).
        shadow = self.fleet.services[self.name].shadow
        if shadow is not None and shadow.version.number != ex.version:
            self.shadows.copy(shadow, ex.rows, ex.started, _masked_rows(ex))
        number = live.version.number
        latency_ms = round((time.perf_counter() - ex.started) * 1000.0, 3)
        records = decided(
            "predict",
            self.name,
            number,
            ex.rows,
            predictions,
            self.threshold,
            now_us(),
            latency_ms,
            ex.caller,
        )
        if verdicts is not None or answered is not None:
            _guarded(records, verdicts, answered, ex)
        if ex.features is not None:
            for record, seen in zip(records, ex.features[0], strict=True):
                record.payload["features"] = seen
        if self.entry.on:
            self.entry.mark(records)
        answers = [
            answer(r, p, self.name, number, latency_ms)
            for r, p in zip(records, predictions, strict=True)
        ]
        escalated = sum(r.decision == ESCALATED for r in records)
        return await self._record(records, answers, number, escalated, ex)

    async def _record(
        self,
        records: list[Record],
        answers: list[dict[str, Any]],
        number: int,
        escalated: int,
        ex: Exchange,
    ) -> Outcome:
        """The record stage, then respond: nothing is answered before it is durable."""
        try:
            await self._store(records)
        except ProdgateError as exc:  # not durable, so not acknowledged
            self.metrics.requests.labels(self.name, str(number), str(exc.status)).inc()
            return Outcome(exc.status, exc.problem())
        counts = self._counts.get(number) or self._count(number)
        counts.answered.inc()
        counts.latency.observe(time.perf_counter() - ex.started)
        counts.auto.inc(len(records) - escalated)
        if escalated:
            counts.escalated.inc(escalated)
            counts.escalations.inc(escalated)
        return Outcome(200, answers[0] if ex.single else {"predictions": answers})

    def _count(self, number: int) -> _Counts:
        """The metrics an answer of version *number* moves, looked up once per version
        (a label lookup takes a lock and a dict; an answer moves five)."""
        m, name, label = self.metrics, self.name, str(number)
        counts = _Counts(
            answered=m.requests.labels(name, label, "200"),
            latency=m.latency.labels(name),
            auto=m.decisions.labels(name, label, AUTO),
            escalated=m.decisions.labels(name, label, ESCALATED),
            escalations=m.escalations.labels(name, label),
        )
        self._counts[number] = counts
        return counts


def _masked_rows(ex: Exchange) -> list[Any] | None:
    """The rows as records keep them, when the input guard ran."""
    if ex.masked is None:
        return None
    rows = list(ex.masked["instances"]) if not ex.single else [ex.masked["inputs"]]
    return with_features(rows, ex)


def _guarded(
    records: list[Record],
    verdicts: list[Verdict] | None,
    answered: list[Verdict] | None,
    ex: Exchange,
) -> None:
    """The guards' part in each row's record: the input and the answer as masked, the
    verdicts, and ``escalated`` where a rail says so."""
    masked = _masked_rows(ex)
    for i, record in enumerate(records):
        guard: dict[str, Any] = {}
        if masked is not None:
            record.payload["input"] = masked[i]
        for direction, found in (("input", verdicts), ("output", answered)):
            verdict = found[i] if found is not None else None
            if verdict is None or not verdict.hits:
                continue
            guard[direction] = verdict.record()
            if direction == "output":
                record.payload["output"]["prediction"] = verdict.masked
            if verdict.escalated:
                record.decision = ESCALATED
        if guard:
            record.payload["guard"] = guard


@dataclass(frozen=True, slots=True)
class _Counts:
    answered: Any
    latency: Any
    auto: Any
    escalated: Any
    escalations: Any
