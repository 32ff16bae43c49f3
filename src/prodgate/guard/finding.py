"""What a detector finds in a text, and what every detector is.

A :class:`Finding` is a span of the scanned text (character offsets, end excluded)
with its category, its kind (which names its redaction placeholder), the detector
that found it and a score in [0, 1]. A detector is any object with a ``name``, a
``category`` and ``scan(text) -> list[Finding]``: pure, thread-safe, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: Categories of finding.
INJECTION = "injection"  # prompt injection and jailbreaks, direct or in documents
PII = "pii"  # personal data: e-mail, phone, card, IBAN, national ids, ...
SECRET = "secret"  # noqa: S105 (a category, not a password): keys, tokens, passwords
LEAK = "leak"  # the system prompt (its canary, or its text) in an answer
BANNED = "banned"  # a term or topic the spec bans
SCHEMA = "schema"  # a structured answer that breaks its schema

CATEGORIES = (INJECTION, PII, SECRET, LEAK, BANNED, SCHEMA)

#: Categories whose matched text is never recorded, logged or echoed.
SENSITIVE = frozenset({PII, SECRET})


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a detector found: ``text[start:end]`` is it."""

    category: str
    kind: str  # e.g. "email", "card", "aws_access_key", "override"
    detector: str  # e.g. "pii", "secrets", "injection.patterns", "injection.model"
    score: float  # 0..1: how sure the detector is
    start: int
    end: int

    @property
    def placeholder(self) -> str:
        """The typed placeholder that replaces the span when it is redacted."""
        return f"[{self.kind.upper()}]"

    def as_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "kind": self.kind,
            "detector": self.detector,
            "score": round(self.score, 4),
            "start": self.start,
            "end": self.end,
        }


class Detector(Protocol):
    """Text in, findings out."""

    name: str
    category: str

    def scan(self, text: str) -> list[Finding]: ...
