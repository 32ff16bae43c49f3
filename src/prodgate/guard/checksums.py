"""Check digits and randomness measures shared by the PII and secrets detectors.

Each function takes the compact form of an identifier (separators removed) and
answers whether its check digits hold. A valid checksum is what turns a run of
digits into a finding with score 1.0: a random number passes Luhn one time in ten,
mod 97 one time in 97.
"""

from __future__ import annotations

import math
from collections import Counter

#: IBAN length per country (ISO 13616 registry), the countries in common use.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of payment cards and Canadian SINs."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def luhn_check_digit(payload: str) -> str:
    """The digit that makes ``payload + digit`` pass Luhn (for generators)."""
    for d in "0123456789":
        if luhn_ok(payload + d):
            return d
    raise AssertionError("unreachable")  # pragma: no cover


def iban_ok(compact: str) -> bool:
    """Length for its country and ISO 7064 mod 97-10 of an upper-case IBAN."""
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def iban_check_digits(country: str, bban: str) -> str:
    """The two check digits of an IBAN with this country and BBAN (for generators)."""
    number = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(number) % 97:02d}"


def eleven_test_ok(digits: str) -> bool:
    """The Dutch BSN 11-test: weights 9..2 and -1 over nine digits."""
    if len(digits) != 9 or digits == "000000000":
        return False
    total = sum(int(d) * w for d, w in zip(digits[:8], range(9, 1, -1), strict=True))
    return (total - int(digits[8])) % 11 == 0


def nir_ok(compact: str) -> bool:
    """French NIR (social security number): 13 characters and a key of 97 - n mod 97."""
    if len(compact) != 15 or not compact[13:].isdigit():
        return False
    body = compact[:13].upper().replace("2A", "19", 1).replace("2B", "18", 1)
    if not body.isdigit():
        return False
    return 97 - int(body) % 97 == int(compact[13:])


DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(number: str, letter: str) -> bool:
    """Spanish DNI: the letter is the number mod 23 in a fixed table."""
    return DNI_LETTERS[int(number) % 23] == letter.upper()


def entropy(text: str) -> float:
    """Shannon entropy in bits per character of the text's own character frequencies."""
    n = len(text)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def class_switches(text: str) -> float:
    """How often consecutive characters change class (lower, upper, digit, other).

    Random tokens switch about half the time; identifiers and words
    (``oauth2_client_credentials``, ``ThisIsCamelCase``) rarely do.
    """
    if len(text) < 2:
        return 0.0
    prev = -1
    switches = 0
    for ch in text:
        if ch.islower():
            cls = 0
        elif ch.isupper():
            cls = 1
        elif ch.isdigit():
            cls = 2
        else:
            cls = 3
        if prev >= 0 and cls != prev:
            switches += 1
        prev = cls
    return switches / (len(text) - 1)
