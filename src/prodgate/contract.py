"""The input contract: a JSON Schema compiled once, checked on every request.

Validation uses jsonschema-rs (compiled, in Rust): about half a microsecond for a
valid row, so the check costs nothing next to the model. Every violation is listed
with its JSON Pointer, as RFC 9457 clients expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jsonschema_rs

from prodgate.exceptions import Violation


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer(prefix: str, parts: list[Any]) -> str:
    return prefix + "".join("/" + _escape(str(p)) for p in parts)


class Contract:
    """A compiled input contract."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator = jsonschema_rs.validator_for(schema)
        self.fields: list[str] = list(schema.get("properties", {}))

    def is_valid(self, row: Any) -> bool:
        return bool(self._validator.is_valid(row))

    def violations(self, row: Any, prefix: str) -> Iterator[Violation]:
        """Every violation in *row*, with paths under *prefix* (``/inputs``, ...)."""
        for err in self._validator.iter_errors(row):
            kind = type(err.kind).__name__
            detail: Any = err.kind  # a variant class; its fields depend on the kind
            parts = list(err.instance_path)
            if kind == "Required":
                yield Violation(
                    pointer(prefix, [*parts, detail.property]), "required field is missing"
                )
            elif kind == "AdditionalProperties":
                for name in sorted(detail.unexpected):
                    yield Violation(pointer(prefix, [*parts, name]), "unknown field")
            else:
                yield Violation(pointer(prefix, parts), _message(err))

    def example(self) -> dict[str, Any]:
        """An input that passes the contract: the schema's first example, else one made
        from each field's examples, default, enum, const or bounds."""
        for candidate in self.schema.get("examples", []) or []:
            if self.is_valid(candidate):
                return dict(candidate)
        required = set(self.schema.get("required", []))
        row: dict[str, Any] = {}
        for name, prop in self.schema.get("properties", {}).items():
            value = _example_value(prop)
            # An optional field whose made-up value would not pass (a pattern, say) is left out.
            if name in required or jsonschema_rs.is_valid(prop, value):
                row[name] = value
        return row


def _message(err: Any) -> str:
    msg: str = err.message
    return msg if len(msg) <= 200 else msg[:197] + "..."


def _example_value(prop: dict[str, Any]) -> Any:
    for key in ("examples",):
        if prop.get(key):
            return prop[key][0]
    if "default" in prop:
        return prop["default"]
    if "const" in prop:
        return prop["const"]
    if prop.get("enum"):
        return prop["enum"][0]
    types = prop.get("type", "string")
    t = next((x for x in types if x != "null"), "null") if isinstance(types, list) else types
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if t == "integer":
        if low is not None and high is not None:
            return int((low + high) // 2)
        return int(low if low is not None else (high if high is not None and high < 0 else 0)) + (
            1 if "exclusiveMinimum" in prop else 0
        )
    if t == "number":
        if low is not None and high is not None:
            return (float(low) + float(high)) / 2
        return float(low if low is not None else 0.0) + (1.0 if "exclusiveMinimum" in prop else 0)
    if t == "boolean":
        return False
    if t == "array":
        return []
    if t == "object":
        return {}
    if t == "null":
        return None
    return "x" * int(prop.get("minLength", 1))
