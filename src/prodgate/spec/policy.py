"""A service's governance policy: business costs, cohorts, gates, approvals, rollout.

Declared in prodgate.yaml beside the contract and checked when the spec loads::

    business:
      positive: adjuster
      costs:
        false_negative: {rate: 0.1, of: claim_amount}   # a tenth of the claim
        false_positive: 40
        escalation: 25
    cohorts:
      high_value: {where: "claim_amount >= 20000"}
      region: {by: region}
    gates:
      - recall >= 0.6 on high_value
      - business.cost_per_decision <= 120
      - no cohort accuracy more than 0.05 below overall
    approvals: {required: 2, separation_of_duties: true}
    rollout: {steps: [5, 25, 50, 100], interval_s: 60, min_requests: 20}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from prodgate.spec.cohorts import Cohort, parse_condition
from prodgate.spec.costs import Business, parse_cost
from prodgate.spec.gates import Gate, parse_gate


@dataclass(frozen=True)
class Approvals:
    required: int = 1
    separation_of_duties: bool = True


@dataclass(frozen=True)
class Checks:
    """How much worse than production a canary may be over one interval."""

    max_error_rate_increase: float = 0.01
    max_p95_latency_ratio: float = 1.5
    max_escalation_rate_increase: float = 0.05
    max_violation_rate_increase: float = 0.02
    #: Relative to production's: business cost per decision, or for a service of kind
    #: ``llm`` the upstream's price per call (USD).
    max_cost_increase: float = 0.10
    max_accuracy_drop: float = 0.02
    max_ttft_ratio: float = 1.5  # kind llm: canary p95 time to first token / production's
    max_score_drop: float = 0.05  # kind llm: production mean feedback score - canary's
    min_feedback: int = 20  # labelled decisions per version before those checks count
    #: How sure the analysis must be that cost or accuracy is worse than its limit
    #: before that check fails (one-sided z-test); 0 compares the point values only.
    confidence: float = 0.95
    #: The largest Jensen-Shannon distance between the canary's outputs (predictions,
    #: confidences) and production's over an interval, from the production windows;
    #: None: not checked (see :mod:`prodgate.rollout.drift_check`).
    max_output_drift: float | None = None


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[float, ...] = (5, 25, 50, 100)
    interval_s: float = 60.0
    min_requests: int = 20
    failure_threshold: int = 2
    #: Intervals without enough requests before that counts as a failure.
    max_idle_intervals: int = 3
    manual_gate: bool = False
    checks: Checks = field(default_factory=Checks)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutPolicy:
        values = dict(data)
        values["steps"] = tuple(values.get("steps", cls.steps))
        values["checks"] = Checks(**values.get("checks", {}))
        return cls(**values)


@dataclass(frozen=True)
class Policy:
    business: Business | None = None
    cohorts: tuple[Cohort, ...] = ()
    gates: tuple[Gate, ...] = ()
    approvals: Approvals = field(default_factory=Approvals)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)

    def cohort(self, name: str) -> Cohort | None:
        return next((c for c in self.cohorts if c.name == name), None)


# -- building a Policy from the spec's raw mapping ---------------------------------------


class PolicyProblem(ValueError):
    """A problem at a path inside the service's mapping."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def build(
    raw: Mapping[str, Any], kind: str, labels: tuple[str, ...] | None, fields: list[str]
) -> Policy:
    """The policy of one service from its raw spec mapping (already schema-checked)."""
    business = None
    if "business" in raw:
        b = raw["business"]
        if kind != "classifier":
            raise PolicyProblem(("business",), "business costs need a classifier")
        positive = str(b.get("positive", labels[-1] if labels else "1"))
        if labels and positive not in labels:
            raise PolicyProblem(
                ("business", "positive"), f"{positive!r} is not one of the labels {list(labels)}"
            )
        costs = {k: parse_cost(v) for k, v in b.get("costs", {}).items()}
        for outcome, cost in costs.items():
            if cost.of is not None and cost.of not in fields:
                raise PolicyProblem(
                    ("business", "costs", outcome, "of"), f"{cost.of!r} is not an input field"
                )
        business = Business(positive, costs)
    cohorts = []
    for name, c in raw.get("cohorts", {}).items():
        if "where" in c:
            try:
                cond = parse_condition(str(c["where"]))
            except ValueError as exc:
                raise PolicyProblem(("cohorts", name, "where"), str(exc)) from None
            unknown = sorted(cond.columns - set(fields))
            if unknown:
                raise PolicyProblem(
                    ("cohorts", name, "where"), f"unknown field(s): {', '.join(unknown)}"
                )
            cohorts.append(Cohort(name, where=cond))
        else:
            if c["by"] not in fields:
                raise PolicyProblem(("cohorts", name, "by"), f"{c['by']!r} is not an input field")
            cohorts.append(Cohort(name, by=c["by"]))
    names = {c.name for c in cohorts}
    gates = []
    for i, text in enumerate(raw.get("gates", [])):
        try:
            gate = parse_gate(str(text), kind)
        except ValueError as exc:
            raise PolicyProblem(("gates", str(i)), str(exc)) from None
        cohort = gate.cohort.split("=", 1)[0] if gate.cohort else None
        if cohort is not None and cohort not in names:
            declared = ", ".join(sorted(names)) or "none"
            raise PolicyProblem(
                ("gates", str(i)), f"no cohort named {cohort!r}; declared: {declared}"
            )
        if gate.metric.startswith("business.") and business is None:
            raise PolicyProblem(("gates", str(i)), "a business gate needs a 'business' section")
        gates.append(gate)
    a = raw.get("approvals", {})
    approvals = Approvals(int(a.get("required", 1)), bool(a.get("separation_of_duties", True)))
    r = dict(raw.get("rollout", {}))
    steps = r.get("steps")
    if steps is not None and (sorted(steps) != list(steps) or steps[-1] != 100):
        raise PolicyProblem(("rollout", "steps"), "steps must increase and end at 100")
    rollout = RolloutPolicy.from_dict(r)
    return Policy(business, tuple(cohorts), tuple(gates), approvals, rollout)
