"""The JSON Schema of ``prodgate.yaml``, compiled once when the spec loads."""

from __future__ import annotations

from typing import Any

from prodgate.spec.costs import OUTCOMES
from prodgate.spec.features import FEATURES_SCHEMA, SERVICE_FEATURES_SCHEMA
from prodgate.spec.guard import GUARD_SCHEMA
from prodgate.spec.monitor import MONITOR_SCHEMA
from prodgate.spec.policy import Checks
from prodgate.spec.review import REVIEW_SCHEMA

SERVICE_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
PROVIDER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
MODEL_REF = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}/.+$"

JSON_TYPES = ["object", "array", "string", "number", "integer", "boolean", "null"]

#: JSON Schema fragments for the spec's service object.
POLICY_SCHEMA: dict[str, Any] = {
    "business": {
        "type": "object",
        "additionalProperties": False,
        "required": ["costs"],
        "properties": {
            "positive": {"type": ["string", "integer", "boolean"]},
            "costs": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    o: {
                        "oneOf": [
                            {"type": "number"},
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "amount": {"type": "number"},
                                    "rate": {"type": "number"},
                                    "of": {"type": "string"},
                                },
                            },
                        ]
                    }
                    for o in OUTCOMES
                },
            },
        },
    },
    "cohorts": {
        "type": "object",
        "propertyNames": {"pattern": r"^[a-z0-9_][a-z0-9_-]*$"},
        "additionalProperties": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["where"],
                    "additionalProperties": False,
                    "properties": {"where": {"type": "string"}},
                },
                {
                    "type": "object",
                    "required": ["by"],
                    "additionalProperties": False,
                    "properties": {"by": {"type": "string"}},
                },
            ]
        },
    },
    "gates": {"type": "array", "items": {"type": "string"}},
    "approvals": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "required": {"type": "integer", "minimum": 1, "maximum": 10},
            "separation_of_duties": {"type": "boolean"},
        },
    },
    "rollout": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "steps": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            },
            "interval_s": {"type": "number", "exclusiveMinimum": 0},
            "min_requests": {"type": "integer", "minimum": 1},
            "failure_threshold": {"type": "integer", "minimum": 1},
            "max_idle_intervals": {"type": "integer", "minimum": 1},
            "manual_gate": {"type": "boolean"},
            "checks": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    **{
                        name: {
                            "type": "number" if name != "min_feedback" else "integer",
                            "minimum": 0,
                        }
                        for name in Checks.__dataclass_fields__
                    },
                    "confidence": {"type": "number", "minimum": 0, "exclusiveMaximum": 1},
                },
            },
        },
    },
}

_MS = {"type": "number", "exclusiveMinimum": 0, "maximum": 86_400_000}
_USD = {"type": "number", "minimum": 0, "maximum": 1_000_000_000}

PROVIDER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["base_url", "models"],
    "additionalProperties": False,
    "properties": {
        "base_url": {"type": "string", "pattern": "^https?://"},
        "api_key_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "max_connections": {"type": "integer", "minimum": 1, "maximum": 100_000},
        "breaker": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "failures": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
                "window_s": {"type": "number", "exclusiveMinimum": 0},
                "cooldown_s": {"type": "number", "exclusiveMinimum": 0},
                "failure_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            },
        },
        "models": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["input", "output"],
                "additionalProperties": False,
                "properties": {"input": _USD, "output": _USD, "cached_input": _USD},
            },
        },
    },
}

LLM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "fallbacks": {"type": "array", "items": {"type": "string", "pattern": MODEL_REF}},
        "retry": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "attempts": {"type": "integer", "minimum": 0, "maximum": 10},
                "backoff_ms": {"type": "number", "minimum": 0, "maximum": 600_000},
                "max_backoff_ms": {"type": "number", "minimum": 0, "maximum": 600_000},
            },
        },
        "timeouts": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"connect_ms": _MS, "first_token_ms": _MS, "total_ms": _MS},
        },
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 10_000_000},
        "budgets": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"day": _USD, "month": _USD},
        },
        "judge": {"type": "string", "pattern": MODEL_REF},
    },
}

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["services"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": 1},
        "providers": {
            "type": "object",
            "propertyNames": {"pattern": PROVIDER_NAME},
            "additionalProperties": {"$ref": "#/$defs/provider"},
        },
        "features": FEATURES_SCHEMA,
        "services": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": SERVICE_NAME},
            "additionalProperties": {"$ref": "#/$defs/service"},
        },
    },
    "$defs": {
        "provider": PROVIDER_SCHEMA,
        "service": {
            "type": "object",
            "required": ["owner", "kind", "contract"],
            "additionalProperties": False,
            "properties": {
                "description": {"type": "string"},
                "owner": {
                    "type": "object",
                    "required": ["name", "contact"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "contact": {"type": "string", "minLength": 3},
                    },
                },
                "kind": {"enum": ["classifier", "regressor", "llm"]},
                "llm": LLM_SCHEMA,
                "guard": GUARD_SCHEMA,
                "monitor": MONITOR_SCHEMA,
                "features": SERVICE_FEATURES_SCHEMA,
                "review": REVIEW_SCHEMA,
                "labels": {
                    "type": "array",
                    "minItems": 2,
                    "uniqueItems": True,
                    "items": {"type": ["string", "integer", "boolean"]},
                },
                "contract": {
                    "type": "object",
                    "required": ["input"],
                    "additionalProperties": False,
                    "properties": {
                        "input": {"type": "object"},
                        "output": {"type": "object"},
                    },
                },
                "escalation": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "confidence_below": {"type": "number", "minimum": 0, "maximum": 1},
                    },
                },
                "batching": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "max_batch_size": {"type": "integer", "minimum": 1, "maximum": 4096},
                        "max_wait_ms": {"type": "number", "minimum": 0, "maximum": 1000},
                    },
                },
                "public": {"type": "boolean"},
                "limits": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        name: {"type": "integer", "minimum": 1, "maximum": 1_000_000_000}
                        for name in (
                            "rps",
                            "rpm",
                            "rows_per_minute",
                            "concurrency",
                            "tokens_per_minute",
                        )
                    },
                },
                **POLICY_SCHEMA,
            },
        },
    },
}
