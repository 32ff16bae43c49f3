"""What an LLM call costs in USD, and money in the ledger's unit, micro-dollars.

Prices are USD per million tokens (:class:`~prodgate.spec.llm.Price`). A call's cost
is reckoned in float USD rounded to a billionth (far below any price's precision);
budgets are kept in whole micro-dollars, so sums across many replicas and many calls
are exact integers and a budget of $2.50 is exactly 2 500 000.

This module is light on purpose (no tokenizer, no Redis): key listings and the CLI
use its money helpers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from prodgate.spec.llm import Price

if TYPE_CHECKING:
    from prodgate.llm.tokens import Usage

#: Micro-dollars in a dollar.
MICROS = 1_000_000
_PER_MTOK = 1_000_000.0


def cost_usd(price: Price, usage: Usage) -> float:
    """The cost of *usage*: uncached input at the input price, cached input at the
    cached price (the input price when the provider has none), output at the output
    price."""
    cached = min(max(usage.cached_tokens, 0), usage.input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    total = (
        (usage.input_tokens - cached) * price.input
        + cached * cached_price
        + usage.output_tokens * price.output
    )
    return round(total / _PER_MTOK, 9)


def worst_case_usd(price: Price, prompt_tokens: int, max_tokens: int) -> float:
    """The most a call can cost: the prompt at the dearer of the input prices (nothing
    is assumed cached) and every one of *max_tokens* produced. What a budget reserves
    before the call."""
    dearest = max(price.input, price.cached_input or 0.0)
    return round((prompt_tokens * dearest + max_tokens * price.output) / _PER_MTOK, 9)


def micros(usd: float) -> int:
    """*usd* in whole micro-dollars, rounded up (a cost is never under-counted); float
    noise below a thousandth of a micro-dollar is dropped first, so ``micros(2.5)``
    is 2 500 000 and ``micros(0.000003)`` is 3."""
    if not math.isfinite(usd) or usd < 0:
        raise ValueError(f"an amount of money is finite and 0 or more, not {usd!r}")
    return math.ceil(round(usd * MICROS, 3))


def usd(amount_micros: int) -> float:
    """Micro-dollars as USD: the nearest float, which prints as the exact decimal
    (``usd(2_500_000)`` is 2.5) and goes back with :func:`micros` unchanged."""
    return amount_micros / MICROS


def usd_text(amount_micros: int) -> str:
    """``$5.00``, ``$0.0042``, ``$1234.567891``: cents always, further digits when they
    are not zero, never rounded."""
    sign = "-" if amount_micros < 0 else ""
    whole, frac = divmod(abs(amount_micros), MICROS)
    digits = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}${whole}.{digits}"
