"""Business costs: what each kind of decision costs the people who own the outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OUTCOMES = ("true_positive", "false_positive", "false_negative", "true_negative", "escalation")


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


def parse_cost(raw: Any) -> Cost:
    """A cost as the spec writes it: a number, or ``{amount, rate, of}``."""
    if isinstance(raw, (int, float)):
        return Cost(amount=float(raw))
    return Cost(
        amount=float(raw.get("amount", 0)), rate=float(raw.get("rate", 0)), of=raw.get("of")
    )
