"""The mock LLM's faults: what fails, how, and exactly which calls.

A test that counts on failures needs them exact, not random: with an error rate *r*,
call *n* (counting from 0 the calls to the models the faults apply to) fails when
``floor((n+1)*r) > floor(n*r)``, so any run of calls holds its exact share, spread
evenly; the kinds of failure take turns in the order given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from fractions import Fraction
from typing import Any

from prodgate.exceptions import UsageError

#: The ways a call can be made to fail.
FAULT_KINDS = ("429", "500", "drop_before", "drop_after", "stall")


@dataclass(frozen=True)
class Faults:
    """The fault settings; the defaults inject nothing."""

    latency_ms: float = 0.0
    error_rate: float = 0.0
    errors: tuple[str, ...] = ("429", "500", "drop_before")
    retry_after_s: float = 1.0
    drop_after_chunks: int = 2
    stall_s: float = 600.0
    chunk_delay_ms: float = 0.0
    #: The models the faults apply to; None: every model.
    models: frozenset[str] | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> Faults:
        """Read fault settings (missing ones take their defaults); raise :class:`UsageError`."""
        if not raw:
            return cls()
        if not isinstance(raw, Mapping):
            raise UsageError("faults: expected a JSON object of fault settings")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise UsageError(
                f"faults: unknown setting {sorted(unknown)[0]!r}; known: {', '.join(sorted(known))}"
            )
        values: dict[str, Any] = {}
        for name in ("latency_ms", "retry_after_s", "stall_s", "chunk_delay_ms"):
            if raw.get(name) is not None:
                values[name] = _number(name, raw[name])
        if raw.get("error_rate") is not None:
            rate = _number("error_rate", raw["error_rate"])
            if rate > 1:
                raise UsageError(f"faults: error_rate must be between 0 and 1, not {rate}")
            values["error_rate"] = rate
        chunks = raw.get("drop_after_chunks")
        if chunks is not None:
            if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 0:
                raise UsageError("faults: drop_after_chunks: expected a whole number >= 0")
            values["drop_after_chunks"] = chunks
        if raw.get("errors") is not None:
            values["errors"] = _kinds(raw["errors"])
        models = raw.get("models")
        if models is not None:
            if isinstance(models, str):
                models = [models]
            if not isinstance(models, list | tuple | set | frozenset) or not all(
                isinstance(m, str) for m in models
            ):
                raise UsageError("faults: models: expected a list of model names, or null")
            values["models"] = frozenset(models)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        out["errors"] = list(self.errors)
        out["models"] = None if self.models is None else sorted(self.models)
        return out


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise UsageError(f"faults: {name}: expected a number >= 0, not {value!r}")
    return float(value)


def _kinds(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple) or not value:
        raise UsageError(f"faults: errors: expected a list of {', '.join(FAULT_KINDS)}")
    kinds = tuple(str(v) for v in value)
    for kind in kinds:
        if kind not in FAULT_KINDS:
            raise UsageError(
                f"faults: errors: unknown kind {kind!r}; expected some of {', '.join(FAULT_KINDS)}"
            )
    return kinds


class FaultSchedule:
    """Decides the fault, if any, of each call under one setting of :class:`Faults`."""

    def __init__(self, faults: Faults) -> None:
        self.faults = faults
        # exact arithmetic: 0.3 as a float would drift off the exact share over many calls
        rate = Fraction(faults.error_rate).limit_denominator(1_000_000)
        self._num, self._den = rate.numerator, rate.denominator
        self._calls = 0
        self._failures = 0

    def applies(self, model: str) -> bool:
        return self.faults.models is None or model in self.faults.models

    def next(self, model: str) -> tuple[float, str | None]:
        """The added latency in seconds and the fault (None: none) of a call to *model*."""
        if not self.applies(model):
            return 0.0, None
        n = self._calls
        self._calls += 1
        kind = None
        if (n + 1) * self._num // self._den > n * self._num // self._den:
            errors = self.faults.errors
            kind = errors[self._failures % len(errors)]
            self._failures += 1
        return self.faults.latency_ms / 1000, kind
