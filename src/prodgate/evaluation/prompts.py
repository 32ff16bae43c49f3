"""Evaluate a prompt version on test cases, and compare two, as classifiers are.

:func:`evaluate_prompt_version` renders every case (:mod:`~prodgate.evaluation.cases`)
with the version's prompt, sends it through the version's route exactly as the
gateway would (the prompt's model, then its fallbacks, the service's retries, timeouts
and circuit breakers), scores the answers (:mod:`~prodgate.evaluation.answers`), and
stores the result with an ``evaluate`` audit record in one transaction, where approval
reads it as it reads a classifier's. :func:`compare_prompt_versions` runs the same
cases through two versions and stores nothing.

An evaluation has its own provider clients and circuit breakers: a version that
fails its cases must not open the breakers production traffic goes through (nor
production's failures skip an evaluation's calls). It spends real money at the
providers but is not counted against the service's budgets, which govern traffic.

Calls run concurrently on one event loop, at most :attr:`Limits.concurrency` at a
time; with :attr:`Limits.max_cost_usd`, no case is started once the calls so far
(judge included) cost that much. Calls in flight then still finish, so the spend can
pass the cap by at most ``concurrency`` cases. A run stopped early is stored, but does
not pass: gates judged on the cheaper part of a file prove nothing about the rest.

The judge (``llm.judge`` in the spec) grades each answer of a case with an
``expected`` answer, from 0 to 1, with the fixed prompt :data:`JUDGE_SYSTEM` /
:data:`JUDGE_USER` at temperature 0. Its reply must begin with that number (``0.8``,
``1``); any other reply is a judge failure, counted in the totals and left out of
``judge_score``. Judge calls go through a route of their own (the judge's model,
no fallbacks) and their cost is counted apart from the version's.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jinja2
import jsonschema_rs
import orjson

from prodgate.contract import Contract
from prodgate.evaluation import answers as scoring
from prodgate.evaluation.answers import Answer, Form
from prodgate.evaluation.cases import Case, Cases, read_cases
from prodgate.evaluation.evaluate import StoredEvaluation, store_evaluation
from prodgate.exceptions import ArtifactError, UsageError
from prodgate.llm import tokens
from prodgate.llm.breaker import Breakers
from prodgate.llm.endpoint import Endpoint
from prodgate.llm.prices import cost_usd
from prodgate.llm.prompt import Prompt, load_prompt
from prodgate.llm.route import Completion, Route, RouteFailed
from prodgate.llm.upstream import Upstreams
from prodgate.registry import artifacts
from prodgate.registry.versions import Version, get_version
from prodgate.spec import ServiceSpec
from prodgate.spec.llm import LlmService, ModelRef
from prodgate.store.engine import Store

#: Cases in flight at once when the caller names no other number.
DEFAULT_CONCURRENCY = 8

JUDGE_SYSTEM = (
    "You grade answers. Compare the answer with the expected answer to the same request. "
    "Reply with one number from 0 to 1 and nothing else: 1 when the answer says what the "
    "expected answer says, 0 when it says something else or nothing of it, a fraction in "
    "between when it is partly right. Meaning counts; wording, order and style do not."
)
JUDGE_USER = (
    "Request:\n{request}\n\nExpected answer:\n{expected}\n\nAnswer to grade:\n{answer}\n\n"
    "Grade (0 to 1):"
)
#: What a judge may write: tokens enough for a number.
JUDGE_MAX_TOKENS = 16
_GRADE = re.compile(r"^[\s\"'`*]*(\d+(?:\.\d+)?|\.\d+)")

Progress = Callable[[str], None]
#: Told after each case: cases done, cases in the file, USD spent so far.
Step = Callable[[int, int, float], None]


@dataclass(frozen=True)
class Limits:
    """How hard an evaluation may press the providers, and how much it may spend."""

    concurrency: int = DEFAULT_CONCURRENCY
    max_cost_usd: float | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise UsageError("--concurrency must be at least 1")
        if self.max_cost_usd is not None and not self.max_cost_usd > 0:
            raise UsageError("--max-cost must be above 0 (USD)")


def load_version_prompt(store: Store, version: Version) -> Prompt:
    """The prompt of *version*, from its stored artifact (checked to be what was
    registered)."""
    if version.flavor != "prompt":
        raise ArtifactError(
            f"version {version.number} is a {version.flavor} model, not a prompt version"
        )
    return load_prompt(artifacts.materialise(store, version))


def targets(prompt: Prompt, llm: LlmService) -> list[ModelRef]:
    """The models a version's route tries, as the gateway's fleet builds it."""
    return prompt.targets(llm)


def check_keys(llm: LlmService, models: Sequence[ModelRef]) -> None:
    """Refuse to start when a provider's API key is not in the environment: every call
    to it would fail, and a stored evaluation full of errors would say nothing about
    the version. Names the variable, never a value."""
    for ref in [*models, *([llm.judge] if llm.judge is not None else [])]:
        provider = llm.providers[ref.provider]
        env = provider.api_key_env
        if env and not os.environ.get(env):
            raise UsageError(
                f"the environment has no {env}, the API key of provider {provider.name} "
                f"({ref}); set it to evaluate"
            )


def render(prompt: Prompt, cases: Cases) -> list[list[dict[str, Any]]]:
    """Every case's messages; a template that fails on a case is that case's mistake
    (a variable it lacks), named by its line, before any call is made."""
    out = []
    for case in cases.cases:
        try:
            out.append([dict(m) for m in prompt.render(case.inputs)])
        except jinja2.TemplateError as exc:
            raise UsageError(
                f"{cases.where(case)}: the prompt cannot be filled in: {exc}"
            ) from None
    return out


def form_of(service: ServiceSpec, prompt: Prompt, label: str | None, judged: bool) -> Form:
    """How this version's answers are read (see :class:`~prodgate.evaluation.answers.Form`).
    A JSON answer must fit the output contract, as the gateway's
    :meth:`~prodgate.llm.endpoint.Endpoint.parse_output` demands."""
    json_answer = prompt.response_format != "text"
    output = service.output_contract
    validator = jsonschema_rs.validator_for(dict(output)) if json_answer and output else None
    return Form(
        json=json_answer,
        validator=validator,
        label_field=scoring.label_field(service, prompt, label),
        judged=judged,
    )


def _grade_of(text: str) -> float | None:
    match = _GRADE.match(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if 0.0 <= value <= 1.0 else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class _Run:
    """One version's calls over the cases: the route, the judge, the spend."""

    def __init__(
        self,
        service: ServiceSpec,
        prompt: Prompt,
        limits: Limits,
    ) -> None:
        self.llm = llm_of(service)
        self.limits = limits
        self.upstreams = Upstreams.from_spec(self.llm.providers)
        breakers = Breakers(self.llm.providers)
        models = targets(prompt, self.llm)
        check_keys(self.llm, models)
        route = Route(models, self.upstreams, breakers, self.llm.retry, self.llm.timeouts)
        # The gateway's own endpoint: the same body, the same prices.
        self.endpoint = Endpoint.build(prompt, route, models, self.llm, service.output_contract)
        judge = self.llm.judge
        self.judge = (
            None
            if judge is None
            else Route([judge], self.upstreams, breakers, self.llm.retry, self.llm.timeouts)
        )
        self.spent = 0.0

    def _cost(
        self, completion: Completion, messages: Sequence[Mapping[str, Any]]
    ) -> tuple[tokens.Usage, float]:
        """What an answered call used and cost: the provider's usage, else counted."""
        usage = completion.usage or tokens.estimate_usage(messages, completion.text)
        price = self.endpoint.price(ModelRef(completion.provider, completion.model))
        return usage, cost_usd(price, usage)

    async def ask(self, case: Case, messages: list[dict[str, Any]]) -> Answer:
        try:
            completion = await self.endpoint.route.complete(self.endpoint.body(messages, {}))
        except RouteFailed as failed:
            done = failed.completion
            error = done.error
            why = f"{error.kind}: {error.message}" if error is not None else "no target answered"
            return Answer(
                error=why,
                latency_ms=done.latency_ms,
                model=f"{done.provider}/{done.model}",
                attempts=len(done.attempts),
            )
        usage, cost = self._cost(completion, messages)
        self.spent += cost
        answer = Answer(
            text=completion.text,
            latency_ms=completion.latency_ms,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            estimated=usage.estimated,
            cost_usd=cost,
            model=f"{completion.provider}/{completion.model}",
            attempts=len(completion.attempts),
        )
        if self.judge is not None and case.expected is not None:
            return await self._judged(answer, case, messages)
        return answer

    async def _judged(
        self, answer: Answer, case: Case, messages: Sequence[Mapping[str, Any]]
    ) -> Answer:
        assert self.judge is not None
        request = next(
            (str(m["content"]) for m in reversed(messages) if m.get("role") == "user"), ""
        )
        ask = [
            {"role": "system", "content": JUDGE_SYSTEM},
            {
                "role": "user",
                "content": JUDGE_USER.format(
                    request=request, expected=_text(case.expected), answer=answer.text
                ),
            },
        ]
        body = {"messages": ask, "temperature": 0, "max_tokens": JUDGE_MAX_TOKENS}
        try:
            completion = await self.judge.complete(body)
        except RouteFailed as failed:
            error = failed.completion.error
            why = error.message if error is not None else "no answer"
            return replace(answer, judge_error=f"the judge failed: {why}")
        _, cost = self._cost(completion, ask)
        self.spent += cost
        grade = _grade_of(completion.text)
        if grade is None:
            return replace(
                answer,
                judge_cost_usd=cost,
                judge_error=f"the judge gave no grade: {completion.text[:80]!r}",
            )
        return replace(answer, judge=grade, judge_cost_usd=cost)

    def over(self) -> bool:
        cap = self.limits.max_cost_usd
        return cap is not None and self.spent >= cap

    async def all(
        self, cases: Sequence[Case], rendered: Sequence[list[dict[str, Any]]], step: Step | None
    ) -> list[Answer | None]:
        """Every case's answer, or None for those not started (the cost cap)."""
        out: list[Answer | None] = [None] * len(cases)
        slots = asyncio.Semaphore(self.limits.concurrency)
        done = 0

        async def one(i: int) -> None:
            nonlocal done
            try:
                out[i] = await self.ask(cases[i], rendered[i])
            finally:
                slots.release()
            done += 1
            if step is not None:
                step(done, len(cases), self.spent)

        if step is not None:
            step(0, len(cases), 0.0)
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(len(cases)):
                    await slots.acquire()
                    if self.over():
                        slots.release()
                        break
                    group.create_task(one(i))
        finally:
            await self.upstreams.close()
        return out


