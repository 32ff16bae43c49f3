"""One API key as the store keeps it, its token format and its limits.

A key reads ``pg_<id>_<secret>``. The id (12 hex digits) is public: it names the key
in listings, audit records and metrics, and finds its row in one primary-key read.
The secret (32 random bytes) is never stored: only its SHA-256 is, and a presented
secret is compared by digest in constant time. A key is a random 256-bit value, not a
password, so a fast hash is the right one (nothing to stretch against guessing).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

PREFIX = "pg_"
ID_HEX = 12
#: An id as new_token makes it: exactly ID_HEX lower-case hex digits. (``int(id, 16)``
#: would also take ``0x``, a sign, blanks and underscores.)
_ID = re.compile(rf"[0-9a-f]{{{ID_HEX}}}")


class Limit(NamedTuple):
    """What one of a key's limits is."""

    option: str
    """The CLI option that sets it."""
    unit: str
    """What it counts: requests, rows, requests in flight, tokens, or usd_micros (a
    budget, kept in micro-dollars so that it is exact, and shown in USD)."""
    period_s: float
    """A rate's sliding window in seconds; 0 for what is not such a rate: concurrency,
    and the token limits and budgets, counted per calendar minute, day or month."""


#: The limits a key may carry, by name. ``concurrency`` is the number of requests in
#: flight at once, not a rate.
LIMITS: dict[str, Limit] = {
    "rps": Limit("--rps", "requests", 1.0),
    "rpm": Limit("--rpm", "requests", 60.0),
    "rows_per_minute": Limit("--rows-per-minute", "rows", 60.0),
    "concurrency": Limit("--concurrency", "requests in flight", 0.0),
    "tokens_per_minute": Limit("--tokens-per-minute", "tokens", 0.0),
    "budget_day": Limit("--budget-day", "usd_micros", 0.0),
    "budget_month": Limit("--budget-month", "usd_micros", 0.0),
}
#: The limits the limit stage charges on every request (sliding windows).
RATES = ("rps", "rpm", "rows_per_minute")
#: The limits an LLM call reserves and settles on (``limits/budget.py``), each with its
#: calendar period (UTC).
ALLOWANCES = {"tokens_per_minute": "minute", "budget_day": "day", "budget_month": "month"}


def shown_limits(limits: dict[str, int]) -> dict[str, int | float]:
    """A key's limits as people read and give them: budgets in USD (``2.5``, the exact
    decimal of the micro-dollars stored), the rest as they are."""
    return {
        name: value / 1_000_000 if name in LIMITS and LIMITS[name].unit == "usd_micros" else value
        for name, value in limits.items()
    }


def new_token() -> tuple[str, str, str]:
    """A fresh key: (id, secret, the whole key as the caller sends it)."""
    key_id = secrets.token_hex(ID_HEX // 2)
    secret = secrets.token_urlsafe(32)
    return key_id, secret, f"{PREFIX}{key_id}_{secret}"


def new_secret(key_id: str) -> tuple[str, str]:
    """A fresh secret for an existing id (a rotation): (secret, the whole key)."""
    secret = secrets.token_urlsafe(32)
    return secret, f"{PREFIX}{key_id}_{secret}"


def split_token(token: str) -> tuple[str, str] | None:
    """A presented key as (id, secret), or None when it is not shaped like one."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX) :].partition("_")
    if not sep or not _ID.fullmatch(key_id) or not secret or len(secret) > 128:
        return None
    return key_id, secret


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_digest(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)


@dataclass(frozen=True)
class ApiKey:
    """A key's row: who it is, what it may do, how much, and whether it still works."""

    id: str
    name: str
    owner: str
    agent: bool
    scopes: tuple[str, ...]
    limits: dict[str, int] = field(default_factory=dict)
    secret_hash: str = ""
    previous_hash: str | None = None
    previous_until_us: int | None = None
    created_by: str = ""
    created_at_us: int = 0
    expires_at_us: int | None = None
    revoked_at_us: int | None = None
    revoked_by: str | None = None
    updated_at_us: int = 0

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        m = row._mapping
        return cls(
            id=m["id"],
            name=m["name"],
            owner=m["owner"],
            agent=bool(m["agent"]),
            scopes=tuple(orjson.loads(m["scopes"])),
            limits={k: int(v) for k, v in orjson.loads(m["limits"] or "{}").items()},
            secret_hash=m["secret_hash"],
            previous_hash=m["previous_hash"],
            previous_until_us=m["previous_until_us"],
            created_by=m["created_by"],
            created_at_us=int(m["created_at_us"]),
            expires_at_us=m["expires_at_us"],
            revoked_at_us=m["revoked_at_us"],
            revoked_by=m["revoked_by"],
            updated_at_us=int(m["updated_at_us"]),
        )

    @property
    def identity(self) -> str:
        """The name its actions are recorded under: the agent's own name, or the person."""
        return self.name if self.agent else self.owner

    def state(self, now_us: int) -> str:
        """``active``, ``revoked`` or ``expired`` at *now_us*."""
        if self.revoked_at_us is not None:
            return "revoked"
        if self.expires_at_us is not None and now_us >= self.expires_at_us:
            return "expired"
        return "active"

    def matches(self, secret: str, now_us: int) -> bool:
        """Whether *secret* is this key's, or its previous one still in its grace period."""
        given = digest(secret)
        if same_digest(given, self.secret_hash):
            return True
        return (
            self.previous_hash is not None
            and self.previous_until_us is not None
            and now_us < self.previous_until_us
            and same_digest(given, self.previous_hash)
        )

    def as_dict(self, now_us: int) -> dict[str, Any]:
        """The key as listings show it: never its secret nor its hash."""
        return {
            "id": self.id,
            "name": self.name,
            "owner": self.owner,
            "agent": self.agent,
            "identity": self.identity,
            "scopes": list(self.scopes),
            "limits": shown_limits(self.limits),
            "state": self.state(now_us),
            "created_by": self.created_by,
            "created_at_us": self.created_at_us,
            "expires_at_us": self.expires_at_us,
            "revoked_at_us": self.revoked_at_us,
            "revoked_by": self.revoked_by,
            "previous_valid_until_us": self.previous_until_us
            if self.previous_until_us and self.previous_until_us > now_us
            else None,
        }
