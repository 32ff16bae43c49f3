"""The guard stages of a service's path: ``guard input`` after the contract, before
the route; ``guard output`` after inference, before the decision.

:class:`Rails` holds a service's two guards (built once, when the gateway starts) and
applies them to what its paths carry: a classic service's rows (its free-text
fields), an LLM service's template variables or a chat's messages, and an answer,
whole or streamed. Each stage leaves on the :class:`Exchange` the input as records may
keep it (``masked``: PII and secrets replaced, whatever the action) and the verdict;
a ``block`` raises :class:`GuardBlockedError` naming the category and detector, never
the text. Every finding acted on is counted in ``prodgate_guard_verdicts_total``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prodgate.exceptions import (
    ContractViolationError,
    GuardBlockedError,
    OutputContractError,
    Violation,
)
from prodgate.guard.finding import SCHEMA, Detector, Finding
from prodgate.guard.policy import Context, Guard, Hit, Verdict, judge
from prodgate.guard.stream import StreamGuard
from prodgate.pipeline.decision import AUTO, ESCALATED, REJECTED
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.metrics import Metrics
from prodgate.runtime.base import Prediction
from prodgate.spec import ServiceSpec
from prodgate.spec.guard import BLOCK, ESCALATE, INPUT, LOG, OUTPUT

#: Roles whose messages a chat's caller wrote (all of them: a history, a tool's result
#: or a retrieved document may carry an injection as well as a user's message).
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


@dataclass(frozen=True, slots=True)
class Leaks:
    """A prompt version's leak rail: its canary and the detectors that find it, or its
    system prompt, in an answer."""

    canary: str | None
    detectors: tuple[Detector, ...]

    def plant(self, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """*messages* with the canary at the end of the first system message (a model
        that repeats its instructions repeats it too)."""
        if self.canary is None:
            return messages
        for i, m in enumerate(messages):
            if m.get("role") in ("system", "developer") and isinstance(m.get("content"), str):
                planted = {**m, "content": f"{m['content']}\n\n[ref {self.canary}]"}
                return [*messages[:i], planted, *messages[i + 1 :]]
        return [{"role": "system", "content": f"[ref {self.canary}]"}, *messages]


class Rails:
    """A service's guards, as its path applies them."""

    def __init__(self, service: ServiceSpec, metrics: Metrics, fields: Sequence[str]) -> None:
        spec = service.guard
        self.service = service.name
        self.metrics = metrics
        timeouts = metrics.guard_timeouts
        self.input = Guard(
            spec,
            INPUT,
            on_timeout=lambda d: timeouts.labels(service.name, INPUT, d).inc(),
        )
        self.output = Guard(
            spec,
            OUTPUT,
            on_timeout=lambda d: timeouts.labels(service.name, OUTPUT, d).inc(),
        )
        self.hold_back = spec.hold_back
        #: A classic service's fields the input guard reads.
        self.fields = tuple(spec.fields if spec.fields is not None else fields)
        self._leaks: dict[int, Leaks] = {}

    @property
    def on(self) -> bool:
        return self.input.on or self.output.on

    # -- input -----------------------------------------------------------------------

    async def check_rows(self, ex: Exchange) -> list[Verdict] | None:
        """Guard input of a classic request: each row's free-text fields. Redacted values
        replace the rows' own (the model sees them); *ex.masked* is the payload as the
        record keeps it. The verdict of each row, or None when no rail is on."""
        if not self.input.on or not self.fields:
            return None
        verdicts: list[Verdict] = []
        rows: list[Mapping[str, Any]] = []
        masked: list[dict[str, Any]] = []
        whole = Verdict()
        for i, row in enumerate(ex.rows):
            verdict = Verdict()
            new, hidden = dict(row), dict(row)
            for name in self.fields:
                value = row.get(name)
                if not isinstance(value, str) or not value:
                    continue
                path = f"instances/{i}/{name}" if not ex.single else f"inputs/{name}"
                v = await self.input.check_async(value, None, path)
                if v.hits:
                    verdict.absorb(v)
                    new[name], hidden[name] = v.text, v.masked
            verdicts.append(verdict)
            rows.append(new)
            masked.append(hidden)
            whole.absorb(verdict)
        ex.rows = rows
        ex.masked = {"inputs": masked[0]} if ex.single else {"instances": masked}
        self._settle(ex, whole, INPUT)
        return verdicts

    async def check_variables(self, ex: Exchange) -> None:
        """Guard input of an LLM predict: the template's text variables, before the
        template is filled in."""
        if not self.input.on:
            return
        row = ex.rows[0]
        whole = Verdict()
        new, hidden = dict(row), dict(row)
        for name, value in row.items():
            if isinstance(value, str) and value:
                v = await self.input.check_async(value, None, f"inputs/{name}")
                if v.hits:
                    whole.absorb(v)
                    new[name], hidden[name] = v.text, v.masked
        ex.rows = (new,)
        ex.masked = {"inputs": hidden}
        self._settle(ex, whole, INPUT)

    async def check_messages(
        self, ex: Exchange, messages: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Guard input of a chat: every message the caller wrote. The messages as the
        model sees them and as the record keeps them."""
        if not self.input.on:
            return messages, messages
        whole = Verdict()
        seen: list[dict[str, Any]] = []
        hidden: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            content = m.get("content")
            if m.get("role") not in _CHAT_ROLES or not content:
                seen.append(m)
                hidden.append(m)
                continue
            if isinstance(content, str):
                v = await self.input.check_async(content, None, f"messages/{i}/content")
                whole.absorb(v)
                seen.append({**m, "content": v.text} if v.hits else m)
                hidden.append({**m, "content": v.masked} if v.hits else m)
                continue
            parts, hidden_parts = [], []
            for j, part in enumerate(content if isinstance(content, list) else ()):
                text = part.get("text") if isinstance(part, dict) else None
                if not isinstance(text, str) or not text:
                    parts.append(part)
                    hidden_parts.append(part)
                    continue
                v = await self.input.check_async(text, None, f"messages/{i}/content/{j}/text")
                whole.absorb(v)
                parts.append({**part, "text": v.text} if v.hits else part)
                hidden_parts.append({**part, "text": v.masked} if v.hits else part)
            seen.append({**m, "content": parts})
            hidden.append({**m, "content": hidden_parts})
        ex.masked = {"messages": hidden}
        self._settle(ex, whole, INPUT)
        return seen, hidden

    def mask(self, value: Any) -> Any:
        """*value* (a refused request's payload) with every PII or secret span the input
        rails find replaced, in every string inside it; for a record, nothing counted."""
        if isinstance(value, str):
            return self.input.check(value).masked if value else value
        if isinstance(value, dict):
            return {k: self.mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.mask(v) for v in value]
        return value

    def _settle(self, ex: Exchange, verdict: Verdict, direction: str) -> None:
        ex.guard = verdict
        self.count(verdict.hits, direction)
        blocked = verdict.blocked
        if blocked is not None:
            raise blocked_error(blocked, direction)

    # -- output ----------------------------------------------------------------------

    async def check_predictions(
        self, ex: Exchange, predictions: Sequence[Prediction]
    ) -> tuple[list[Prediction], list[Verdict] | None]:
        """Guard output of a classic request: each prediction whose value is text (a
        callable model may answer with text). Redacted values replace the model's own;
        a block refuses the request (422). The verdict of each row, or None."""
        if not self.output.on:
            return list(predictions), None
        out: list[Prediction] = []
        verdicts: list[Verdict] = []
        whole = Verdict()
        for i, (row, p) in enumerate(zip(ex.rows, predictions, strict=True)):
            if not isinstance(p.value, str) or not p.value:
                out.append(p)
                verdicts.append(Verdict())
                continue
            question = "\n".join(str(v) for v in row.values() if isinstance(v, str))
            path = f"predictions/{i}" if not ex.single else "prediction"
            v = await self.output.check_async(p.value, Context(question), path)
            out.append(Prediction(v.text, p.probabilities) if v.hits else p)
            verdicts.append(v)
            whole.absorb(v)
        self.count(whole.hits, OUTPUT)
        blocked = whole.blocked
        if blocked is not None:
            raise blocked_error(blocked, OUTPUT, whole)
        return out, verdicts

    def leaks(self, version: int, prompt: Any) -> Leaks | None:
        """The leak rail of prompt version *version*: its canary (made once per version
        and process) and detectors; None when the output guard has no leak rail."""
        rule = self.output.leak
        if rule is None:
            return None
        leaks = self._leaks.get(version)
        if leaks is None:
            from prodgate.guard.leak import CanaryDetector, PromptEchoDetector, new_canary

            detectors: list[Detector] = []
            canary = None
            if rule.options.get("canary", True):
                canary = new_canary()
                detectors.append(CanaryDetector(canary))
            system = "\n".join(
                m.content for m in prompt.messages if m.role in ("system", "developer")
            )
            if system.strip():
                detectors.append(PromptEchoDetector(system, int(rule.options.get("words", 8))))
            leaks = self._leaks[version] = Leaks(canary, tuple(detectors))
        return leaks

    async def check_answer(self, text: str, context: Context) -> Verdict:
        """Guard output of a whole answer; a block raises."""
        verdict = await self.output.check_async(text, context)
        self.count(verdict.hits, OUTPUT)
        return verdict

    def schema_rail(
        self, exc: OutputContractError, answered: Verdict | None
    ) -> tuple[OutputContractError | None, Verdict | None]:
        """An answer that breaks the output contract: still the failure, unless the
        output guard's ``schema`` rail says to escalate or only log it; then no failure,
        and the answer's verdict with the finding."""
        rule = self.output.schema
        if rule is None or rule.action == BLOCK:
            return exc, answered
        finding = Finding(SCHEMA, "output_contract", "schema", 1.0, 0, len(exc.text))
        hit = Hit(finding, ESCALATE if rule.action == ESCALATE else LOG)
        found = judge(exc.text, [hit])
        if answered is not None:
            answered.absorb(found)
            found = answered
        self.count([hit], OUTPUT)
        return None, found

    def stream(self, context: Context) -> StreamGuard:
        """A guard over an answer that comes in pieces."""
        return StreamGuard(self.output, context, self.hold_back)

    def count(self, hits: Sequence[Hit], direction: str) -> None:
        """Count a request's verdicts: once per category and action, however many
        findings (two layers of one detector, or three e-mails) made them."""
        counter = self.metrics.guard_verdicts
        for category, action in {(h.finding.category, h.action) for h in hits}:
            counter.labels(self.service, direction, category, action).inc()


def blocked_error(hit: Hit, direction: str, verdict: Verdict | None = None) -> GuardBlockedError:
    """The refusal of a block; *verdict*, the whole verdict of an answer, for its record."""
    f = hit.finding
    exc = GuardBlockedError(direction, f.category, f.kind, f.detector, path=hit.path)
    exc.verdict = verdict
    return exc


def question_of(ex: Exchange) -> str:
    """The text of the question, for telling an answer's new PII from the question's."""
    if ex.chat is not None:
        parts = []
        for m in ex.chat.messages:
            content = m.get("content")
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(p.get("text", "") for p in content if isinstance(p, dict))
        return "\n".join(parts)
    return "\n".join(str(v) for v in ex.rows[0].values()) if ex.rows else ""


#: The longest text ``/guard`` and ``prodgate guard check`` take (characters).
MAX_CHECK_CHARS = 100_000


def check_request(payload: Any) -> tuple[str, str, str]:
    """The text, direction and question of a ``/guard`` body; every mistake at once."""
    violations: list[Violation] = []
    if not isinstance(payload, dict):
        raise ContractViolationError([Violation("", "expected an object with a text")])
    text = payload.get("text")
    if not isinstance(text, str):
        violations.append(Violation("/text", "required: the text to check, a string"))
    elif len(text) > MAX_CHECK_CHARS:
        violations.append(Violation("/text", f"longer than {MAX_CHECK_CHARS} characters"))
    direction = payload.get("direction", INPUT)
    if direction not in (INPUT, OUTPUT):
        violations.append(Violation("/direction", "expected input or output"))
    question = payload.get("question", "")
    if not isinstance(question, str):
        violations.append(Violation("/question", "expected a string: the question answered"))
    unknown = sorted(set(payload) - {"text", "direction", "question"})
    violations.extend(Violation(f"/{k}", "unknown field") for k in unknown)
    if violations:
        raise ContractViolationError(violations)
    return str(text), str(direction), str(question)


async def check_text(
    rails: Rails,
    text: str,
    direction: str,
    question: str = "",
    prompt: Any = None,
    version: int | None = None,
) -> Verdict:
    """One text through a service's rails, as a caller outside the gateway's path asks
    (``/guard``, ``prodgate guard check``): the verdict, counted, nothing raised."""
    if direction == INPUT:
        verdict = await rails.input.check_async(text)
        rails.count(verdict.hits, INPUT)
        return verdict
    leaks = rails.leaks(version, prompt) if prompt is not None and version is not None else None
    context = Context(question, leaks.detectors if leaks is not None else ())
    return await rails.check_answer(text, context)


# -- what an answer says of its verdicts -------------------------------------------------


def verdicts(asked: Verdict | None, answered: Verdict | None) -> dict[str, Any]:
    """The guards' verdicts on a call as its caller and its record see them, by
    direction; empty when neither found anything."""
    out: dict[str, Any] = {}
    if asked is not None and asked.hits:
        out["input"] = asked.record()
    if answered is not None and answered.hits:
        out["output"] = answered.record()
    return out


def decision(asked: Verdict | None, answered: Verdict | None, status: int) -> str:
    """``rejected`` when refused; ``escalated`` when a rail says so; else ``auto``."""
    if status != 200:
        return REJECTED
    if (asked is not None and asked.escalated) or (answered is not None and answered.escalated):
        return ESCALATED
    return AUTO
