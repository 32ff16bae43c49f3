"""The claims-letter service and its providers in the demo's ``prodgate.yaml``.

Two providers, both served by the bundled mock LLM (the demo starts it and writes its
address here with :func:`point_at_mock`): ``primary`` with a large and a small model,
and ``backup`` with a large one, the fallback when a primary model fails. Prices are
USD per million tokens; the small model is about 8x cheaper than the large.

The service takes a claimant's message (:data:`CONTRACT`), answers with its category
and a drafted reply (:data:`OUTPUT`), and must be right on fraud signals apart from
overall (:data:`GATES`): a model that misses every one of them can still be accurate
on the whole inbox.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from prodgate.examples.claims_letter.generate import CATEGORIES, REVIEWED

#: The service's name in the spec and the registry.
SERVICE = "claims-letter"
#: The providers the example declares (both point at the mock LLM).
PROVIDERS: tuple[str, ...] = ("primary", "backup")
#: Where the providers point until the demo writes the address of the mock it started:
#: ``prodgate mock-llm``'s default port.
DEFAULT_MOCK_URL = "http://127.0.0.1:9100/v1"

#: The large model's price, and the small one's (8.3x cheaper on every token).
LARGE = {"input": 5.0, "output": 15.0}
SMALL = {"input": 0.6, "output": 1.8}

#: One valid request (the contract's example, and the demo's curl line).
EXAMPLE: dict[str, Any] = {
    "message": "Is there any update on my claim for the roof? I sent the photos last week.",
    "policy_id": "POL-104233",
    "claim_amount": 3200.0,
}

#: The input contract: the template's variables.
CONTRACT: dict[str, Any] = {
    "type": "object",
    "required": ["message", "policy_id", "claim_amount"],
    "properties": {
        "message": {"type": "string", "minLength": 1, "maxLength": 4000},
        "policy_id": {"type": "string", "pattern": "^POL-[0-9]{6}$"},
        "claim_amount": {"type": "number", "minimum": 0, "maximum": 10_000_000},
        # Cohorts are conditions over input fields, so the evaluation cases carry the
        # claims team's category in one (the fraud cohort). No prompt uses it, and
        # production requests leave it out.
        REVIEWED: {
            "enum": list(CATEGORIES),
            "description": "The claims team's category of a past message (evaluation only).",
        },
    },
    "examples": [EXAMPLE],
}

#: The structured answer every prompt version asks for (``response_format: json_schema``).
OUTPUT: dict[str, Any] = {
    "type": "object",
    "required": ["category", "reply"],
    "additionalProperties": False,
    "properties": {
        "category": {"enum": list(CATEGORIES)},
        "reply": {"type": "string", "minLength": 1},
    },
}

#: Gates on the evaluation cases. Fraud signals are a tenth of the inbox: the third gate
#: is what stops a model that misses them all.
GATES: tuple[str, ...] = (
    "json_valid >= 0.99",
    "accuracy >= 0.85",
    "accuracy >= 0.9 on fraud",
    "cost_per_call <= 0.002",
)

#: Canary policy: short intervals so that the story runs in seconds, with enough calls
#: in each that a few slow ones do not move the p95.
ROLLOUT: dict[str, Any] = {
    "steps": [25, 50, 100],
    "interval_s": 4,
    "min_requests": 40,
    "failure_threshold": 2,
    "max_idle_intervals": 4,
    "checks": {
        "max_error_rate_increase": 0.01,
        # A call that meets a failing model and falls back takes two or three round
        # trips instead of one: an outage may slow a canary's tail this much.
        "max_p95_latency_ratio": 2.5,
        "max_ttft_ratio": 2.5,
        "max_cost_increase": 0.25,
        "max_accuracy_drop": 0.05,
        "min_feedback": 30,
    },
}


#: The service's rails: injections and secrets stopped at the door, card, IBAN and SSN
#: numbers redacted before the model sees them; on the way out, a leaked system prompt
#: blocked (streams included) and PII or secrets the question did not hold redacted.
GUARD: dict[str, Any] = {
    "input": {
        "injection": "block",
        "secrets": "redact",
        "pii": {"action": "redact", "kinds": ["card", "iban", "ssn"]},
    },
    "output": {"leak": "block", "secrets": "redact", "pii": "redact"},
}


def providers_document(url: str = DEFAULT_MOCK_URL) -> dict[str, Any]:
    """The ``providers:`` section: both providers at *url* (the mock LLM)."""
    return {
        "primary": {
            "base_url": url,
            # Opens after 3 failures in 10 s that are half its calls there or more;
            # lets a probe through 2 s later.
            "breaker": {"failures": 3, "failure_rate": 0.5, "window_s": 10, "cooldown_s": 2},
            "models": {"large": dict(LARGE), "small": dict(SMALL)},
        },
        "backup": {
            "base_url": url,
            "breaker": {"failures": 3, "failure_rate": 0.5, "window_s": 10, "cooldown_s": 2},
            "models": {"large": dict(LARGE)},
        },
    }


def service_document() -> dict[str, Any]:
    """The claims-letter service's section of ``prodgate.yaml``."""
    return {
        "description": "Sort a claimant's message and draft the reply letter.",
        "owner": {"name": "Claims Operations", "contact": "claims-ops@example.com"},
        "kind": "llm",
        "labels": list(CATEGORIES),
        "contract": {"input": copy.deepcopy(CONTRACT), "output": copy.deepcopy(OUTPUT)},
        "llm": {
            "fallbacks": ["backup/large"],
            "retry": {"attempts": 1, "backoff_ms": 10, "max_backoff_ms": 50},
            "timeouts": {"connect_ms": 1000, "first_token_ms": 10_000, "total_ms": 20_000},
            "max_tokens": 300,
            "budgets": {"day": 50},
        },
        "guard": copy.deepcopy(GUARD),
        "cohorts": {"fraud": {"where": f"{REVIEWED} == 'fraud_signal'"}},
        "gates": list(GATES),
        "approvals": {"required": 2, "separation_of_duties": True},
        "rollout": copy.deepcopy(ROLLOUT),
    }


