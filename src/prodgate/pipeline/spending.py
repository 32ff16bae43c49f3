"""The spending stage of an LLM call: reserve its worst case, settle what it cost.

Before an LLM service calls its upstream, the request reserves what the call may cost
at most (the prompt's tokens and every one of ``max_tokens``, at the model's prices)
on every allowance that applies: the caller key's tokens per minute and its day and
month budgets (``prodgate keys create --tokens-per-minute --budget-day
--budget-month``), and the service's own, across every caller (``limits:
{tokens_per_minute}`` and ``llm: {budgets: {day, month}}`` in its spec). All or
nothing, in one ledger call (``limits/budget.py``); a request with no allowance on it
skips the ledger entirely. Refused: 429 ``budget-exceeded`` naming the budget, with
``Retry-After`` until its calendar period (UTC) ends. Once answered, the call settles:
each reservation is replaced by the tokens and dollars actually used, so what is held
back for calls in flight is released as soon as they end.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass

from prodgate.exceptions import BudgetExceededError
from prodgate.identity.key import ALLOWANCES, LIMITS
from prodgate.identity.keyring import Principal
from prodgate.limits.budget import Allowance, BudgetRefusal, Claim, Ledger, Reservation, explain
from prodgate.llm.prices import micros
from prodgate.pipeline.metrics import Metrics
from prodgate.spec.llm import BUDGET_PERIODS
from prodgate.spec.service import ServiceSpec

logger = logging.getLogger("prodgate.pipeline")

#: A service's token limit in its spec's ``limits``.
TOKENS_PER_MINUTE = "tokens_per_minute"


@dataclass(frozen=True, slots=True)
class _Plan:
    """The allowances of one caller's calls to one service, built once."""

    caller: Principal
    allowances: tuple[Allowance, ...]


class Spending:
    """The spending stage of every LLM service, over one ledger.

    *metrics*, when given, counts refusals in ``prodgate_rate_limited_total`` with the
    allowance's name as the limit (``budget_day``, ``budget_month``,
    ``tokens_per_minute``), or ``unavailable`` while the ledger's store is unreachable.
    """

    def __init__(
        self,
        ledger: Ledger,
        services: Mapping[str, ServiceSpec],
        metrics: Metrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.metrics = metrics
        self._services = dict(services)
        # One plan per (key, service), made again when the key changed (the keyring
        # makes a new principal then).
        self._plans: dict[tuple[str | None, str], _Plan] = {}

    def allowances(self, caller: Principal, service: str) -> list[Allowance]:
        """What a call of *caller* to *service* reserves on: the key's, then the
        service's."""
        return list(self._plan(caller, service).allowances)

    def _plan(self, caller: Principal, service: str) -> _Plan:
        key = (caller.key_id, service)
        plan = self._plans.get(key)
        if plan is None or plan.caller is not caller:
            plan = self._plans[key] = _Plan(caller, self._make(caller, service))
        return plan

    def _make(self, caller: Principal, service: str) -> tuple[Allowance, ...]:
        out: list[Allowance] = []
        if caller.key_id is not None:
            subject = f"key:{caller.key_id}"
            for name, period in ALLOWANCES.items():
                if name in caller.limits:
                    limit = caller.limits[name]
                    unit = "tokens" if LIMITS[name].unit == "tokens" else "usd_micros"
                    out.append(Allowance(subject, name, limit, period, unit))
        spec = self._services.get(service)
        if spec is not None:
            subject = f"service:{service}"
            if TOKENS_PER_MINUTE in spec.limits:
                tokens = spec.limits[TOKENS_PER_MINUTE]
                out.append(Allowance(subject, TOKENS_PER_MINUTE, tokens, "minute", "tokens"))
            budgets = spec.llm.budgets if spec.llm is not None else {}
            for period in BUDGET_PERIODS:
                if period in budgets:
                    limit = micros(budgets[period])
                    out.append(Allowance(subject, f"budget_{period}", limit, period, "usd_micros"))
        return tuple(out)

    async def reserve(
        self, caller: Principal, service: str, worst_usd: float, worst_tokens: int
    ) -> Reservation | None:
        """Reserve *worst_usd* on every budget and *worst_tokens* on every token limit
        of the call, all or nothing; None when none applies (the ledger is not asked).
        BudgetExceededError when one has no room."""
        allowances = self._plan(caller, service).allowances
        if not allowances:
            return None
        usd = micros(worst_usd)
        tokens = max(0, worst_tokens)
        claims = [Claim(a, tokens if a.unit == "tokens" else usd) for a in allowances]
        got = await self.ledger.reserve(claims)
        if isinstance(got, BudgetRefusal):
            raise self._refusal(got, caller, service)
        return got

    async def settle(
        self, reservation: Reservation | None, actual_usd: float, actual_tokens: int
    ) -> None:
        """Replace what was reserved by what the call used; never raises (a settle that
        cannot be made is logged: the reservation then stands for the call)."""
        if reservation is None or not reservation.claims:
            return
        try:
            usd = micros(max(0.0, actual_usd))
            tokens = max(0, actual_tokens)
            await self.ledger.settle(
                reservation,
                [tokens if c.allowance.unit == "tokens" else usd for c in reservation.claims],
            )
        except Exception:
            logger.exception("settling a reservation of %d claims failed", len(reservation.claims))

    def _refusal(
        self, refusal: BudgetRefusal, caller: Principal, service: str
    ) -> BudgetExceededError:
        retry = max(1, math.ceil(refusal.retry_after_s))
        if refusal.degraded:
            if self.metrics is not None:
                self.metrics.rate_limited.labels("-", "unavailable").inc()
            return BudgetExceededError(refusal.reason, retry, limit="unavailable", subject="-")
        allowance = refusal.allowance
        kind = allowance.subject.partition(":")[0]
        who = f"service {service}" if kind == "service" else f"key {caller.key_id}"
        if self.metrics is not None:
            self.metrics.rate_limited.labels(kind, allowance.name).inc()
        detail = explain(allowance, refusal.spent, refusal.amount, who)
        return BudgetExceededError(detail, retry, limit=allowance.name, subject=kind)