def llm_of(service: ServiceSpec) -> LlmService:
    """The ``llm`` section of *service*; a :class:`UsageError` for other kinds."""
    if service.kind != "llm" or service.llm is None:
        raise UsageError(f"{service.name} is a {service.kind}, not a service of kind llm")
    return service.llm


def answer_cases(
    service: ServiceSpec,
    prompt: Prompt,
    cases: Cases,
    *,
    limits: Limits | None = None,
    step: Step | None = None,
) -> tuple[list[Answer | None], float]:
    """Run every case through *prompt*'s route (see the module's docstring); each
    case's :class:`Answer` (None when the cost cap stopped it) and the USD spent."""
    rendered = render(prompt, cases)
    run = _Run(service, prompt, limits or Limits())
    answers = asyncio.run(run.all(cases.cases, rendered, step))
    return answers, run.spent


def score_prompt_version(
    store: Store,
    service: ServiceSpec,
    version: Version,
    cases: Cases,
    label: str | None = None,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    step: Step | None = None,
) -> dict[str, Any]:
    """Run *version* over *cases* and score its answers (nothing is stored).

    The result is :func:`~prodgate.evaluation.answers.score`'s, plus ``kind`` (llm),
    ``cases`` (in the file), ``model``, ``label_field``, ``spent_usd`` (judge
    included), ``contract_violations``, ``stopped`` (why not every case ran, or None)
    and ``failures`` (the first 20 failed calls: line, id, model, error).
    """
    limits = limits or Limits()
    llm = llm_of(service)
    prompt = load_version_prompt(store, version)
    form = form_of(service, prompt, label, judged=llm.judge is not None)
    scoring.check_labels(cases.cases, form, str(cases.path))
    if progress:
        progress(
            f"running {len(cases):,} cases through {service.name} version {version.number} "
            f"({prompt.model}, {limits.concurrency} at a time)..."
        )
    got, spent = answer_cases(service, prompt, cases, limits=limits, step=step)
    result = scoring.score(service, cases.cases, got, form)
    ran = sum(a is not None for a in got)
    contract = Contract(service.model_contract)
    result.update(
        kind="llm",
        cases=len(cases),
        model=str(prompt.model),
        label_field=form.label_field,
        spent_usd=round(spent, 9),
        contract_violations=sum(not contract.is_valid(c.inputs) for c in cases.cases),
        stopped=None,
    )
    if ran < len(cases):
        stopped = (
            f"the cost cap of ${limits.max_cost_usd:g} was reached after {ran} of "
            f"{len(cases)} cases"
        )
        result["stopped"] = stopped
        result["gates"].append(
            {
                "gate": "every case run",
                "passed": False,
                "value": float(ran),
                "threshold": float(len(cases)),
                "detail": stopped,
            }
        )
        result["passed"] = False
    result["failures"] = [
        {"line": c.line, "id": c.id, "model": a.model, "error": a.error}
        for c, a in zip(cases.cases, got, strict=True)
        if a is not None and a.error is not None
    ][:20]
    return result


