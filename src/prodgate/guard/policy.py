"""A service's guard, one direction at a time: the detectors its policy names, run on
a text, and what their findings make of it.

:class:`Guard` turns a :class:`~prodgate.spec.guard.GuardSpec`'s rules into detectors
once, when the gateway loads; :meth:`Guard.check` scans one text and answers a
:class:`Verdict`: the strongest action taken (``block`` > ``escalate`` > ``redact`` >
``allow``), every finding with the action taken on it, the text as it goes on
(redacted spans replaced by their typed placeholder) and the text as records keep it
(every PII or secret span replaced, whatever its action: the audit log never holds
the raw value).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prodgate.guard.finding import SENSITIVE, Detector, Finding
from prodgate.spec.guard import BLOCK, ESCALATE, LOG, REDACT, GuardSpec, Rule

ALLOW = "allow"
#: Detectors whose scans run in a worker thread (slow, and they hold the GIL less).
THREADED = frozenset({"presidio"})
_RANK = {ALLOW: 0, LOG: 0, REDACT: 1, ESCALATE: 2, BLOCK: 3}
_ACTION_VERDICT = {LOG: ALLOW, REDACT: REDACT, ESCALATE: ESCALATE, BLOCK: BLOCK}

#: What a value is compared as, to tell whether an answer's PII was in the question.
_NOT_ALNUM = re.compile(r"[\W_]+")


def squeeze(text: str) -> str:
    """*text* without case, spaces or punctuation: ``4111 1111-1111`` is ``411111111111``."""
    return _NOT_ALNUM.sub("", text).casefold()


@dataclass(frozen=True, slots=True)
class Hit:
    """A finding and the action the policy took on it; *path* says where the text was
    (``messages/1/content``, ``inputs/notes``; empty for a lone text)."""

    finding: Finding
    action: str
    path: str = ""

    def moved(self, offset: int) -> Hit:
        """The same hit *offset* characters further in a longer text."""
        f = self.finding
        return Hit(
            Finding(f.category, f.kind, f.detector, f.score, f.start + offset, f.end + offset),
            self.action,
            self.path,
        )

    def as_dict(self) -> dict[str, Any]:
        out = self.finding.as_dict()
        out["action"] = self.action
        if self.path:
            out["path"] = self.path
        return out


@dataclass(slots=True)
class Verdict:
    """What the guard made of one or more texts."""

    verdict: str = ALLOW
    hits: list[Hit] = field(default_factory=list)
    #: The text as it goes on (redacted spans replaced): what the model or caller sees.
    text: str = ""
    #: The text as records keep it: every PII or secret span replaced as well.
    masked: str = ""
    #: The PII and secrets found, with their placeholders: never recorded, kept only to
    #: mask them wherever else a record would hold them (an answer that repeats them).
    sensitive: list[tuple[str, str]] = field(default_factory=list)

    @property
    def blocked(self) -> Hit | None:
        """The first finding that blocks, if any."""
        return next((h for h in self.hits if h.action == BLOCK), None)

    @property
    def escalated(self) -> bool:
        return any(h.action == ESCALATE for h in self.hits)

    def absorb(self, other: Verdict) -> None:
        """Take in the hits of another text's verdict."""
        self.hits.extend(other.hits)
        self.sensitive.extend(other.sensitive)
        if _RANK[other.verdict] > _RANK[self.verdict]:
            self.verdict = other.verdict

    def as_dict(self) -> dict[str, Any]:
        """The verdict as ``prodgate guard check --json`` and ``/guard`` answer it."""
        return {
            "verdict": self.verdict,
            "findings": [h.as_dict() for h in self.hits],
            "redacted": self.masked,
        }

    def record(self) -> dict[str, Any]:
        """The verdict as an audit record keeps it (no text: the record's input or
        output is the masked text)."""
        return {"verdict": self.verdict, "findings": [h.as_dict() for h in self.hits]}


@dataclass(frozen=True, slots=True)
class Context:
    """What an output scan knows besides the answer: the question (PII and secrets that
    were in it are not new) and the version's own leak detectors (its canary, its
    system prompt)."""

    question: str = ""
    leaks: Sequence[Detector] = ()


