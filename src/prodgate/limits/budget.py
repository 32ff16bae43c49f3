"""Budgets and token limits: reserve the worst case before a call, settle the truth after.

An LLM call's cost is known only once it is answered, yet a budget must hold while
many calls are in flight on many replicas. So a request first *reserves* what it
may cost at most, on every :class:`Allowance` that applies to it (the key's day and
month budgets, its tokens per minute, the same of the service), all or nothing
(:meth:`Ledger.reserve`); when the call is over it *settles* (:meth:`Ledger.settle`),
replacing each reserved amount by the actual one. The sum of what is spent and
reserved never passes a limit, so no number of concurrent calls can overspend; an
estimate that proves low afterwards may, and makes the next reservations wait.

Periods are calendar periods in UTC: a minute, a day, a month. Each reservation
remembers the period it went to, so a call that straddles midnight settles on the
day it was reserved in. A refusal says when the period ends (``Retry-After``).

Amounts are integers: micro-dollars for budgets (so sums are exact) and tokens.
:class:`MemoryLedger` is exact for one process; :class:`RedisLedger` for every
replica sharing one Redis (one Lua script call for all the reserves and settles
queued meanwhile, ``ledger_script.py``). While Redis is unreachable the fail mode
decides, as for the limiter: ``closed`` refuses requests that have allowances,
``open`` lets them through uncounted (what they spend is still added when they
settle, if Redis answers by then).

The calendar is the replica's clock (UTC), not Redis's: replicas whose clocks differ
by a second may put a call made in the last second of a day in different days.
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prodgate.exceptions import UnavailableError
from prodgate.limits.ledger_script import LUA, RESERVE, SETTLE, SHA, SPENT, Batch
from prodgate.limits.scripted import ScriptedRedis, ScriptJob
from prodgate.llm.prices import usd_text
from prodgate.settings import Settings

logger = logging.getLogger("prodgate.limits")

#: Calendar periods (UTC) an allowance may count over.
PERIODS = ("minute", "day", "month")
#: What an allowance counts.
UNITS = ("usd_micros", "tokens")
#: How long a period's total outlives the period: calls in flight at the turn settle.
GRACE_S = 3600
#: Seconds between sweeps of the memory ledger's finished periods.
SWEEP_S = 60.0


@dataclass(frozen=True, slots=True)
class Allowance:
    """At most `limit` units per calendar `period` for `subject`."""

    subject: str
    """``key:3f9a1c2b0d4e`` or ``service:claims-letter``."""
    name: str
    """``budget_day``, ``budget_month`` or ``tokens_per_minute``."""
    limit: int
    """Micro-dollars for a budget, tokens for a token limit."""
    period: str
    unit: str

    def __post_init__(self) -> None:
        if self.period not in PERIODS:
            raise ValueError(f"allowance {self.name}: period is one of {PERIODS}")
        if self.unit not in UNITS:
            raise ValueError(f"allowance {self.name}: unit is one of {UNITS}")
        if self.limit < 0:
            raise ValueError(f"allowance {self.name}: limit must be 0 or more")
        if not self.name or ":" in self.name:
            raise ValueError(f"an allowance's name is not empty and has no colon: {self.name!r}")

    def amount_text(self, units: int) -> str:
        """*units* as this allowance counts them: ``$4.99`` or ``9800 tokens``."""
        return usd_text(units) if self.unit == "usd_micros" else f"{units} tokens"

    def describe(self) -> str:
        """``day budget of $5.00`` or ``limit of 10000 tokens per minute``."""
        if self.unit == "usd_micros":
            return f"{self.period} budget of {usd_text(self.limit)}"
        return f"limit of {self.amount_text(self.limit)} per {self.period}"


@dataclass(frozen=True, slots=True)
class Claim:
    """What one request reserves on one allowance."""

    allowance: Allowance
    amount: int

    def __post_init__(self) -> None:
        if self.amount < 0:
            raise ValueError(f"a claim's amount must be 0 or more, not {self.amount}")


@dataclass(frozen=True, slots=True)
class Reservation:
    """Claims taken, to settle once the actual amounts are known."""

    claims: tuple[Claim, ...]
    keys: tuple[str, ...]
    """The period each amount went to (settle adjusts it, even after it has ended)."""
    ends: tuple[float, ...] = ()
    """When each of those periods ends (Unix seconds)."""
    degraded: bool = False
    """Taken without the store (unreachable, fail mode open): nothing was reserved,
    so settling adds the actual amounts whole."""


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """Why a reservation was not taken: the allowance that refused (of several, the
    one whose period ends last) and how it stood."""

    allowance: Allowance
    spent: int
    """Spent and reserved in the period so far."""
    amount: int
    """What the request asked of it."""
    retry_after_s: float
    """Until the period ends (1 s when the store is unreachable)."""
    reason: str
    degraded: bool = False
    """The store was unreachable and the fail mode is closed."""


def explain(allowance: Allowance, spent: int, amount: int, who: str | None = None) -> str:
    """One sentence on why *amount* does not fit: ``key app's day budget of $5.00:
    $4.99 spent, and this request may cost up to $0.03``. *who* names the subject
    (default: ``key 3f9a1c2b0d4e``)."""
    who = who or _who(allowance.subject)
    what = f"{who}'s {allowance.describe()}"
    may = "may cost" if allowance.unit == "usd_micros" else "may use"
    if amount > allowance.limit:
        return (
            f"{what} is less than this request {may} ({allowance.amount_text(amount)}), "
            "so it can never pass"
        )
    used = "spent" if allowance.unit == "usd_micros" else "used"
    return (
        f"{what}: {allowance.amount_text(spent)} {used}, and this request {may} up to "
        f"{allowance.amount_text(amount)}"
    )


UNREACHABLE = (
    "the budget store (Redis) is unreachable, so requests with budgets or token limits "
    "are refused for now; retry shortly"
)


def _who(subject: str) -> str:
    kind, sep, rest = subject.partition(":")
    return f"{kind} {rest}" if sep and kind and rest else subject


class Calendar:
    """The current calendar period (UTC) of each kind: its id and its end, computed
    once per period rather than once per call."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._current: dict[str, tuple[float, float, str]] = {}

    def period(self, period: str, now: float) -> tuple[str, float]:
        """The id of *period* at *now* (``202501311234``, ``20250131``, ``202501``) and
        its end in Unix seconds."""
        cached = self._current.get(period)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2], cached[1]
        t = dt.datetime.fromtimestamp(now, dt.UTC)
        if period == "minute":
            start = t.replace(second=0, microsecond=0)
            end = start + dt.timedelta(minutes=1)
            ident = start.strftime("%Y%m%d%H%M")
        elif period == "day":
            start = t.replace(hour=0, minute=0, second=0, microsecond=0)
            end = start + dt.timedelta(days=1)
            ident = start.strftime("%Y%m%d")
        else:
            start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            days = calendar.monthrange(start.year, start.month)[1]
            end = start + dt.timedelta(days=days)
            ident = start.strftime("%Y%m")
        self._current[period] = (start.timestamp(), end.timestamp(), ident)
        return ident, end.timestamp()


