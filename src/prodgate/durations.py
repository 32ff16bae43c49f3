"""Durations as people write them: ``90s``, ``30m``, ``1h``, ``7d``."""

from __future__ import annotations

import re

from prodgate.exceptions import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, what: str = "window") -> float:
    """'90s', '30m', '1h', '7d' -> seconds, longer than zero; *what* names the value
    in errors."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise UsageError(f"{what} {text!r}: write a number and a unit, e.g. 90s, 30m, 1h, 7d")
    if float(m[1]) <= 0:
        raise UsageError(f"{what} {text!r}: must be longer than zero")
    return float(m[1]) * _UNITS[m[2]]
