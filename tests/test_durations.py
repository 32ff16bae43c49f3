"""Durations as people write them."""

from __future__ import annotations

import pytest

from prodgate.durations import parse_duration
from prodgate.exceptions import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90.0), (" 30m ", 1800.0), ("1.5h", 5400.0), ("7d", 604800.0)]
)
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("90", "write a number and a unit"),
        ("1w", "write a number and a unit"),
        ("0s", "longer than zero"),
        ("36501d", "at most 36500d"),
        ("99999999999999999d", "at most 36500d"),
    ],
)
def test_what_is_refused_says_why_naming_the_value(text: str, says: str) -> None:
    with pytest.raises(UsageError, match=says) as caught:
        parse_duration(text, "--expires")
    assert caught.value.detail.startswith("--expires ")