def period_key(prefix: str, allowance: Allowance, period_id: str) -> str:
    """The name of an allowance's total in one period."""
    return f"{prefix}{allowance.name}:{period_id}:{allowance.subject}"


class Ledger(Protocol):
    """Budgets and token limits: :class:`MemoryLedger` or :class:`RedisLedger`."""

    async def reserve(self, claims: Sequence[Claim]) -> Reservation | BudgetRefusal:
        """All or nothing: every claim fits (spent + amount <= limit) and is taken, or
        none is. Never raises for an unreachable store (the fail mode decides)."""
        ...

    async def settle(self, reservation: Reservation, actual: Sequence[int]) -> None:
        """Per claim, replace the reserved amount by *actual*; never raises."""
        ...

    async def spent(self, allowance: Allowance) -> int:
        """Spent and reserved on *allowance* in its current period."""
        ...

    @property
    def healthy(self) -> bool:
        """False while the store is unreachable."""
        ...

    async def close(self) -> None: ...


class _Base:
    def __init__(self, prefix: str, clock: Callable[[], float]) -> None:
        self.prefix = prefix
        self.calendar = Calendar(clock)

    def _keys(self, claims: Sequence[Claim], now: float) -> tuple[list[str], list[float]]:
        keys, ends = [], []
        for c in claims:
            ident, end = self.calendar.period(c.allowance.period, now)
            keys.append(period_key(self.prefix, c.allowance, ident))
            ends.append(end)
        return keys, ends

    @staticmethod
    def _refusal(
        claims: Sequence[Claim],
        refused: Sequence[tuple[int, int]],
        ends: Sequence[float],
        now: float,
    ) -> BudgetRefusal:
        """The refusal of the claims that did not fit ((index, spent) pairs): the one
        whose period ends last, since the request fits only once all have room (of
        periods ending together, the longest: the month says more than its last day)."""
        i, spent = max(
            refused, key=lambda r: (ends[r[0]], PERIODS.index(claims[r[0]].allowance.period))
        )
        c = claims[i]
        return BudgetRefusal(
            allowance=c.allowance,
            spent=spent,
            amount=c.amount,
            retry_after_s=max(ends[i] - now, 0.001),
            reason=explain(c.allowance, spent, c.amount),
        )

    @staticmethod
    def _check(reservation: Reservation, actual: Sequence[int]) -> list[int]:
        """The change on each claim's period: actual minus reserved (all of it when
        nothing was reserved)."""
        if len(actual) != len(reservation.claims):
            raise ValueError(
                f"settle needs one amount per claim: {len(reservation.claims)}, not {len(actual)}"
            )
        if reservation.degraded:
            return [max(0, a) for a in actual]
        return [max(0, a) - c.amount for c, a in zip(reservation.claims, actual, strict=True)]


