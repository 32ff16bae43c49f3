"""Creating, listing, revoking and rotating API keys: the only writer of ``api_keys``.

Every change is an audit action (``key_create``, ``key_revoke``, ``key_rotate``)
naming the key by its id, never its secret, and bumps the store's generation in the
same transaction, so every running gateway reloads its keys within a refresh
interval (``PRODGATE_REFRESH_INTERVAL``, half a second by default).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.exceptions import NotFoundError, UsageError
from prodgate.identity import scopes as scope_grammar
from prodgate.identity.key import (
    LIMITS,
    ApiKey,
    digest,
    new_secret,
    new_token,
    shown_limits,
    split_token,
)
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import api_keys

#: How long a rotated-out secret keeps working unless told otherwise.
DEFAULT_GRACE_S = 24 * 3600.0
MAX_NAME = 128
#: Bounds that keep every value inside the store's 64-bit integers and JSON's.
MAX_LIMIT = 1_000_000_000
#: The largest budget in USD: 10**15 micro-dollars, exact in every integer and double.
MAX_USD = 1_000_000_000

#: A limit as given: a whole number, or for a budget an amount in USD.
LimitValue = int | float | str | Decimal
MAX_DAYS = 36_500


@dataclass(frozen=True)
class Issued:
    """A key just made or rotated: its row, and the whole key, shown this once."""

    key: ApiKey
    token: str


def _name(text: str, what: str) -> str:
    name = text.strip()
    if not name:
        raise UsageError(f"a key needs {what}")
    if len(name) > MAX_NAME or not name.isprintable():
        raise UsageError(
            f"{what} {text!r}: at most {MAX_NAME} printable characters, no control characters"
        )
    return name


def check_limits(limits: Mapping[str, LimitValue | None]) -> dict[str, int]:
    """The limits given (None: not given) as stored: each a whole number above zero,
    budgets an amount in USD (``2.50``, ``"$2.50"``, ``Decimal("2.5")``) stored as
    micro-dollars."""
    out: dict[str, int] = {}
    for name, value in limits.items():
        if name not in LIMITS:
            raise UsageError(f"unknown limit {name!r}; limits are {', '.join(LIMITS)}")
        if value is None:
            continue
        option = LIMITS[name].option
        if LIMITS[name].unit == "usd_micros":
            out[name] = _micros(value, option)
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UsageError(f"{option} must be a whole number above 0")
        if value > MAX_LIMIT:
            raise UsageError(f"{option} must be at most {MAX_LIMIT}")
        out[name] = value
    return out


def _micros(value: LimitValue, option: str) -> int:
    """An amount in USD as whole micro-dollars, exactly, or UsageError."""
    wrong = f"{option} must be an amount in USD above 0, like 2.50"
    if isinstance(value, bool):
        raise UsageError(wrong)
    try:
        # A float by its shortest decimal (2.675, not 2.67499999...).
        amount = Decimal(value.strip().removeprefix("$") if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise UsageError(wrong) from None
    if not amount.is_finite() or amount <= 0:
        raise UsageError(wrong)
    if amount > MAX_USD:
        raise UsageError(f"{option} must be at most {MAX_USD} USD")
    micros = amount * 1_000_000
    if micros != micros.to_integral_value():
        raise UsageError(f"{option} is counted in micro-dollars: at most 6 decimals")
    return int(micros)


def _seconds(value: float, option: str, *, zero: bool) -> float:
    """*value* as a duration in seconds: finite, above zero (or zero when *zero*), and
    at most MAX_DAYS."""
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise UsageError(
            f"{option} must not be negative" if zero else f"{option} must be longer than zero"
        )
    if value > MAX_DAYS * 86400:
        raise UsageError(f"{option} must be at most {MAX_DAYS}d")
    return value


def create(
    store: Store,
    name: str,
    *,
    scopes: Iterable[str],
    actor: str,
    owner: str | None = None,
    agent: bool = False,
    expires_in_s: float | None = None,
    limits: Mapping[str, LimitValue | None] | None = None,
) -> Issued:
    """Make a key; the returned token is the only time the whole key exists outside
    the caller's hands. A person's key belongs to *owner* (default: *actor*); an
    agent's key is its own identity, *name*, with *owner* the person accountable."""
    name = _name(name, "a name")
    if agent and not owner:
        raise UsageError("an agent's key needs --owner PERSON: the person accountable for it")
    owner = _name(owner or str(actor), "an owner")
    checked = sorted({scope_grammar.parse(s) for s in scopes})
    if not checked:
        raise UsageError("a key needs at least one --scope (e.g. predict:SERVICE)")
    if expires_in_s is not None:
        expires_in_s = _seconds(expires_in_s, "--expires", zero=False)
    quotas = check_limits(limits or {})
    key_id, secret, token = new_token()
    now = now_us()
    row = {
        "id": key_id,
        "name": name,
        "secret_hash": digest(secret),
        "previous_hash": None,
        "previous_until_us": None,
        "scopes": orjson.dumps(checked).decode(),
        "owner": owner,
        "agent": agent,
        "limits": orjson.dumps(quotas).decode(),
        "created_by": str(actor),
        "created_at_us": now,
        "expires_at_us": now + int(expires_in_s * 1e6) if expires_in_s else None,
        "revoked_at_us": None,
        "revoked_by": None,
        "updated_at_us": now,
    }
    with store.write() as conn:
        conn.execute(api_keys.insert().values(**row))
        store.bump_generation(conn)
        log.append(
            store,
            conn,
            [
                log.action(
                    "key_create",
                    actor=actor,
                    service=None,
                    key=key_id,
                    name=name,
                    owner=owner,
                    agent=agent,
                    scopes=checked,
                    limits=shown_limits(quotas),
                    expires_at_us=row["expires_at_us"],
                )
            ],
        )
        return Issued(_get(conn, key_id), token)


