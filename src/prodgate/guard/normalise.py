"""Text as a detector should read it: the disguises of an attack taken off.

Attackers hide "ignore previous instructions" from naive matching with look-alike
letters (Cyrillic U+043E for Latin "o"), invisible characters, compatibility forms
(full-width letters), spacing ("i g n o r e", "i.g.n.o.r.e", "ig-nore"),
leetspeak ("1gn0r3") and encodings (base64, hex, rot13, URL escapes).
:func:`normalise` undoes the first five in one pass of bulk string operations
(``str.translate`` and compiled regular expressions; the only Python loops are
per regex match or per non-ASCII character, never per character of ASCII text)
and keeps an offset map, so that a match in the normalised text is reported at
its place in the original. :func:`payloads` finds encoded substrings and decodes
them; a decoded payload is reported as the span of its encoded form.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import re
import unicodedata
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from itertools import pairwise
from urllib.parse import unquote

__all__ = ["WORD", "Normalised", "Payload", "normalise", "payloads"]

# Invisible characters: zero-width spaces and joiners, bidi controls, soft hyphen,
# word joiner, BOM, the tag block's "ASCII smuggling" range is handled separately.
_INVISIBLE = (
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e"
    "\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\u206a\u206b\u206c\u206d\u206e\u206f"
    "\u3164\ufeff\uffa0"
)

# Look-alikes of Latin letters (after lower-casing): Cyrillic, Greek, a few others,
# written as escapes so that the source shows what they are; _LATIN is what each reads as.
_LOOKALIKES = (
    "\u0430\u0432\u0441\u0501\u0435\u0451\u04bb\u0456\u0457\u0458\u043a\u04cf"
    "\u043c\u043d\u043e\u0440\u051b\u0455\u0442\u0443\u0461\u0445\u04af\u0261"
    "\u03b1\u03b2\u03b5\u03b7\u03b9\u03ba\u03bd\u03bf\u03c1\u03c4\u03c5\u03c7"
    "\u03b3\u03c9\u03f2\u0131\u0237\u2113"
)
_LATIN = "abcdeehiijklmhopqstywxygabenikvoptuxywcijl"
_TRANSLATE: dict[int, str | None] = {ord(c): None for c in _INVISIBLE}
_TRANSLATE.update(zip(map(ord, _LOOKALIKES), _LATIN, strict=True))

_LEET = str.maketrans("130457$", "ieoasts")

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_INVISIBLE_RE = re.compile("[" + _INVISIBLE + "\U000e0000-\U000e007f]+")
# Unicode "tag" characters smuggle ASCII invisibly: U+E0041 is an invisible "A".
_TAGS = re.compile("[\U000e0020-\U000e007e]+")
# Four or more single letters separated by the same kind of spacing:
# "i g n o r e", "i.g.n.o.r.e", "i-g-n-o-r-e", "i _ g _ n ...".
_SPACED = re.compile(
    r"(?<![a-z])[a-z](?P<sep>[ ._\-*/|+~]{1,3})[a-z](?:(?P=sep)[a-z]){2,}(?![a-z])"
)
_SPACED_SEP = re.compile(r"[ ._\-*/|+~]+")
# Words an attack splits with one separator ("ig-nore", "in.structions", "sys_tem"):
# only words that matter to the detectors are rejoined, never ordinary compounds.
_SPLIT_WORDS = (
    "ignore",
    "disregard",
    "forget",
    "previous",
    "instructions",
    "system",
    "prompt",
    "override",
    "bypass",
    "jailbreak",
    "restrictions",
    "developer",
    "unfiltered",
    "uncensored",
    "password",
    "reveal",
)


def _split_pattern(words: tuple[str, ...]) -> re.Pattern[str]:
    # A separator may stand between any two letters of the word ("in-struc-tions").
    branches = [w[0] + "".join(f"[-_.*/]?{c}" for c in w[1:]) for w in words]
    return re.compile(r"\b(?:" + "|".join(branches) + r")\b")


#: The first parts of a split word ("igno" of "igno re"): a text with one is checked for
#: two neighbouring words that make a split word when put together.
_HEADS = frozenset(w[:i] for w in _SPLIT_WORDS for i in range(3, len(w) - 1)) - frozenset(
    ("for", "over", "rest", "pass", "pro", "pre", "res", "dis", "reve", "deve")
)
_SPACE_RUN = re.compile(r"\s+")


def _unspace(t: str, words: list[str]) -> tuple[str, _Edit | None]:
    """*t* with a split word written as two words ("instruc tions") put back together."""
    pairs = {a + " " + b for a, b in pairwise(words) if a + b in _SPLIT_JOINED}
    if not pairs:
        return t, None
    rx = re.compile(
        r"\b(?:" + "|".join(re.escape(p).replace(r"\ ", r"\s{1,3}") for p in pairs) + r")\b"
    )
    return _sub(rx, t, lambda m: _SPACE_RUN.sub("", m.group()))


_SPLIT = _split_pattern(_SPLIT_WORDS)
_SPLIT_JOINED = frozenset(_SPLIT_WORDS)
_UNSPLIT = str.maketrans("", "", "-_.*/,;:!?\"'()")
#: What a word is, for every detector that reads words of the normalised text.
WORD = r"[a-z0-9']+"
_WORD = re.compile(WORD)


@dataclass(frozen=True, slots=True)
class _Edit:
    """A stage's replacements: sorted spans (new_start, new_end, old_start, old_end)."""

    new_starts: list[int]
    spans: list[tuple[int, int, int, int]]

    def to_old(self, i: int, end: bool = False) -> int:
        k = bisect.bisect_right(self.new_starts, i - 1 if end else i) - 1
        if k < 0:
            return i
        ns, ne, os_, oe = self.spans[k]
        if i >= ne:  # after the replacement: shift by its length difference
            return i - ne + oe
        width = ne - ns
        # Inside a replacement: spread proportionally over the original span
        # (rounding a start down and an end up, so the span covers its characters).
        if not width:
            return os_
        scaled = (i - ns) * (oe - os_)
        return os_ + (-(-scaled // width) if end else scaled // width)


def _sub(
    pattern: re.Pattern[str], text: str, repl: Callable[[re.Match[str]], str]
) -> tuple[str, _Edit | None]:
    """``pattern.sub`` that records where each length-changing replacement went."""
    out: list[str] = []
    spans: list[tuple[int, int, int, int]] = []
    pos = 0
    shift = 0
    for m in pattern.finditer(text):
        r = repl(m)
        s, e = m.span()
        out.append(text[pos:s])
        out.append(r)
        pos = e
        if len(r) != e - s:
            spans.append((s + shift, s + shift + len(r), s, e))
            shift += len(r) - (e - s)
    if not spans:
        return (text if pos == 0 else "".join(out) + text[pos:]), None
    out.append(text[pos:])
    return "".join(out), _Edit([sp[0] for sp in spans], spans)


@dataclass(frozen=True, slots=True)
class Normalised:
    """The normalised text and how to find its characters in the original."""

    text: str
    original: str
    edits: tuple[_Edit, ...] = ()
    words: tuple[str, ...] = ()  # the words of ``text``, in order

    def to_original(self, i: int, end: bool = False) -> int:
        """The original offset of normalised offset *i*; *end*: an exclusive end."""
        for edit in reversed(self.edits):
            i = edit.to_old(i, end)
        return max(0, min(i, len(self.original)))

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of a normalised span (end excluded)."""
        if not self.edits:
            return start, end
        s = self.to_original(start)
        return s, max(self.to_original(end, end=True), s)


def _nfkc_chars(m: re.Match[str]) -> str:
    return "".join(unicodedata.normalize("NFKC", c) for c in m.group())


def _lower_chars(m: re.Match[str]) -> str:
    # lower() of a few characters changes their length ("İ" -> "i̇"); keep one per char.
    return "".join(c.lower()[:1] or c for c in m.group())


def _despace(m: re.Match[str]) -> str:
    return _SPACED_SEP.sub("", m.group())


def _join(m: re.Match[str]) -> str:
    return m.group().translate(_UNSPLIT)


def _untag(m: re.Match[str]) -> str:
    return "".join(chr(ord(c) - 0xE0000) for c in m.group())


def normalise(text: str) -> Normalised:
    """Normalise *text* for detection: lower case, Latin letters, no disguises.

    Length-preserving steps (case, homoglyphs, leetspeak) need no offset map;
    steps that add or remove characters record their edits. Leetspeak is undone
    everywhere, digits of ordinary numbers included ("2024" reads "2o2a"): that
    costs nothing the detectors need and is one ``str.translate``.
    """
    edits: list[_Edit] = []
    t = text
    if not t.isascii():
        if _TAGS.search(t):
            t, e = _sub(_TAGS, t, _untag)
            edits += [e] if e else []
        if not unicodedata.is_normalized("NFKC", t):
            t, e = _sub(_NON_ASCII, t, _nfkc_chars)
            edits += [e] if e else []
        t, e = _sub(_INVISIBLE_RE, t, lambda m: "")
        edits += [e] if e else []
        low = t.lower()
        if len(low) != len(t):  # keep one character per character, so offsets hold
            low = _NON_ASCII.sub(_lower_chars, t).lower()
        t = low.translate(_TRANSLATE)
    else:
        t = t.lower()
    t = t.translate(_LEET)
    t, e = _sub(_SPACED, t, _despace)
    edits += [e] if e else []
    words = _WORD.findall(t)
    # A split word ("ig-nore") is a word once its separators go that was not one before.
    joined = _SPLIT_JOINED.intersection(t.translate(_UNSPLIT).split())
    if joined and not joined.issubset(words):
        t, e = _sub(_SPLIT, t, _join)
        edits += [e] if e else []
        words = _WORD.findall(t)
    if not _HEADS.isdisjoint(words):
        t, e = _unspace(t, words)
        if e:
            edits.append(e)
            words = _WORD.findall(t)
    return Normalised(t, text, tuple(edits), tuple(words))


@dataclass(frozen=True, slots=True)
class Payload:
    """An encoded substring of the original text, decoded: ``text`` at ``start:end``."""

    encoding: str  # base64, hex, rot13, url
    text: str
    start: int
    end: int


_B64 = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}:?){8,}(?![0-9A-Fa-f])")
_HEX_ESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}){6,}")
_URL_ESC = re.compile(r"%[0-9A-Fa-f]{2}")
# Words of an attack as they look after rot13: a rot13 payload is decoded only when
# it holds one of them, so that ordinary text is not rot13-decoded for nothing.
_ROT13 = str.maketrans(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    "NOPQRSTUVWXYZABCDEFGHIJKLMnopqrstuvwxyzabcdefghijklm",
)
_ROT13_WORDS = frozenset(
    w.translate(_ROT13)
    for w in (
        "ignore",
        "instructions",
        "previous",
        "system",
        "prompt",
        "password",
        "reveal",
        "disregard",
        "forget",
        "jailbreak",
        "pretend",
        "restrictions",
        "https",
        "http",
    )
)
# Common words in rot13 ("gur" is "the"): a text holding two of them is rot13 too.
_ROT13_COMMON = frozenset(
    w.translate(_ROT13)
    for w in ("the", "and", "you", "your", "this", "that", "with", "from", "what", "are", "all")
)
_MIN_DECODED = 8


_NOT_WORDY = re.compile(r"[^A-Za-z \n]")


def _text_of(raw: bytes) -> str | None:
    """The decoded bytes if they read like words (an attack does; random bytes do not)."""
    try:
        s = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(s) < _MIN_DECODED or not s.replace("\n", " ").isprintable():
        return None
    other = len(_NOT_WORDY.findall(s))
    return s if other <= 0.25 * len(s) and " " in s else None


def _b64(s: str) -> str | None:
    body = s.rstrip("=")
    if len(body) < 16 or body.isalpha() or body.isdigit():
        return None  # a long word or number, not base64
    pad = "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            raw = base64.urlsafe_b64decode(body + pad)
        else:
            raw = base64.b64decode(body + pad, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _text_of(raw)


def _hex(s: str) -> str | None:
    digits = re.sub(r"[^0-9A-Fa-f]", "", s)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _text_of(bytes.fromhex(digits))
    except ValueError:
        return None


def payloads(text: str, words: Collection[str] | None = None, limit: int = 16) -> Iterator[Payload]:
    """Encoded substrings of *text* that decode to readable text (at most *limit*).

    *words*: the words of the normalised text when the caller has them (a rot13
    payload is looked for only when one of them is an attack word in rot13, or two are
    common words in rot13). A URL-encoded payload is a chunk with three escapes or more.
    Candidates are whitespace-separated chunks, found with ``str.split``, so
    ordinary text costs one split and no regular expression.
    """
    n = 0
    pos = 0
    for chunk in text.split() if len(text) >= 16 else ():
        if len(chunk) < 16:
            continue
        at = text.find(chunk, pos)
        pos = at + len(chunk)
        for rx, decode, name in _CHUNK_DECODERS:
            for m in rx.finditer(chunk):
                d = decode(m.group())
                if d is not None:
                    yield Payload(name, d, at + m.start(), at + m.end())
                    n += 1
                    if n >= limit:
                        return
    if "%" in text:
        pos = 0
        for chunk in text.split():
            at = text.find(chunk, pos)
            pos = at + len(chunk)
            if chunk.count("%") >= 3 and len(_URL_ESC.findall(chunk)) >= 3:
                d = unquote(chunk)
                if _text_of(d.encode()) is not None:
                    yield Payload("url", d, at, at + len(chunk))
                    n += 1
                    if n >= limit:
                        return
    if words is None:
        words = _WORD.findall(text.lower())
    if not _ROT13_WORDS.isdisjoint(words) or len(_ROT13_COMMON.intersection(words)) >= 2:
        yield Payload("rot13", text.translate(_ROT13), 0, len(text))


_CHUNK_DECODERS: tuple[tuple[re.Pattern[str], Callable[[str], str | None], str], ...] = (
    (_HEX, _hex, "hex"),
    (_HEX_ESC, _hex, "hex"),
    (_B64, _b64, "base64"),
)
