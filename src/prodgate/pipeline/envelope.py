"""The parse stage: a predict body's JSON and its envelope.

A body is ``{"inputs": {...}}`` for one row or ``{"instances": [...]}`` for many, with
an optional ``routing_key``. This stage only reads the envelope; whether each row
meets the service's contract is :mod:`prodgate.pipeline.validation`'s job.
"""

from __future__ import annotations

from typing import Any

import orjson

from prodgate.exceptions import ContractViolationError, MalformedJSONError, Violation
from prodgate.pipeline.exchange import Exchange

MAX_NESTING = 32  # levels of arrays and objects a request body may have
ENVELOPE_FIELDS = frozenset({"inputs", "instances", "routing_key"})
_SHAPE = 'the body must be an object: {"inputs": {...}} or {"instances": [...]}'


def parse(ex: Exchange, max_rows: int) -> None:
    """Parse *ex*'s body into its payload and rows; raise what is wrong with the envelope."""
    body = ex.body
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSONError(f"the body is not JSON: {exc}") from None
    if body.count(b"{") + body.count(b"[") > MAX_NESTING and _deeper_than(payload, MAX_NESTING):
        # The validator and the audit log's JSON stop at a few hundred levels; no input
        # row needs more than a few. The record keeps the raw text (payload not set).
        raise ContractViolationError(
            [Violation("", f"the body is nested deeper than {MAX_NESTING} levels")]
        )
    ex.payload, ex.parsed = payload, True
    if type(payload) is not dict:
        raise ContractViolationError([Violation("", _SHAPE)])
    violations: list[Violation] = []
    if not ENVELOPE_FIELDS.issuperset(payload):
        extra = sorted(set(payload) - ENVELOPE_FIELDS)
        violations.extend(Violation(f"/{k}", "unknown field") for k in extra)
    key = payload.get("routing_key")
    if key is not None:  # null means "no key", as leaving it out does
        if isinstance(key, str):
            ex.routing_key = key
        else:
            violations.append(Violation("/routing_key", "must be a string"))
    if "inputs" in payload:
        if "instances" in payload:
            violations.append(Violation("", _ONE_OF))
            raise ContractViolationError(violations)
        ex.rows, ex.single = [payload["inputs"]], True
    elif "instances" in payload:
        rows = payload["instances"]
        if type(rows) is not list or not rows:
            violations.append(Violation("/instances", "must be a non-empty array of rows"))
        elif len(rows) > max_rows:
            violations.append(Violation("/instances", f"at most {max_rows} rows per request"))
        else:
            ex.rows, ex.single = rows, False
    else:
        violations.append(Violation("", _ONE_OF))
    if violations:
        raise ContractViolationError(violations)


_ONE_OF = 'give exactly one of "inputs" (one row) or "instances" (many rows)'


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
