"""A service that reads a policy feature view, its source, and loading it online."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

from prodgate import spec as spec_module
from prodgate.features.materialize import Load, materialize
from prodgate.features.online import build_online
from prodgate.settings import Settings
from prodgate.store.engine import open_store

SPEC = """\
version: 1
features:
  policy:
    entity: policy_id
    source: {{path: policies.parquet, timestamp: updated_at}}
    ttl: 30d
    features:
      policy_age_years: {{type: integer, minimum: 0}}
      prior_claims: {{type: integer, minimum: 0, default: 0}}
      customer_age: {{type: [integer, "null"], default: null}}
services:
  claims:
    owner: {{name: Claims Ops, contact: ops@example.com}}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        additionalProperties: false
        required: [amount, policy_id]
        properties:
          amount: {{type: number, minimum: 0}}
          policy_id: {{type: string}}
    features: [{features}]
    escalation:
      confidence_below: 0.6
    batching:
      max_batch_size: 64
      max_wait_ms: {wait}
"""

FEATURES = "policy.policy_age_years, policy.prior_claims, policy.customer_age"
NOW = dt.datetime.now(dt.UTC)


def policies(now: dt.datetime = NOW) -> pd.DataFrame:
    """P1 fresh (a newer row after an older one), P2 stale (40 days), P3 fresh with no
    customer age; P4 fresh with three prior claims. No P9."""
    day = dt.timedelta(days=1)
    return pd.DataFrame(
        {
            "policy_id": ["P1", "P1", "P2", "P3", "P4"],
            "updated_at": [now - 9 * day, now - day, now - 40 * day, now - 2 * day, now - day],
            "policy_age_years": [2, 3, 7, 1, 5],
            "prior_claims": [0, 1, 4, 0, 3],
            "customer_age": pd.array([40, 41, 55, None, 33], dtype="Int64"),
        }
    )


def write(settings: Settings, features: str = FEATURES, wait: float = 2) -> None:
    """The spec beside the settings' config, and its policies source."""
    folder = Path(settings.config).parent
    policies().to_parquet(folder / "policies.parquet")
    Path(settings.config).write_text(SPEC.format(features=features, wait=wait))


def load(settings: Settings) -> Load:
    """Materialise the policy view into the settings' online store."""
    spec = spec_module.load(settings.config)
    store = open_store(settings)
    online = build_online(settings, store)
    try:
        return materialize(
            spec.views["policy"], Path(settings.config).parent, online, store, "tester"
        )
    finally:
        import asyncio

        asyncio.run(online.close())
        store.dispose()
