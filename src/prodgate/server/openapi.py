"""The OpenAPI document, built from the spec so each service's contract is in it."""

from __future__ import annotations

from typing import Any

from prodgate import __version__
from prodgate.spec import Spec

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem_responses(*codes: int) -> dict[str, Any]:
    return {
        str(c): {
            "description": "problem",
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        }
        for c in codes
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_S = "/v1/services/{service}"
_ADMIN: tuple[tuple[str, str, str], ...] = (
    (f"{_S}/versions", "get", "Versions with approvals and evaluation verdicts"),
    (f"{_S}/versions/{{version}}/evaluate", "post", "Evaluate a version on a server-side file"),
    (f"{_S}/versions/{{version}}/approve", "post", "Approve a version"),
    (f"{_S}/deployment", "get", "The traffic split"),
    (f"{_S}/deploy", "post", "Send all traffic to an approved version"),
    (f"{_S}/rollback", "post", "Put the previous production version back"),
    (f"{_S}/disable", "post", "Kill switch on"),
    (f"{_S}/enable", "post", "Kill switch off"),
    (f"{_S}/shadow", "post", "Run a version in shadow (or stop)"),
    (f"{_S}/rollout", "post", "Start a canary rollout"),
    (f"{_S}/rollout", "get", "The rollout's status and last checks"),
    (f"{_S}/rollout/{{action}}", "post", "Pause, resume, abort or confirm the rollout"),
    (f"{_S}/history", "get", "Every governance action"),
    (f"{_S}/metrics", "get", "Production metrics per version (?window=1h)"),
)


#: The optional key of sticky routing (the X-Routing-Key header works too).
ROUTING_KEY: dict[str, Any] = {
    "type": "string",
    "description": "the same key always reaches the same version while the split stands",
}


def build(spec: Spec) -> dict[str, Any]:
    schemas: dict[str, Any] = {
        "Problem": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "instance": {"type": "string"},
                "id": {"type": "string", "description": "audit record of the refused request"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        },
        "Decision": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "service": {"type": "string"},
                "version": {"type": "integer"},
                "prediction": {},
                "probabilities": {"type": ["object", "null"]},
                "confidence": {"type": ["number", "null"]},
                "decision": {"enum": ["auto", "escalated"]},
                "latency_ms": {"type": "number"},
            },
        },
    }
    paths: dict[str, Any] = {
        "/healthz": {"get": {"summary": "Alive", "responses": {"200": {"description": "alive"}}}},
        "/readyz": {
            "get": {
                "summary": "Ready: models loaded and the store answers",
                "responses": {"200": {"description": "ready"}, **_problem_responses(503)},
            }
        },
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
        },
        "/v1/services": {
            "get": {"summary": "Services", "responses": {"200": {"description": "list"}}}
        },
        "/v1/services/{service}": {
            "get": {
                "summary": "One service: owner, contract, deployed version, example input",
                "parameters": [
                    {
                        "name": "service",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {"200": {"description": "service"}, **_problem_responses(404)},
            }
        },
        "/v1/inferences/{id}": {
            "get": {
                "summary": "The stored record of one decision",
                "parameters": [
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": {"200": {"description": "record"}, **_problem_responses(404)},
            }
        },
    }
    paths["/v1/inferences/{id}/feedback"] = {
        "post": {
            "summary": "The true label (or value) of a past decision",
            "parameters": [_path_param("id")],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {
                                "label": {},
                                "value": {"type": "number"},
                                "source": {"type": "string"},
                                "observed_at": {"type": ["string", "number"]},
                            },
                        }
                    }
                },
            },
            "responses": {"201": {"description": "stored"}, **_problem_responses(404, 409, 422)},
        }
    }
    for route, method, summary in _ADMIN:
        entry = {
            "summary": summary + " (admin)",
            "security": [{"admin": []}],
            "parameters": [
                _path_param(p) for p in ("service", "version", "action") if "{" + p + "}" in route
            ],
            "responses": {
                "200": {"description": "done"},
                **_problem_responses(401, 403, 404, 409, 422),
            },
        }
        paths.setdefault(route, {})[method] = entry
    for name, service in spec.services.items():
        key = "Input_" + name.replace("-", "_")
        schemas[key] = service.contract
        paths[f"/v1/services/{name}/predict"] = {
            "post": {
                "summary": f"Predict with {name}"
                + (f": {service.description}" if service.description else ""),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "required": ["inputs"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "inputs": {"$ref": f"#/components/schemas/{key}"},
                                            "routing_key": ROUTING_KEY,
                                        },
                                    },
                                    {
                                        "type": "object",
                                        "required": ["instances"],
                                        "additionalProperties": False,
                                        "properties": {
                                            "instances": {
                                                "type": "array",
                                                "minItems": 1,
                                                "items": {"$ref": f"#/components/schemas/{key}"},
                                            },
                                            "routing_key": ROUTING_KEY,
                                        },
                                    },
                                ]
                            }
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "one decision (inputs) or {predictions: [...]} (instances)",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "oneOf": [
                                        {"$ref": "#/components/schemas/Decision"},
                                        {
                                            "type": "object",
                                            "required": ["predictions"],
                                            "properties": {
                                                "predictions": {
                                                    "type": "array",
                                                    "items": {
                                                        "$ref": "#/components/schemas/Decision"
                                                    },
                                                }
                                            },
                                        },
                                    ]
                                }
                            }
                        },
                    },
                    **_problem_responses(400, 404, 413, 415, 422, 500, 503),
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "prodgate gateway", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }
