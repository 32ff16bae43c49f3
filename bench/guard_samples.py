# ruff: noqa: E501 (tables of templates and value makers read best one per line)
"""Labelled PII and secret samples, and look-alikes that must not match, for the guard.

Writes ``bench/data/guard/pii.jsonl`` and ``bench/data/guard/secrets.jsonl`` (one
object per line: text, label, kind, group, split, source, spans). Every positive is a
generated value with valid check digits (Luhn, mod 97, the 11-test, ...) or the
documented format of its provider, embedded in a sentence, a config file, a log line
or a chat message; some in the insurance-claims domain. Look-alikes (label
``benign``, group ``lookalike``, their type under ``variant``) are the numbers and
strings that real text is full of and a careless detector flags: order, policy and
claim numbers, tracking numbers, dates that are not dates of birth, versions,
timestamps, prices, ISBNs, cards and IBANs with bad check digits, UUIDs, git SHAs,
digests, base64 of words, paths, URLs, and the redacted and example forms of keys.

The split is by template: about a third of each kind's templates are ``test`` only,
so test sentences are shaped in ways the train ones are not. Values are random per
sample. Nothing is downloaded; no Faker: small lists below are enough.

Run from the repository root (a second or two)::

    .venv/bin/python bench/guard_samples.py [--seed 9] [--out bench/data/guard]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import phonenumbers

from prodgate.guard.checksums import (
    DNI_LETTERS,
    IBAN_LENGTHS,
    eleven_test_ok,
    iban_check_digits,
    luhn_check_digit,
)

SOURCE = "generated:bench/guard_samples.py"
TEST_EVERY = 3  # every third template of a kind is a test template

FIRST = [
    "Alice",
    "Ben",
    "Chloe",
    "Dmitri",
    "Emma",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Katarzyna",
    "Liam",
    "Maria",
    "Noah",
    "Olga",
    "Pierre",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Aoife",
    "Bram",
    "Chidi",
    "Dagny",
    "Elif",
    "Finn",
    "Giulia",
    "Hannah",
]
LAST = [
    "Smith",
    "Jones",
    "Okafor",
    "Muller",
    "Dubois",
    "Rossi",
    "Garcia",
    "Novak",
    "Kowalski",
    "Tanaka",
    "Nguyen",
    "Brown",
    "Schmidt",
    "Martin",
    "Silva",
    "Jansen",
    "Petrov",
    "Murphy",
    "Haddad",
    "Larsen",
    "Costa",
    "Fischer",
    "Moreau",
    "Walsh",
]
STREETS = (
    "Mill Lane", "High Street", "Kastanienallee", "Rue de la Paix", "Elm Road", "Oak Avenue",
    "Station Road", "Church Street", "Baker Street", "Keizersgracht", "Calle Mayor",
)  # fmt: skip
CITIES = ("Leeds", "Berlin", "Lyon", "Boston", "Dublin", "Utrecht", "Madrid", "Toronto")
DOMAINS = (
    "gmail.com", "outlook.com", "yahoo.co.uk", "web.de", "orange.fr", "proton.me",
    "acme-insurance.com", "claims.example.org", "mail.northwind.co.uk", "icloud.com",
)  # fmt: skip
PERILS = ("water damage", "a burst pipe", "storm damage", "a theft", "a kitchen fire", "hail")
B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
B64URL = B62 + "-_"
HEX = "0123456789abcdef"

Sample = dict[str, Any]


def rs(r: random.Random, n: int, alphabet: str = B62) -> str:
    return "".join(r.choice(alphabet) for _ in range(n))


def person(r: random.Random) -> str:
    return f"{r.choice(FIRST)} {r.choice(LAST)}"


def claim_ref(r: random.Random) -> str:
    return r.choice(["CLM-", "CL", "C-"]) + f"{r.randint(2019, 2026)}-{r.randint(1, 999999):06d}"


def policy_ref(r: random.Random) -> str:
    return r.choice(["POL-", "PL", "HH-"]) + str(r.randint(10_000_000, 99_999_999))


# -- PII values ------------------------------------------------------------------------


def email(r: random.Random) -> str:
    f, last = r.choice(FIRST).lower(), r.choice(LAST).lower()
    local = r.choice(
        [
            f"{f}.{last}",
            f"{f[0]}{last}{r.randint(1, 99)}",
            f"{f}_{last}",
            f"{f}+claims",
            f"{last}.{f}",
        ]
    )
    return f"{local}@{r.choice(DOMAINS)}"


def phone(r: random.Random) -> str:
    while True:
        region = r.choice(["US", "GB", "DE", "FR"])
        if region == "US":
            national = f"{r.randint(201, 989)}{r.randint(200, 999)}{r.randint(0, 9999):04d}"
        elif region == "GB":
            national = r.choice(["20", "7700", "161", "113", "7911"])
            national += rs(r, 10 - len(national), string.digits)
        elif region == "DE":
            national = r.choice(["30", "40", "89", "151", "160", "176", "221"])
            national += rs(r, r.choice([8, 9]), string.digits)
        else:
            national = r.choice("12345679") + rs(r, 8, string.digits)
        number = phonenumbers.parse(national, region)
        if not phonenumbers.is_valid_number(number):
            continue
        style = r.choice(
            [
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
            ]
        )
        text = phonenumbers.format_number(number, style)
        if region == "US" and style != phonenumbers.PhoneNumberFormat.INTERNATIONAL:
            text = r.choice(
                [
                    text,
                    text.replace("(", "").replace(") ", "-"),
                    text.replace("(", "").replace(") ", ".").replace("-", "."),
                ]
            )
        return text


CARD_BRANDS = (("4", 16), ("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
               ("37", 15), ("6011", 16), ("65", 16), ("3530", 16), ("4", 13), ("62", 19))  # fmt: skip


def card_digits(r: random.Random) -> str:
    prefix, length = r.choice(CARD_BRANDS)
    body = prefix + rs(r, length - len(prefix) - 1, string.digits)
    return body + luhn_check_digit(body)


def format_card(r: random.Random, digits: str) -> str:
    sep = r.choice([" ", " ", "-", ""])
    if len(digits) == 15:
        groups = [digits[:4], digits[4:10], digits[10:]]
    else:
        groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    return sep.join(groups)


def card(r: random.Random) -> str:
    return format_card(r, card_digits(r))


IBAN_BBAN: dict[str, Callable[[random.Random], str]] = {
    "DE": lambda r: rs(r, 18, string.digits),
    "GB": lambda r: rs(r, 4, string.ascii_uppercase) + rs(r, 14, string.digits),
    "FR": lambda r: rs(r, 10, string.digits) + rs(r, 11, string.digits + "ABC") + rs(r, 2, string.digits),
    "NL": lambda r: rs(r, 4, string.ascii_uppercase) + rs(r, 10, string.digits),
    "ES": lambda r: rs(r, 20, string.digits),
    "IT": lambda r: r.choice(string.ascii_uppercase) + rs(r, 10, string.digits) + rs(r, 12, string.digits),
    "BE": lambda r: rs(r, 12, string.digits),
    "CH": lambda r: rs(r, 17, string.digits),
    "IE": lambda r: rs(r, 4, string.ascii_uppercase) + rs(r, 14, string.digits),
    "PL": lambda r: rs(r, 24, string.digits),
}  # fmt: skip


def iban_compact(r: random.Random) -> str:
    country = r.choice(list(IBAN_BBAN))
    bban = IBAN_BBAN[country](r)
    assert len(bban) + 4 == IBAN_LENGTHS[country], country
    return country + iban_check_digits(country, bban) + bban


def format_iban(r: random.Random, compact: str) -> str:
    if r.random() < 0.6:
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


def iban(r: random.Random) -> str:
    return format_iban(r, iban_compact(r))


def ssn_parts(r: random.Random) -> tuple[str, str, str]:
    area = r.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}", f"{r.randint(1, 99):02d}", f"{r.randint(1, 9999):04d}"


def ssn(r: random.Random) -> str:
    return "-".join(ssn_parts(r))


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"


def nino(r: random.Random) -> str:
    while True:
        prefix = r.choice(NINO_FIRST) + r.choice(NINO_SECOND)
        if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
            break
    digits = rs(r, 6, string.digits)
    suffix = r.choice("ABCD")
    if r.random() < 0.5:
        return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
    return f"{prefix}{digits}{suffix}"


def sin(r: random.Random) -> str:
    body = r.choice("1234567") + rs(r, 7, string.digits)
    digits = body + luhn_check_digit(body)
    sep = r.choice([" ", "-"])
    return sep.join([digits[:3], digits[3:6], digits[6:]])


def nir(r: random.Random) -> str:
    dept = r.choice([f"{r.randint(1, 95):02d}", "2A", "2B"])
    parts = [r.choice("12"), f"{r.randint(0, 99):02d}", f"{r.randint(1, 12):02d}", dept,
             f"{r.randint(1, 990):03d}", f"{r.randint(1, 999):03d}"]  # fmt: skip
    body = "".join(parts).replace("2A", "19").replace("2B", "18")
    key = f"{97 - int(body) % 97:02d}"
    return " ".join([*parts, key]) if r.random() < 0.6 else "".join([*parts, key])


def bsn(r: random.Random) -> str:
    while True:
        digits = r.choice("123456789") + rs(r, 8, string.digits)
        if eleven_test_ok(digits):
            return digits if r.random() < 0.7 else f"{digits[:4]}.{digits[4:6]}.{digits[6:]}"


def dni(r: random.Random) -> str:
    number = rs(r, 8, string.digits)
    return number + r.choice(["", "-"]) + DNI_LETTERS[int(number) % 23]


def ip(r: random.Random) -> str:
    kind = r.random()
    if kind < 0.45:
        first = r.choice([n for n in range(1, 224) if n not in (10, 127)])
        return f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
    if kind < 0.7:
        a, b, c = r.randint(0, 255), r.randint(0, 255), r.randint(1, 254)
        return r.choice([f"192.168.{b}.{c}", f"10.{a}.{b}.{c}", f"172.16.{b}.{c}"])
    groups = [f"{r.randint(0, 0xFFFF):x}" for _ in range(8)]
    if r.random() < 0.5:
        return ":".join(groups)
    return f"2001:db8:{groups[2]}::{groups[6]}:{groups[7]}"


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"]  # fmt: skip


def date_text(r: random.Random, year_lo: int = 1935, year_hi: int = 2006) -> str:
    y, m, d = r.randint(year_lo, year_hi), r.randint(1, 12), r.randint(1, 28)
    return r.choice(
        [
            f"{d:02d}/{m:02d}/{y}",
            f"{m}/{d}/{y}",
            f"{y}-{m:02d}-{d:02d}",
            f"{d}.{m}.{y}",
            f"{d} {MONTHS[m - 1]} {y}",
            f"{MONTHS[m - 1]} {d}, {y}",
            f"{d}th of {MONTHS[m - 1]} {y}",
            f"{d} {MONTHS[m - 1][:3]} {y}",
        ]
    )


def dob(r: random.Random) -> str:
    return date_text(r)


# -- PII templates: {v} is the value; the label word is part of the template -----------

PII_TEMPLATES: dict[str, list[str]] = {
    "email": [
        "Please send the claim forms to {v} rather than by post.",
        "Hi, it's {name}. My new e-mail is {v}, can you update the policy?",
        "From: {name} <{v}>\nSubject: claim {claim}",
        "contact_email: {v}",
        "The adjuster wrote to {v} on Monday but got no answer.",
        "You can reach me at {v} or on the portal.",
        "Customer {name} ({v}) asked for a callback about {peril}.",
        "Reply-To: {v}",
        "cc {v} on anything about policy {policy}, thanks",
    ],
    "phone": [
        "Call me on {v} after 5pm please.",
        "My phone number is {v}.",
        "{name}, mobile {v}, reported {peril} at {street}.",
        "Tel: {v}",
        "You can text the claimant at {v} about the inspection.",
        "Best number to reach me: {v} (weekdays).",
        "The garage phoned from {v} to confirm the repair.",
        "contact {v} for access to the property",
        "Emergency contact: {name}, {v}",
    ],
    "card": [
        "I paid the excess with my card {v}, please refund it.",
        "Card number: {v}, expiry 09/27.",
        "Can you charge the premium to {v}?",
        "payment card {v} was declined on the portal",
        "The refund should go back to the Visa ending... actually the full number is {v}.",
        "{name} gave card {v} over the phone for claim {claim}.",
        "cc={v}",
        "use {v} for the deposit, CVV I'll send separately",
        "Charge {v} for the windscreen repair.",
    ],
    "iban": [
        "Please pay the settlement into {v}.",
        "IBAN: {v}",
        "My bank account is {v} (in the name of {name}).",
        "Refund to IBAN {v} for claim {claim}.",
        "bank details changed, new account {v}",
        "Settlement of claim {claim} should go to {v}, reference {policy}.",
        "{name}, {v}, {city}",
        "wire the excess back to {v} please",
        "Account holder {name} / IBAN {v} / BIC on file",
    ],
    "ssn": [
        "My SSN is {v}.",
        "SSN: {v}",
        "The claimant's social security number is {v}.",
        "{name}, SSN {v}, date of loss last Friday.",
        "Applicant {name}, {v}, lives at {street}.",
        "for verification, social security no. {v}",
        "ssn={v}",
        "Please note my Social Security # {v} on the file.",
        "{name} (SS# {v}) called about claim {claim}.",
    ],
    "nino": [
        "My National Insurance number is {v}.",
        "NI number: {v}",
        "NINO {v} for {name}.",
        "The claimant, {name} ({v}), is self-employed.",
        "national insurance no {v}",
        "ni_number: {v}",
        "Employee {name}, NI {v}, {city} branch.",
        "I think my NI is {v} but please check.",
        "Payroll record: {v}",
    ],
    "sin": [
        "My SIN is {v}.",
        "Social insurance number: {v}",
        "{name}, SIN {v}, Toronto.",
        "The policyholder's social insurance number {v} is on the form.",
        "SIN: {v}",
        "sin={v}",
        "Claimant SIN {v} (Ontario).",
        "for the tax slip, SIN {v}",
        "NAS / SIN : {v}",
    ],
    "nir": [
        "Mon numéro de sécurité sociale est {v}.",
        "NIR : {v}",
        "Numéro INSEE {v} pour {name}.",
        "French social security number {v}.",
        "Assuré {name}, n° SS {v}, {city}.",
        "numero_secu: {v}",
        "Le dossier mentionne {v} comme numéro de sécu.",
        "{name} ({v}) a déclaré un sinistre.",
        "Carte Vitale : {v}",
    ],
    "bsn": [
        "Mijn BSN is {v}.",
        "BSN: {v}",
        "Burgerservicenummer {v} van {name}.",
        "Citizen service number (BSN) {v} is on file.",
        "bsn={v}",
        "Verzekerde {name}, BSN {v}, {city}.",
        "BSN-nummer: {v}",
        "het BSN {v} klopt niet met het formulier",
        "BSN {v} / {name}",
    ],
    "dni": [
        "Mi DNI es {v}.",
        "DNI: {v}",
        "{name}, con DNI {v}, ha presentado un parte.",
        "Spanish ID (DNI) {v}.",
        "documento {v}",
        "NIF {v} del asegurado.",
        "dni={v}",
        "El tomador {name} ({v}) vive en {city}.",
        "ID number {v} (Spain)",
    ],
    "ip": [
        "The login came from {v}.",
        "client_ip={v}",
        "Blocked requests from {v} after five failed attempts.",
        "[{time}] GET /claims/{claim} from {v} 200",
        "Her router's address was {v} at the time.",
        "Allow-list {v} for the broker portal.",
        "remote_addr: {v}",
        "The fraudulent claim was filed from IP {v}.",
        "ssh admin@{v}",
    ],
    "dob": [
        "My date of birth is {v}.",
        "DOB: {v}",
        "{name}, born on {v}, policy {policy}.",
        "Date of birth: {v}",
        "The insured (d.o.b. {v}) was driving.",
        "dob={v}",
        "birth date {v}",
        "She was born {v} in {city}.",
        "Birthday: {v}",
    ],
}

PII_VALUES: dict[str, Callable[[random.Random], str]] = {
    "email": email, "phone": phone, "card": card, "iban": iban, "ssn": ssn, "nino": nino,
    "sin": sin, "nir": nir, "bsn": bsn, "dni": dni, "ip": ip, "dob": dob,
}  # fmt: skip


# -- PII look-alikes --------------------------------------------------------------------


def bad_luhn_card(r: random.Random) -> str:
    digits = card_digits(r)
    wrong = str((int(digits[-1]) + r.randint(1, 9)) % 10)
    return format_card(r, digits[:-1] + wrong)


def bad_iban(r: random.Random) -> str:
    compact = iban_compact(r)
    check = int(compact[2:4])
    compact = compact[:2] + f"{(check + r.randint(1, 90)) % 97 + 2:02d}"[-2:] + compact[4:]
    return format_iban(r, compact)


def bad_phone(r: random.Random) -> str:
    return r.choice(
        [
            f"(555) {r.randint(100, 999)}-{r.randint(1000, 9999)}",
            f"123-456-{r.randint(1000, 9999)}",
            f"+44 20 {r.randint(100, 999)}",
            f"000-000-{r.randint(1000, 9999)}",
            f"+1 (011) {r.randint(100, 999)}-{r.randint(1000, 9999)}",
        ]
    )


PII_LOOKALIKES: dict[str, list[Callable[[random.Random], str]]] = {
    "invalid_card": [
        lambda r: f"Card {bad_luhn_card(r)} was rejected by the payment provider.",
        lambda r: f"I tried {bad_luhn_card(r)} but the portal says it is invalid.",
        lambda r: f"ref {bad_luhn_card(r)}",
    ],
    "order_number": [
        lambda r: f"Order #{r.randint(100_000_000, 999_999_999)} shipped yesterday.",
        lambda r: f"Your order number is {r.randint(1_000_000_000, 9_999_999_999)}.",
        lambda r: f"Order ORD-{r.randint(2019, 2026)}-{r.randint(100000, 999999)} confirmed.",
        lambda r: f"Invoice {r.randint(2019, 2026)}/{r.randint(10000, 99999)} is attached.",
    ],
    "policy_number": [
        lambda r: f"Policy {policy_ref(r)} renews on the 1st.",
        lambda r: (
            f"policy number {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)}"
        ),
        lambda r: f"Please quote policy {r.randint(100_000_000, 999_999_999)} in all letters.",
    ],
    "claim_number": [
        lambda r: f"Claim {claim_ref(r)} is with the adjuster.",
        lambda r: f"claim no. {r.randint(10_000_000, 99_999_999)} was closed",
        lambda r: (
            f"Case {r.randint(100, 999)}-{r.randint(10, 99)}-{r.randint(1000, 9999)}-{r.randint(10, 99)} reopened."
        ),
    ],
    "tracking_number": [
        lambda r: (
            f"UPS tracking 1Z{rs(r, 6, string.ascii_uppercase + string.digits)}{rs(r, 10, string.digits)}"
        ),
        lambda r: f"USPS tracking number {rs(r, 22, string.digits)}",
        lambda r: f"FedEx {r.randint(1000, 9999)} {r.randint(1000, 9999)} {r.randint(1000, 9999)}",
        lambda r: (
            f"Parcel {rs(r, 2, string.ascii_uppercase)}{rs(r, 9, string.digits)}GB is on its way."
        ),
    ],
    "date_not_dob": [
        lambda r: f"The incident happened on {date_text(r, 2015, 2026)}.",
        lambda r: f"Policy start date: {date_text(r, 2015, 2026)}",
        lambda r: f"Inspection booked for {date_text(r, 2024, 2026)} at 10:00.",
        lambda r: f"date of loss {date_text(r, 2018, 2026)}, reported {date_text(r, 2018, 2026)}",
    ],
    "version": [
        lambda r: f"Upgraded to version {r.randint(1, 20)}.{r.randint(0, 20)}.{r.randint(0, 30)}",
        lambda r: (
            f"v{r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 999)} fixes the login bug"
        ),
        lambda r: (
            f"Requires Python {r.randint(3, 3)}.{r.randint(8, 13)}.{r.randint(0, 9)} or later."
        ),
        lambda r: (
            f"firmware {r.randint(1, 9)}.{r.randint(0, 9)}.{r.randint(0, 9)}.{r.randint(0, 99)}"
        ),
        lambda r: (
            f"see section {r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)}.{r.randint(1, 9)} of the policy wording"
        ),
    ],
    "timestamp": [
        lambda r: (
            f"{r.randint(2019, 2026)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z request accepted"
        ),
        lambda r: (
            f"[{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.{r.randint(0, 999):03d}] worker started"
        ),
        lambda r: f"epoch {r.randint(1_500_000_000, 1_800_000_000)}",
    ],
    "isbn": [
        lambda r: (
            f"ISBN 978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-{r.randint(0, 9)}"
        ),
        lambda r: f"ISBN-13: 978{rs(r, 10, string.digits)}",
    ],
    "price": [
        lambda r: (
            f"The repair cost ${r.randint(1, 99)},{r.randint(100, 999)}.{r.randint(0, 99):02d}."
        ),
        lambda r: f"Total: EUR {r.randint(1, 999)} {r.randint(100, 999)},{r.randint(0, 99):02d}",
        lambda r: f"Sum insured £{r.randint(100, 999)},{r.randint(100, 999)},000",
    ],
    "invalid_phone": [
        lambda r: f"Call {bad_phone(r)} for the demo line.",
        lambda r: f"phone: {bad_phone(r)}",
    ],
    "invalid_iban": [
        lambda r: f"IBAN {bad_iban(r)} (check digits wrong)",
        lambda r: f"Pay into {bad_iban(r)} please.",
    ],
    "invalid_ssn": [
        lambda r: (
            f"SSN {r.choice(['000', '666', str(r.randint(900, 999))])}-{r.randint(10, 99)}-{r.randint(1000, 9999)}"
        ),
        lambda r: f"SSN {r.randint(100, 665)}-00-{r.randint(1000, 9999)}",
    ],
    "postcode_and_codes": [
        lambda r: (
            f"Sort code {r.randint(10, 99)}-{r.randint(10, 99)}-{r.randint(10, 99)}, account {r.randint(10_000_000, 99_999_999)}"
        ),
        lambda r: f"ZIP {r.randint(10000, 99999)}-{r.randint(1000, 9999)}",
        lambda r: f"MAC 00:1A:{rs(r, 2, '0123456789ABCDEF')}:{rs(r, 2, '0123456789ABCDEF')}:4D:5E",
        lambda r: (
            f"serial {rs(r, 4, string.ascii_uppercase + string.digits)}-{rs(r, 4, string.digits)}-{rs(r, 4, string.digits)}"
        ),
        lambda r: f"NI number QQ 12 34 56 {r.choice('ABCD')} is the example on the form.",
        lambda r: (
            f"Reg {rs(r, 2, string.ascii_uppercase)}{r.randint(10, 99)} {rs(r, 3, string.ascii_uppercase)}"
        ),
    ],
    "ip_like": [
        lambda r: f"Listening on 0.0.0.0:{r.randint(1000, 9999)} and 127.0.0.1",
        lambda r: f"netmask 255.255.255.{r.choice([0, 128, 192, 224])}",
        lambda r: f"OID 1.3.6.1.4.1.{r.randint(1000, 99999)}",
        lambda r: f"release {r.randint(1, 30)}.{r.randint(0, 12)}.{r.randint(0, 9)}",
    ],
    "ordinary": [
        lambda r: (
            f"We received your claim about {r.choice(PERILS)} and will call you within {r.randint(2, 10)} days."
        ),
        lambda r: (
            f"{person(r)} lives at {r.randint(1, 200)} {r.choice(STREETS)}, {r.choice(CITIES)}."
        ),
        lambda r: (
            f"There were {r.randint(2, 9)} photos and {r.randint(2, 9)} receipts attached, {r.randint(10, 99)} MB in total."
        ),
        lambda r: (
            f"Meeting at {r.randint(1, 12)}:{r.randint(0, 5)}0 on the {r.randint(2, 28)}th, room {r.randint(100, 999)}."
        ),
    ],
}


# -- secrets values ----------------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(r: random.Random) -> str:
    header = {"alg": r.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    if r.random() < 0.3:
        header["kid"] = rs(r, 8)
    payload = {"sub": str(r.randint(1, 10**9)), "iat": r.randint(1_600_000_000, 1_800_000_000),
               "scope": r.choice(["claims:read", "admin", "user"])}  # fmt: skip
    sig = _b64(r.randbytes(r.choice([32, 64, 48])))
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}.{sig}"


def pem(r: random.Random, *, terminated: bool = True) -> str:
    label = r.choice(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(r.randbytes(r.randint(120, 600))).decode()
    lines = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    block = f"-----BEGIN {label}-----\n{lines}\n"
    if terminated:
        return block + f"-----END {label}-----"
    return block[: r.randint(len(label) + 30, len(block))]


def service_account_key(r: random.Random) -> str:
    body = base64.b64encode(r.randbytes(r.randint(150, 400))).decode()
    lines = "\\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN PRIVATE KEY-----\\n{lines}\\n-----END PRIVATE KEY-----\\n"


SECRET_VALUES: dict[str, Callable[[random.Random], str]] = {
    "aws_access_key": lambda r: r.choice(["AKIA", "ASIA"]) + rs(r, 16, string.ascii_uppercase + "234567"),
    "aws_secret_key": lambda r: rs(r, 40, B64),
    "gcp_api_key": lambda r: "AIza" + rs(r, 35, B64URL),
    "azure_key": lambda r: rs(r, 86, B64) + "==",
    "github_token": lambda r: r.choice([f"ghp_{rs(r, 36)}", f"gho_{rs(r, 36)}", f"ghs_{rs(r, 36)}",
                                        f"github_pat_{rs(r, 22)}_{rs(r, 59)}"]),
    "gitlab_token": lambda r: "glpat-" + rs(r, 20, B64URL),
    "slack_token": lambda r: f"xox{r.choice('bpa')}-{rs(r, 12, string.digits)}-{rs(r, 13, string.digits)}-{rs(r, 24)}",
    "slack_webhook": lambda r: f"https://hooks.slack.com/services/T{rs(r, 8, string.ascii_uppercase + string.digits)}/B{rs(r, 10, string.ascii_uppercase + string.digits)}/{rs(r, 24)}",
    "stripe_key": lambda r: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + rs(r, r.choice([24, 99])),
    "openai_key": lambda r: r.choice([f"sk-proj-{rs(r, 74, B64URL)}T3BlbkFJ{rs(r, 74, B64URL)}",
                                      f"sk-{rs(r, 20)}T3BlbkFJ{rs(r, 20)}",
                                      f"sk-svcacct-{rs(r, 64, B64URL)}"]),
    "anthropic_key": lambda r: f"sk-ant-api03-{rs(r, 93, B64URL)}AA",
    "huggingface_token": lambda r: "hf_" + rs(r, 34, string.ascii_letters),
    "groq_key": lambda r: "gsk_" + rs(r, 52),
    "replicate_token": lambda r: "r8_" + rs(r, 37),
    "twilio_key": lambda r: "SK" + rs(r, 32, HEX),
    "sendgrid_key": lambda r: f"SG.{rs(r, 22, B64URL)}.{rs(r, 43, B64URL)}",
    "npm_token": lambda r: "npm_" + rs(r, 36),
    "pypi_token": lambda r: "pypi-AgEIcHlwaS5vcmc" + rs(r, 70, B64URL),
    "private_key": pem,
    "jwt": jwt,
    "connection_string": lambda r: rs(r, r.randint(10, 24), B62 + "!#%^*_"),
    "password": lambda r: r.choice(["Summer", "Winter", "Claims", "Tr0ub4dor", "Kestrel", "P@ss"]) + str(r.randint(10, 9999)) + r.choice(["!", "#", "", "$"]),
    "high_entropy": lambda r: r.choice([rs(r, 32), rs(r, 40, B64), rs(r, 64, HEX), rs(r, 48, B64URL)]),
    "gcp_service_account": service_account_key,
}  # fmt: skip

NAMES = ("claims-api", "triage-worker", "letters", "fraud-model", "billing")

SECRET_TEMPLATES: dict[str, list[str]] = {
    "aws_access_key": [
        "export AWS_ACCESS_KEY_ID={v}",
        "aws_access_key_id = {v}",
        "Why does boto3 say access denied? I'm using key {v} in {service}.",
        '{{"AccessKeyId": "{v}", "Expiration": "2026-01-01T00:00:00Z"}}',
        "The logs of {service} show credentials {v} being used from a new region.",
        "AWS key: {v}",
    ],
    "aws_secret_key": [
        "aws_secret_access_key = {v}",
        "export AWS_SECRET_ACCESS_KEY={v}",
        '"SecretAccessKey": "{v}"',
        "AWS_SECRET_KEY: {v}",
        "Here's our aws secret {v}, can you check the bucket policy?",
        "secret_access_key={v}",
    ],
    "gcp_api_key": [
        "GOOGLE_API_KEY={v}",
        "https://maps.googleapis.com/maps/api/geocode/json?address=Leeds&key={v}",
        'const firebaseConfig = {{ apiKey: "{v}" }};',
        "Gemini key for the letters service: {v}",
        "curl -H 'x-goog-api-key: {v}' https://generativelanguage.googleapis.com/v1/models",
        "api key {v} stopped working after the quota change",
    ],
    "azure_key": [
        "DefaultEndpointsProtocol=https;AccountName=claimsdocs;AccountKey={v};EndpointSuffix=core.windows.net",
        'AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=https;AccountName=x;AccountKey={v}"',
        "Endpoint=sb://claims.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={v}",
        "the storage AccountKey={v} was rotated yesterday",
        "conn = 'AccountName=evidence;AccountKey={v};EndpointSuffix=core.windows.net'",
        "SharedAccessKey={v}",
    ],
    "github_token": [
        "GITHUB_TOKEN={v}",
        "git clone https://{v}@github.com/acme/claims.git",
        "I set token {v} in the workflow but it 401s.",
        "Authorization: token {v}",
        "gh auth login --with-token <<< {v}",
        "our CI token is {v}, expires next month",
    ],
    "gitlab_token": [
        "GITLAB_TOKEN={v}",
        'curl --header "PRIVATE-TOKEN: {v}" https://gitlab.example.com/api/v4/projects',
        "use {v} for the registry login",
        "gitlab personal access token: {v}",
        "CI_JOB_TOKEN override {v}",
        "the runner still uses {v}",
    ],
    "slack_token": [
        "SLACK_BOT_TOKEN={v}",
        'client = WebClient(token="{v}")',
        "the bot token {v} was pasted in #claims-ops by mistake",
        "Authorization: Bearer {v}",
        "slack: {{token: {v}}}",
        "token {v} has chat:write",
    ],
    "slack_webhook": [
        "SLACK_WEBHOOK_URL={v}",
        'curl -X POST -d \'{{"text":"claim escalated"}}\' {v}',
        "alerts go to {v}",
        "webhook: {v}",
        'requests.post("{v}", json=payload)',
        "the #fraud channel hook is {v}",
    ],
    "stripe_key": [
        "STRIPE_SECRET_KEY={v}",
        'stripe.api_key = "{v}"',
        "Payments fail with key {v}, is it the live one?",
        "curl https://api.stripe.com/v1/charges -u {v}:",
        "stripe key: {v}",
        "const stripe = require('stripe')('{v}');",
    ],
    "openai_key": [
        "OPENAI_API_KEY={v}",
        'client = OpenAI(api_key="{v}")',
        "my key is {v} and it says quota exceeded, help",
        "Authorization: Bearer {v}",
        "openai:\n  api_key: {v}",
        "set the key {v} in the letters service",
    ],
    "anthropic_key": [
        "ANTHROPIC_API_KEY={v}",
        'client = anthropic.Anthropic(api_key="{v}")',
        "x-api-key: {v}",
        "I rotated the Claude key, new one: {v}",
        "llm:\n  key: {v}",
        "the letters prompt uses {v}",
    ],
    "huggingface_token": [
        "HF_TOKEN={v}",
        "huggingface-cli login --token {v}",
        'login(token="{v}")',
        "my hf token {v} can't download the model",
        "Authorization: Bearer {v}",
        "hub token: {v}",
    ],
    "groq_key": [
        "GROQ_API_KEY={v}",
        'Groq(api_key="{v}")',
        "key {v} for the fast model",
        "Authorization: Bearer {v}",
        "groq: {v}",
        "the triage fallback uses {v}",
    ],
    "replicate_token": [
        "REPLICATE_API_TOKEN={v}",
        "replicate token {v}",
        "Authorization: Token {v}",
        "export REPLICATE_API_TOKEN={v}",
        "use {v} to call the model",
        "token: {v}",
    ],
    "twilio_key": [
        "TWILIO_API_KEY={v}",
        "client = Client('{v}', api_secret)",
        "the SMS reminders use API key {v}",
        "twilio:\n  key_sid: {v}",
        "key {v} sends the claim notifications",
        "api_key_sid={v}",
    ],
    "sendgrid_key": [
        "SENDGRID_API_KEY={v}",
        "sg = SendGridAPIClient('{v}')",
        "mail key {v} bounces everything",
        "Authorization: Bearer {v}",
        "sendgrid: {v}",
        "the letters are sent with {v}",
    ],
    "npm_token": [
        "//registry.npmjs.org/:_authToken={v}",
        "NPM_TOKEN={v}",
        "npm token {v} for publishing",
        'echo "//registry.npmjs.org/:_authToken={v}" > .npmrc',
        "publish with {v}",
        "npm: {v}",
    ],
    "pypi_token": [
        "TWINE_PASSWORD={v}",
        "[pypi]\nusername = __token__\npassword = {v}",
        "pypi token {v}",
        "twine upload -u __token__ -p {v} dist/*",
        "UV_PUBLISH_TOKEN={v}",
        "upload token: {v}",
    ],
    "private_key": [
        "{v}",
        "Here is the deploy key:\n{v}\nplease add it to the server.",
        "id_rsa:\n{v}",
        "key: |\n{v}",
        'ssh_key = """{v}"""',
        "I pasted the key below\n\n{v}",
    ],
    "jwt": [
        "Authorization: Bearer {v}",
        "the portal session cookie is {v}",
        "token={v}",
        "decode this jwt for me: {v}",
        '{{"access_token": "{v}", "token_type": "Bearer"}}',
        'curl -H "Authorization: Bearer {v}" https://api.acme-insurance.com/claims',
    ],
    "connection_string": [
        "DATABASE_URL=postgresql://claims:{v}@db.internal:5432/claims",
        "mongodb+srv://app:{v}@cluster0.mongodb.net/claims?retryWrites=true",
        "redis://default:{v}@cache.internal:6379/0",
        "Server=tcp:claims.database.windows.net,1433;Database=claims;User ID=app;Password={v};Encrypt=true",
        'engine = create_engine("mysql+pymysql://root:{v}@localhost/claims")',
        "amqp://guest:{v}@rabbit:5672/",
    ],
    "password": [
        "password: {v}",
        "DB_PASSWORD={v}",
        "my password is {v}, can you reset the MFA?",
        '"password": "{v}"',
        "login admin / password {v}",
        "SMTP_PASS={v}",
    ],
    "high_entropy": [
        "API_SECRET={v}",
        "client_secret: {v}",
        '"secret": "{v}"',
        "X-Api-Key: {v}",
        "MISTRAL_API_KEY={v}",
        "webhook signing secret {v}",
    ],
    "gcp_service_account": [
        '{{"type": "service_account", "project_id": "claims-prod", "private_key_id": "{kid}", "private_key": "{v}", "client_email": "svc@claims-prod.iam.gserviceaccount.com"}}',
        '"private_key": "{v}",\n"client_email": "letters@acme.iam.gserviceaccount.com", "type": "service_account"',
        'creds = {{"type": "service_account", "private_key": "{v}"}}',
        'GOOGLE_CREDENTIALS=\'{{"type":"service_account","private_key":"{v}"}}\'',
        '{{"private_key": "{v}", "type": "service_account"}}',
        'service account json: {{"type": "service_account", "private_key": "{v}", "token_uri": "https://oauth2.googleapis.com/token"}}',
    ],
}


# -- secret look-alikes ------------------------------------------------------------------


def words_b64(r: random.Random) -> str:
    sentence = " ".join(
        r.choice(
            ["the", "claim", "was", "paid", "in", "full", "on", "time", "by", "bank", "transfer"]
        )
        for _ in range(r.randint(6, 14))
    )
    return base64.b64encode(sentence.encode()).decode()


SECRET_LOOKALIKES: dict[str, list[Callable[[random.Random], str]]] = {
    "uuid": [
        lambda r: f"request_id={uuid.UUID(int=r.getrandbits(128), version=4)}",
        lambda r: f"Claim {uuid.UUID(int=r.getrandbits(128), version=4)} was created.",
        lambda r: f"session_id: {uuid.UUID(int=r.getrandbits(128), version=4)}",
    ],
    "git_sha": [
        lambda r: f"commit {rs(r, 40, HEX)}",
        lambda r: f"Merge {rs(r, 7, HEX)}..{rs(r, 7, HEX)}, see {rs(r, 40, HEX)}",
        lambda r: f"pip install git+https://github.com/acme/claims@{rs(r, 40, HEX)}",
    ],
    "digest": [
        lambda r: f"sha256: {hashlib.sha256(r.randbytes(16)).hexdigest()}",
        lambda r: f"md5sum {hashlib.md5(r.randbytes(16)).hexdigest()}  evidence.pdf",
        lambda r: f"image: ghcr.io/acme/claims@sha256:{hashlib.sha256(r.randbytes(8)).hexdigest()}",
        lambda r: (
            f'"integrity": "sha512-{base64.b64encode(hashlib.sha512(r.randbytes(8)).digest()).decode()}"'
        ),
        lambda r: f"checksum={hashlib.sha1(r.randbytes(8)).hexdigest()}",
        lambda r: f'etag: "{hashlib.md5(r.randbytes(8)).hexdigest()}"',
    ],
    "base64_words": [
        lambda r: f"payload {words_b64(r)}",
        lambda r: f'data = "{words_b64(r)}"',
    ],
    "path": [
        lambda r: (
            f"/usr/lib/python3.{r.randint(8, 13)}/site-packages/{r.choice(['numpy', 'pandas', 'sklearn'])}/core/_multiarray_umath.cpython-311-x86_64-linux-gnu.so"
        ),
        lambda r: (
            f"C:\\Users\\{r.choice(FIRST)}\\AppData\\Local\\Programs\\ClaimsUploader\\resources\\app.asar"
        ),
        lambda r: (
            f"saved to ./outputs/{r.choice(NAMES)}/2024-03-11/run_{r.randint(1, 99)}/predictions_holdout_final.parquet"
        ),
    ],
    "url": [
        lambda r: (
            f"https://docs.acme-insurance.com/claims/{r.choice(NAMES)}/getting-started/authentication-and-api-keys"
        ),
        lambda r: (
            f"https://storage.googleapis.com/acme-evidence/{rs(r, 12, HEX)}/photo_{r.randint(1, 20)}.jpg"
        ),
        lambda r: f"See https://github.com/acme/claims/blob/{rs(r, 40, HEX)}/README.md",
        lambda r: "postgres://user:password@localhost:5432/claims",
        lambda r: "mysql://root@localhost/claims",
        lambda r: "redis://localhost:6379/0",
    ],
    "placeholder": [
        lambda r: "OPENAI_API_KEY=sk-...",
        lambda r: "aws_access_key_id = AKIAXXXXXXXXXXXXXXXX",
        lambda r: "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        lambda r: "api_key=your-api-key-here",
        lambda r: "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        lambda r: "token: <YOUR_TOKEN>",
        lambda r: "SECRET_KEY=${SECRET_KEY}",
        lambda r: 'api_key = os.environ["OPENAI_API_KEY"]',
        lambda r: "password: ********",
        lambda r: "STRIPE_KEY=sk_live_****************************",
        lambda r: "Set ANTHROPIC_API_KEY to your key (it starts with sk-ant-).",
        lambda r: "password = getpass.getpass()",
        lambda r: "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        lambda r: "Authorization: Bearer <token>",
        lambda r: "DB_PASSWORD=changeme",
    ],
    "identifier": [
        lambda r: "test_claims_triage_escalates_low_confidence_decisions_to_reviewers",
        lambda r: "ClaimsTriageServiceRolloutControllerFactoryImpl",
        lambda r: f"max_tokens: {r.choice([256, 1024, 4096])}",
        lambda r: "auth_method=oauth2_client_credentials",
        lambda r: "token_type=Bearer",
        lambda r: "password_reset_url=https://portal.acme-insurance.com/reset",
        lambda r: f"The secret to fast claims handling is good triage, said {person(r)}.",
        lambda r: "Reset your password: click the link we sent you.",
        lambda r: "tokens_used=1834 prompt_tokens=1200 completion_tokens=634",
    ],
    "public_material": [
        lambda r: (
            f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rs(r, 43, B64)} {r.choice(FIRST).lower()}@laptop"
        ),
        lambda r: f"pk_live_{rs(r, 24)} is the publishable key for the checkout page",
        lambda r: (
            f"-----BEGIN CERTIFICATE-----\n{base64.b64encode(r.randbytes(96)).decode()}\n-----END CERTIFICATE-----"
        ),
        lambda r: (
            f'<img src="data:image/png;base64,iVBORw0KGgo{base64.b64encode(r.randbytes(60)).decode()}">'
        ),
    ],
    "ordinary": [
        lambda r: (
            f"The {r.choice(NAMES)} service answered {r.randint(100, 999)} requests in {r.randint(2, 9)} seconds."
        ),
        lambda r: (
            f"Claim {claim_ref(r)}: {r.choice(PERILS)} at {r.randint(1, 99)} {r.choice(STREETS)}, {r.choice(CITIES)}."
        ),
        lambda r: "Please keep your password and API keys secret and never paste them in tickets.",
        lambda r: (
            f"Deployed {r.choice(NAMES)} version {r.randint(1, 30)} to production at {r.randint(10, 23)}:{r.randint(10, 59)}."
        ),
    ],
}


# -- assembly ----------------------------------------------------------------------------


def fill(
    r: random.Random, template: str, value: str, extra: dict[str, str] | None = None
) -> tuple[str, int]:
    fields = {
        "name": person(r),
        "claim": claim_ref(r),
        "policy": policy_ref(r),
        "peril": r.choice(PERILS),
        "street": f"{r.randint(1, 200)} {r.choice(STREETS)}",
        "city": r.choice(CITIES),
        "service": r.choice(NAMES),
        "time": f"2026-0{r.randint(1, 9)}-1{r.randint(0, 9)} 10:2{r.randint(0, 9)}:0{r.randint(0, 9)}",
        "kid": rs(r, 40, HEX),
        **(extra or {}),
    }
    head, tail = template.split("{v}", 1)
    head = head.format(**fields)
    return head + value + tail.format(**fields), len(head)


def build(
    r: random.Random,
    templates: dict[str, list[str]],
    values: dict[str, Callable[[random.Random], str]],
    lookalikes: dict[str, list[Callable[[random.Random], str]]],
    label: str,
    per_template: int,
    per_lookalike: int,
) -> list[Sample]:
    out: list[Sample] = []
    for kind, kind_templates in templates.items():
        for i, template in enumerate(kind_templates):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 else "train"
            for _ in range(per_template):
                value = values[kind](r)
                shape = template
                if kind == "private_key" and r.random() < 0.3:
                    # A stream cut mid-key: the block has no END line.
                    value = pem(r, terminated=False)
                    shape = r.choice(["{v}", "Sure, here is the key you asked for:\n{v}"])
                text, at = fill(r, shape, value)
                end = (
                    len(text)
                    if kind == "private_key" and "-----END" not in value
                    else at + len(value)
                )
                out.append(
                    {
                        "text": text,
                        "label": label,
                        "kind": kind,
                        "group": "sample",
                        "split": split,
                        "source": SOURCE,
                        "spans": [[at, end, kind]],
                    }
                )
    for variant, makers in lookalikes.items():
        for i, make in enumerate(makers):
            split = "test" if i % TEST_EVERY == TEST_EVERY - 1 or len(makers) == 1 else "train"
            if len(makers) == 2:
                split = "train" if i == 0 else "test"
            for _ in range(per_lookalike):
                out.append(
                    {
                        "text": make(r),
                        "label": "benign",
                        "kind": None,
                        "group": "lookalike",
                        "split": split,
                        "source": SOURCE,
                        "spans": [],
                        "variant": variant,
                    }
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("bench/data/guard"))
    args = parser.parse_args()
    r = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pii = build(r, PII_TEMPLATES, PII_VALUES, PII_LOOKALIKES, "pii", 14, 16)
    secrets = build(r, SECRET_TEMPLATES, SECRET_VALUES, SECRET_LOOKALIKES, "secret", 9, 12)
    for name, rows in (("pii", pii), ("secrets", secrets)):
        r.shuffle(rows)
        path = args.out / f"{name}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        counts = {s: sum(1 for x in rows if x["split"] == s) for s in ("train", "test")}
        print(
            f"{path}: {len(rows)} lines ({counts['train']} train, {counts['test']} test), "
            f"{path.stat().st_size / 1e6:.2f} MB"
        )


if __name__ == "__main__":
    main()
