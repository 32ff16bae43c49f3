"""What a call costs, its worst case, and money in micro-dollars."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from prodgate.llm.prices import MICROS, cost_usd, micros, usd, usd_text, worst_case_usd
from prodgate.llm.tokens import Usage
from prodgate.spec.llm import Price

GPT41 = Price(input=2.0, output=8.0, cached_input=0.5)
MINI = Price(input=0.4, output=1.6)


def test_cost_of_input_and_output() -> None:
    # 1000 in at $2/M + 500 out at $8/M = 0.002 + 0.004
    assert cost_usd(GPT41, Usage(1000, 500)) == pytest.approx(0.006, abs=1e-12)
    assert cost_usd(GPT41, Usage(0, 0)) == 0.0


def test_cached_input_costs_the_cached_price() -> None:
    # 600 uncached at $2/M, 400 cached at $0.5/M, 500 out at $8/M
    expected = (600 * 2.0 + 400 * 0.5 + 500 * 8.0) / 1e6
    assert cost_usd(GPT41, Usage(1000, 500, 400)) == pytest.approx(expected, abs=1e-12)


def test_cached_input_without_a_cached_price_costs_the_input_price() -> None:
    assert cost_usd(MINI, Usage(1000, 0, 400)) == cost_usd(MINI, Usage(1000, 0))


def test_more_cached_than_input_is_all_of_the_input() -> None:
    assert cost_usd(GPT41, Usage(100, 0, 500)) == cost_usd(GPT41, Usage(100, 0, 100))


def test_cost_is_rounded_to_a_billionth() -> None:
    c = cost_usd(MINI, Usage(3, 7))
    assert c == round(c, 9)
    assert c == pytest.approx((3 * 0.4 + 7 * 1.6) / 1e6)
    # 1 token at $0.1/M is 1e-7: kept, not rounded away
    assert cost_usd(Price(0.1, 0.1), Usage(1, 0)) == pytest.approx(1e-7)


def test_worst_case_is_every_max_token_and_no_cache() -> None:
    assert worst_case_usd(GPT41, 1000, 1024) == pytest.approx((1000 * 2.0 + 1024 * 8.0) / 1e6)
    # whatever the upstream then reports, it is never dearer than the worst case
    for used in (Usage(1000, 1024), Usage(1000, 1024, 1000), Usage(1000, 3)):
        assert cost_usd(GPT41, used) <= worst_case_usd(GPT41, 1000, 1024)
    # a cached price above the input price (odd, but allowed) is the worst case
    odd = Price(input=1.0, output=1.0, cached_input=3.0)
    assert cost_usd(odd, Usage(10, 0, 10)) <= worst_case_usd(odd, 10, 0)


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        (0.0, 0),
        (2.5, 2_500_000),
        (0.000003, 3),  # 3.0000000000000004 micro-dollars in float
        (1.1, 1_100_000),
        (0.0000001, 1),  # a tenth of a micro-dollar rounds up
        (1e-9, 1),
        (4e-10, 0),  # float dust below a thousandth of a micro-dollar
        (1234.5678901, 1_234_567_891),
        (1e9, 10**15),
    ],
)
def test_micros_round_up(amount: float, expected: int) -> None:
    assert micros(amount) == expected


@pytest.mark.parametrize("amount", [-0.01, math.nan, math.inf])
def test_micros_refuses_what_is_no_amount(amount: float) -> None:
    with pytest.raises(ValueError, match="amount of money"):
        micros(amount)


def test_micros_and_usd_round_trip() -> None:
    for n in (0, 1, 7, 999_999, 2_500_000, 1_234_567_891, 10**15 - 1):
        assert micros(usd(n)) == n
        # prints as the exact decimal: what a listing shows is what was stored
        assert Decimal(repr(usd(n))) == Decimal(n) / MICROS
    assert usd(2_500_000) == 2.5
    assert str(usd(4_990_000)) == "4.99"


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (5_000_000, "$5.00"),
        (4_990_000, "$4.99"),
        (4_200, "$0.0042"),
        (1, "$0.000001"),
        (1_234_567_891, "$1234.567891"),
        (-30_000, "-$0.03"),
    ],
)
def test_usd_text(amount: int, text: str) -> None:
    assert usd_text(amount) == text
