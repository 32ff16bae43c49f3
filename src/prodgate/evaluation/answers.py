"""Score a prompt version's answers to test cases: checks, cost, latency, cohorts, gates.

Pure, like :mod:`~prodgate.evaluation.scoring` for classifiers: it takes the cases and
what each got (:class:`Answer`) and returns JSON-ready data shaped as a classifier's
result (``rows``, ``metrics``, ``cohorts``, ``gates``, ``passed``), so gates, approvals,
reports and history read both alike. The metrics (names as in
:data:`~prodgate.spec.gates.LLM_METRICS`):

- ``exact_match``, ``contains``, ``regex``: share of the cases carrying that check
  whose answer passed it;
- ``accuracy``: share of the cases carrying a ``label`` whose answer gave that label:
  the answer's text (stripped) when the prompt answers in text, else the label field
  of the parsed JSON (:func:`label_field`);
- ``json_valid``: when the prompt asks for JSON, share of all cases whose answer
  parses and fits the service's ``contract.output`` (when it declares one);
- ``judge_score``: mean grade, 0 to 1, a judge model gave the answers of cases with an
  ``expected`` answer (only when the spec names ``llm.judge``);
- ``error_rate``: share of calls that failed after the route's retries and fallbacks;
- ``cost_per_call``: mean USD of an answered call (from the provider's usage, counted
  with the tokenizer when it gave none); ``latency_p50_ms``, ``latency_p95_ms``: of
  answered calls, retries and fallbacks included.

A case whose call failed counts as a miss for every check it carries (an answer that
never came is not a right one), so a flaky version cannot look accurate by failing
its hard cases; the failure itself is in ``error_rate``. A metric no case applies to
is None, and a gate on it fails (:mod:`~prodgate.evaluation.gates`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from prodgate.evaluation import gates as gates_module
from prodgate.evaluation.cases import Case, input_frame
from prodgate.evaluation.scoring import _cohort_masks
from prodgate.exceptions import UsageError
from prodgate.llm.prompt import Prompt
from prodgate.spec import ServiceSpec

#: The answer metrics, in the order reports show them.
QUALITY = ("exact_match", "contains", "regex", "json_valid", "accuracy", "judge_score")


@dataclass(frozen=True)
class Answer:
    """What one case got from the version (and from the judge, when there is one)."""

    text: str = ""
    error: str | None = None  # why the call failed in the end; None when it answered
    latency_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: bool = False  # tokens counted here: the provider gave no usage
    cost_usd: float = 0.0
    model: str = ""  # provider/model that answered (or was tried last)
    attempts: int = 0  # tries, retries and fallbacks included
    judge: float | None = None  # the judge's grade, 0..1
    judge_cost_usd: float = 0.0
    judge_error: str | None = None  # the judge failed or gave no grade

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Form:
    """How the answers of one version are read."""

    json: bool  # the prompt asks for JSON (json_object or json_schema)
    validator: Any = None  # the compiled contract.output, when declared
    label_field: str | None = None  # where a JSON answer holds its label
    judged: bool = False  # the spec names a judge


def label_field(service: ServiceSpec, prompt: Prompt, given: str | None = None) -> str | None:
    """The field of a JSON answer that holds its label; None for a text prompt, whose
    whole answer (stripped) is the label.

    *given* (``--label``) if it is a property of ``contract.output``; else the output
    property whose ``enum`` is the service's labels; else the only property with an
    ``enum``; else a property named ``label``; else None (cases with a label are then
    refused by :func:`check_labels`).
    """
    if prompt.response_format == "text":
        if given is not None:
            raise UsageError("--label names a field of a JSON answer; this prompt answers text")
        return None
    properties: dict[str, Any] = (service.output_contract or {}).get("properties") or {}
    if given is not None:
        if properties and given not in properties:
            raise UsageError(
                f"--label {given!r} is not a property of the service's contract.output "
                f"({', '.join(properties)})"
            )
        return given
    enums: list[str] = [
        str(name)
        for name, schema in properties.items()
        if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list)
    ]
    labels = set(service.labels or ())
    matching = [n for n in enums if labels and {str(v) for v in properties[n]["enum"]} == labels]
    if matching:
        return matching[0]
    if len(enums) == 1:
        return enums[0]
    if "label" in properties or not properties:
        return "label"
    return None


def check_labels(cases: Sequence[Case], form: Form, where: str) -> None:
    """Refuse cases with labels when no field of the answer could hold one."""
    if form.json and form.label_field is None and any(c.label is not None for c in cases):
        raise UsageError(
            f"{where}: the cases give labels, but no property of the service's contract.output "
            "holds one; give the label property an enum of the labels, or pass --label FIELD"
        )


def _parsed(text: str) -> tuple[bool, Any]:
    try:
        return True, orjson.loads(text)
    except orjson.JSONDecodeError:
        return False, None


def _given_label(value: Any) -> str | None:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (bool, int)):
        return str(value)
    return None


@dataclass(frozen=True)
class Grade:
    """One case's verdicts: 1.0 passed, 0.0 missed, None when the check does not apply."""

    exact_match: float | None
    contains: float | None
    regex: float | None
    json_valid: float | None
    accuracy: float | None
    judge_score: float | None

    def get(self, metric: str) -> float | None:
        value: float | None = getattr(self, metric)
        return value


