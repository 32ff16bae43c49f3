"""A service's review policy as ``prodgate.yaml`` declares it: which decisions reach a
person, how many people judge each, and by when.

::

    review:
      sample: 5%                       # of the automatic decisions (default 5%)
      sample_cohorts: {high_value: 20%}  # stratified: a rate per `where` cohort
      rules:                           # decisions that always need a person
        - {name: high-value, where: "claim_amount >= 20000", reviewers: 2}
      reviewers: 1                     # reviews an item needs (default 1)
      deadline: 24h                    # past it, an item is overdue
      lease: 15m                       # how long a claim holds an item
      separation_of_duties: true       # not the version's registrant, not the caller
      webhook: https://claims.example/review-decided

Every escalated decision enters review (low confidence, a guard's ``escalate``, or a
rule, which escalates it), and a sample of the automatic ones does; without a
``review:`` section nothing does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prodgate.durations import parse_duration
from prodgate.exceptions import UsageError
from prodgate.spec.cohorts import Cohort, Condition, parse_condition

_RATE = {
    "oneOf": [
        {"type": "number", "minimum": 0, "maximum": 1},
        {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%\s*$"},
    ]
}
_DURATION = {"type": ["string", "number"]}
_REVIEWERS = {"type": "integer", "minimum": 1, "maximum": 10}

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sample": _RATE,
        "sample_cohorts": {"type": "object", "additionalProperties": _RATE},
        "rules": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["where"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$"},
                    "where": {"type": "string"},
                    "reviewers": _REVIEWERS,
                },
            },
        },
        "reviewers": _REVIEWERS,
        "deadline": _DURATION,
        "lease": _DURATION,
        "separation_of_duties": {"type": "boolean"},
        "webhook": {"type": "string", "pattern": "^https?://"},
    },
}

DEFAULT_SAMPLE = 0.05
DEFAULT_DEADLINE_S = 86_400.0
DEFAULT_LEASE_S = 900.0


@dataclass(frozen=True)
class ReviewRule:
    """Decisions matching *where* always go to a person, *reviewers* of them."""

    name: str
    where: Condition
    reviewers: int


@dataclass(frozen=True)
class ReviewSpec:
    on: bool = False
    #: The share of automatic decisions sampled for review, where no cohort rate applies.
    sample: float = DEFAULT_SAMPLE
    #: Stratified sampling: (cohort, its condition, its rate), the first match wins.
    sample_cohorts: tuple[tuple[str, Condition, float], ...] = ()
    rules: tuple[ReviewRule, ...] = ()
    reviewers: int = 1
    deadline_s: float = DEFAULT_DEADLINE_S
    lease_s: float = DEFAULT_LEASE_S
    separation_of_duties: bool = True
    webhook: str | None = None

    @property
    def columns(self) -> frozenset[str]:
        """The input fields the policy reads."""
        out: set[str] = set()
        for rule in self.rules:
            out |= rule.where.columns
        for _, condition, _ in self.sample_cohorts:
            out |= condition.columns
        return frozenset(out)


NO_REVIEW = ReviewSpec()


class ReviewProblem(ValueError):
    """A problem at a path inside the service's mapping."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = ("review", *path)
        self.message = message


def _rate(raw: Any, path: tuple[str, ...]) -> float:
    rate = float(raw.strip().rstrip("%")) / 100 if isinstance(raw, str) else float(raw)
    if not 0 <= rate <= 1:
        raise ReviewProblem(path, f"{raw!r}: a rate is from 0 to 1 (or 0% to 100%)")
    return rate


def _seconds(raw: Any, what: str, path: tuple[str, ...]) -> float:
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if raw <= 0:
            raise ReviewProblem(path, f"{what} must be longer than zero")
        return float(raw)
    try:
        return parse_duration(str(raw), what)
    except UsageError as exc:
        raise ReviewProblem(path, str(exc)) from None


def build(
    raw: Mapping[str, Any] | None, kind: str, fields: Sequence[str], cohorts: Sequence[Cohort]
) -> ReviewSpec:
    """A service's review policy from its (schema-checked) ``review:`` mapping."""
    if raw is None:
        return NO_REVIEW
    known = set(fields)
    rules = []
    seen: set[str] = set()
    for i, r in enumerate(raw.get("rules", [])):
        path = ("rules", str(i), "where")
        try:
            where = parse_condition(str(r["where"]))
        except ValueError as exc:
            raise ReviewProblem(path, str(exc)) from None
        unknown = sorted(where.columns - known)
        if unknown:
            raise ReviewProblem(path, f"unknown field(s): {', '.join(unknown)}")
        name = str(r.get("name") or f"rule-{i + 1}")
        if name in seen:
            raise ReviewProblem(("rules", str(i), "name"), f"two rules are named {name!r}")
        seen.add(name)
        rules.append(ReviewRule(name, where, int(r.get("reviewers", raw.get("reviewers", 1)))))
    by_name = {c.name: c for c in cohorts}
    strata = []
    for name, rate in raw.get("sample_cohorts", {}).items():
        at: tuple[str, ...] = ("sample_cohorts", name)
        cohort = by_name.get(name)
        if cohort is None:
            declared = ", ".join(sorted(by_name)) or "none"
            raise ReviewProblem(at, f"no cohort named {name!r}; declared: {declared}")
        if cohort.where is None:
            raise ReviewProblem(
                at, f"cohort {name!r} is one per value of {cohort.by!r}; a rate needs a `where`"
            )
        strata.append((name, cohort.where, _rate(rate, at)))
    if kind == "llm" and (rules or strata):
        which = "rules" if rules else "sample_cohorts"
        raise ReviewProblem((which,), "rules and cohort rates are for models' inputs, not llm")
    return ReviewSpec(
        on=True,
        sample=_rate(raw.get("sample", DEFAULT_SAMPLE), ("sample",)),
        sample_cohorts=tuple(strata),
        rules=tuple(rules),
        reviewers=int(raw.get("reviewers", 1)),
        deadline_s=_seconds(raw.get("deadline", DEFAULT_DEADLINE_S), "deadline", ("deadline",)),
        lease_s=_seconds(raw.get("lease", DEFAULT_LEASE_S), "lease", ("lease",)),
        separation_of_duties=bool(raw.get("separation_of_duties", True)),
        webhook=raw.get("webhook"),
    )
