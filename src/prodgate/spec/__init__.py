"""``prodgate.yaml``: the services a deployment declares, and their policies.

A dependency-free package (nothing of prodgate but its exceptions):

- :mod:`~prodgate.spec.schema`: the file's JSON Schema;
- :mod:`~prodgate.spec.loading`: reading it, with ``file:line: field: what`` errors;
- :mod:`~prodgate.spec.service`: :class:`Spec` and :class:`ServiceSpec`, as the rest sees them;
- :mod:`~prodgate.spec.cohorts`, :mod:`~prodgate.spec.costs`, :mod:`~prodgate.spec.gates`:
  the slices, business costs and quality gates a version is judged by;
- :mod:`~prodgate.spec.monitor`: the production window, drift settings and alert rules;
- :mod:`~prodgate.spec.policy`: approvals and rollout policy, and building a service's
  :class:`Policy` from its mapping.
"""

from prodgate.spec.cohorts import Cohort, Condition, parse_condition
from prodgate.spec.costs import OUTCOMES, Business, Cost
from prodgate.spec.gates import (
    CLASSIFIER_METRICS,
    LOWER_IS_BETTER,
    OTHER_METRICS,
    REGRESSOR_METRICS,
    Gate,
    parse_gate,
)
from prodgate.spec.loading import load, normalize_contract, parse
from prodgate.spec.monitor import MonitorSpec, Rule, parse_rule
from prodgate.spec.policy import Approvals, Checks, Policy, RolloutPolicy
from prodgate.spec.schema import SERVICE_NAME, SPEC_SCHEMA
from prodgate.spec.service import Owner, ServiceSpec, Spec

__all__ = [
    "CLASSIFIER_METRICS",
    "LOWER_IS_BETTER",
    "OTHER_METRICS",
    "OUTCOMES",
    "REGRESSOR_METRICS",
    "SERVICE_NAME",
    "SPEC_SCHEMA",
    "Approvals",
    "Business",
    "Checks",
    "Cohort",
    "Condition",
    "Cost",
    "Gate",
    "MonitorSpec",
    "Owner",
    "Policy",
    "RolloutPolicy",
    "Rule",
    "ServiceSpec",
    "Spec",
    "load",
    "normalize_contract",
    "parse",
    "parse_condition",
    "parse_gate",
    "parse_rule",
]
