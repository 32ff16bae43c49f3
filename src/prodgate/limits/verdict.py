"""What a limit check asks and what it answers: rates, demands, slots, the verdict.

A request states its :class:`Demand` on each rate that applies to it (the key's
requests per minute, the service's rows per minute, ...) and the concurrency
:class:`Slot` it needs; a limiter answers with one :class:`Verdict` for all of them.
The verdict carries how each limit stands (:class:`Usage`) so that it can render the
``RateLimit-Policy`` and ``RateLimit`` header fields of the IETF draft
(draft-ietf-httpapi-ratelimit-headers-11, structured-field lists), and ``Retry-After``
when the request is refused.

:func:`settle` turns per-limit outcomes into a verdict; both limiters use it, so the
memory and the Redis limiter answer alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: The policy identifier a concurrency limit shows in the header fields.
CONCURRENCY = "concurrency"

#: Outcome codes of one limit in a check (the Lua script returns the same numbers).
OK, OVER, NEVER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `limit` units in any window of `period_s` seconds."""

    name: str
    """The policy name the header fields show: ``rps``, ``rpm``, ``rows_per_minute``."""
    limit: int
    period_s: float
    unit: str = "requests"
    """What is counted: ``requests``, ``rows`` (later ``tokens``, ``usd_micros``)."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a rate needs a name")
        if self.limit < 0:
            raise ValueError(f"rate {self.name}: limit must be 0 or more, not {self.limit}")
        if not self.period_s > 0:
            raise ValueError(f"rate {self.name}: period must be above 0 s, not {self.period_s}")

    def describe(self) -> str:
        """``600 requests per 60 s``."""
        return f"{self.limit} {self.unit} per {_seconds(self.period_s)} s"


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request uses of a subject's rate.

    A cost of 0 only asks whether the subject has any room left (tokens known after
    an LLM answers are charged later with ``Limiter.charge``).
    """

    subject: str
    """Whose budget: ``key:k_3f9a1c2b`` or ``service:claims-triage``."""
    rate: Rate
    cost: int

    def __post_init__(self) -> None:
        if self.cost < 0:
            raise ValueError(f"a demand's cost must be 0 or more, not {self.cost}")


@dataclass(frozen=True, slots=True)
class Slot:
    """One of the subject's `limit` concurrent requests, held until released."""

    subject: str
    limit: int


@dataclass(frozen=True, slots=True)
class Lease:
    """Concurrency slots a check took; give them back with ``Limiter.release``."""

    id: str
    subjects: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Usage:
    """How one limit stands after a check."""

    limit: Demand | Slot
    remaining: int
    """Units (or concurrent requests) left; 0 when a charge went past the limit."""
    reset_s: float
    """Seconds until the window frees what is used now (0 for concurrency)."""


@dataclass(frozen=True)
class Verdict:
    """The answer to one check: allowed or not, and how the limits stand."""

    allowed: bool
    retry_after_s: float
    """Above 0 when refused: when the binding limit has room again."""
    binding: Demand | Slot | None
    """The limit that refused (of several, the one that frees last); when allowed, the
    rate with least room left, as a share of its limit (a slot if there is no rate)."""
    remaining: int
    """Units left on the binding limit after this request."""
    reset_s: float
    """Seconds until the binding limit's window frees what is used now."""
    degraded: bool = False
    """Redis was unreachable and the fail mode decided."""
    reason: str = ""
    """One readable sentence when refused."""
    lease: Lease | None = None
    """The concurrency slots taken, to give back with ``Limiter.release``."""
    usage: tuple[Usage, ...] = ()
    """Every limit of the check with its standing (unknown, so empty, when degraded)."""
    limits: tuple[Demand | Slot, ...] = ()
    """Every limit of the check, in the order asked: demands, then slots."""

    def headers(self) -> dict[str, str]:
        """``RateLimit-Policy`` and ``RateLimit``, plus ``Retry-After`` when refused.

        One list member per limit; a name shared by two subjects (a key's ``rpm`` and
        its service's) is told apart by the subject's kind (``service_rpm``). An empty
        dict when the check had no limits.
        """
        if not self.limits:
            return {}
        names, policy = policy_field(self.limits)
        out = {"RateLimit-Policy": policy}
        if self.usage:
            out["RateLimit"] = ratelimit_field(names, self.usage)
        if not self.allowed:
            out["Retry-After"] = str(max(1, math.ceil(self.retry_after_s)))
        return out


def policy_field(limits: Sequence[Demand | Slot]) -> tuple[list[str], str]:
    """Each limit's policy identifier, and the ``RateLimit-Policy`` field of them all:
    the same for every check of the same limits, so callers may keep it."""
    names = _policy_names(limits)
    return names, ",".join(_policy_item(names[i], lim) for i, lim in enumerate(limits))


def ratelimit_field(names: Sequence[str], usage: Sequence[Usage]) -> str:
    """The ``RateLimit`` field: each limit's remaining units and, for a rate, the
    seconds until its window frees what is used now."""
    items = []
    for name, u in zip(names, usage, strict=True):
        if isinstance(u.limit, Demand):
            items.append(f"{name};r={max(0, u.remaining)};t={max(0, math.ceil(u.reset_s))}")
        else:
            items.append(f"{name};r={max(0, u.remaining)}")
    return ",".join(items)


def no_limits() -> Verdict:
    """The verdict of a check with nothing to check."""
    return Verdict(allowed=True, retry_after_s=0.0, binding=None, remaining=0, reset_s=0.0)


def unique_slots(slots: Sequence[Slot]) -> tuple[Slot, ...]:
    """One slot per subject (the smallest limit): a request holds one slot of each."""
    if len(slots) < 2:
        return tuple(slots)
    by_subject: dict[str, Slot] = {}
    for s in slots:
        held = by_subject.get(s.subject)
        if held is None or s.limit < held.limit:
            by_subject[s.subject] = s
    return tuple(by_subject.values())


def degraded(demands: Sequence[Demand], slots: Sequence[Slot], *, fail: str) -> Verdict:
    """The verdict while the limit store is unreachable: the fail mode decides."""
    limits: tuple[Demand | Slot, ...] = (*demands, *slots)
    if fail == "open":
        return Verdict(True, 0.0, None, 0, 0.0, degraded=True, limits=limits)
    return Verdict(
        allowed=False,
        retry_after_s=1.0,
        binding=None,
        remaining=0,
        reset_s=0.0,
        degraded=True,
        reason="the limit store (Redis) is unreachable, so limited requests are refused "
        "for now; retry shortly",
        limits=limits,
    )


#: One rate's outcome: units left after the check, seconds to reset, seconds until
#: the request would fit (0 when it fits), and OK, OVER or NEVER.
RateOutcome = tuple[int, float, float, int]
#: One slot's outcome: concurrent requests held after the check, and OK or OVER.
SlotOutcome = tuple[int, int]


