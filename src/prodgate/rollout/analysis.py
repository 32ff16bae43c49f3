"""Judging a canary against production over the same window.

Both sides are :class:`~prodgate.monitor.window.VersionStats` read from the audit
log. Business cost and accuracy are measured on samples (the decisions that received
feedback), and the cost of a decision is heavy-tailed when it scales with a claim
amount: one missed large claim can move a hundred decisions' mean by half. So those
two checks fail only when the canary is worse than its limit *beyond noise*: a
one-sided z-test at the policy's ``confidence`` (Welch's standard error for the
cost, the two-proportion one for accuracy), the way statistical canary judges do.

A prompt version (a service of kind ``llm``) is judged on its calls too: the p95 time
to first token against production's (a ratio, as latency), the upstream's price per
call (a relative increase past ``max_cost_increase``, beyond noise: the same Welch
test as business cost, over every priced call of the interval), and, once both have
``min_feedback`` answers rated each way, the accuracy of the answers graded right or
wrong and the mean feedback score (a drop past ``max_score_drop``, beyond noise).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

from prodgate.monitor.llm import LlmFigures
from prodgate.monitor.window import VersionStats
from prodgate.spec import Checks

#: Latencies below this (ms) count as this in the p95 ratio: under a millisecond the
#: ratio measures timer noise and garbage collection, not the model.
LATENCY_FLOOR_MS = 1.0

#: Slack for float comparisons against limits (0.1 - 0.09 is not 0.01 in binary).
_EPS = 1e-9


@dataclass(frozen=True)
class CheckResult:
    """One check of the canary against the baseline over the same window."""

    name: str
    passed: bool
    canary_value: float | None
    baseline_value: float | None
    limit: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _increase(name: str, what: str, canary: float, baseline: float, limit: float) -> CheckResult:
    increase = canary - baseline
    passed = increase <= limit + _EPS
    detail = (
        f"{what} {canary:.4f} vs {baseline:.4f} in production: "
        f"{'+' if increase >= 0 else ''}{increase:.4f} (limit +{limit:g})"
    )
    return CheckResult(name, passed, canary, baseline, limit, detail)


def _beyond_noise(excess: float, se: float, confidence: float) -> tuple[bool, str]:
    """Whether *excess* (how far past its limit a measure is) is more than noise.

    The answer and, when a test was made, a note on it for the check's detail.
    """
    if excess <= _EPS:
        return False, ""
    if confidence <= 0:
        return True, ""
    critical = max(0.0, NormalDist().inv_cdf(confidence))
    if se <= 0:
        return True, ""
    z = excess / se
    if z > critical:
        return True, f"; beyond noise (z {z:.2f} > {critical:.2f} at {confidence:.0%})"
    return False, f"; within noise (z {z:.2f} <= {critical:.2f} at {confidence:.0%})"


def compare(canary: VersionStats, baseline: VersionStats, checks: Checks) -> list[CheckResult]:
    """Judge *canary* against *baseline* (production over the same window).

    Always: error rate, p95 latency ratio, escalation rate and contract-violation
    rate. Cost and accuracy only when both versions have at least
    ``checks.min_feedback`` labelled decisions, since fewer make noise look like a
    regression; and those two fail only when the canary is past its limit beyond
    noise at ``checks.confidence``.

    When both are prompt versions (their stats carry LLM figures), the checks after
    the first four are :func:`_llm_checks`'s instead: business cost needs a classifier.
    """
    results = [
        _increase(
            "error_rate",
            "error rate",
            canary.error_rate,
            baseline.error_rate,
            checks.max_error_rate_increase,
        )
    ]
    results.append(
        _ratio(
            "p95_latency",
            "p95 latency",
            canary.p95_latency_ms,
            baseline.p95_latency_ms,
            checks.max_p95_latency_ratio,
            "answered no request successfully in the window",
        )
    )
    results.append(
        _increase(
            "escalation_rate",
            "escalation rate",
            canary.escalation_rate,
            baseline.escalation_rate,
            checks.max_escalation_rate_increase,
        )
    )
    results.append(
        _increase(
            "violation_rate",
            "contract-violation rate",
            canary.violation_rate,
            baseline.violation_rate,
            checks.max_violation_rate_increase,
        )
    )
    if canary.llm is not None and baseline.llm is not None:
        return results + _llm_checks(canary, baseline, canary.llm, baseline.llm, checks)
    if min(canary.labelled, baseline.labelled) < checks.min_feedback:
        return results
    c_cost, b_cost = canary.cost_per_decision, baseline.cost_per_decision
    if c_cost is not None and b_cost is not None:
        limit = checks.max_cost_increase
        # If production cost nothing, any cost is an unbounded relative increase.
        relative = (c_cost - b_cost) / b_cost if b_cost > 0 else (math.inf if c_cost > 0 else 0.0)
        # H0: canary mean <= (1 + limit) * production mean; Welch's standard error.
        scale = 1.0 + limit
        se = math.sqrt(
            canary.cost_variance() / canary.labelled
            + scale * scale * baseline.cost_variance() / baseline.labelled
        )
        worse, note = _beyond_noise(c_cost - scale * b_cost, se, checks.confidence)
        results.append(
            CheckResult(
                "cost_per_decision",
                not worse,
                c_cost,
                b_cost,
                limit,
                f"cost per decision {c_cost:.2f} vs {b_cost:.2f} in production: "
                f"{relative:+.1%} (limit +{limit:.0%}){note}",
            )
        )
    accuracy = _accuracy(canary, baseline, checks)
    if accuracy is not None:
        results.append(accuracy)
    return results


def _ratio(
    name: str, what: str, canary: float | None, baseline: float | None, limit: float, none: str
) -> CheckResult:
    """A p95 of the canary over production's, both floored at :data:`LATENCY_FLOOR_MS`;
    not compared (and passed) when either has none, *none* saying why."""
    if canary is None or baseline is None:
        missing = "canary" if canary is None else "production"
        return CheckResult(name, True, canary, baseline, limit, f"not compared: {missing} {none}")
    ratio = max(canary, LATENCY_FLOOR_MS) / max(baseline, LATENCY_FLOOR_MS)
    return CheckResult(
        name,
        ratio <= limit + _EPS,
        canary,
        baseline,
        limit,
        f"{what} {canary:.1f} ms vs {baseline:.1f} ms in production: "
        f"x{ratio:.2f} (limit x{limit:g})",
    )


def _accuracy(canary: VersionStats, baseline: VersionStats, checks: Checks) -> CheckResult | None:
    c_acc, b_acc = canary.accuracy, baseline.accuracy
    if c_acc is None or b_acc is None:
        return None
    limit = checks.max_accuracy_drop
    drop = b_acc - c_acc
    se = math.sqrt(c_acc * (1 - c_acc) / canary.graded + b_acc * (1 - b_acc) / baseline.graded)
    worse, note = _beyond_noise(drop - limit, se, checks.confidence)
    return CheckResult(
        "accuracy",
        not worse,
        c_acc,
        b_acc,
        limit,
        f"accuracy {c_acc:.4f} vs {b_acc:.4f} in production: "
        f"drop {drop:.4f} (limit {limit:g}){note}",
    )


def _llm_checks(
    canary: VersionStats,
    baseline: VersionStats,
    c: LlmFigures,
    b: LlmFigures,
    checks: Checks,
) -> list[CheckResult]:
    """A prompt version's own checks: time to first token and cost per call always;
    accuracy and mean score once both have ``min_feedback`` answers rated that way."""
    results = [
        _ratio(
            "p95_ttft",
            "p95 time to first token",
            c.p95_ttft_ms,
            b.p95_ttft_ms,
            checks.max_ttft_ratio,
            "answered no call in the window",
        ),
        _cost_per_call(c, b, checks),
    ]
    if min(canary.graded, baseline.graded) >= checks.min_feedback:
        accuracy = _accuracy(canary, baseline, checks)
        if accuracy is not None:
            results.append(accuracy)
    c_score, b_score = c.mean_score, b.mean_score
    if (
        min(c.scored, b.scored) >= checks.min_feedback
        and c_score is not None
        and b_score is not None
    ):
        limit = checks.max_score_drop
        drop = b_score - c_score
        se = math.sqrt(c.score_variance() / c.scored + b.score_variance() / b.scored)
        worse, note = _beyond_noise(drop - limit, se, checks.confidence)
        results.append(
            CheckResult(
                "mean_score",
                not worse,
                c_score,
                b_score,
                limit,
                f"mean feedback score {c_score:.4f} vs {b_score:.4f} in production: "
                f"drop {drop:.4f} (limit {limit:g}){note}",
            )
        )
    return results


def _cost_per_call(c: LlmFigures, b: LlmFigures, checks: Checks) -> CheckResult:
    limit = checks.max_cost_increase
    c_cost, b_cost = c.cost_per_call, b.cost_per_call
    if c_cost is None or b_cost is None:
        missing = "canary" if c_cost is None else "production"
        return CheckResult(
            "cost_per_call",
            True,
            c_cost,
            b_cost,
            limit,
            f"not compared: {missing} has no priced call in the window",
        )
    # If production cost nothing, any cost is an unbounded relative increase.
    relative = (c_cost - b_cost) / b_cost if b_cost > 0 else (math.inf if c_cost > 0 else 0.0)
    # H0: canary mean <= (1 + limit) * production mean; Welch's standard error.
    scale = 1.0 + limit
    se = math.sqrt(c.cost_variance() / c.priced + scale * scale * b.cost_variance() / b.priced)
    worse, note = _beyond_noise(c_cost - scale * b_cost, se, checks.confidence)
    return CheckResult(
        "cost_per_call",
        not worse,
        c_cost,
        b_cost,
        limit,
        f"cost per call ${c_cost:.6f} vs ${b_cost:.6f} in production: "
        f"{relative:+.1%} (limit +{limit:.0%}){note}",
    )
