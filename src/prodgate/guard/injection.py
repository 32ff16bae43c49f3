"""Prompt injection and jailbreaks: patterns, decoded payloads, a small model.

Three layers over the normalised text (:mod:`prodgate.guard.normalise`), each
naming itself in its findings' ``detector``:

- ``injection.patterns``: the shapes attacks take, spelled as regular expressions
  over the normalised text: overriding the instructions, extracting the system
  prompt, role-play jailbreaks, exfiltration to a URL, and text in a document or
  tool output that addresses the model ("note to the AI reading this"). Beside
  fixed phrasings, a grammar: an override verb (ignore, erase, set aside, never
  mind, stop following, ...) a few words from a qualifier (all, your, previous,
  whatever, ...) and a target naming the model's governance (instructions, rules,
  guardrails, system prompt, content policy, refusal behaviour, ...); the converse
  ("... do not apply to me", "no longer bound by"); unlocking ("developer mode
  enabled", "turn off your filters", "respond without any guardrails"); and a claim
  of authority with a command ("new instructions from the administrator: ...").
  A grammar match whose object is an everyday thing (a dosage, a router, a vending
  machine, mail) scores lower, as does any match inside quotes in a text that talks
  about attacks; so does a "developer mode" near a device (a phone, a Chromebook, a
  console). A pattern runs only when one of its trigger words is among the
  text's words (one set intersection selects them), and is tried only where a word
  it can begin with is (:func:`first_words`, read from the regex), not at every
  character. Text containing an attack word spelt backwards is also read reversed.
- ``injection.decoded``: base64, hex, rot13 and URL-encoded substrings, decoded and
  put through the other two layers; the finding is the encoded span.
- ``injection.model``: logistic regression over word unigrams and bigrams (the
  strongest single n-gram of a window left out of its score), trained
  by ``bench/guard_train.py`` on the project's corpus (train split only) and shipped
  as JSON (``guard/data/injection_model.json``): a dict of n-gram weights, loaded
  once, lazily. A long text is scored in overlapping windows of words and the best
  window counts, so an attack buried in a long document is not averaged away. When
  no pattern fires, a question about what prompts are and a text that reads as source
  code (its identifiers and comments describe a program) count for less.

Scores are in [0, 1] and 0.5 is the operating point the policy uses by default.
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from itertools import accumulate, pairwise, repeat
from operator import add
from pathlib import Path
from typing import Any

from .finding import INJECTION, Finding
from .injection_patterns import (
    _ALL_TRIGGERS,
    _BY_TRIGGER,
    _DISCUSSION,
    _NEGATED,
    _QUOTES,
    PATTERNS,
    _asking_about,
    _everyday,
    _quoted,
)
from .injection_rules import _DEVICE, _WORD_SPAN, _code_like
from .normalise import Normalised, normalise, payloads

__all__ = ["InjectionDetector", "Model", "features", "load_model"]

MODEL_FILE = "injection_model.json"
#: Findings of the model layer below this score are not reported at all.
MIN_SCORE = 0.3


@dataclass(frozen=True, slots=True)
class Model:
    """Logistic regression over word n-grams: ``sigmoid(bias + (sum(w) - top) / sqrt(n))``.

    The features of a run of words are its unigrams and bigrams, counted, ``n`` of
    them. ``top`` is the largest positive weight among them (when ``agree``): no single
    n-gram can carry a text over the line, the rest of the text has to agree. Each word
    contributes its unigram's and its bigram's weight, so the sum over any window is a
    difference of prefix sums and all windows cost one pass (plus a max per window).
    """

    weights: dict[str, float]
    bias: float
    window: int = 48
    stride: int = 24
    agree: bool = True

    def _z(self, total: float, n_features: int) -> float:
        z = self.bias + (total / math.sqrt(n_features) if n_features else 0.0)
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def score(self, words: Sequence[str]) -> tuple[float, int, int]:
        """The best score over windows of *words*, and that window (word indices)."""
        n = len(words)
        get = self.weights.get
        uni = list(map(get, words, repeat(0.0)))
        bi = [*map(get, map(" ".join, pairwise(words)), repeat(0.0)), 0.0]
        # contribution of word i: its unigram and the bigram it starts
        acc = [0.0, *accumulate(map(add, uni, bi))]
        agree = self.agree
        if n <= self.window:
            top = max(0.0, *uni, *bi) if agree and n else 0.0
            return self._z(acc[n] - top, 2 * n - 1), 0, n
        best = (-1.0, 0, 0)
        for start in range(0, n - self.stride, self.stride):
            end = min(n, start + self.window)
            # the window's last bigram reaches outside it: take it back out
            last = bi[end - 1] if end < n else 0.0
            top = max(0.0, max(uni[start:end]), max(bi[start : end - 1])) if agree else 0.0
            s = self._z(acc[end] - acc[start] - last - top, 2 * (end - start) - 1)
            if s > best[0]:
                best = (s, start, end)
        return best


def features(words: Sequence[str]) -> list[str]:
    """The model's features of a run of normalised words: unigrams and bigrams, counted."""
    return [*words, *map(" ".join, pairwise(words))]


_lock = threading.Lock()
_cached: Model | None = None


