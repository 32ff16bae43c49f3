"""The one constructor of inference records, and the answer a caller gets for one.

Every decision the gateway makes (answered, shadowed or refused) is one audit record
of kind ``inference``, built here and nowhere else, so the columns mean the same in
all three and the record's id is the one the caller sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prodgate.audit.record import KIND_INFERENCE, Record
from prodgate.identity.keyring import Principal
from prodgate.pipeline.decision import decide
from prodgate.runtime.base import Prediction

RAW_KEEP = 4096  # bytes of an unparseable body kept in its audit record


def inference_record(
    *,
    action: str,
    service: str,
    version: int | None,
    status: int,
    decision: str,
    payload: dict[str, Any],
    ts_us: int,
    latency_ms: float,
    confidence: float | None = None,
    caller: Principal | None = None,
    record_id: str | None = None,
) -> Record:
    """An inference record: ``action`` is ``predict`` (answered or refused) or ``shadow``.

    A *caller* with a key is recorded: its identity as the record's actor, the key's
    id in the payload (never the key)."""
    actor = None
    if caller is not None and caller.key_id is not None:
        actor = caller.name
        payload["key"] = caller.key_id
    return Record(
        kind=KIND_INFERENCE,
        action=action,
        ts_us=ts_us,
        payload=payload,
        service=service,
        version=version,
        status=status,
        decision=decision,
        confidence=confidence,
        latency_ms=latency_ms,
        actor=actor,
        **({"id": record_id} if record_id is not None else {}),
    )


def decided(
    action: str,
    service: str,
    version: int,
    rows: Sequence[Mapping[str, Any]],
    predictions: Sequence[Prediction],
    confidence_below: float | None,
    ts_us: int,
    latency_ms: float,
    caller: Principal | None = None,
) -> list[Record]:
    """One record per answered row: its input, output and decision (the decide stage)."""
    return [
        inference_record(
            action=action,
            service=service,
            version=version,
            status=200,
            decision=decide(p, confidence_below),
            payload={"input": row, "output": output(p)},
            ts_us=ts_us,
            latency_ms=latency_ms,
            confidence=p.confidence,
            caller=caller,
        )
        for row, p in zip(rows, predictions, strict=True)
    ]


def output(prediction: Prediction) -> dict[str, Any]:
    """A prediction as the audit record keeps it."""
    return {"prediction": prediction.value, "probabilities": prediction.probabilities}


def answer(
    record: Record, prediction: Prediction, service: str, version: int, latency_ms: float
) -> dict[str, Any]:
    """What the caller gets for one row: the decision and the id of its record."""
    return {
        "id": record.id,
        "service": service,
        "version": version,
        "prediction": prediction.value,
        "probabilities": prediction.probabilities,
        "confidence": prediction.confidence,
        "decision": record.decision,
        "latency_ms": latency_ms,
    }


def raw_body(body: bytes) -> dict[str, Any]:
    """An unparseable body as a record keeps it: its start as text, and its size."""
    return {"raw": body[:RAW_KEEP].decode("utf-8", "replace"), "raw_bytes": len(body)}


def llm_record(
    *,
    record_id: str,
    service: str,
    version: int | None,
    status: int,
    decision: str,
    input: Any,
    output: dict[str, Any] | None,
    llm: dict[str, Any],
    ts_us: int,
    latency_ms: float,
    caller: Principal | None = None,
    error: dict[str, Any] | None = None,
    action: str = "predict",
) -> Record:
    """An LLM call's inference record: its input (the template's variables, or a chat's
    messages), its answer, and ``llm``: the prompt version's model, the model that
    answered, every attempt (the fallback path and retries), tokens, cost, time to
    first token and finish reason."""
    payload: dict[str, Any] = {"input": input, "output": output, "llm": llm}
    if error is not None:
        payload.update(error)
    return inference_record(
        action=action,
        service=service,
        version=version,
        status=status,
        decision=decision,
        payload=payload,
        ts_us=ts_us,
        latency_ms=latency_ms,
        caller=caller,
        record_id=record_id,
    )
