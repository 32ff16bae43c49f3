"""A service's guard policy as ``prodgate.yaml`` declares it: which detectors run on
the way in and on the way out, each with a threshold and an action.

::

    guard:
      input:
        injection: block                  # shorthand: the action
        pii: {action: redact, kinds: [card, iban, ssn]}
        secrets: redact
      output:
        leak: block                       # the canary planted in the prompt, or its text
        secrets: redact
        pii: {action: redact, new_only: true}
        banned: {action: block, terms: ["guaranteed payout"]}
      fields: [notes]                     # classic services: the string fields scanned
      hold_back: 256                      # characters a stream holds back for the scan

A service of kind ``llm`` without a ``guard`` section gets :data:`DEFAULT_LLM`;
``guard: off`` turns every rail off. Other kinds have no rails unless declared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

BLOCK, REDACT, ESCALATE, LOG = "block", "redact", "escalate", "log"
ACTIONS = (BLOCK, REDACT, ESCALATE, LOG)
INPUT, OUTPUT = "input", "output"
DIRECTIONS = (INPUT, OUTPUT)

#: Detectors a policy may name, and the options each takes beyond the common ones
#: (action, threshold, kinds).
OPTIONS: dict[str, dict[str, Any]] = {
    "injection": {},
    "pii": {"new_only": {"type": "boolean"}},
    "secrets": {"new_only": {"type": "boolean"}, "entropy": {"type": "boolean"}},
    "leak": {
        "canary": {"type": "boolean"},
        "words": {"type": "integer", "minimum": 4, "maximum": 200},
    },
    "banned": {
        "terms": {"type": "array", "items": {"type": "string", "minLength": 1}},
        "topics": {
            "type": "object",
            "additionalProperties": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "minLength": 1},
            },
        },
    },
    "schema": {},
    "onnx": {
        "path": {"type": "string", "minLength": 1},
        "tokenizer": {"type": "string", "minLength": 1},
        "label": {"type": ["integer", "string"]},
        "max_length": {"type": "integer", "minimum": 8, "maximum": 8192},
        "budget_ms": {"type": "number", "exclusiveMinimum": 0, "maximum": 60000},
        "category": {"type": "string"},
        "threads": {"type": "integer", "minimum": 1, "maximum": 64},
    },
    "presidio": {
        "entities": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "model": {"type": "string", "minLength": 1},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
}

#: Detectors that only make sense on an answer.
OUTPUT_ONLY = frozenset({"leak", "schema"})
#: Options a detector needs.
REQUIRED = {"onnx": ["path"]}


def _rule_schema(name: str) -> dict[str, Any]:
    options = {
        "action": {"enum": list(ACTIONS)},
        "threshold": {"type": "number", "minimum": 0, "maximum": 1},
        "kinds": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        **OPTIONS[name],
    }
    # if/then/else rather than oneOf: a mistake is then reported on its own field.
    return {
        "type": ["string", "object"],
        "if": {"type": "string"},
        "then": {"enum": list(ACTIONS)},
        "else": {
            "type": "object",
            "additionalProperties": False,
            "required": ["action", *REQUIRED.get(name, [])],
            "properties": options,
        },
    }


def _direction_schema(names: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: _rule_schema(name) for name in names},
    }


GUARD_SCHEMA: dict[str, Any] = {
    "type": ["string", "boolean", "object"],
    "if": {"type": "object"},
    "then": {
        "additionalProperties": False,
        "properties": {
            INPUT: _direction_schema([n for n in OPTIONS if n not in OUTPUT_ONLY]),
            OUTPUT: _direction_schema(list(OPTIONS)),
            "fields": {"type": "array", "items": {"type": "string"}},
            "hold_back": {"type": "integer", "minimum": 16, "maximum": 65536},
        },
    },
    "else": {"enum": ["off", False]},
}


@dataclass(frozen=True)
class Rule:
    """One detector of a policy, with what to do with what it finds."""

    detector: str
    action: str
    threshold: float = 0.5
    kinds: tuple[str, ...] | None = None
    #: Output PII or secrets: only what the input did not hold.
    new_only: bool = False
    #: The detector's own options (terms, the ONNX model's path, ...).
    options: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detector": self.detector, "action": self.action}
        out["threshold"] = self.threshold
        if self.kinds:
            out["kinds"] = list(self.kinds)
        if self.new_only:
            out["new_only"] = True
        out.update(self.options)
        return out


@dataclass(frozen=True)
class GuardSpec:
    """A service's rails on both sides of the model."""

    input: tuple[Rule, ...] = ()
    output: tuple[Rule, ...] = ()
    #: Classic services: the string fields scanned (None: every string field).
    fields: tuple[str, ...] | None = None
    hold_back: int = 256

    @property
    def on(self) -> bool:
        return bool(self.input or self.output)

    def rules(self, direction: str) -> tuple[Rule, ...]:
        return self.input if direction == INPUT else self.output