def evaluate_prompt_version(
    store: Store,
    service: ServiceSpec,
    version_number: int,
    data_path: Path | str,
    label: str | None = None,
    *,
    actor: str,
    limits: Limits | None = None,
    progress: Progress | None = None,
    step: Step | None = None,
) -> StoredEvaluation:
    """Evaluate version *version_number* of the llm *service* on a cases file, and store
    the result with its audit record as :func:`~prodgate.evaluation.evaluate_version`
    does for a model (``label_column`` is the answer's label field, or empty)."""
    llm_of(service)
    with store.read() as conn:
        version = get_version(conn, service.name, version_number)
    cases = read_cases(service, data_path)
    result = score_prompt_version(
        store, service, version, cases, label, limits=limits, progress=progress, step=step
    )
    label_field = result["label_field"] or ""
    text = orjson.dumps(result).decode()
    evaluation_id = store_evaluation(
        store,
        service,
        version,
        dataset=cases.fingerprint,
        label_column=label_field,
        text=text,
        passed=result["passed"],
        actor=actor,
        audit={
            "kind": "llm",
            "model": result["model"],
            "rows": result["rows"],
            "metrics": result["metrics"],
            "totals": result["totals"],
            "stopped": result["stopped"],
            "gates": result["gates"],
            "passed": result["passed"],
        },
    )
    return StoredEvaluation(evaluation_id, result, cases.fingerprint, label_field)


def compare_prompt_versions(
    store: Store,
    service: ServiceSpec,
    a: int,
    b: int,
    data_path: Path | str,
    label: str | None = None,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    step: Step | None = None,
) -> tuple[dict[str, Any], dict[str, Any], Cases]:
    """Score versions *a* and *b* on the same cases (nothing is stored): both results
    and the cases read."""
    llm_of(service)
    with store.read() as conn:
        va = get_version(conn, service.name, a)
        vb = get_version(conn, service.name, b)
    cases = read_cases(service, data_path)
    ra = score_prompt_version(
        store, service, va, cases, label, limits=limits, progress=progress, step=step
    )
    rb = score_prompt_version(
        store, service, vb, cases, label, limits=limits, progress=progress, step=step
    )
    return ra, rb, cases
