"""The machinery of the injection patterns: a pattern (its kind, score, trigger words
and regex), the words a regex can begin with (so it is tried only where one is), and
the regex fragments the phrasings and the grammar share.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any

_VERBS_IGNORE = (
    r"(?:ignore|disregard|forget|skip|override|bypass|drop|discard|abandon|cancel|neglect|"
    r"overlook|set aside|throw out|scrap)"
)
_RULES = (
    r"(?:instructions?|directions?|directives?|prompts?|rules|guidelines|guidance|constraints|"
    r"restrictions|programming|polic(?:y|ies)|context|commands?|orders|guardrails|safeguards|"
    r"filters|training|task|system message)"
)
_MODEL = (
    r"(?:ai|a\.i\.|llm|large language model|language model|chatbot|assistant|gpt|chatgpt|claude|"
    r"gemini|model|bot|ai agents?|agents?|automated (?:assistant|reviewer|system|screening|"
    r"agent|tool)s?|ai (?:assistant|system|model|reviewer)s?)"
)


@dataclass(frozen=True, slots=True)
class _Pattern:
    kind: str
    score: float
    regex: re.Pattern[str]
    triggers: frozenset[str]  # the pattern runs only if one of these is a word of the text
    requires: frozenset[str]  # ... and one of these too (when not empty)
    everyday: bool = False  # scored down when its object is an everyday thing (_OBJECTS)
    #: The words a match can begin with (from the regex), or None: matched only there.
    starts: frozenset[str] | None = None


def _p(
    kind: str, score: float, triggers: str, rx: str, requires: str = "", everyday: bool = False
) -> _Pattern:
    return _Pattern(
        kind,
        score,
        re.compile(rx, re.DOTALL),
        frozenset(triggers.split()),
        frozenset(requires.split()),
        everyday,
        first_words(rx),
    )


class _Open(Exception):
    """A regex whose match can begin elsewhere than at one of a few known words."""


def first_words(rx: str) -> frozenset[str] | None:
    """Every word a match of *rx* can begin with, or None if that is not a short list.

    A pattern with such a list is tried only where one of those words is (``match`` at
    each), not scanned through the whole text: the same matches for a fraction of the cost.
    """
    parser: Any = importlib.import_module("re._parser")
    try:
        words = _walk(
            list(parser.parse(rx, re.DOTALL)), "", importlib.import_module("re._constants")
        )
    except _Open:
        return None
    return frozenset(words) if len(words) <= 400 else None


def _walk(seq: list[Any], prefix: str, c: Any) -> set[str]:
    """The first words of the regex items *seq* after the word characters *prefix*."""
    for i, (op, arg) in enumerate(seq):
        rest = seq[i + 1 :]
        if op is c.AT and arg is c.AT_BOUNDARY and prefix:
            return {prefix}  # \b after word characters: the word ends here
        if op in (c.AT, c.ASSERT, c.ASSERT_NOT):
            continue
        if op is c.LITERAL:
            ch = chr(arg)
            if _WORD_CHAR.fullmatch(ch):
                prefix += ch
                continue
            if prefix:
                return {prefix}
            raise _Open
        if op is c.IN:
            out: set[str] = set()
            for iop, iarg in arg:
                if iop is c.LITERAL and _WORD_CHAR.fullmatch(chr(iarg)):
                    out |= _walk(rest, prefix + chr(iarg), c)
                elif prefix and (
                    iop is c.LITERAL or (iop is c.CATEGORY and iarg is c.CATEGORY_SPACE)
                ):
                    out.add(prefix)
                else:
                    raise _Open
            return out
        if op is c.BRANCH:
            return set().union(*(_walk(list(b) + rest, prefix, c) for b in arg[1]))
        if op is c.SUBPATTERN:
            return _walk(list(arg[-1]) + rest, prefix, c)
        if op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[1] == 1:
            once = _walk(list(arg[2]) + rest, prefix, c)
            return once | _walk(rest, prefix, c) if arg[0] == 0 else once
        if prefix and op in (c.MAX_REPEAT, c.MIN_REPEAT) and arg[0] >= 1:
            try:  # a run of non-word characters (\s+) ends the word
                _walk(list(arg[2]), "", c)
            except _Open:
                return {prefix}
            raise _Open
        raise _Open
    if prefix:
        return {prefix}
    raise _Open


_WORD_SPAN = re.compile(r"[a-z0-9']+")
_WORD_CHAR = re.compile(r"[a-z0-9']")

_R_RULES = (
    "instructions instruction directions directives directive prompt prompts rules guidelines "
    "guidance constraints restrictions programming policy policies context commands command "
    "orders guardrails safeguards filters training task message"
)
_R_MODEL = (
    "ai llm language chatbot assistant gpt chatgpt claude gemini model bot agent agents automated"
)

# A device's developer/debug mode (a phone, a Chromebook, a console) is everyday: a "mode"
# match with one of these near it scores lower.
_DEVICE = re.compile(
    r"\b(?:phones?|iphone|android|pixel|samsung|xiaomi|oneplus|huawei|tablet|ipad|chromebook|"
    r"chrome ?os|laptop|pc|windows|macos|mac|linux|ubuntu|console|xbox|playstation|ps[345]|"
    r"nintendo switch|nintendo|steam deck|smart ?tv|roku|firestick|kindle|router|usb|adb|"
    r"bootloader|firmware|bios|build number|browser|vs ?code|unity|unreal|minecraft|"
    r"tesla|camera|printer)\b"
)
# Source code: a text made of these is a program, and its identifiers and comments
# (forget_session, SYSTEM_PROMPT, "# pretend mode") describe it; unless a pattern fires
# (an AI addressed), the model's score counts for less.
_CODE = re.compile(
    r"^[ \t]*(?:def |class |import |from [\w.]+ import |function |const |let |var |"
    r"public |private |return\b|#include|@\w+|if __name__)"
    r"|[{};][ \t]*$|^[ \t]*(?:#|//|/\*|\*|--)[ \t]"
    r"|^(?: {4}|\t)\S"
    r"|\b[a-z]+_[a-z_]+\(|\b[A-Z]+_[A-Z_]+\s*=|\b[A-Za-z_][\w.]*\([^()\n]*\)"
    r"|\w\[['\"\d]|\)\s*(?:->|:)\s*$",
    re.MULTILINE,
)


def _code_like(t: str) -> float:
    """How much to take off the model's score of *t* when it reads as source code."""
    if "\n" not in t and ("(" not in t or "_" not in t):
        return 0.0
    for hits, _ in enumerate(_CODE.finditer(t), 1):
        if hits >= 3:
            return 0.25
    return 0.0
