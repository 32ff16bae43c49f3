"""The system prompt in an answer: its canary, or its own words.

The gateway plants a canary (:func:`new_canary`) in a service's system prompt; an
answer that contains it has leaked the prompt. A model asked to "repeat everything
above" may space the canary out, change its case or slip zero-width characters into
it, so :class:`CanaryDetector` matches its letters and digits in order with a few
non-word characters allowed between them. A canary of 16 random hex digits makes a
chance match practically impossible.

:class:`PromptEchoDetector` catches a leak without a canary: a run of at least
``words`` consecutive words of the system prompt repeated in the answer, whatever the
case, punctuation or spacing. The prompt's word windows are hashed once; a scan is
linear in the answer and skips ahead over words the prompt does not contain.

Both run on a growing streamed answer rescanned after each chunk, so both stay cheap:
regular expressions and set look-ups, and a per-character pass only for text that is
not already NFKC-normalised.
"""

from __future__ import annotations

import re
import secrets
import unicodedata

from prodgate.exceptions import SpecError
from prodgate.guard.finding import LEAK, Finding

NAME = "leak"

#: Characters that render as nothing; a model (or an attacker) can split words with them.
_INVISIBLE = "\u00ad\u180e\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff"
#: Non-word characters allowed between two characters of a canary ("p g - 0 1 ...").
_CANARY_GAP = r"[\W_]{0,4}"
#: A word, zero-width characters inside it included.
_WORD = re.compile(f"[\\w{_INVISIBLE}]+")
_HAS_INVISIBLE = re.compile(f"[{_INVISIBLE}]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
#: ASCII text: everything but letters, digits and "_" becomes a space, letters lower case.
_ASCII_WORDS = str.maketrans(
    {chr(c): (chr(c).lower() if chr(c).isalnum() or c == 95 else " ") for c in range(128)}
)
_STRIP_INVISIBLE = str.maketrans("", "", _INVISIBLE)
#: Fewer letters and digits than this and a canary could turn up by chance.
_MIN_CANARY = 8
#: A system prompt shorter than this many words cannot be told apart from chance.
_MIN_ECHO = 4


def new_canary() -> str:
    """A fresh canary: ``pg-`` and 16 random hex digits (64 bits), unguessable."""
    return "pg-" + secrets.token_hex(8)


def folded(text: str) -> tuple[str, list[int] | None]:
    """*text* in NFKC form, and for each of its characters the offset in *text* it
    came from (None when the text was already normalised: offsets are the same).

    Characters are normalised one by one, so a span maps back exactly; ASCII runs are
    copied as they are.
    """
    if text.isascii() or unicodedata.is_normalized("NFKC", text):
        return text, None
    out: list[str] = []
    offsets: list[int] = []
    done = 0
    for run in _NON_ASCII.finditer(text):
        start, end = run.span()
        out.append(text[done:start])
        offsets.extend(range(done, start))
        for i in range(start, end):
            norm = unicodedata.normalize("NFKC", text[i])
            out.append(norm)
            offsets.extend([i] * len(norm))
        done = end
    out.append(text[done:])
    offsets.extend(range(done, len(text) + 1))
    return "".join(out), offsets


def original_span(offsets: list[int] | None, start: int, end: int) -> tuple[int, int]:
    """The span of the original text that folded[start:end] came from."""
    if offsets is None:
        return start, end
    last = offsets[end - 1] + 1 if end > start else offsets[start]
    return offsets[start], last


class CanaryDetector:
    """Finds a canary in an answer, also spaced out, in another case or split by
    zero-width characters. Kind ``canary``, score 1."""

    name = NAME
    category = LEAK

    def __init__(self, canary: str) -> None:
        core = [ch for ch in unicodedata.normalize("NFKC", canary) if ch.isalnum()]
        if len(core) < _MIN_CANARY:
            raise SpecError(
                f"canary {canary!r} has {len(core)} letters or digits; it needs at least "
                f"{_MIN_CANARY} to be unguessable (prodgate.guard.leak.new_canary() makes one)"
            )
        self.canary = canary
        self._pattern = re.compile(_CANARY_GAP.join(re.escape(ch) for ch in core), re.IGNORECASE)

    def scan(self, text: str) -> list[Finding]:
        body, offsets = folded(text)
        found = []
        for m in self._pattern.finditer(body):
            start, end = original_span(offsets, m.start(), m.end())
            found.append(Finding(LEAK, "canary", NAME, 1.0, start, end))
        return found


def _words(text: str) -> list[str]:
    """The words of *text* (as :data:`_WORD` finds them, in order), NFKC-normalised and
    case-folded, invisible characters out."""
    if text.isascii():  # the common case, four times faster
        return text.translate(_ASCII_WORDS).split()
    raw = _WORD.findall(text)
    joined = " ".join(raw)
    if _HAS_INVISIBLE.search(joined):
        joined = joined.translate(_STRIP_INVISIBLE)
    if not unicodedata.is_normalized("NFKC", joined):
        joined = unicodedata.normalize("NFKC", joined)
    words = joined.casefold().split(" ")
    if len(words) != len(raw):  # a character whose NFKC form holds a space
        words = [
            "".join(unicodedata.normalize("NFKC", w.translate(_STRIP_INVISIBLE)).split()).casefold()
            for w in raw
        ]
    return words


class PromptEchoDetector:
    """Finds runs of at least ``words`` consecutive words of the system prompt in an
    answer. Kind ``system_prompt``; the span is the repeated run; the score grows from
    0.6 (a bare run of ``words`` words) to 1 (the whole prompt) with the share of the
    prompt the run repeats.

    A prompt shorter than ``words`` words is matched whole when it has at least four.
    """

    name = NAME
    category = LEAK

    def __init__(self, system_text: str, words: int = 8) -> None:
        if words < 2:
            raise SpecError(f"words must be at least 2 to detect an echoed prompt, not {words}")
        prompt = _words(system_text)
        self.size = min(words, len(prompt))
        self.prompt_words = len(prompt)
        self._vocab = frozenset(prompt) - {""}
        self._shingles: frozenset[tuple[str, ...]] = frozenset()
        if self.size >= _MIN_ECHO:
            n = self.size
            self._shingles = frozenset(tuple(prompt[i : i + n]) for i in range(len(prompt) - n + 1))

    def _runs(self, words: list[str]) -> list[tuple[int, int]]:
        """[first, last] word indices of each run of matching windows."""
        n, vocab, shingles = self.size, self._vocab, self._shingles
        runs: list[tuple[int, int]] = []
        i, stop = 0, len(words) - n
        while i <= stop:
            # A window matches only if all its words are the prompt's: a word outside the
            # prompt at the window's end rules out every window that contains it.
            if words[i + n - 1] not in vocab:
                i += n
                continue
            if tuple(words[i : i + n]) in shingles:
                last = i + n - 1
                if runs and runs[-1][1] >= i - 1:
                    runs[-1] = (runs[-1][0], last)
                else:
                    runs.append((i, last))
            i += 1
        return runs

    def scan(self, text: str) -> list[Finding]:
        if not self._shingles:
            return []
        words = _words(text)
        if len(words) < self.size:
            return []
        runs = self._runs(words)
        if not runs:
            return []
        spans = [m.span() for m in _WORD.finditer(text)]
        found = []
        for first, last in runs:
            share = min(1.0, (last - first + 1) / self.prompt_words)
            score = round(0.6 + 0.4 * share, 4)
            found.append(
                Finding(LEAK, "system_prompt", NAME, score, spans[first][0], spans[last][1])
            )
        return found
