"""A service's governance policy: business costs, cohorts, gates, approvals, rollout.

Declared in prodgate.yaml beside the contract and checked when the spec loads:

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

Cohort conditions are a small, safe expression language (comparisons of a column
with literals, ``in``, ``and``/``or``/``not``), parsed with :mod:`ast` and never
evaluated as Python.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

CLASSIFIER_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "brier")
REGRESSOR_METRICS = ("mae", "rmse", "r2")
OTHER_METRICS = ("escalation_rate", "business.cost_per_decision", "business.total_cost")
#: Metrics where lower is better (a cohort "above overall" is the bad direction).
LOWER_IS_BETTER = frozenset(
    {"brier", "mae", "rmse", "escalation_rate", "business.cost_per_decision"}
)
OUTCOMES = ("true_positive", "false_positive", "false_negative", "true_negative", "escalation")


# -- cohort conditions -------------------------------------------------------------

_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass(frozen=True)
class Condition:
    """A parsed cohort condition; :meth:`mask` evaluates it on a DataFrame."""

    text: str
    tree: ast.expr = field(repr=False, compare=False)
    columns: frozenset[str] = frozenset()

    def mask(self, frame: Any) -> Any:
        """A boolean Series: which rows of *frame* belong to the cohort."""
        return _evaluate(self.tree, frame)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(e) for e in node.elts]
    raise ValueError(f"expected a number, string or list, not {ast.unparse(node)!r}")


def _check(node: ast.expr, columns: set[str]) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, columns)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check(node.operand, columns)
    elif isinstance(node, ast.Compare):
        if not isinstance(node.left, ast.Name) or len(node.ops) != 1:
            raise ValueError("each comparison is COLUMN OP VALUE, e.g. claim_amount >= 20000")
        columns.add(node.left.id)
        op = node.ops[0]
        value = _literal(node.comparators[0])
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(value, list):
                raise ValueError("'in' needs a list, e.g. region in ['north', 'south']")
        elif type(op) not in _COMPARE:
            raise ValueError(f"unsupported operator {type(op).__name__}")
    elif isinstance(node, ast.Name):
        columns.add(node.id)  # a boolean column
    else:
        raise ValueError(f"not a condition: {ast.unparse(node)!r}")


def _evaluate(node: ast.expr, frame: Any) -> Any:
    if isinstance(node, ast.BoolOp):
        parts = [_evaluate(v, frame) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.UnaryOp):
        return ~_evaluate(node.operand, frame)
    if isinstance(node, ast.Name):
        return frame[node.id].fillna(False).astype(bool)
    # _check admitted only comparisons of a column beyond this point.
    assert isinstance(node, ast.Compare)
    assert isinstance(node.left, ast.Name)
    column = frame[node.left.id]
    op = node.ops[0]
    value = _literal(node.comparators[0])
    if isinstance(op, ast.In):
        return column.isin(value)
    if isinstance(op, ast.NotIn):
        return ~column.isin(value)
    result = _COMPARE[type(op)](column, value)
    return result.fillna(False).astype(bool)


def parse_condition(text: str) -> Condition:
    """Parse a cohort condition; ValueError says what is wrong."""
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc.msg}") from None
    columns: set[str] = set()
    _check(tree, columns)
    return Condition(text, tree, frozenset(columns))


# -- cohorts, costs, gates ---------------------------------------------------------------


@dataclass(frozen=True)
class Cohort:
    """Either rows matching ``where``, or one cohort per value of column ``by``."""

    name: str
    where: Condition | None = None
    by: str | None = None


@dataclass(frozen=True)
class Cost:
    """The cost of one outcome: a fixed amount plus a rate times a column's value."""

    amount: float = 0.0
    rate: float = 0.0
    of: str | None = None


@dataclass(frozen=True)
class Business:
    positive: str
    costs: Mapping[str, Cost]

    def cost(self, outcome: str) -> Cost:
        return self.costs.get(outcome, Cost())

    def outcome(self, truth: Any, prediction: Any, escalated: bool) -> str:
        """Which outcome one decision was: escalation, or true/false positive/negative."""
        if escalated:
            return "escalation"
        actual = str(truth) == self.positive
        predicted = str(prediction) == self.positive
        if predicted:
            return "true_positive" if actual else "false_positive"
        return "false_negative" if actual else "true_negative"

    def cost_of(
        self, row: Mapping[str, Any], truth: Any, prediction: Any, escalated: bool
    ) -> float:
        """The cost of one decision on input *row*: fixed amount plus rate times a field."""
        c = self.cost(self.outcome(truth, prediction, escalated))
        value = 0.0
        if c.of is not None and c.rate:
            raw = row.get(c.of)
            value = float(raw) if raw is not None else 0.0
        return c.amount + c.rate * value


_METRIC = r"(?P<metric>[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?)"
_NUMBER = r"(?P<value>-?\d+(?:\.\d+)?(?:e-?\d+)?)"
_ABSOLUTE = re.compile(
    rf"^{_METRIC}\s*(?P<op>>=|<=|>|<)\s*{_NUMBER}(?:\s+on\s+(?P<cohort>[\w-]+(?:=\S+)?))?$"
)
_RELATIVE = re.compile(
    rf"^no\s+cohort(?:'s)?\s+{_METRIC}\s+more\s+than\s+{_NUMBER}\s+(?P<dir>below|above)\s+overall$"
)


@dataclass(frozen=True)
class Gate:
    """A quality gate. Absolute: ``metric op threshold [on cohort]``. Relative: no
    cohort's metric further than ``threshold`` below (or above) the overall value."""

    text: str
    metric: str
    threshold: float
    op: str = ">="
    cohort: str | None = None
    relative: bool = False
    direction: str = "below"


def parse_gate(text: str, kind: str) -> Gate:
    """Parse a gate for a service of *kind*; ValueError says what is wrong."""
    clean = " ".join(text.split())
    m = _RELATIVE.match(clean)
    if m:
        gate = Gate(clean, m["metric"], float(m["value"]), relative=True, direction=m["dir"])
    else:
        m = _ABSOLUTE.match(clean)
        if not m:
            raise ValueError(
                f"cannot read gate {text!r}; write 'METRIC >= VALUE [on COHORT]' or "
                "'no cohort METRIC more than VALUE below overall'"
            )
        gate = Gate(clean, m["metric"], float(m["value"]), m["op"], m["cohort"])
    known = (CLASSIFIER_METRICS if kind == "classifier" else REGRESSOR_METRICS) + (
        OTHER_METRICS if kind == "classifier" else ()
    )
    if gate.metric not in known:
        raise ValueError(f"unknown metric {gate.metric!r} for a {kind}; known: {', '.join(known)}")
    return gate


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
    max_cost_increase: float = 0.10  # relative to production's cost per decision
    max_accuracy_drop: float = 0.02
    min_feedback: int = 20  # labelled decisions per version before those checks count
    #: How sure the analysis must be that cost or accuracy is worse than its limit
    #: before that check fails (one-sided z-test); 0 compares the point values only.
    confidence: float = 0.95


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


def _cost(raw: Any) -> Cost:
    if isinstance(raw, (int, float)):
        return Cost(amount=float(raw))
    return Cost(
        amount=float(raw.get("amount", 0)), rate=float(raw.get("rate", 0)), of=raw.get("of")
    )


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
        costs = {k: _cost(v) for k, v in b.get("costs", {}).items()}
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


#: JSON Schema fragments for the spec's service object.
SCHEMA: dict[str, Any] = {
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