def _get(conn: sa.Connection, key_id: str) -> ApiKey:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"no key with id {key_id!r}; 'prodgate keys list' shows them")
    return ApiKey.from_row(row)


def resolve(store: Store, ref: str) -> ApiKey:
    """The key *ref* names: its id, a whole key, or a name that only one key has."""
    parsed = split_token(ref.strip())
    key_id = parsed[0] if parsed else ref.strip()
    with store.read() as conn:
        row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).one_or_none()
        if row is not None:
            return ApiKey.from_row(row)
        named = conn.execute(
            sa.select(api_keys).where(
                api_keys.c.name == ref.strip(), api_keys.c.revoked_at_us.is_(None)
            )
        ).all()
    if len(named) == 1:
        return ApiKey.from_row(named[0])
    if len(named) > 1:
        ids = ", ".join(ApiKey.from_row(r).id for r in named)
        raise UsageError(f"{len(named)} active keys are named {ref!r} ({ids}); give the id")
    if parsed:  # a whole key: name its id only, never repeat its secret
        raise NotFoundError(f"no key with id {key_id!r}; 'prodgate keys list' shows them")
    raise NotFoundError(f"no key with id or name {ref!r}; 'prodgate keys list' shows them")


def list_keys(store: Store, *, include_revoked: bool = False) -> list[ApiKey]:
    q = sa.select(api_keys).order_by(api_keys.c.created_at_us, api_keys.c.id)
    if not include_revoked:
        q = q.where(api_keys.c.revoked_at_us.is_(None))
    with store.read() as conn:
        return [ApiKey.from_row(r) for r in conn.execute(q)]


def revoke(store: Store, ref: str, *, actor: str, reason: str = "") -> ApiKey:
    """Revoke a key at once, on every replica within a refresh interval."""
    key = resolve(store, ref)
    if key.revoked_at_us is not None:
        raise UsageError(f"key {key.id} ({key.name}) is already revoked")
    now = now_us()
    return _change(
        store,
        key,
        {"revoked_at_us": now, "revoked_by": str(actor), "updated_at_us": now},
        "key_revoke",
        actor,
        conflict=f"key {key.id} ({key.name}) is already revoked",
        reason=reason,
    )


def rotate(store: Store, ref: str, *, actor: str, grace_s: float = DEFAULT_GRACE_S) -> Issued:
    """A new secret for the same key (same id, scopes, limits and identity); the old
    secret keeps working for *grace_s* seconds (0: not at all) so callers can move."""
    key = resolve(store, ref)
    if key.state(now_us()) != "active":
        raise UsageError(f"key {key.id} ({key.name}) is {key.state(now_us())}; make a new one")
    grace_s = _seconds(grace_s, "--grace", zero=True)
    secret, token = new_secret(key.id)
    now = now_us()
    until = now + int(grace_s * 1e6) if grace_s > 0 else None
    values = {
        "secret_hash": digest(secret),
        "previous_hash": key.secret_hash if until else None,
        "previous_until_us": until,
        "updated_at_us": now,
    }
    changed = _change(
        store,
        key,
        values,
        "key_rotate",
        actor,
        conflict=f"key {key.id} ({key.name}) changed while it was being rotated (rotated or "
        "revoked by someone else); see 'prodgate keys list --all' and try again",
        previous_valid_until_us=until,
    )
    return Issued(changed, token)


def _change(
    store: Store,
    key: ApiKey,
    values: dict[str, Any],
    action: str,
    actor: str,
    *,
    conflict: str,
    **details: Any,
) -> ApiKey:
    """Update *key*'s row, bump the generation and record *action*, in one transaction;
    UsageError(*conflict*) when the key was revoked since it was read, or, for a
    rotation, rotated: one change, one record, and no rotation handing out a dead key
    (a revocation goes through whatever secret the key has now)."""
    with store.write() as conn:
        unchanged = [api_keys.c.id == key.id, api_keys.c.revoked_at_us.is_(None)]
        if "secret_hash" in values:  # a rotation: only of the secret it read
            unchanged.append(api_keys.c.secret_hash == key.secret_hash)
        done = conn.execute(api_keys.update().where(*unchanged).values(**values))
        if done.rowcount != 1:
            raise UsageError(conflict)
        store.bump_generation(conn)
        record = log.action(action, actor=actor, service=None, key=key.id, name=key.name, **details)
        log.append(store, conn, [record])
        return _get(conn, key.id)
