"""Synthetic insurance claims, with a label that a shallow model gets wrong where it hurts.

Every claim has a ``policy_id``, the columns in :data:`FEATURES` (what the model reads)
and the label :data:`LABEL` (1: the claim needs a human adjuster, 0: it can be handled
routinely). Callers send only :data:`CALLER_FIELDS`: ``policy_age_years``,
``prior_claims`` and ``customer_age`` belong to the policy, not the claim, and the
gateway looks them up in the example's feature views, whose sources
:func:`policy_sources` builds from the claims.

How the data is made (all vectorised numpy, deterministic for a seed):

- ``claim_amount`` is heavy-tailed: a lognormal body whose median depends on the claim
  type, plus a Pareto tail (a share of claims, larger for property and liability, drawn
  from 15,000 upwards). About 9% of claims are high-value (``>= HIGH_VALUE``), and
  about a hundred in 20,000 exceed 100,000.
- ``policy_age_years`` is exponential (many young policies), ``prior_claims`` Poisson with
  a rate that grows with the policy's age, ``days_to_report`` a skewed lognormal count,
  ``police_report`` more likely for auto and liability and for large claims,
  ``customer_age`` a skewed adult age, missing (NaN) for about 2% of claims.
- The label of an ordinary claim comes from a latent risk: late reporting, many prior
  claims, a young policy, no police report on an auto or liability claim, a large amount,
  a very young customer, plus noise.
- The label of a high-value claim follows the adjusters' rule for big claims instead: the
  paperwork should match the timeline. On an established policy, a police report on a
  claim reported late (3 days or more), or none on a claim reported at once, needs an
  adjuster; on a policy younger than two years it is the other way round (a big, prompt,
  fully documented claim on a new policy is the classic staged claim). No one or two of
  the three facts says anything alone, so a shallow, greedy model mostly misses the rule,
  and its recall on the high-value cohort is much worse than overall. (The usual red
  flags still count on big claims, only less.)

The shift knobs make the production traffic drift from the training data:
``inflation`` scales the amounts, ``new_claim_type_rate`` turns that share of claims into
a ``cyber`` claim (a type the contract does not know), ``empty_field_rate`` empties that
share of ``police_report`` (None; the contract does not allow it), and
``missing_age_rate`` empties that share of ``customer_age`` besides the usual 2% (NaN; the
view allows it, so only monitoring sees it).

The feature sources have a knob of their own: :func:`policy_sources`'s ``stale_rate`` is
the share of policyholder rows last updated 45 days before ``now`` (the CRM feed stopped
refreshing them), older than the ``policyholder`` view's ttl, so the gateway serves their
``customer_age`` as the view's default (null) and monitoring sees the ages go missing.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

#: The key of a claim's policy: callers send it, feature views are keyed by it.
POLICY_ID = "policy_id"
#: The model's input columns (the order it was trained with).
FEATURES: list[str] = [
    "claim_amount",
    "claim_type",
    "region",
    "policy_age_years",
    "prior_claims",
    "days_to_report",
    "police_report",
    "customer_age",
]
#: The features of the ``policy`` view (the policy system's), and of the ``policyholder``
#: view (the CRM's).
POLICY_FEATURES: list[str] = ["policy_age_years", "prior_claims"]
POLICYHOLDER_FEATURES: list[str] = ["customer_age"]
#: What a caller sends for a claim, in contract order: the claim's own facts and the
#: policy's key, not the features the gateway looks up.
CALLER_FIELDS: list[str] = [
    "claim_amount",
    "claim_type",
    "region",
    POLICY_ID,
    "days_to_report",
    "police_report",
]
#: The label column: 1 when the claim needs a human adjuster.
LABEL = "needs_adjuster"
#: The service's labels: class 0 is ``routine``, class 1 is ``adjuster``.
LABELS: list[str] = ["routine", "adjuster"]
#: Claims of at least this amount form the high-value cohort.
HIGH_VALUE = 20_000

CLAIM_TYPES: list[str] = ["auto", "property", "health", "liability", "travel"]
REGIONS: list[str] = ["north", "south", "east", "west", "central"]
#: The claim type that appears only after deployment (not in the contract's enum).
NEW_CLAIM_TYPE = "cyber"

_TYPE_SHARE = np.array([0.35, 0.25, 0.20, 0.10, 0.10])
_REGION_SHARE = np.array([0.22, 0.20, 0.18, 0.18, 0.22])
# Per claim type: median of the lognormal body, chance of a Pareto-tail claim,
# chance of a police report, and a shift of the latent risk.
_BODY_MEDIAN = np.array([2_500.0, 4_000.0, 1_800.0, 6_000.0, 600.0])
_TAIL_SHARE = np.array([0.10, 0.16, 0.08, 0.20, 0.02])
_POLICE_SHARE = np.array([0.65, 0.40, 0.05, 0.55, 0.15])
_TYPE_RISK = np.array([0.0, 0.0, -0.2, 0.4, -0.4])
_NEEDS_POLICE = np.array([True, False, False, True, False])  # auto, liability

_MAX_AMOUNT = 2_000_000.0  # before inflation
_MISSING_AGE_RATE = 0.02
#: How old a policyholder row is when the CRM feed stopped refreshing it.
STALE_AGE = dt.timedelta(days=45)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def generate(
    n: int,
    seed: int = 0,
    *,
    inflation: float = 1.0,
    new_claim_type_rate: float = 0.0,
    empty_field_rate: float = 0.0,
    missing_age_rate: float = 0.0,
) -> pd.DataFrame:
    """Return *n* synthetic claims: ``policy_id``, the :data:`FEATURES` columns and
    :data:`LABEL`.

    The same *seed* gives the same frame. ``policy_id`` is ``POL-{seed}-{i}`` (seed to
    four digits, the row to six): one policy per claim, unique for a seed and the same
    whatever the knobs, so the sources of the claims' policies can be built before the
    claims arrive. The knobs shift the data the way production
    traffic drifts: *inflation* multiplies every amount (the label is drawn before, so
    it does not change), *new_claim_type_rate* is the share of claims whose type becomes
    ``"cyber"``, *empty_field_rate* the share whose ``police_report`` is None (the
    column is then of object dtype), *missing_age_rate* the share whose
    ``customer_age`` goes missing on top of the usual. ``customer_age`` is a float column, NaN when
    missing (about 2%), whole numbers otherwise.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    if inflation <= 0:
        raise ValueError(f"inflation must be > 0, not {inflation}")
    for name, rate in (
        ("new_claim_type_rate", new_claim_type_rate),
        ("empty_field_rate", empty_field_rate),
        ("missing_age_rate", missing_age_rate),
    ):
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"{name} must be within [0, 1], not {rate}")

    rng = np.random.default_rng(seed)

    type_idx = rng.choice(len(CLAIM_TYPES), size=n, p=_TYPE_SHARE)
    region_idx = rng.choice(len(REGIONS), size=n, p=_REGION_SHARE)

    body = _BODY_MEDIAN[type_idx] * rng.lognormal(0.0, 0.9, size=n)
    tail = 15_000.0 * (1.0 + rng.pareto(1.6, size=n))
    in_tail = rng.random(n) < _TAIL_SHARE[type_idx]
    amount = np.minimum(50.0 + np.where(in_tail, tail, body), _MAX_AMOUNT)
    high_value = amount >= HIGH_VALUE

    policy_age = np.minimum(np.floor(rng.exponential(6.0, size=n)), 40).astype(np.int64)
    prior_claims = np.minimum(rng.poisson(0.3 + 0.08 * policy_age), 15).astype(np.int64)
    days = np.minimum(np.floor(rng.lognormal(1.0, 1.1, size=n)), 3650).astype(np.int64)
    police = rng.random(n) < np.minimum(_POLICE_SHARE[type_idx] + 0.15 * high_value, 0.95)
    customer_age = np.minimum(18.0 + np.round(rng.gamma(4.0, 6.0, size=n)), 95.0)
    customer_age[rng.random(n) < _MISSING_AGE_RATE] = np.nan

    # Ordinary claims: a latent risk from the usual red flags, plus noise.
    risk = (
        -2.4
        + 0.55 * np.log1p(days)
        + 0.45 * prior_claims
        + 1.1 * (policy_age < 1)
        + 0.4 * (policy_age < 3)
        + 1.3 * (~police & _NEEDS_POLICE[type_idx])
        + 0.6 * np.clip(np.log10(amount / 2_000.0), 0.0, None)
        + 0.3 * np.nan_to_num(customer_age < 25)
        + _TYPE_RISK[type_idx]
    )
    ordinary = (risk + 0.05 * rng.logistic(size=n)) > 0
    # High-value claims: the paperwork must match the timeline. On an established policy,
    # a police report on a late claim, or none on a prompt one, needs an adjuster. On a
    # new policy it is the other way round: a big claim reported at once with every paper
    # in order is the classic staged claim. No one or two of the three facts says
    # anything alone, so a shallow, greedy model mostly misses the rule.
    suspicious = police ^ (days >= 3) ^ (policy_age < 2)
    hv_risk = np.where(suspicious, 1.6, -2.2) + 0.6 * np.clip(risk, -3.0, 3.0)
    big = rng.random(n) < _sigmoid(hv_risk)
    label = np.where(high_value, big, ordinary).astype(np.int64)

    # The shifts draw last and always, so the knobs change nothing else for a seed.
    new_type = rng.random(n) < new_claim_type_rate
    empty = rng.random(n) < empty_field_rate
    customer_age[rng.random(n) < missing_age_rate] = np.nan
    types = np.array(CLAIM_TYPES, dtype=object)[type_idx]
    types[new_type] = NEW_CLAIM_TYPE
    police_col: np.ndarray = police
    if empty_field_rate > 0:
        police_col = police.astype(object)
        police_col[empty] = None

    return pd.DataFrame(
        {
            POLICY_ID: policy_ids(n, seed),
            "claim_amount": np.round(amount * inflation, 2),
            "claim_type": types,
            "region": np.array(REGIONS, dtype=object)[region_idx],
            "policy_age_years": policy_age,
            "prior_claims": prior_claims,
            "days_to_report": days,
            "police_report": police_col,
            "customer_age": customer_age,
            LABEL: label,
        }
    )


