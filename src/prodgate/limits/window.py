"""The sliding window every rate is counted in, and why it is exact.

A rate allows at most ``limit`` units in *any* window of ``period`` seconds, not per
calendar minute and not on average. The usual shortcuts break that promise: a fixed
window lets ``limit`` units through at the end of one minute and ``limit`` more at the
start of the next (twice the limit within a few seconds), and a token bucket (or
GCRA) with a burst of ``limit`` lets a full burst through and then keeps refilling, so
600 requests per 60 s admits up to 1,200 in one 60 s window. Neither is used here.

Each period is cut into :data:`BUCKETS` (100) sub-buckets of ``b = ceil(period /
100)`` (integer microseconds). A unit admitted at time ``t`` is added to bucket
``i = t // b``. A check at time ``t`` counts the current bucket and the 100 before it,
``i - 100 .. i``: a span that starts at ``(i - 100) b <= t - period``, so it always
contains the true window ``(t - period, t]``. A request is admitted only if what that
span holds plus its cost stays within the limit, hence:

* **never more than the limit in any true window.** Take the last unit admitted in
  any window; the count it was checked against covered the whole window before it,
  so the window holds at most ``limit``. The bound is strict, not statistical.
* **at least 99% of the limit under saturation.** The span is at most 101 buckets, one
  bucket (1% of the period) longer than the period, so a saturating caller gets
  ``limit`` units per 1.01 periods: 99.0% of the limit in steady state, and the whole
  limit in a fresh period (nothing earlier is counted against it).

An exact sliding log (one entry per unit) would admit 100% but costs memory per unit:
a limit of 100,000 rows per minute would keep 100,000 entries per subject. The buckets
cost at most 101 counters per subject and rate whatever the limit, and every check is
O(1) amortised: a running total is kept, and each bucket is subtracted once, when it
leaves the span. Only a refusal walks the buckets, to say when enough of them will
have left for the request to fit (its ``Retry-After``).

A request whose cost exceeds the limit can never pass; it is refused with a wait of a
whole period, so a client that honours Retry-After does not spin. A cost of 0 asks
whether any room is left (at least one unit).

:class:`Window` is the algorithm in Python, for one process. The Redis limiter runs the
same algorithm in a Lua script (``script.py``), on the same integers, with the time
taken from Redis itself so that replicas with skewed clocks agree.
"""

from __future__ import annotations

#: Sub-buckets per period: the span counted is at most 1/BUCKETS longer than the period.
BUCKETS = 100


def bucket_us(period_s: float) -> int:
    """The width of a sub-bucket of *period_s*, in whole microseconds (at least 1)."""
    period_us = max(1, round(period_s * 1_000_000))
    return -(-period_us // BUCKETS)


class Window:
    """One subject's use of one rate, in sub-buckets of ``b`` microseconds."""

    __slots__ = ("b", "buckets", "hi", "lo", "used")

    def __init__(self, period_s: float) -> None:
        self.b = bucket_us(period_s)
        self.used = 0
        """Units in buckets ``lo`` and above: what the span counts."""
        self.lo: int | None = None
        """The oldest bucket that may still hold units."""
        self.hi = -1
        """The newest bucket units were added to."""
        self.buckets: dict[int, int] = {}

    def advance(self, now_us: int) -> int:
        """Drop the buckets that left the span at *now_us*; the current bucket's index."""
        i = now_us // self.b
        start = i - BUCKETS
        lo = self.lo
        if lo is None or start - lo > BUCKETS:
            # Everything held is older than the span (or nothing is held).
            self.buckets.clear()
            self.used = 0
            self.lo = start
        elif start > lo:
            for j in range(lo, start):
                self.used -= self.buckets.pop(j, 0)
            self.lo = start
        return i

    def add(self, i: int, cost: int) -> None:
        if cost:
            self.buckets[i] = self.buckets.get(i, 0) + cost
            self.used += cost
            self.hi = max(self.hi, i)

    def wait_us(self, over: int, now_us: int) -> int:
        """Microseconds until buckets holding at least *over* units have left the span."""
        freed = 0
        for j in sorted(self.buckets):
            freed += self.buckets[j]
            if freed >= over:
                return (j + BUCKETS + 1) * self.b - now_us
        return (BUCKETS + 1) * self.b

    def reset_us(self, now_us: int) -> int:
        """Microseconds until everything used now has left the span."""
        if self.used <= 0:
            return 0
        return max(0, (self.hi + BUCKETS + 1) * self.b - now_us)

    def idle(self, now_us: int) -> bool:
        """True when the window holds nothing that still counts (it may be dropped)."""
        return self.reset_us(now_us) == 0
