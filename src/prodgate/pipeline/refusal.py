"""Refusing a request: record it, count it, and answer with its problem document.

Every refused predict request (bad JSON, a broken contract, the kill switch, a full
queue, a failing model) is an audit record like an answered one, with what was known
of it by the stage that refused it, and its id is in the problem the caller gets.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from prodgate.exceptions import (
    ContractViolationError,
    ModelError,
    OverloadedError,
    ProdgateError,
    UnavailableError,
)
from prodgate.pipeline.decision import REJECTED
from prodgate.pipeline.exchange import Exchange, Outcome
from prodgate.pipeline.metrics import UNKNOWN, Metrics
from prodgate.pipeline.recorder import Recorder
from prodgate.pipeline.records import inference_record, raw_body
from prodgate.store.engine import now_us

MAX_NAME = 128  # characters of a made-up service name kept in the record


class Refusal:
    """Refuses requests on behalf of every service's path."""

    def __init__(
        self,
        recorder: Recorder,
        metrics: Metrics,
        fields: Mapping[str, Collection[str]],
        masks: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        self.recorder = recorder
        self.metrics = metrics
        self.fields = fields  # each service's declared input fields, for bounded labels
        #: Per service with input rails: a refused payload with its PII and secrets
        #: replaced (a request refused before its guard stage ran, e.g. for its contract).
        self.masks = masks if masks is not None else {}

    async def __call__(self, ex: Exchange, exc: ProdgateError) -> Outcome:
        known = ex.service in self.fields
        label = ex.service if known else UNKNOWN
        detail: dict[str, Any] = {"problem": exc.slug, "detail": exc.detail}
        if isinstance(exc, ContractViolationError):
            detail["errors"] = [v.as_dict() for v in exc.violations]
            # Field names a caller made up would make a label per name: count them as one.
            declared = self.fields.get(ex.service, ())
            for v in exc.violations:
                name = v.field if v.field == "-" or v.field in declared else UNKNOWN
                self.metrics.violations.labels(label, name).inc()
        elif isinstance(exc, ModelError) and exc.cause:
            detail["error"] = exc.cause
        elif isinstance(exc, OverloadedError):
            self.metrics.shed.labels(label).inc()
        if ex.guard is not None and ex.guard.hits:
            detail["guard"] = {"input": ex.guard.record()}
        blocked = getattr(exc, "verdict", None)  # an answer a rail blocked
        if blocked is not None:
            detail.setdefault("guard", {})["output"] = blocked.record()
        if ex.masked is not None:  # the input guard ran: never the raw PII or secret
            detail["input"] = ex.masked
        elif ex.parsed:
            mask = self.masks.get(ex.service)
            detail["input"] = mask(ex.payload) if mask is not None else ex.payload
        elif ex.body:
            detail.update(raw_body(ex.body))
        latency_s = time.perf_counter() - ex.started
        rec = inference_record(
            action="predict",
            # A made-up name is kept, bounded and without NUL (text columns refuse it).
            service=ex.service[:MAX_NAME].replace("\x00", "\ufffd"),
            version=ex.version,
            status=exc.status,
            decision=REJECTED,
            payload=detail,
            ts_us=now_us(),
            latency_ms=round(latency_s * 1000.0, 3),
            caller=ex.caller,
        )
        # Refusals that say when to come back (a limit, a budget, a full queue) carry it.
        headers: dict[str, str] | None = getattr(exc, "headers", None)
        retry_after = getattr(exc, "retry_after", None)
        if headers is None and retry_after:
            headers = {"Retry-After": str(retry_after)}
        try:
            await self.recorder.record([rec])
            body = exc.problem()
            body["id"] = rec.id
        except ProdgateError as store_exc:
            # Not recorded, so not acknowledged: say so rather than pretend.
            exc = UnavailableError(
                f"{exc.detail}; and it could not be recorded: {store_exc.detail}"
            )
            body = exc.problem()
        self.metrics.requests.labels(label, str(ex.version or "-"), str(exc.status)).inc()
        self.metrics.latency.labels(label).observe(latency_s)
        return Outcome(exc.status, body, headers)