def _hit(ok: bool) -> float:
    return 1.0 if ok else 0.0


def grade(case: Case, answer: Answer, form: Form) -> Grade:
    """The verdict of every check *case* carries on *answer*."""
    text = answer.text if answer.ok else ""
    is_json, value = _parsed(text) if answer.ok and form.json else (False, None)
    exact = None
    if case.expected is not None:
        if not answer.ok:
            exact = 0.0
        elif isinstance(case.expected, str):
            exact = _hit(text.strip() == case.expected.strip())
        else:
            exact = _hit(is_json and value == case.expected)
    json_valid = None
    if form.json:
        fits = is_json and (form.validator is None or bool(form.validator.is_valid(value)))
        json_valid = _hit(answer.ok and fits)
    accuracy = None
    if case.label is not None:
        if form.json:
            found = _given_label(value.get(form.label_field)) if isinstance(value, dict) else None
        else:
            found = text.strip()
        accuracy = _hit(answer.ok and found == case.label)
    judge = None
    if form.judged and case.expected is not None:
        judge = answer.judge if answer.ok else 0.0
    return Grade(
        exact_match=exact,
        contains=None if not case.contains else _hit(all(t in text for t in case.contains)),
        regex=None if case.regex is None else _hit(bool(case.regex.search(text)) and answer.ok),
        json_valid=json_valid,
        accuracy=accuracy,
        judge_score=judge,
    )


def _mean(values: Sequence[float | None]) -> float | None:
    given = [v for v in values if v is not None]
    return float(sum(given) / len(given)) if given else None


def _percentile(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else None


def measure(grades: Sequence[Grade], answers: Sequence[Answer]) -> dict[str, Any]:
    """The metrics and totals of one set of cases (overall or a cohort)."""
    answered = [a for a in answers if a.ok]
    latencies = [a.latency_ms for a in answered if a.latency_ms is not None]
    cost = math.fsum(a.cost_usd for a in answers)
    metrics: dict[str, float | None] = {
        name: _mean([g.get(name) for g in grades]) for name in QUALITY
    }
    metrics["error_rate"] = (len(answers) - len(answered)) / len(answers) if answers else None
    metrics["cost_per_call"] = (
        round(math.fsum(a.cost_usd for a in answered) / len(answered), 12) if answered else None
    )
    metrics["latency_p50_ms"] = _percentile(latencies, 50)
    metrics["latency_p95_ms"] = _percentile(latencies, 95)
    judged = [a for a in answers if a.judge is not None or a.judge_error is not None]
    return {
        "rows": len(answers),
        "metrics": metrics,
        "escalation_rate": None,
        "business": None,
        "totals": {
            "calls": len(answers),
            "answered": len(answered),
            "failed": len(answers) - len(answered),
            "input_tokens": sum(a.input_tokens for a in answers),
            "output_tokens": sum(a.output_tokens for a in answers),
            "cached_tokens": sum(a.cached_tokens for a in answers),
            "estimated_calls": sum(a.estimated for a in answers),
            "cost_usd": round(cost, 9),
            "judge_calls": len(judged),
            "judge_failures": sum(a.judge_error is not None for a in judged),
            "judge_cost_usd": round(math.fsum(a.judge_cost_usd for a in answers), 9),
        },
    }


def score(
    service: ServiceSpec,
    cases: Sequence[Case],
    answers: Sequence[Answer | None],
    form: Form,
) -> dict[str, Any]:
    """Metrics overall and per cohort, and the gates' verdicts, of the answered cases.

    ``answers[i]`` is what ``cases[i]`` got, or None when it was not run (the cost cap
    was reached first); those are left out of every figure. Returns ``{"rows",
    "metrics", "totals", "cohorts", "gates", "passed", "escalation_rate": None,
    "business": None}``.
    """
    if len(answers) != len(cases):
        raise UsageError(f"score needs one answer per case ({len(cases)} cases, {len(answers)})")
    run = [i for i, a in enumerate(answers) if a is not None]
    ran = [cases[i] for i in run]
    got = [a for a in answers if a is not None]
    grades = [grade(c, a, form) for c, a in zip(ran, got, strict=True)]
    overall = measure(grades, got)
    cohorts = []
    if service.policy.cohorts and ran:
        frame = input_frame(service, ran)
        for cohort in service.policy.cohorts:
            for name, mask in _cohort_masks(cohort, frame):
                chosen = np.flatnonzero(np.asarray(mask, dtype=bool))
                entry = measure([grades[i] for i in chosen], [got[i] for i in chosen])
                cohorts.append({"name": name, "cohort": cohort.name, **entry})
    verdicts = gates_module.check(service.policy.gates, overall, cohorts)
    return {
        **overall,
        "cohorts": cohorts,
        "gates": verdicts,
        "passed": all(v["passed"] for v in verdicts),
    }