@dataclass(frozen=True, slots=True)
class _Rail:
    rule: Rule
    detector: Detector | None  # None: the leak rail, whose detectors come per version


class Guard:
    """The rails of one service in one direction."""

    def __init__(
        self,
        spec: GuardSpec,
        direction: str,
        *,
        on_timeout: Callable[[str], None] | None = None,
    ) -> None:
        self.direction = direction
        self.hold_back = spec.hold_back
        self.rules = spec.rules(direction)
        self._rails = [
            _Rail(rule, None if rule.detector == "leak" else build_detector(rule))
            for rule in self.rules
            if rule.detector != "schema"
        ]
        self.schema: Rule | None = next((r for r in self.rules if r.detector == "schema"), None)
        self.leak: Rule | None = next((r for r in self.rules if r.detector == "leak"), None)
        self.on = bool(self._rails)
        # Plug-in models run off the event loop: the ONNX classifier in its own threads
        # with its latency budget, Presidio in a worker thread.
        self._slow = [
            r
            for r in self._rails
            if hasattr(r.detector, "scan_async") or r.rule.detector in THREADED
        ]
        self.on_timeout = on_timeout

    def scan(self, text: str, context: Context | None = None, path: str = "") -> list[Hit]:
        """Every finding on *text* at or above its rule's threshold, with its action."""
        hits: list[Hit] = []
        for rail in self._rails:
            if rail.detector is None:
                for detector in context.leaks if context is not None else ():
                    hits.extend(self._keep(rail.rule, detector.scan(text), text, None, path))
            elif rail not in self._slow:
                hits.extend(self._keep(rail.rule, rail.detector.scan(text), text, context, path))
        return hits

    async def scan_async(
        self, text: str, context: Context | None = None, path: str = ""
    ) -> list[Hit]:
        """:meth:`scan`, with the plug-in models (run in their own threads) too."""
        hits = self.scan(text, context, path)
        for rail in self._slow:
            detector: Any = rail.detector
            if not hasattr(detector, "scan_async"):
                found = await asyncio.to_thread(detector.scan, text)
            else:
                before = getattr(detector, "timeouts", 0)
                found = await detector.scan_async(text)
                if self.on_timeout is not None and getattr(detector, "timeouts", 0) > before:
                    self.on_timeout(detector.name)
            hits.extend(self._keep(rail.rule, found, text, context, path))
        return hits

    def _keep(
        self,
        rule: Rule,
        findings: Iterable[Finding],
        text: str,
        context: Context | None,
        path: str,
    ) -> list[Hit]:
        kept = []
        question: str | None = None  # squeezed once, when a finding needs it
        for f in findings:
            if f.score < rule.threshold or (rule.kinds is not None and f.kind not in rule.kinds):
                continue
            if rule.new_only and context is not None and context.question:
                if question is None:
                    question = squeeze(context.question)
                if squeeze(text[f.start : f.end]) in question:
                    continue  # in the question already: not new
            kept.append(Hit(f, rule.action, path))
        return kept

    def check(self, text: str, context: Context | None = None, path: str = "") -> Verdict:
        """Scan *text* and apply the actions (the plug-in models left out)."""
        return judge(text, self.scan(text, context, path))

    async def check_async(
        self, text: str, context: Context | None = None, path: str = ""
    ) -> Verdict:
        """:meth:`check` with every detector, plug-in models included."""
        if not self._slow:
            return self.check(text, context, path)
        return judge(text, await self.scan_async(text, context, path))


def judge(text: str, hits: list[Hit]) -> Verdict:
    """The verdict on *text* given its *hits*: the strongest action, the redacted text
    and the masked one."""
    if not hits:
        return Verdict(ALLOW, hits, text, text)
    verdict = max((_ACTION_VERDICT[h.action] for h in hits), key=_RANK.__getitem__)
    redacted = replace(text, [h.finding for h in hits if h.action == REDACT])
    masked = replace(
        text,
        [h.finding for h in hits if h.action == REDACT or h.finding.category in SENSITIVE],
    )
    sensitive = [
        (text[h.finding.start : h.finding.end], h.finding.placeholder)
        for h in hits
        if h.finding.category in SENSITIVE and h.finding.end > h.finding.start
    ]
    return Verdict(verdict, hits, redacted, masked, sensitive)