class MemoryLedger(_Base):
    """Budgets and token limits for one process. A call never awaits, so it is atomic
    on the event loop without a lock."""

    def __init__(self, *, prefix: str = "", clock: Callable[[], float] = time.time) -> None:
        super().__init__(prefix, clock)
        self._totals: dict[str, list[float]] = {}  # key -> [spent, expires at]
        self._swept = clock()

    @property
    def healthy(self) -> bool:
        return True

    async def reserve(self, claims: Sequence[Claim]) -> Reservation | BudgetRefusal:
        return self.reserve_now(claims)

    def reserve_now(self, claims: Sequence[Claim]) -> Reservation | BudgetRefusal:
        """:meth:`reserve` without the coroutine."""
        if not claims:
            return Reservation((), (), ())
        now = self.calendar.clock()
        self._maybe_sweep(now)
        keys, ends = self._keys(claims, now)
        totals = self._totals
        refused: list[tuple[int, int]] = []
        pending: dict[str, int] = {}
        for i, (c, key) in enumerate(zip(claims, keys, strict=True)):
            entry = totals.get(key)
            spent = int(entry[0]) if entry is not None else 0
            extra = pending.get(key, 0)
            if spent + extra + max(1, c.amount) > c.allowance.limit:
                refused.append((i, spent))
            pending[key] = extra + c.amount
        if refused:
            return self._refusal(claims, refused, ends, now)
        for c, key, end in zip(claims, keys, ends, strict=True):
            entry = totals.get(key)
            if entry is None:
                totals[key] = [c.amount, end + GRACE_S]
            else:
                entry[0] += c.amount
        return Reservation(tuple(claims), tuple(keys), tuple(ends))

    async def settle(self, reservation: Reservation, actual: Sequence[int]) -> None:
        deltas = self._check(reservation, actual)
        now = self.calendar.clock()
        for key, delta, end in zip(reservation.keys, deltas, reservation.ends, strict=True):
            if delta == 0:
                continue
            entry = self._totals.get(key)
            if entry is not None:
                entry[0] = max(0, int(entry[0]) + delta)
            elif delta > 0 and now < end + GRACE_S:
                # Reserved without the store (never here), or swept: as Redis does.
                self._totals[key] = [delta, end + GRACE_S]

    async def spent(self, allowance: Allowance) -> int:
        now = self.calendar.clock()
        ident, _ = self.calendar.period(allowance.period, now)
        entry = self._totals.get(period_key(self.prefix, allowance, ident))
        return int(entry[0]) if entry is not None else 0

    async def close(self) -> None:
        self._totals.clear()

    def _maybe_sweep(self, now: float) -> None:
        if now - self._swept < SWEEP_S:
            return
        self._swept = now
        for key in [k for k, e in self._totals.items() if e[1] <= now]:
            del self._totals[key]


class _Job(ScriptJob):
    """One reserve's, settle's or read's part of a batch: (key, limit or delta,
    expiry, amount) rows, as ``ledger_script.Batch`` takes them."""

    __slots__ = ("rows",)

    def __init__(self, kind: str, rows: list[tuple[str, int, int, int]]) -> None:
        super().__init__(kind)
        self.rows = rows


