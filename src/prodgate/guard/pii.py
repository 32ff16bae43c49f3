"""Personal data by rule: e-mail, phone, payment cards, IBAN, national ids, IPs, DOB.

Every kind is a cheap candidate pattern followed by a validation that a look-alike
fails: Luhn and the issuer prefixes for cards, mod 97 for IBANs, the allocation rules
of SSNs and NINOs, the check digits of Canadian SINs, French NIRs, Dutch BSNs and
Spanish DNIs, the ``phonenumbers`` metadata for phones, octet ranges for IPv4 and
``ipaddress`` for IPv6. A checksum that holds scores 1.0; a format with no checksum
scores less, and numbers whose shape alone says little (nine bare digits) are
findings only when the words before them say what they are ("SSN", "BSN", "call").

Speed is by gating: a text with no ``@`` never runs the e-mail pattern, a text
without seven digits close together never runs the number patterns, and
``phonenumbers`` only ever sees a candidate, never the whole text.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection, Iterator

import phonenumbers

from prodgate.guard.checksums import (
    IBAN_LENGTHS,
    dni_ok,
    eleven_test_ok,
    iban_ok,
    luhn_ok,
    nir_ok,
)
from prodgate.guard.finding import PII, Finding

KINDS = ("email", "phone", "card", "iban", "ssn", "nino", "sin", "nir", "bsn", "dni", "ip", "dob")

_PHONE_REGIONS = ("GB", "DE", "FR")  # national formats with a trunk 0; US has none

_EMAIL = re.compile(
    r"(?<![\w.%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w\-])"
)
_NOT_TLD = frozenset(
    {"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "css",
     # Reserved for tests and documentation (RFC 2606, RFC 6761), and the placeholder
     # of a format ("firstname.lastname@company.tld"): no one's mailbox.
     "test", "invalid", "localhost", "tld"}
)  # fmt: skip

# A run of digits and separators: where every number-shaped kind can be. One pass of
# this over the text replaces a pass of each kind's pattern.
_NUMRUN = re.compile(r"[0-9][0-9 \-./()]*[0-9]")
_UPPER_DIGITS = re.compile(r"[A-Z]{2} ?[0-9]{2}")
_PHONE = re.compile(
    r"(?<![\w+\-./])(?:\+|\(\+?)?\d[\d ().\-]{5,22}\d"
    r"(?:(?=\s?(?:x|ext\.?|extension)\s?\d)|(?![\w\-]|\.\d))"  # an extension stays
)
_CARD = re.compile(r"(?<![\d\-.])\d(?:[ \-]?\d){12,18}(?![\d\-]|\.\d)")
_IBAN = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,32}")
_SSN = re.compile(r"(?<![\d\-.])(\d{3})([\- ]?)(\d{2})\2(\d{4})(?![\d\-]|\.\d)")
_SIN = re.compile(r"(?<![\d\-.])(\d{3})([\- ]?)(\d{3})\2(\d{3})(?![\d\-]|\.\d)")
_NIR = re.compile(
    r"(?<![\d\-])([12]) ?(\d{2}) ?(\d{2}) ?(\d{2}|2[AB]) ?(\d{3}) ?(\d{3}) ?(\d{2})(?![\d\-])"
)
_BSN = re.compile(r"(?<![\d\-.])(\d{4}\.\d{2}\.\d{3}|\d{3}[ .\-]?\d{3}[ .\-]?\d{3})(?![\d\-]|\.\d)")
_DNI = re.compile(r"(?<![\w\-])(\d{8})-?([A-Z])(?![\w\-])")
_NINO = re.compile(
    r"(?<![A-Za-z0-9])([A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])"
    r"(?![A-Za-z0-9])"
)
_NINO_BAD_PREFIX = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\w.\-])({_OCTET}(?:\.{_OCTET}){{3}})(?![\w\-]|\.\d)")
_HEX_COLON = frozenset("0123456789abcdefABCDEF:")
_HEX_COLON_DOT = frozenset("0123456789abcdefABCDEF:.")

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DATE = re.compile(
    r"(?i)(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:\d{4}|\d{2})(?!\d)"
    r"|\d{4}[/.\-]\d{1,2}[/.\-]\d{1,2}(?!\d)"
    rf"|\d{{1,2}}[\-/ ]{_MONTH}[\-/ ]\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
_DOB_CONTEXT = re.compile(
    r"(?i)(?<![a-z])(?:d\.?\s?o\.?\s?b\b\.?|date\s+of\s+birth|birth\s*date|birthday"
    r"|born|geburtsdatum|geboren|date\s+de\s+naissance|n[ée]e?\s+le)"
)
_DOB_WORDS = ("dob", "d.o.b", "birth", "born", "geb", "naissance", "né le", "née le", "ne le")

# Words before a number that say what it is.
_CONTEXT_WINDOW = 40
_SSN_WORDS = ("ssn", "social security", "ss#", "ss #", "ss no", "tin")
_SIN_WORDS = ("sin", "social insurance", "nas")
_BSN_WORDS = ("bsn", "burgerservicenummer", "citizen service", "sofi")
_PHONE_WORDS = (
    "phone", "tel", "call", "mobile", "cell", "fax", "whatsapp", "sms", "text me", "reach",
)  # fmt: skip
_NOT_PHONE_WORDS = (
    "order", "invoice", "policy", "claim", "ref", "account", "acct", "tracking", "isbn",
    "serial", "part", "case", "ticket", "booking", "reservation", "id", "no.", "#",
    "sku", "model", "version", "build",
)  # fmt: skip
_NOT_ID_WORDS = (
    "order", "invoice", "policy", "claim", "ref", "tracking", "isbn", "serial", "part",
    "case", "ticket", "booking", "sku", "model", "confirmation", "routing", "phone", "tel",
)  # fmt: skip
# Dotted quads that are not addresses: versions and numbered sections.
_NOT_IP_WORDS = (
    "version", "ver", "v", "release", "build", "firmware", "python", "node", "section",
    "sections", "chapter", "clause", "article", "para", "paragraph", "§", "step", "item",
    "figure", "fig.", "table", "rule", "oid",
)  # fmt: skip

_CARD_LENGTHS: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("4", (13, 16, 19)),  # Visa
    ("34", (15,)),  # American Express
    ("37", (15,)),
    ("5", (16,)),  # Mastercard 51-55 (checked below), Maestro 50, 56-58
    ("2", (16,)),  # Mastercard 2221-2720
    ("6", (16, 17, 18, 19)),  # Discover, UnionPay, Maestro
    ("35", (16, 17, 18, 19)),  # JCB
    ("30", (14, 16, 17, 18, 19)),  # Diners Club
    ("36", (14, 16, 17, 18, 19)),
    ("38", (14, 16)),
    ("39", (14, 16)),
)


def _before(lower: str, start: int, window: int = _CONTEXT_WINDOW) -> str:
    return lower[max(0, start - window) : start]


def _has_word(snippet: str, words: Collection[str]) -> bool:
    for word in words:
        at = snippet.find(word)
        while at >= 0:
            left_ok = at == 0 or not snippet[at - 1].isalnum()
            end = at + len(word)
            right_ok = end >= len(snippet) or not snippet[end].isalpha() or not word[-1].isalpha()
            if left_ok and right_ok:
                return True
            at = snippet.find(word, at + 1)
    return False


def _last_words(lower: str, start: int, words: Collection[str], window: int = 20) -> bool:
    """A word of ``words`` just before ``start`` (within ``window`` characters)."""
    return _has_word(_before(lower, start, window), words)


def _card_prefix_ok(digits: str) -> bool:
    n = len(digits)
    if digits[0] == "5" and not ("50" <= digits[:2] <= "58"):
        return False
    if digits[0] == "2" and not ("2221" <= digits[:4] <= "2720"):
        return False
    if digits[0] == "3" and digits[:2] not in ("34", "35", "36", "37", "30", "38", "39"):
        return False
    if digits[:2] == "35" and not ("3528" <= digits[:4] <= "3589"):
        return False
    if digits[:2] == "30" and not ("300" <= digits[:3] <= "305" or digits[:3] == "309"):
        return False
    for prefix, lengths in _CARD_LENGTHS:
        if digits.startswith(prefix):
            return n in lengths
    return False


def _groups_ok(raw: str) -> bool:
    """Digits written as a card is: no separator, or one separator between groups."""
    seps = {ch for ch in raw if not ch.isdigit()}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    groups = raw.split(seps.pop())
    if all(3 <= len(g) <= 6 for g in groups) or (len(groups) == 2 and len(groups[0]) >= 4):
        return True
    # 13 and 17-19 digit cards written in fours leave a short last group.
    return all(len(g) == 4 for g in groups[:-1]) and 1 <= len(groups[-1]) <= 3


#: Numbers reserved for fiction, which no one can have: North America's 555-0100 to
#: 555-0199 (any area code) and Ofcom's drama ranges (UK mobile 07700 900000-900999,
#: London 020 7946 0000-0999, and the geographic 0113..0191 496 0xxx).
_UK_DRAMA = (
    "7700900", "2079460", "1134960", "1144960", "1154960", "1164960", "1174960",
    "1184960", "1214960", "1314960", "1414960", "1514960", "1614960", "1914960",
)  # fmt: skip


def _fictional(digits: str) -> bool:
    """Whether the number (its digits as written) is in a range reserved for fiction."""
    national = digits
    if national.startswith(("1", "44")) and len(national) in (11, 12):
        national = national[1:] if national.startswith("1") else national[2:]
    if len(national) == 10 and national[3:6] == "555" and national[6:8] == "01":
        return True
    national = national.lstrip("0")
    return national.startswith(_UK_DRAMA)


class PiiDetector:
    """Personal data found by rule; ``kinds`` limits what is scanned (default: all)."""

    name = "pii"
    category = PII

    def __init__(self, kinds: Collection[str] | None = None) -> None:
        wanted = set(KINDS) if kinds is None else set(kinds)
        unknown = wanted - set(KINDS)
        if unknown:
            raise ValueError(f"unknown PII kinds: {sorted(unknown)}; known: {list(KINDS)}")
        self.kinds = frozenset(wanted)
        # (fewest digits, scan) of each number-shaped kind, most specific first.
        self._number_scans: list[
            tuple[int, Callable[[str, str, tuple[int, int]], Iterator[Finding]]]
        ] = [
            (least, scan)
            for kind, least, scan in (
                ("card", 13, self._cards),
                ("nir", 13, self._nirs),
                ("ssn", 9, self._ssns),
                ("sin", 9, self._sins),
                ("bsn", 9, self._bsns),
                ("dni", 8, self._dnis),
                ("phone", 7, self._phones),
            )
            if kind in self.kinds
        ]

    def _finding(self, kind: str, score: float, start: int, end: int) -> Finding:
        return Finding(PII, kind, self.name, score, start, end)

    def scan(self, text: str) -> list[Finding]:
        """All personal data in ``text``; never raises on a ``str``."""
        if not isinstance(text, str) or len(text) < 5:
            return []
        found: list[Finding] = []
        kinds = self.kinds
        if "email" in kinds and "@" in text:
            found.extend(self._emails(text))
        taken: list[tuple[int, int]] = []
        if ("iban" in kinds or "nino" in kinds) and _UPPER_DIGITS.search(text):
            if "iban" in kinds:
                found.extend(self._ibans(text))
            if "nino" in kinds:
                found.extend(self._ninos(text))
            taken.extend((f.start, f.end) for f in found if f.kind in ("iban", "nino"))
            if "iban" in kinds:
                taken.extend(_iban_shaped(text))
        if "nir" in kinds and ("2A" in text or "2B" in text):
            # Corsican NIRs have letters: no run of digits holds them whole.
            for f in self._nirs(text, "", (0, len(text))):
                taken.append((f.start, f.end))
                found.append(f)
        runs = [m.span() for m in _NUMRUN.finditer(text) if m.end() - m.start() >= 6]
        lower = text.lower() if runs or "dob" in kinds else ""
        if runs and self._number_scans:
            for start, end in runs:
                run = text[start:end]
                digits = len(run.translate(_NOT_DIGITS))
                if digits < 7 or _DATE_SHAPE.fullmatch(run):
                    continue
                region = (max(0, start - 2), min(len(text), end + 2))
                for least, scan in self._number_scans:
                    if digits < least:
                        continue
                    for f in scan(text, lower, region):
                        if any(f.start < e and s < f.end for s, e in taken):
                            continue
                        taken.append((f.start, f.end))
                        found.append(f)
        if "ip" in kinds:
            for start, end in runs:
                if text.count(".", start, end) >= 3:
                    found.extend(self._ipv4s(text, lower, (max(0, start - 1), end + 1)))
            if "::" in text or text.count(":") >= 5:
                found.extend(self._ipv6s(text))
        if "dob" in kinds and any(w in lower for w in _DOB_WORDS):
            found.extend(self._dobs(text))
        return found

    # e-mail ---------------------------------------------------------------------------

    def _emails(self, text: str) -> Iterator[Finding]:
        if text.count("@") > 8:
            # Many "@": one pass over the text beats a window around each of them.
            for each in _EMAIL.finditer(text):
                tld = each.group().rsplit(".", 1)[1].lower()
                if tld not in _NOT_TLD and text[max(0, each.start() - 2) : each.start()] != "//":
                    yield self._finding("email", 0.95, each.start(), each.end())
            return
        at = text.find("@")
        pos = 0
        while at >= 0:
            # Only the neighbourhood of each "@" is searched: the local part is 64 at most.
            m = _EMAIL.search(text, max(pos, at - 64), min(len(text), at + 256))
            at = text.find("@", at + 1)
            if m is None or m.end() <= pos:
                continue
            pos = m.end()
            while at >= 0 and at < pos:
                at = text.find("@", at + 1)
            tld = m.group().rsplit(".", 1)[1].lower()
            if tld in _NOT_TLD or text[max(0, m.start() - 2) : m.start()] == "//":
                continue  # icon@2x.png; the user of a URL (ssh://git@host)
            yield self._finding("email", 0.95, m.start(), m.end())

    # numbers --------------------------------------------------------------------------

    def _cards(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _CARD.finditer(text, *region):
            raw = m.group()
            digits = raw.replace(" ", "").replace("-", "")
            if (
                13 <= len(digits) <= 19
                and _groups_ok(raw)
                and _card_prefix_ok(digits)
                and luhn_ok(digits)
                and len(set(digits)) > 1
            ):
                yield self._finding("card", 1.0, m.start(), m.end())

    def _ibans(self, text: str) -> Iterator[Finding]:
        for m in _IBAN.finditer(text):
            raw = m.group()
            length = IBAN_LENGTHS.get(raw[:2], 0)
            if not length:
                continue
            # Walk the match until the country's length: the pattern may run on into
            # the next upper-case word ("... 00 BIC COBADEFF").
            compact: list[str] = []
            end = 0
            for i, ch in enumerate(raw):
                if ch != " ":
                    compact.append(ch)
                    if len(compact) == length:
                        end = i + 1
                        break
            tail = raw[end : end + 1]
            if not end or (tail and tail != " "):
                continue
            if iban_ok("".join(compact)):
                yield self._finding("iban", 1.0, m.start(), m.start() + end)

    def _ssns(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _SSN.finditer(text, *region):
            area, sep, group, serial = m.groups()
            if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
                continue
            if area + group + serial in ("078051120", "219099999", "123456789"):
                continue
            context = _has_word(_before(lower, m.start()), _SSN_WORDS)
            if sep == "-" and not context and _last_words(lower, m.start(), _NOT_ID_WORDS):
                continue
            if sep == "-" or context:
                yield self._finding("ssn", 0.95 if context else 0.85, m.start(), m.end())

    def _sins(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _SIN.finditer(text, *region):
            area, sep, mid, last = m.groups()
            digits = area + mid + last
            if digits[0] == "8" or digits == "000000000" or not luhn_ok(digits):
                continue
            context = _has_word(_before(lower, m.start()), _SIN_WORDS)
            if not context and (not sep or _last_words(lower, m.start(), _NOT_ID_WORDS)):
                continue
            yield self._finding("sin", 1.0 if context else 0.8, m.start(), m.end())

    def _nirs(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _NIR.finditer(text, *region):
            sex, year, month, dept, commune, order, key = m.groups()
            if not ("01" <= month <= "12" or "20" <= month <= "99"):
                continue
            if nir_ok(sex + year + month + dept + commune + order + key):
                yield self._finding("nir", 1.0, m.start(), m.end())

    def _bsns(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        if not any(w in lower for w in _BSN_WORDS):
            return
        for m in _BSN.finditer(text, *region):
            digits = m.group(1).replace(".", "").replace(" ", "").replace("-", "")
            if eleven_test_ok(digits) and _has_word(_before(lower, m.start()), _BSN_WORDS):
                yield self._finding("bsn", 1.0, m.start(), m.end())

    def _dnis(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _DNI.finditer(text, *region):
            if dni_ok(m.group(1), m.group(2)):
                yield self._finding("dni", 0.9, m.start(), m.end())

    def _phones(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _PHONE.finditer(text, *region):
            raw = m.group()
            found = self._phone(raw, lower, m.start())
            if found is None and " " in raw and not raw.startswith(("+", "(")):
                # A year or a small count glued to the front: "in 2023 020 7946 0958".
                first = raw[: raw.index(" ")]
                if first.isdigit() and (len(first) <= 2 or first[:2] in ("19", "20")):
                    cut = len(first) + 1
                    found = self._phone(raw[cut:], lower, m.start() + cut)
            if found is not None:
                yield found

    def _phone(self, raw: str, lower: str, start: int) -> Finding | None:
        if raw.endswith((")", "(")):
            raw = raw.rstrip("()")
        digits = "".join(ch for ch in raw if ch.isdigit())
        if not 7 <= len(digits) <= 15 or _DATE_SHAPE.search(raw) or _IPV4_SHAPE.fullmatch(raw):
            return None
        if "." in raw and any(len(g) < 2 for g in re.split(r"[.\s\-()]+", raw) if g):
            return None  # 1.3.6.1.4.1: an OID or a version, not 415.555.2671
        international = raw.startswith(("+", "(+", "00"))
        separated = len(digits) != len(raw)
        if not international:
            if not separated:
                # A bare run of digits is a phone only when the words before say so.
                if not _last_words(lower, start, _PHONE_WORDS, 30):
                    return None
            elif _last_words(lower, start, _NOT_PHONE_WORDS) and not _last_words(
                lower, start, _PHONE_WORDS, 30
            ):
                return None
        try:
            if international:
                number = raw if raw.startswith(("+", "(+")) else "+" + raw[2:]
                ok = phonenumbers.is_valid_number(phonenumbers.parse(number, None))
            elif digits[0] == "0":
                ok = any(
                    phonenumbers.is_valid_number(phonenumbers.parse(raw, region))
                    for region in _PHONE_REGIONS
                )
            else:
                ok = len(digits) in (10, 11) and phonenumbers.is_valid_number(
                    phonenumbers.parse(raw, "US")
                )
        except phonenumbers.NumberParseException:
            return None
        if not ok or _fictional(digits):
            return None
        return self._finding("phone", 0.95 if international else 0.9, start, start + len(raw))

    # letters and digits ---------------------------------------------------------------

    def _ninos(self, text: str) -> Iterator[Finding]:
        for m in _NINO.finditer(text):
            if m.group(1) in _NINO_BAD_PREFIX:
                continue
            spaced = m.group().count(" ")
            if spaced not in (0, 4):  # "AB 12 34 56 C" or "AB123456C"
                continue
            yield self._finding("nino", 0.9, m.start(), m.end())

    def _ipv4s(self, text: str, lower: str, region: tuple[int, int]) -> Iterator[Finding]:
        for m in _IPV4.finditer(text, *region):
            ip = m.group(1)
            first = ip.split(".", 1)[0]
            if first in ("0", "127", "255"):  # unspecified, loopback, masks and broadcast
                continue
            if _last_words(lower, m.start(), _NOT_IP_WORDS, 12):
                continue
            private = ipaddress.IPv4Address(ip).is_private
            yield self._finding("ip", 0.8 if private else 0.95, m.start(), m.end())

    def _ipv6s(self, text: str) -> Iterator[Finding]:
        # Walk out from each colon over the characters an IPv6 address is made of, and
        # let ``ipaddress`` judge: cheaper than a pattern tried at every position.
        n = len(text)
        at = text.find(":")
        while at >= 0:
            start = at
            while start > 0 and text[start - 1] in _HEX_COLON:
                start -= 1
            end = at
            while end < n and text[end] in _HEX_COLON_DOT:
                end += 1
            at = text.find(":", end)
            raw = text[start:end].rstrip(".")
            if raw.endswith(":") and not raw.endswith("::"):
                raw = raw[:-1]
            before = text[start - 1] if start else " "
            after = text[start + len(raw)] if start + len(raw) < n else " "
            if raw.count(":") < 2 or before.isalnum() or before in "_." or after.isalnum():
                continue
            if not any(ch.isdigit() for ch in raw) or len([g for g in raw.split(":") if g]) < 2:
                continue
            try:
                ip = ipaddress.IPv6Address(raw)
            except ValueError:
                continue
            if not (ip.is_unspecified or ip.is_loopback):
                yield self._finding("ip", 0.95, start, start + len(raw))

    # dates of birth -------------------------------------------------------------------

    def _dobs(self, text: str) -> Iterator[Finding]:
        for m in _DOB_CONTEXT.finditer(text):
            window = text[m.end() : m.end() + 30]
            d = _DATE.search(window)
            if d is None:
                continue
            gap = window[: d.start()]
            if any(ch.isdigit() for ch in gap) or len(gap.split()) > 3:
                continue
            if not _plausible_date(d.group()):
                continue
            yield self._finding("dob", 0.9, m.end() + d.start(), m.end() + d.end())


_NOT_DIGITS = str.maketrans("", "", " -./()")
_DATE_SHAPE = re.compile(r"\d{4}[\-./]\d{1,2}[\-./]\d{1,2}|\d{1,2}[\-./]\d{1,2}[\-./]\d{2,4}")
_IPV4_SHAPE = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")


def _iban_shaped(text: str) -> list[tuple[int, int]]:
    """Spans shaped like an IBAN of a known country, valid or not: never a phone."""
    spans: list[tuple[int, int]] = []
    for m in _IBAN.finditer(text):
        length = IBAN_LENGTHS.get(m.group()[:2], 0)
        count = 0
        for i, ch in enumerate(m.group()):
            if ch != " ":
                count += 1
                if count == length:
                    spans.append((m.start(), m.start() + i + 1))
                    break
    return spans


def _plausible_date(raw: str) -> bool:
    numbers = [int(n) for n in re.findall(r"\d+", raw)]
    years = [n for n in numbers if n >= 100]
    if years and not 1890 <= years[0] <= 2030:
        return False
    small = [n for n in numbers if n < 100]
    return all(1 <= n <= 31 for n in small[:2]) if len(small) >= 2 else True