def load_model(path: Path | None = None) -> Model:
    """The shipped model (loaded once, then cached), or the one at *path*."""
    global _cached
    if path is not None:
        return _read(path.read_text("utf-8"))
    if _cached is None:
        with _lock:
            if _cached is None:
                text = resources.files(__package__).joinpath("data", MODEL_FILE)
                _cached = _read(text.read_text("utf-8"))
    return _cached


def _read(text: str) -> Model:
    data: dict[str, Any] = json.loads(text)
    return Model(
        weights={str(k): float(v) for k, v in data["weights"].items()},
        bias=float(data["bias"]),
        window=int(data.get("window", 48)),
        stride=int(data.get("stride", 24)),
        agree=bool(data.get("agree", False)),
    )


#: Words of an attack spelt backwards: the text is read reversed too when one is there.
_REVERSED = frozenset(
    ("erongi", "dragersid", "tegrof", "snoitcurtsni", "tpmorp", "metsys", "selur", "laever")
)


@functools.lru_cache(maxsize=4096)
def _find(word: str) -> re.Pattern[str]:
    return re.compile(re.escape(word) + r"\b")


def _anchored(rx: re.Pattern[str], t: str, at: list[int]) -> Iterator[re.Match[str]]:
    """``rx.finditer(t)``, for a regex whose matches begin only at the offsets *at*."""
    last = 0
    for i in at:
        if i >= last and (m := rx.match(t, i)):
            last = max(m.end(), i + 1)
            yield m


class InjectionDetector:
    """Prompt injection and jailbreaks in a text, in three layers (see the module)."""

    name = "injection"
    category = INJECTION

    def __init__(self, model: Model | None = None, *, use_model: bool = True) -> None:
        self._model = model
        self._use_model = use_model

    @property
    def model(self) -> Model | None:
        if self._use_model and self._model is None:
            self._model = load_model()
        return self._model if self._use_model else None

    def scan(self, text: str) -> list[Finding]:
        if not isinstance(text, str) or not text:
            return []
        n = normalise(text)
        found = self._layers(n, "injection.patterns", "injection.model")
        if not _REVERSED.isdisjoint(n.words):
            hits = self._layers(normalise(text[::-1]), "", "")
            best = max((f.score for f in hits), default=0.0)
            if best >= 0.5:
                found.append(
                    Finding(INJECTION, "obfuscation", "injection.decoded", best, 0, len(text))
                )
        for p in payloads(text, n.words):
            inner = normalise(p.text)
            hits = self._layers(inner, "", "")
            best = max((f.score for f in hits), default=0.0)
            if best >= 0.5:
                found.append(
                    Finding(INJECTION, "obfuscation", "injection.decoded", best, p.start, p.end)
                )
        return found

    def _layers(self, n: Normalised, patterns_name: str, model_name: str) -> list[Finding]:
        found = list(self._patterns(n, patterns_name))
        model = self.model
        if model is not None and n.words:
            score, ws, we = model.score(n.words)
            if score >= MIN_SCORE and not any(f.score >= 0.5 for f in found):
                score -= _asking_about(n.text) + _code_like(n.original)
            if score >= MIN_SCORE:
                start, end = self._word_span(n, ws, we)
                found.append(Finding(INJECTION, "model", model_name, score, start, end))
        return found

    @staticmethod
    def _word_span(n: Normalised, ws: int, we: int) -> tuple[int, int]:
        if ws == 0 and we >= len(n.words):
            return 0, len(n.original)
        spans = [m.span() for m in _WORD_SPAN.finditer(n.text)]
        s = spans[ws][0] if ws < len(spans) else 0
        e = spans[we - 1][1] if 0 < we <= len(spans) else len(n.text)
        return n.span(s, e)

    @staticmethod
    def _patterns(n: Normalised, detector: str) -> Iterable[Finding]:
        words = set(n.words)
        t = n.text
        discussion: bool | None = None
        where: dict[str, list[int]] = {}
        lead: set[str] | None = None  # words written 'quoted, without the quote
        hit = _ALL_TRIGGERS.intersection(words)
        if not hit:
            return
        todo: set[int] = set().union(*map(_BY_TRIGGER.__getitem__, hit))
        for i in sorted(todo):
            p = PATTERNS[i]
            if p.requires and p.requires.isdisjoint(words):
                continue
            if p.starts is None:
                matches: Iterable[re.Match[str]] = p.regex.finditer(t)
            else:
                if lead is None:
                    lead = {w.lstrip("'") for w in words if w[0] == "'"}
                at = []
                for w in p.starts.intersection(words).union(p.starts.intersection(lead)):
                    if w not in where:  # every place the word is: a literal search, fast
                        where[w] = [m.start() for m in _find(w).finditer(t)]
                    at += where[w]
                at.sort()
                matches = _anchored(p.regex, t, at)
            for m in matches:
                score = p.score
                s, e = m.span()
                before = t[max(0, s - 24) : s]
                if _NEGATED.search(before):
                    score -= 0.4
                if discussion is None:
                    discussion = _DISCUSSION.search(t) is not None
                if discussion and (before.rstrip()[-1:] in _QUOTES or _quoted(t, s)):
                    score -= 0.45
                if p.everyday and _everyday(t, s, e):
                    score -= 0.45
                if " mode" in t[s:e] and _DEVICE.search(t, max(0, s - 100), e + 100):
                    score -= 0.45
                start, end = n.span(s, e)
                yield Finding(INJECTION, p.kind, detector, max(0.0, score), start, end)