def settle(
    demands: Sequence[Demand],
    slots: Sequence[Slot],
    rates: Sequence[RateOutcome],
    held: Sequence[SlotOutcome],
    lease: Lease | None,
) -> Verdict:
    """The verdict of a check from the outcome of each of its limits."""
    usage = [Usage(d, r[0], r[1]) for d, r in zip(demands, rates, strict=True)]
    usage += [Usage(s, s.limit - h[0], 0.0) for s, h in zip(slots, held, strict=True)]
    limits: tuple[Demand | Slot, ...] = (*demands, *slots)
    if all(r[3] == OK for r in rates) and all(h[1] == OK for h in held):
        refusals: list[tuple[int, RateOutcome]] = []
        full: list[int] = []
    else:
        refusals = [(i, r) for i, r in enumerate(rates) if r[3] != OK]
        full = [i for i, h in enumerate(held) if h[1] != OK]
    if not refusals and not full:
        binding = _least_room(usage[: len(demands)]) or _least_room(usage[len(demands) :])
        return Verdict(
            allowed=True,
            retry_after_s=0.0,
            binding=binding.limit if binding else None,
            remaining=binding.remaining if binding else 0,
            reset_s=binding.reset_s if binding else 0.0,
            lease=lease,
            usage=tuple(usage),
            limits=limits,
        )
    never = [(i, r) for i, r in refusals if r[3] == NEVER]
    if never:
        # A request that can never pass: say so, and make it wait a whole period
        # rather than inviting a retry loop.
        i, r = never[0]
        d = demands[i]
        return Verdict(
            allowed=False,
            retry_after_s=d.rate.period_s,
            binding=d,
            remaining=max(0, r[0]),
            reset_s=r[1],
            reason=f"this request needs {max(1, d.cost)} {d.rate.unit} but "
            f"{_who(d.subject)}'s limit is {d.rate.describe()}, so it can never pass",
            usage=tuple(usage),
            limits=limits,
        )
    if refusals:
        # The request fits again only when every refusing limit has room: the latest.
        i, r = max(refusals, key=lambda ir: ir[1][2])
        d = demands[i]
        retry = max(r[2], 1.0) if full else r[2]
        return Verdict(
            allowed=False,
            retry_after_s=retry,
            binding=d,
            remaining=max(0, r[0]),
            reset_s=r[1],
            reason=f"{_who(d.subject)} is over its limit of {d.rate.describe()}",
            usage=tuple(usage),
            limits=limits,
        )
    s = slots[full[0]]
    # Nobody knows when a request in flight ends; a second is a fair guess.
    return Verdict(
        allowed=False,
        retry_after_s=1.0,
        binding=s,
        remaining=max(0, s.limit - held[full[0]][0]),
        reset_s=0.0,
        reason=f"{_who(s.subject)} is at its limit of {s.limit} concurrent requests",
        usage=tuple(usage),
        limits=limits,
    )


def _least_room(usage: Sequence[Usage]) -> Usage | None:
    best: Usage | None = None
    best_share = math.inf
    for u in usage:
        cap = u.limit.rate.limit if isinstance(u.limit, Demand) else u.limit.limit
        share = u.remaining / cap if cap > 0 else 0.0
        if share < best_share:
            best, best_share = u, share
    return best


def _who(subject: str) -> str:
    """``key:k_3f9a1c2b`` reads ``key k_3f9a1c2b``."""
    kind, sep, rest = subject.partition(":")
    return f"{kind} {rest}" if sep and kind and rest else subject


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _policy_names(limits: Sequence[Demand | Slot]) -> list[str]:
    """Each limit's policy identifier as a structured-field string, unique in the list."""
    seen: set[str] = set()
    names = []
    for lim in limits:
        base = lim.rate.name if isinstance(lim, Demand) else CONCURRENCY
        name = base
        if name in seen:
            kind = lim.subject.partition(":")[0]
            name = f"{kind}_{base}" if kind and kind != lim.subject else base
        n = 2
        unique = name
        while unique in seen:
            unique = f"{name}_{n}"
            n += 1
        seen.add(unique)
        names.append(_sf_string(unique))
    return names


def _policy_item(name: str, lim: Demand | Slot) -> str:
    if isinstance(lim, Slot):
        return f'{name};q={max(0, lim.limit)};qu="concurrent-requests"'
    rate = lim.rate
    item = f"{name};q={rate.limit}"
    if rate.unit != "requests":
        item += f";qu={_sf_string(rate.unit)}"
    return item + f";w={max(1, round(rate.period_s))}"


def _sf_string(text: str) -> str:
    """*text* as a structured-field String: printable ASCII, quotes and backslashes escaped."""
    clean = "".join(c if " " <= c <= "~" else "_" for c in text)
    return '"' + clean.replace("\\", "\\\\").replace('"', '\\"') + '"'