def add_to(document: dict[str, Any], url: str = DEFAULT_MOCK_URL) -> dict[str, Any]:
    """*document* (a spec as a dict) with the example's providers and service added
    where it lacks them; what it has is kept."""
    providers = document.get("providers") or {}
    for name, section in providers_document(url).items():
        providers.setdefault(name, section)
    services = document.get("services") or {}
    services.setdefault(SERVICE, service_document())
    # Providers before services, as a person would write them.
    rest = {k: v for k, v in document.items() if k not in ("version", "providers", "services")}
    head = {"version": document["version"]} if "version" in document else {}
    ordered = {**head, "providers": providers, "services": services, **rest}
    document.clear()
    document.update(ordered)
    return document


def _is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def point_at_mock(path: Path, url: str) -> bool:
    """Point the example's providers in the spec at *path* to the mock LLM at *url*,
    adding the service and providers when the spec lacks them (a demo home made
    before the example had them). A provider moved off this machine by hand is left
    alone. The spec's comment header is kept; True when the file changed."""
    text = path.read_text(encoding="utf-8")
    document = yaml.safe_load(text) or {}
    before = copy.deepcopy(document)
    add_to(document, url)
    for name in PROVIDERS:
        section = document["providers"].get(name)
        if isinstance(section, dict) and _is_loopback(str(section.get("base_url", ""))):
            section["base_url"] = url
    if document == before:
        return False
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=88)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_leading_comments(text) + body, encoding="utf-8")
    tmp.replace(path)
    return True


def _leading_comments(text: str) -> str:
    """The comment lines at the top of *text*."""
    out = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        out.append(line)
    return "".join(out)