class RedisLedger(_Base, ScriptedRedis):
    """Budgets and token limits exact across every replica sharing one Redis.

    Reserves, settles and reads that arrive while a script call is in flight go in
    the next call (``ledger_script.py``): one round trip, one connection, whatever the
    burst; with nothing in flight a call goes out at once. *timeout_ms* bounds each
    call (connecting included); *fail* is ``closed`` or ``open``. After a failed call
    Redis is left alone for *backoff_s*, every call answering by the fail mode at once;
    then the next batch is the probe. One instance serves one event loop; Redis 5 or
    later, not Cluster (a batch's keys span hash slots).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "prodgate:ledger:",
        timeout_ms: float = 100.0,
        fail: str = "closed",
        backoff_s: float = 0.5,
        coalesce: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _Base.__init__(self, prefix, clock)
        ScriptedRedis.__init__(
            self,
            url,
            lua=LUA,
            sha=SHA,
            what="budgets",
            timeout_ms=timeout_ms,
            fail=fail,
            backoff_s=backoff_s,
            coalesce=coalesce,
        )

    async def reserve(self, claims: Sequence[Claim]) -> Reservation | BudgetRefusal:
        if not claims:
            return Reservation((), (), ())
        now = self.calendar.clock()
        keys, ends = self._keys(claims, now)
        out = None
        if not self._resting():
            rows = [
                (key, c.allowance.limit, c.amount, int(end) + GRACE_S)
                for c, key, end in zip(claims, keys, ends, strict=True)
            ]
            out = await self._submit(_Job(RESERVE, rows))
        if out is None:
            if self.fail == "open":
                return Reservation(tuple(claims), tuple(keys), tuple(ends), degraded=True)
            return BudgetRefusal(claims[0].allowance, 0, 0, 1.0, UNREACHABLE, degraded=True)
        if out[0] == 1:
            return Reservation(tuple(claims), tuple(keys), tuple(ends))
        refused = [(int(out[j]) - 1, int(out[j + 1])) for j in range(2, len(out), 2)]
        return self._refusal(claims, refused, ends, now)

    async def settle(self, reservation: Reservation, actual: Sequence[int]) -> None:
        deltas = self._check(reservation, actual)
        rows = [
            (key, delta, int(end) + GRACE_S, 0)
            for key, delta, end in zip(reservation.keys, deltas, reservation.ends, strict=True)
            if delta
        ]
        if not rows or self._closed:
            return
        if self._resting() or await self._submit(_Job(SETTLE, rows)) is None:
            logger.warning("settling %d claims failed: Redis is unreachable", len(rows))

    async def spent(self, allowance: Allowance) -> int:
        ident, _ = self.calendar.period(allowance.period, self.calendar.clock())
        key = period_key(self.prefix, allowance, ident)
        out = None
        if not self._closed and not self._resting():
            out = await self._submit(_Job(SPENT, [(key, 0, 0, 0)]))
        if not out:
            raise UnavailableError(UNREACHABLE)
        return out[0]

    # -- the script's side of the transport (limits.scripted) ----------------------------

    def _pack(self, jobs: Sequence[ScriptJob]) -> tuple[list[str], list[str | int]]:
        batch = Batch()
        for job in jobs:
            assert isinstance(job, _Job)
            batch.add(job.kind, job.rows)
        return batch.keys, list(batch.args)

    def _split(self, jobs: Sequence[ScriptJob], out: list[int]) -> list[list[int]]:
        answers: list[list[int]] = []
        at = 0
        for job in jobs:
            assert isinstance(job, _Job)
            if job.kind == RESERVE:
                n = 2 + 2 * out[at + 1]
            elif job.kind == SPENT:
                n = len(job.rows)
            else:
                n = 0
            answers.append(out[at : at + n])
            at += n
        return answers

    def _keep(self, job: ScriptJob) -> bool:
        return job.kind == SETTLE  # a settle changes what is spent: sent all the same

    def _orphan(self, job: ScriptJob, answer: list[int]) -> ScriptJob | None:
        # A reserve whose caller left while it was in flight was taken: give it back.
        if isinstance(job, _Job) and job.kind == RESERVE and answer[0] == 1:
            back = [(key, -amount, at, 0) for key, _, amount, at in job.rows if amount]
            return _Job(SETTLE, back) if back else None
        return None


def build_ledger(settings: Settings, *, prefix: str | None = None) -> Ledger:
    """A :class:`RedisLedger` when ``redis_url`` is set, else a :class:`MemoryLedger`
    (the limiter's rule). Builds no connection: Redis is first reached by a call."""
    if settings.redis_url:
        return RedisLedger(
            settings.redis_url,
            prefix=prefix if prefix is not None else settings.redis_prefix + "ledger:",
            timeout_ms=settings.redis_timeout_ms,
            fail=settings.limit_fail,
        )
    return MemoryLedger()
