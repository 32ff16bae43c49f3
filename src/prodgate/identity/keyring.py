"""The keys a gateway knows, in memory: who is calling, checked without the store.

The ring holds every key of the store by id, reloaded whenever the store's generation
moves (any key created, revoked or rotated, by any process), so authenticating a
request is a dictionary lookup and one SHA-256, never a database read.
``PRODGATE_ADMIN_TOKEN``, when set, is one more key: the bootstrap key, with every
scope, for before any key exists.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlalchemy as sa

from prodgate.exceptions import KeyRejectedError
from prodgate.identity.actor import Actor, Origin
from prodgate.identity.key import ApiKey, split_token
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import api_keys

#: The identity of the bootstrap key, and of callers where no key is asked for.
BOOTSTRAP = "bootstrap"
ANONYMOUS = "anonymous"
#: The HTTP channel of actions (the ``origin`` of their audit records).
HTTP = "admin-api"


@dataclass(frozen=True)
class Principal:
    """Who a request comes from: a key's identity, scopes and limits."""

    key_id: str | None  # None for anonymous callers
    name: str  # the identity recorded: a person, or an agent's own name
    owner: str  # the person accountable (the person themself for a person's key)
    scopes: tuple[str, ...] = ()
    agent: bool = False
    limits: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(key.id, key.identity, key.owner, key.scopes, key.agent, key.limits)

    def actor(self, address: str | None) -> Actor:
        """This principal acting over HTTP from *address*, as audit records name it."""
        return Actor(
            self.name,
            Origin(
                HTTP,
                address=address,
                key=self.key_id,
                owner=self.owner if self.owner != self.name else None,
                agent=True if self.agent else None,
            ),
        )

    def as_dict(self) -> dict[str, object]:
        """What a record says of the caller: never a secret."""
        out: dict[str, object] = {"key": self.key_id, "identity": self.name}
        if self.agent:
            out["agent"] = True
            out["owner"] = self.owner
        return out


ANONYMOUS_PRINCIPAL = Principal(None, ANONYMOUS, ANONYMOUS)
BOOTSTRAP_PRINCIPAL = Principal(BOOTSTRAP, BOOTSTRAP, BOOTSTRAP, ("admin",))


def read_keys(store: Store) -> list[ApiKey]:
    """Every key in the store, revoked ones included (to say why they fail)."""
    with store.read() as conn:
        return [ApiKey.from_row(r) for r in conn.execute(sa.select(api_keys))]


class KeyRing:
    def __init__(self, bootstrap_token: str = "") -> None:
        self._bootstrap = (
            hashlib.sha256(bootstrap_token.encode()).digest() if bootstrap_token else None
        )
        self._keys: dict[str, ApiKey] = {}
        self._principals: dict[str, Principal] = {}
        self.generation = -1

    def load(self, keys: Iterable[ApiKey], generation: int = -1) -> None:
        """Replace what the ring knows (one assignment: a request sees old or new)."""
        keys = list(keys)
        self._keys = {k.id: k for k in keys}
        # One principal per key, made here rather than per request.
        self._principals = {k.id: Principal.of(k) for k in keys}
        self.generation = generation

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, header: str | None) -> Principal:
        """The principal an ``Authorization`` header names; KeyRejectedError if none."""
        if not header:
            raise KeyRejectedError(
                "this route needs an API key: send Authorization: Bearer <key>", "missing"
            )
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise KeyRejectedError("send the key as Authorization: Bearer <key>", "malformed")
        parts = split_token(token)
        key = self._keys.get(parts[0]) if parts else None
        # The bootstrap token is whatever the operator chose, perhaps shaped like a key:
        # it is tried whenever the token is no key the ring holds.
        if key is None and self._is_bootstrap(token):
            return BOOTSTRAP_PRINCIPAL
        if parts is None:
            raise KeyRejectedError(
                "that is not an API key: keys look like pg_<id>_<secret>", "malformed"
            )
        key_id, secret = parts
        now = now_us()
        if key is None or not key.matches(secret, now):
            raise KeyRejectedError("the API key is not valid", "unknown", key_id if key else None)
        state = key.state(now)
        if state != "active":
            raise KeyRejectedError(f"the API key {key_id} is {state}", state, key_id)
        return self._principals[key_id]

    def _is_bootstrap(self, token: str) -> bool:
        return self._bootstrap is not None and hmac.compare_digest(
            hashlib.sha256(token.encode()).digest(), self._bootstrap
        )
