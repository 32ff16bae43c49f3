"""Durations as people write them: ``90s``, ``30m``, ``1h``, ``7d``."""

from __future__ import annotations

import re

from prodgate.exceptions import UsageError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: The longest duration taken: a century, far below what the store's microsecond
#: integers hold.
MAX_DAYS = 36_500


def parse_duration(text: str, what: str = "window") -> float:
    """'90s', '30m', '1h', '7d' -> seconds, longer than zero; *what* names the value
    in errors."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if not m:
        raise UsageError(f"{what} {text!r}: write a number and a unit, e.g. 90s, 30m, 1h, 7d")
    if float(m[1]) <= 0:
        raise UsageError(f"{what} {text!r}: must be longer than zero")
    seconds = float(m[1]) * _UNITS[m[2]]
    if seconds > MAX_DAYS * 86400:
        raise UsageError(f"{what} {text!r}: must be at most {MAX_DAYS}d")
    return seconds


def format_duration(seconds: float) -> str:
    """Seconds as people write them: the largest unit that divides them (``30d``,
    ``36h``, ``90s``)."""
    for unit, size in sorted(_UNITS.items(), key=lambda u: -u[1]):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
