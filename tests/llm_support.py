"""An LLM service in front of the mock LLM, for the gateway's tests: spec, prompt versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from prodgate import spec as spec_module
from prodgate.audit import verify
from prodgate.registry import approvals, versions
from prodgate.rollout import split as deployments
from prodgate.settings import Settings
from prodgate.store.engine import open_store

#: What the mock answers: a label by keyword, and the small model misses fraud.
MOCK_CONFIG: dict[str, Any] = {
    "models": {"small": {"misses": ["fraud_signal"]}, "large": {}, "bare": {"usage": False}},
    "rules": [
        {"contains": ["fraud", "staged"], "label": "fraud_signal"},
        {"contains": ["status", "update"], "label": "status_question"},
        {"contains": ["angry", "complain"], "label": "complaint"},
    ],
    "default_label": "new_claim",
}

LABELS = ["complaint", "new_claim", "status_question", "fraud_signal"]


def llm_spec(mock_url: str, *, budgets: str = "", limits: str = "", extra: str = "") -> str:
    """A spec with one LLM service, ``letter``, whose models are all the mock's: the
    primary provider's small and bare models, and the backup provider's large one."""
    return f"""\
version: 1
providers:
  primary:
    base_url: {mock_url}
    breaker: {{failures: 3, window_s: 30, cooldown_s: 0.3}}
    models:
      small: {{input: 0.6, output: 1.8}}
      bare: {{input: 1.0, output: 2.0}}
  backup:
    base_url: {mock_url}
    models:
      large: {{input: 5.0, output: 15.0, cached_input: 2.5}}
services:
  letter:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: llm
    labels: {LABELS}
    contract:
      input:
        type: object
        required: [message]
        properties:
          message: {{type: string, maxLength: 2000}}
          amount: {{type: number, minimum: 0}}
      output:
        type: object
        required: [category, reply]
        properties:
          category: {{enum: {LABELS}}}
          reply: {{type: string}}
    llm:
      fallbacks: [backup/large]
      retry: {{attempts: 1, backoff_ms: 1, max_backoff_ms: 5}}
      timeouts: {{connect_ms: 1000, first_token_ms: 2000, total_ms: 5000}}
      max_tokens: 64
{budgets}{limits}{extra}"""


PROMPT = """\
model: {model}
messages:
  - {{role: system, content: "Sort the claimant's message into one category and draft a reply."}}
  - {{role: user, content: "{{{{ message }}}}"}}
parameters: {{temperature: 0, max_tokens: 48}}
response_format: {fmt}
"""


def write_prompt(
    directory: Path, name: str, model: str = "primary/small", fmt: str = "json_schema"
) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(PROMPT.format(model=model, fmt=fmt))
    return path


def register_prompt(settings: Settings, path: Path, *, deploy: bool = True) -> int:
    """Register *path* as the next version of ``letter``, approve it (gates
    overridden) and, with *deploy*, deploy it."""
    spec = spec_module.load(settings.config)
    service = spec.service("letter")
    store = open_store(settings)
    try:
        v = versions.register(store, service, str(path), actor="author")
        approvals.approve(
            store, service, v.number, by="approver", override_gates=True, reason="a test prompt"
        )
        if deploy:
            deployments.deploy(store, service, v.number, actor="tester")
        return v.number
    finally:
        store.dispose()


def inference_records(settings: Settings) -> list[dict[str, Any]]:
    """Every inference record in the log, oldest first: id, status, decision, actor and
    the payload parsed."""
    store = open_store(settings)
    try:
        with store.read() as conn:
            rows = conn.exec_driver_sql(
                "SELECT id, status, decision, actor, payload FROM audit_log "
                "WHERE kind = 'inference' ORDER BY seq"
            ).all()
        return [
            {
                "id": r[0],
                "status": r[1],
                "decision": r[2],
                "actor": r[3],
                "payload": orjson.loads(r[4]),
            }
            for r in rows
        ]
    finally:
        store.dispose()


def verified(settings: Settings) -> None:
    """The audit chain verifies."""
    store = open_store(settings)
    try:
        assert verify.verify(store).ok
    finally:
        store.dispose()