def policy_ids(n: int, seed: int) -> list[str]:
    """The policy keys of :func:`generate`'s *n* claims for *seed*. (The claims of
    another *n* for the same seed are other claims, drawn apart: keep the pair, not the
    seed alone, to name a set of policies.)"""
    return [f"POL-{seed:04d}-{i:06d}" for i in range(n)]


def policy_sources(
    claims: pd.DataFrame,
    now: dt.datetime,
    *,
    stale_rate: float = 0.0,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two feature sources behind *claims*: ``(policies, policyholders)``.

    ``policies`` (the policy system) has ``policy_id``, ``updated_at``,
    ``policy_age_years`` and ``prior_claims``; ``policyholders`` (the CRM) has
    ``policy_id``, ``updated_at`` and ``customer_age`` (nullable integers: a missing age
    stays missing). The values are the claims' own, so the gateway serves the model what
    the claims held. Each ``updated_at`` is between two hours and five days before *now*
    (UTC), drawn from *seed*; a *stale_rate* share of policyholder rows is
    :data:`STALE_AGE` old instead.
    """
    if not 0.0 <= stale_rate <= 1.0:
        raise ValueError(f"stale_rate must be within [0, 1], not {stale_rate}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    n = len(claims)
    rng = np.random.default_rng(seed)
    ago = rng.uniform(2 * 3600, 5 * 86400, size=(2, n))
    stale = rng.random(n) < stale_rate
    ago[1, stale] = STALE_AGE.total_seconds()
    at = pd.Timestamp(now).tz_convert("UTC")
    keys = claims[POLICY_ID].astype(str).to_numpy()
    policies = pd.DataFrame(
        {
            POLICY_ID: keys,
            "updated_at": at - pd.to_timedelta(ago[0], unit="s"),
            **{c: claims[c].to_numpy(dtype=np.int64) for c in POLICY_FEATURES},
        }
    )
    holders = pd.DataFrame(
        {
            POLICY_ID: keys,
            "updated_at": at - pd.to_timedelta(ago[1], unit="s"),
            "customer_age": claims["customer_age"].astype("Float64").round().astype("Int64").array,
        }
    )
    return policies, holders