def mask(value: Any, sensitive: Sequence[tuple[str, str]]) -> Any:
    """*value* (text, or JSON-like lists and mappings of it) with every occurrence of a
    sensitive value replaced by its placeholder, longest first."""
    if not sensitive:
        return value
    if isinstance(value, str):
        for raw, placeholder in sorted(sensitive, key=lambda p: -len(p[0])):
            if raw in value:
                value = value.replace(raw, placeholder)
        return value
    if isinstance(value, dict):
        return {k: mask(v, sensitive) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v, sensitive) for v in value]
    return value


def replace(text: str, findings: Sequence[Finding]) -> str:
    """*text* with each finding's span replaced by its placeholder; overlapping spans
    become one, named after the finding that starts first (the longest on a tie)."""
    if not findings:
        return text
    out: list[str] = []
    at = 0  # where the text not yet copied starts
    span: list[Any] | None = None  # [start, end, placeholder] being replaced
    for f in sorted(findings, key=lambda f: (f.start, -f.end)):
        if span is not None and f.start < span[1]:
            span[1] = max(span[1], f.end)
            continue
        if span is not None:
            out += (text[at : span[0]], span[2])
            at = span[1]
        span = [f.start, f.end, f.placeholder]
    if span is not None:
        out += (text[at : span[0]], span[2])
        at = span[1]
    out.append(text[at:])
    return "".join(out)


# -- detectors by name ---------------------------------------------------------------


def _injection(rule: Rule) -> Detector:
    from prodgate.guard.injection import InjectionDetector

    return InjectionDetector()


def _pii(rule: Rule) -> Detector:
    from prodgate.guard.pii import PiiDetector

    return PiiDetector(kinds=rule.kinds)


def _secrets(rule: Rule) -> Detector:
    from prodgate.guard.secrets import SecretsDetector

    return SecretsDetector(kinds=rule.kinds, entropy=bool(rule.options.get("entropy", True)))


def _banned(rule: Rule) -> Detector:
    from prodgate.guard.terms import TermsDetector

    return TermsDetector(rule.options.get("terms", ()), rule.options.get("topics"))


def _onnx(rule: Rule) -> Detector:
    from prodgate.guard.onnx import OnnxClassifier

    o = rule.options
    return OnnxClassifier(
        o["path"],
        tokenizer=o.get("tokenizer"),
        label=o.get("label", 1),
        max_length=int(o.get("max_length", 512)),
        budget_ms=float(o.get("budget_ms", 50.0)),
        category=str(o.get("category", "injection")),
        threads=int(o.get("threads", 1)),
    )


def _presidio(rule: Rule) -> Detector:
    from prodgate.guard.presidio import PresidioDetector

    o = rule.options
    return PresidioDetector(
        entities=tuple(o.get("entities", ("PERSON", "LOCATION"))),
        model=str(o.get("model", "en_core_web_sm")),
        score=float(o.get("score", 0.5)),
    )


BUILDERS: Mapping[str, Callable[[Rule], Detector]] = {
    "injection": _injection,
    "pii": _pii,
    "secrets": _secrets,
    "banned": _banned,
    "onnx": _onnx,
    "presidio": _presidio,
}

#: Detectors are pure and hold compiled patterns or a model: one per configuration is
#: shared by every service and direction that names it.
_BUILT: dict[tuple[str, str], Detector] = {}


def build_detector(rule: Rule) -> Detector:
    """The detector a rule names, built once per configuration."""
    key = (rule.detector, repr(sorted(rule.kinds or ())) + repr(sorted(rule.options.items())))
    detector = _BUILT.get(key)
    if detector is None:
        detector = _BUILT[key] = BUILDERS[rule.detector](rule)
    return detector


__all__ = ["ALLOW", "Context", "Guard", "Hit", "Verdict", "judge", "replace"]
