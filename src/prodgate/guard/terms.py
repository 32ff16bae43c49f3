"""Banned terms and topics from the spec, found as whole words.

Every phrase (a term, or one of a topic's phrases) is NFKC-normalised and lower-cased,
its spaces match any run of whitespace, and all of them are compiled into one regular
expression: a trie of the phrases, so a scan costs about the same for ten phrases or
ten thousand, and at each position the longest phrase wins. A phrase matches only as
whole words: "ass" is not found in "class". Text that is not NFKC-normalised (full-width
letters, ligatures) is folded first and the spans mapped back to the original text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from prodgate.exceptions import SpecError
from prodgate.guard.finding import BANNED, Finding
from prodgate.guard.leak import folded, original_span

NAME = "banned"
TERM = "term"
#: The longest phrase accepted, in characters (a banned term is a few words).
MAX_PHRASE = 200

_END = ""  # the trie's end-of-phrase key (no phrase character is empty)

_Trie = dict[str, "_Trie"]


def _key(phrase: str) -> str:
    """A phrase as it is compared: NFKC, lower case, single spaces."""
    return " ".join(unicodedata.normalize("NFKC", phrase).lower().split())


def _trie_regex(node: _Trie) -> str:
    """The regular expression of a trie: continuations first, so longer phrases win."""
    branches = [
        (r"\s+" if ch == " " else re.escape(ch)) + _trie_regex(child)
        for ch, child in sorted(node.items())
        if ch != _END
    ]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    # A phrase may end here: the rest is optional, and greedy, so the longest wins.
    return f"(?:{body})?" if _END in node else body


class TermsDetector:
    """Finds banned terms (kind ``term``) and the phrases of banned topics (kind: the
    topic's name) as whole words, whatever their case. Score 1."""

    name = NAME
    category = BANNED

    def __init__(
        self, terms: Sequence[str], topics: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        if isinstance(terms, str):
            raise SpecError("terms must be a list of phrases, not one string")
        kinds: dict[str, list[str]] = {}
        groups = [(TERM, terms), *((topics or {}).items())]
        for kind, phrases in groups:
            if isinstance(phrases, str):
                raise SpecError(f"topic {kind!r} must list phrases, not be one string")
            for phrase in phrases:
                if not isinstance(phrase, str):
                    raise SpecError(f"banned phrases must be strings, not {phrase!r}")
                key = _key(phrase)
                if len(key) > MAX_PHRASE:
                    raise SpecError(
                        f"banned phrase {key[:40]!r}... is longer than {MAX_PHRASE} characters"
                    )
                if key and kind not in kinds.setdefault(key, []):
                    kinds[key].append(kind)
        self._kinds = {k: tuple(v) for k, v in kinds.items()}
        self._pattern: re.Pattern[str] | None = None
        if kinds:
            trie: _Trie = {}
            for key in kinds:
                node = trie
                for ch in key:
                    node = node.setdefault(ch, {})
                node[_END] = {}
            self._pattern = re.compile(rf"(?<!\w)(?:{_trie_regex(trie)})(?!\w)", re.IGNORECASE)

    def _kinds_of(self, matched: str) -> tuple[str, ...]:
        kinds = self._kinds.get(_key(matched))
        if kinds is not None:
            return kinds
        # Case-insensitive matching and lower() can disagree on a rare letter: find the
        # phrase the regex matched by trying each one.
        for key, found in self._kinds.items():
            pattern = r"\s+".join(re.escape(w) for w in key.split(" "))
            if re.fullmatch(pattern, matched, re.IGNORECASE):
                return found
        return (TERM,)

    def scan(self, text: str) -> list[Finding]:
        if self._pattern is None:
            return []
        body, offsets = folded(text)
        found = []
        for m in self._pattern.finditer(body):
            if m.end() == m.start():
                continue
            start, end = original_span(offsets, m.start(), m.end())
            for kind in self._kinds_of(m.group()):
                found.append(Finding(BANNED, kind, NAME, 1.0, start, end))
        return found