OFF = GuardSpec()

#: The rails of an LLM service that declares none: injections and secrets stopped at
#: the door, PII noted (and kept out of the audit log), a leaked system prompt blocked
#: and secrets the model makes up redacted on the way out.
DEFAULT_LLM = GuardSpec(
    input=(Rule("injection", BLOCK), Rule("secrets", REDACT), Rule("pii", LOG)),
    output=(Rule("leak", BLOCK), Rule("secrets", REDACT, new_only=True)),
)


def build(
    raw: Any, kind: str, string_fields: Sequence[str]
) -> tuple[GuardSpec, tuple[str, ...], str]:
    """The guard of a service (its ``guard`` section, already schema-checked), or where
    and what is wrong with it."""
    if raw is None:
        return (DEFAULT_LLM if kind == "llm" else OFF), (), ""
    if raw in ("off", False):
        return OFF, (), ""
    fields = raw.get("fields")
    if fields is not None:
        if kind == "llm":
            return (
                OFF,
                ("guard", "fields"),
                "an llm service's guard scans its messages; fields are for other kinds",
            )
        unknown = [f for f in fields if f not in string_fields]
        if unknown:
            return (
                OFF,
                ("guard", "fields"),
                f"{', '.join(unknown)} is not a string field of the input contract "
                f"(string fields: {', '.join(string_fields) or 'none'})",
            )
    directions: dict[str, tuple[Rule, ...]] = {}
    for direction in DIRECTIONS:
        rules = []
        for name, value in (raw.get(direction) or {}).items():
            rule = _rule(name, value, direction)
            if name == "leak" and kind != "llm":
                return OFF, ("guard", direction, name), "leak rails need a prompt: kind llm"
            if name == "banned" and not (rule.options.get("terms") or rule.options.get("topics")):
                return OFF, ("guard", direction, name), "banned needs terms or topics"
            why = _unknown_kinds(rule)
            if why:
                return OFF, ("guard", direction, name, "kinds"), why
            rules.append(rule)
        directions[direction] = tuple(rules)
    return (
        GuardSpec(
            input=directions[INPUT],
            output=directions[OUTPUT],
            fields=tuple(fields) if fields is not None else None,
            hold_back=int(raw.get("hold_back", 256)),
        ),
        (),
        "",
    )


def text_fields(contract: Mapping[str, Any]) -> list[str]:
    """The input contract's free-text fields: those whose values may be text, other
    than a fixed set of values (an enum)."""
    fields = []
    for name, schema in contract.get("properties", {}).items():
        if not isinstance(schema, dict) or "enum" in schema or "const" in schema:
            continue
        types = schema.get("type")
        if types == "string" or (isinstance(types, list) and "string" in types):
            fields.append(name)
    return fields


def _unknown_kinds(rule: Rule) -> str:
    """What is wrong with a rule's kinds, if it names one its detector does not know."""
    if rule.kinds is None or rule.detector not in ("pii", "secrets"):
        return ""
    from prodgate.guard import pii, secrets

    known: tuple[str, ...] = pii.KINDS if rule.detector == "pii" else secrets.KINDS
    unknown = [k for k in rule.kinds if k not in known]
    if not unknown:
        return ""
    return f"unknown kind {', '.join(unknown)}; {rule.detector} knows {', '.join(sorted(known))}"


def _rule(name: str, value: Any, direction: str) -> Rule:
    if isinstance(value, str):
        value = {"action": value}
    options = {
        k: v for k, v in value.items() if k not in ("action", "threshold", "kinds", "new_only")
    }
    new_only = value.get("new_only")
    if new_only is None:  # on the way out, PII and secrets are those the input did not hold
        new_only = direction == OUTPUT and name in ("pii", "secrets")
    kinds = value.get("kinds")
    return Rule(
        detector=name,
        action=value["action"],
        threshold=float(value.get("threshold", 0.5)),
        kinds=tuple(kinds) if kinds else None,
        new_only=bool(new_only),
        options=options,
    )
