"""The claims-triage service's input contract, its feature views and ``prodgate.yaml``.

:data:`CONTRACT` is the JSON Schema every request row must satisfy: the claim's own
facts and its ``policy_id``. It is strict: every field is required, no other field is
allowed, the claim types and regions are closed enums, and ``police_report`` may not be
null. So the shifts that :func:`~prodgate.examples.claims_triage.generate.generate` can
make (a new ``cyber`` claim type, an empty ``police_report``) are contract violations in
production.

The model also reads three facts of the policy, which callers do not send: the gateway
looks them up by ``policy_id`` in two feature views (:data:`VIEWS`). ``policy`` (the
policy system) has ``policy_age_years``, without a default (a claim on a policy the
view does not know is refused with a 422), and ``prior_claims`` (0 when unknown);
``policyholder`` (the CRM) has ``customer_age``, which is null when the CRM's row is
older than 30 days, as a missing age always was: only monitoring sees it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from prodgate.examples.claims_letter import spec as letter_spec
from prodgate.examples.claims_triage.generate import (
    CALLER_FIELDS,
    CLAIM_TYPES,
    HIGH_VALUE,
    LABELS,
    POLICY_FEATURES,
    POLICY_ID,
    POLICYHOLDER_FEATURES,
    REGIONS,
)

#: The service's name in the spec and the registry.
SERVICE = "claims-triage"

#: The policy of the example request: in the feature sources the demo writes.
EXAMPLE_POLICY: dict[str, Any] = {
    POLICY_ID: "POL-EXAMPLE",
    "policy_age_years": 3,
    "prior_claims": 1,
    "customer_age": 41,
}

#: One valid request row (the contract's example, and the demo's curl line).
EXAMPLE_ROW: dict[str, Any] = {
    "claim_amount": 4250.0,
    "claim_type": "auto",
    "region": "north",
    POLICY_ID: EXAMPLE_POLICY[POLICY_ID],
    "days_to_report": 2,
    "police_report": True,
}

#: The input contract (JSON Schema) of the claims-triage service: what callers send.
CONTRACT: dict[str, Any] = {
    "type": "object",
    "required": list(CALLER_FIELDS),
    "additionalProperties": False,
    "properties": {
        "claim_amount": {"type": "number", "minimum": 0, "maximum": 10_000_000},
        "claim_type": {"type": "string", "enum": list(CLAIM_TYPES)},
        "region": {"type": "string", "enum": list(REGIONS)},
        POLICY_ID: {"type": "string", "minLength": 1, "maxLength": 64},
        "days_to_report": {"type": "integer", "minimum": 0, "maximum": 3650},
        "police_report": {"type": "boolean"},
    },
    "examples": [EXAMPLE_ROW],
}

#: Where the views' sources are, relative to the spec (the build's directory).
POLICIES_FILE = "policies.parquet"
POLICYHOLDERS_FILE = "policyholders.parquet"

#: The spec's ``features:`` section: the policy system's view and the CRM's.
VIEWS: dict[str, Any] = {
    "policy": {
        "description": "The policy system: how old the policy is, how many claims it had.",
        "entity": POLICY_ID,
        "source": {"path": POLICIES_FILE, "timestamp": "updated_at"},
        "ttl": "400d",
        "features": {
            "policy_age_years": {"type": "integer", "minimum": 0, "maximum": 100},
            "prior_claims": {"type": "integer", "minimum": 0, "maximum": 100, "default": 0},
        },
    },
    "policyholder": {
        "description": "The CRM: who holds the policy. Refreshed daily; 30 days is stale.",
        "entity": POLICY_ID,
        "source": {"path": POLICYHOLDERS_FILE, "timestamp": "updated_at"},
        "ttl": "30d",
        "features": {
            "customer_age": {
                "type": ["integer", "null"],
                "minimum": 18,
                "maximum": 120,
                "default": None,
            },
        },
    },
}

#: The service's ``features:``: what its model reads from the views.
SERVICE_FEATURES: list[str] = [
    *(f"policy.{f}" for f in POLICY_FEATURES),
    *(f"policyholder.{f}" for f in POLICYHOLDER_FEATURES),
]

_HEADER = """\
# prodgate.yaml for the claims-triage example, written by
# `python -m prodgate.examples.claims_triage.build`.
# claims-triage: a classifier that decides whether an insurance claim needs a human
# adjuster. Requests must satisfy the input contract (a JSON Schema); answers whose
# confidence is below 0.7 are escalated to a person. Callers send the claim and its
# policy_id; the gateway adds the policy's features from the views under `features:`
# (load them with `prodgate features materialize policy` and `... policyholder`).
# claims-letter: an LLM service (prompt versions over the providers below, which the
# demo points at the bundled mock LLM) that sorts a claimant's message and drafts
# the reply.
"""


#: What each decision costs the insurer: an adjuster visit costs 40 whether needed or
#: not; a missed adjuster lets about a tenth of the claim leak (overpayment, fraud);
#: a person's quick review of an escalated claim costs 25.
BUSINESS: dict[str, Any] = {
    "positive": "adjuster",
    "costs": {
        "true_positive": 40,
        "false_positive": 40,
        "false_negative": {"rate": 0.1, "of": "claim_amount"},
        "escalation": 25,
    },
}

#: The quality gates a version must pass before it may be approved.
GATES: tuple[str, ...] = (
    "accuracy >= 0.9",
    "accuracy >= 0.58 on high_value",
    "business.cost_per_decision <= 40",
)

#: Canary policy: short intervals so the demo's story runs in about a minute, but
#: judgements on samples big enough not to flap. A missed adjuster on a large claim
#: costs a tenth of it, so cost per decision over ~100 decisions is noisy: the cost
#: and accuracy checks fail only past their limits beyond noise (95% confidence).
ROLLOUT: dict[str, Any] = {
    "steps": [25, 50, 100],
    "interval_s": 5,
    "min_requests": 120,
    "failure_threshold": 2,
    "max_idle_intervals": 4,
    "checks": {
        "max_p95_latency_ratio": 3.0,
        "max_escalation_rate_increase": 0.10,
        "max_accuracy_drop": 0.03,
        "max_cost_increase": 0.25,
        "min_feedback": 100,
    },
}


#: Production monitoring: windows of five minutes compared with the training data's
#: profile, and the alerts the claims team wants: the inputs moving, customer_age
#: arriving empty (the view's default for a stale CRM row is null, so only monitoring
#: sees it), the policyholder feed going stale, callers breaking the contract, and the
#: accuracy to expect before the labels come.
MONITOR: dict[str, Any] = {
    "window": "5m",
    "alerts": [
        {"name": "inputs-drifting", "when": "drift share > 0.3"},
        {"name": "claim-amounts-moving", "when": "drift(claim_amount) > 0.1"},
        {"name": "customer-age-missing", "when": "null_rate(customer_age) > 0.10", "clear": 0.05},
        {"name": "policyholder-feed-stale", "when": "stale_rate(policyholder) > 5%", "clear": 0.01},
        {"name": "contract-violations", "when": "contract violations > 1%", "clear": 0.005},
        {"name": "accuracy-expected-low", "when": "estimated accuracy < 0.90"},
    ],
}


#: Review: every high-value claim reaches two people (it is escalated, whatever the
#: model's confidence), and 5% of the automatic decisions reach one, so the automatic
#: path's accuracy is measured without waiting for the claims' outcomes.
REVIEW: dict[str, Any] = {
    "sample": "5%",
    "rules": [{"name": "high-value", "where": f"claim_amount >= {HIGH_VALUE}", "reviewers": 2}],
    "deadline": "24h",
    "lease": "15m",
    "separation_of_duties": True,
}


def spec_document() -> dict[str, Any]:
    """The ``prodgate.yaml`` document for the example, as a plain dict: the
    claims-triage classifier, and the claims-letter LLM service with its providers
    (:mod:`prodgate.examples.claims_letter.spec`)."""
    document: dict[str, Any] = {
        "version": 1,
        "features": copy.deepcopy(VIEWS),
        "services": {
            SERVICE: {
                "description": "Decide whether an insurance claim needs a human adjuster.",
                "owner": {"name": "Claims Operations", "contact": "claims-ops@example.com"},
                "kind": "classifier",
                "labels": list(LABELS),
                "contract": {"input": copy.deepcopy(CONTRACT)},
                "features": list(SERVICE_FEATURES),
                "escalation": {"confidence_below": 0.7},
                # This pipeline's call costs about the same for 1 row or 64 (pandas and
                # the column transformer, per call), so under load a fuller batch halves
                # the CPU per decision: waiting up to 6 ms (not 2) for it turned the
                # benchmark's two half batches into one full one (1,050 -> 1,570 req/s,
                # p99 95 -> 77 ms). A lone request waits those 6 ms at most.
                "batching": {"max_batch_size": 64, "max_wait_ms": 6},
                "business": copy.deepcopy(BUSINESS),
                "cohorts": {
                    "high_value": {"where": f"claim_amount >= {HIGH_VALUE}"},
                    "region": {"by": "region"},
                    "claim_type": {"by": "claim_type"},
                },
                "gates": list(GATES),
                "approvals": {"required": 2, "separation_of_duties": True},
                "rollout": copy.deepcopy(ROLLOUT),
                "monitor": copy.deepcopy(MONITOR),
                "review": copy.deepcopy(REVIEW),
            }
        },
    }
    return letter_spec.add_to(document)


def write_spec(path: Path) -> None:
    """Write the example's ``prodgate.yaml`` to *path* (a comment header, then YAML)."""
    body = yaml.safe_dump(spec_document(), sort_keys=False, default_flow_style=False, width=88)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(_HEADER + body, encoding="utf-8")
    tmp.replace(path)
