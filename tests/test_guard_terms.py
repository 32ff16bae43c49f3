"""Banned terms and topics: whole words, any case, NFKC, spans in the original text."""

from __future__ import annotations

import random

import pytest

from prodgate.exceptions import SpecError
from prodgate.guard.finding import BANNED
from prodgate.guard.terms import TermsDetector


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) - 0x21 + 0xFF01) if "!" <= c <= "~" else c for c in text)


def found(detector: TermsDetector, text: str) -> list[tuple[str, str]]:
    return [(f.kind, text[f.start : f.end]) for f in detector.scan(text)]


def test_terms_are_whole_words_in_any_case() -> None:
    detector = TermsDetector(["ass", "competitor"])
    text = "A class act. Ass! The Competitor's offer; competitors, bypass, COMPETITOR."
    assert found(detector, text) == [
        ("term", "Ass"),
        ("term", "Competitor"),
        ("term", "COMPETITOR"),
    ]
    (finding,) = detector.scan("ass")
    assert (finding.category, finding.detector, finding.score) == (BANNED, "banned", 1.0)
    assert finding.placeholder == "[TERM]"


def test_phrases_match_across_any_whitespace_and_the_longest_wins() -> None:
    detector = TermsDetector(["credit", "credit card", "credit card fraud"])
    text = "credit card\n fraud, a Credit   Card, credit cards, credit."
    assert found(detector, text) == [
        ("term", "credit card\n fraud"),
        ("term", "Credit   Card"),
        ("term", "credit"),  # "credit cards": the whole word "cards" is not "card"
        ("term", "credit"),
    ]


def test_topics_report_their_name_and_a_shared_phrase_both_kinds() -> None:
    detector = TermsDetector(
        ["refund guarantee"],
        topics={"weapons": ["pipe bomb", "ghost gun"], "legal": ["refund guarantee", "sue"]},
    )
    text = "We offer a refund guarantee. How to build a ghost gun? I will SUE."
    assert found(detector, text) == [
        ("term", "refund guarantee"),
        ("legal", "refund guarantee"),
        ("weapons", "ghost gun"),
        ("legal", "SUE"),
    ]


def test_nfkc_folding_maps_spans_back_to_the_original_text() -> None:
    detector = TermsDetector(["fine print", "acme"])
    text = f"Read the ﬁne print of {fullwidth('ACME')} now."  # a ligature, full-width letters
    assert found(detector, text) == [("term", "ﬁne print"), ("term", fullwidth("ACME"))]
    assert found(TermsDetector([fullwidth("casino")]), "the Casino") == [("term", "Casino")]


def test_terms_with_punctuation_and_regex_characters_are_literal() -> None:
    detector = TermsDetector(["c++", "a.b", "$$$", "(secret)"])
    text = "I write C++ and a.b, not axb; $$$ and (secret) plans. abc++ xa.b"
    assert found(detector, text) == [
        ("term", "C++"),
        ("term", "a.b"),
        ("term", "$$$"),
        ("term", "(secret)"),
    ]


def test_no_terms_no_findings_and_blank_phrases_ignored() -> None:
    assert TermsDetector([]).scan("anything") == []
    assert TermsDetector(["", "   "], topics={"empty": []}).scan("  anything  ") == []


def test_a_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(SpecError, match="list"):
        TermsDetector("casino")
    with pytest.raises(SpecError, match="gambling"):
        TermsDetector([], topics={"gambling": "casino"})
    with pytest.raises(SpecError, match="strings"):
        TermsDetector(["ok", 3])  # type: ignore[list-item]


def test_a_paragraph_is_not_a_term() -> None:
    with pytest.raises(SpecError, match="longer than"):
        TermsDetector(["word " * 100])


def test_thousands_of_terms_in_one_pattern() -> None:
    rng = random.Random(1)
    words = sorted({"".join(rng.choice("abcdefghij") for _ in range(6)) for _ in range(5000)})
    detector = TermsDetector(words)
    text = f"before {words[17]} middle {words[-1].upper()} after abcdefghij{words[3]}"
    assert found(detector, text) == [("term", words[17]), ("term", words[-1].upper())]


FUZZ = [
    "",
    "\x00\x01\xff" * 40,
    "\ud800 lone surrogate",
    "ﷺ ﷻ ﬁ ㏂ Ⅻ ß ẞ İ straße STRASSE",
    "ass" * 30_000,
    "credit " * 20_000,
]


@pytest.mark.parametrize("text", FUZZ)
def test_never_raises_and_spans_stay_in_the_text(text: str) -> None:
    detector = TermsDetector(["ass", "credit card", "straße", "ﬁ"], topics={"x": ["㏂"]})
    for f in detector.scan(text):
        assert 0 <= f.start < f.end <= len(text)


def test_random_texts_keep_spans_in_bounds() -> None:
    rng = random.Random(4)
    detector = TermsDetector(["ab", "a b", fullwidth("ba"), "ﬁ"])
    alphabet = "ab ﬁ\uff42\uff41\u200b.\nİß"
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))
        for f in detector.scan(text):
            assert 0 <= f.start < f.end <= len(text)
