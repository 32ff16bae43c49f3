"""Authenticating a request's key in memory, and who the key says is acting."""

from __future__ import annotations

import time

import pytest

from prodgate.exceptions import KeyRejectedError
from prodgate.identity import keys
from prodgate.identity.actor import Actor, Origin
from prodgate.identity.keyring import (
    ANONYMOUS_PRINCIPAL,
    BOOTSTRAP,
    KeyRing,
    Principal,
    read_keys,
)
from prodgate.store.engine import Store


def ring_of(store: Store, bootstrap: str = "") -> KeyRing:
    ring = KeyRing(bootstrap)
    ring.load(read_keys(store), store.generation())
    return ring


def rejected(ring: KeyRing, header: str | None) -> KeyRejectedError:
    with pytest.raises(KeyRejectedError) as caught:
        ring.authenticate(header)
    assert caught.value.status == 401
    return caught.value


def test_a_valid_key_is_its_principal(store: Store) -> None:
    issued = keys.create(
        store, "app", scopes=["predict:claims"], actor="alice", limits={"rpm": 600}
    )
    ring = ring_of(store)
    assert len(ring) == 1
    assert ring.generation == store.generation()
    for header in (f"Bearer {issued.token}", f"bearer {issued.token}", f"BEARER  {issued.token} "):
        who = ring.authenticate(header)
        assert who == Principal(
            issued.key.id, "alice", "alice", ("predict:claims",), False, {"rpm": 600}
        )


def test_missing_and_malformed_headers(store: Store) -> None:
    issued = keys.create(store, "app", scopes=["predict:claims"], actor="alice")
    ring = ring_of(store)
    for header in (None, ""):
        error = rejected(ring, header)
        assert (error.reason, error.key_id) == ("missing", None)
        assert "Authorization: Bearer" in error.detail
    for header in (
        issued.token,  # no scheme
        f"Basic {issued.token}",
        f"Token {issued.token}",
        "Bearer",
        "Bearer    ",
        "Bearer not-a-key",
        "Bearer pg_nothex_secret",
        f"Bearer {issued.token.upper()}",
    ):
        error = rejected(ring, header)
        assert (error.reason, error.key_id) == ("malformed", None), header
        assert issued.token not in error.detail


def test_unknown_keys(store: Store) -> None:
    issued = keys.create(store, "app", scopes=["predict:claims"], actor="alice")
    ring = ring_of(store)
    error = rejected(ring, "Bearer pg_abcdef123456_whatever")
    assert (error.reason, error.key_id) == ("unknown", None)
    # A known id with the wrong secret says which key, never which secret was right.
    error = rejected(ring, f"Bearer pg_{issued.key.id}_wrong")
    assert (error.reason, error.key_id) == ("unknown", issued.key.id)
    assert "wrong" not in error.detail
    # A key made after the ring was loaded is unknown until the ring reloads.
    later = keys.create(store, "later", scopes=["review"], actor="alice")
    assert rejected(ring, f"Bearer {later.token}").reason == "unknown"
    assert ring.generation < store.generation()
    ring.load(read_keys(store), store.generation())
    assert ring.authenticate(f"Bearer {later.token}").key_id == later.key.id


def test_revoked_and_expired_keys_say_so(store: Store) -> None:
    revoked = keys.create(store, "gone", scopes=["predict:claims"], actor="alice")
    keys.revoke(store, revoked.key.id, actor="alice")
    expiring = keys.create(
        store, "brief", scopes=["predict:claims"], actor="alice", expires_in_s=0.3
    )
    ring = ring_of(store)
    assert ring.authenticate(f"Bearer {expiring.token}").key_id == expiring.key.id
    error = rejected(ring, f"Bearer {revoked.token}")
    assert (error.reason, error.key_id) == ("revoked", revoked.key.id)
    assert "revoked" in error.detail
    time.sleep(0.3)
    error = rejected(ring, f"Bearer {expiring.token}")
    assert (error.reason, error.key_id) == ("expired", expiring.key.id)
    # A wrong secret for a revoked key tells nothing about its state.
    assert rejected(ring, f"Bearer pg_{revoked.key.id}_wrong").reason == "unknown"


def test_a_rotated_key_old_secret_in_and_after_its_grace(store: Store) -> None:
    old = keys.create(store, "app", scopes=["predict:claims"], actor="alice")
    new = keys.rotate(store, "app", actor="alice", grace_s=0.3)
    ring = ring_of(store)
    assert ring.authenticate(f"Bearer {old.token}").key_id == old.key.id
    assert ring.authenticate(f"Bearer {new.token}").key_id == old.key.id
    time.sleep(0.3)
    assert rejected(ring, f"Bearer {old.token}").reason == "unknown"
    assert ring.authenticate(f"Bearer {new.token}").key_id == old.key.id
    newest = keys.rotate(store, "app", actor="alice", grace_s=0)
    ring.load(read_keys(store), store.generation())
    assert rejected(ring, f"Bearer {new.token}").reason == "unknown"
    assert ring.authenticate(f"Bearer {newest.token}").key_id == old.key.id


def test_the_bootstrap_token_only_when_set() -> None:
    assert rejected(KeyRing(), "Bearer s3cret-admin").reason == "malformed"
    assert rejected(KeyRing(""), "Bearer ").reason == "malformed"
    ring = KeyRing("s3cret-admin")
    who = ring.authenticate("Bearer s3cret-admin")
    assert who == Principal(BOOTSTRAP, BOOTSTRAP, BOOTSTRAP, ("admin",))
    for wrong, reason in (
        ("s3cret-admin2", "malformed"),
        ("s3cret", "malformed"),
        ("S3CRET-ADMIN", "malformed"),
        ("pg_abcdef123456_s3cret-admin", "unknown"),
    ):
        error = rejected(ring, f"Bearer {wrong}")
        assert error.reason == reason, wrong
        assert "s3cret" not in error.detail.lower()
    assert rejected(ring, "Basic s3cret-admin").reason == "malformed"
    assert rejected(ring, None).reason == "missing"


def test_a_bootstrap_token_shaped_like_a_key_works(store: Store) -> None:
    token = "pg_0123456789ab_chosen-by-the-operator"
    ring = ring_of(store, bootstrap=token)
    assert ring.authenticate(f"Bearer {token}").key_id == BOOTSTRAP
    assert rejected(ring, "Bearer pg_0123456789ab_other").reason == "unknown"


def test_a_persons_key_acts_as_its_owner(store: Store) -> None:
    issued = keys.create(store, "laptop", scopes=["admin:claims"], actor="ops", owner="alice")
    who = ring_of(store).authenticate(f"Bearer {issued.token}")
    assert (who.name, who.owner, who.agent) == ("alice", "alice", False)
    actor = who.actor("10.0.0.7")
    assert isinstance(actor, Actor)
    assert actor == "alice"
    assert actor.person == "alice"
    assert actor.origin == Origin("admin-api", address="10.0.0.7", key=issued.key.id)
    assert actor.origin.as_dict() == {
        "channel": "admin-api",
        "address": "10.0.0.7",
        "key": issued.key.id,
    }
    assert who.as_dict() == {"key": issued.key.id, "identity": "alice"}


def test_an_agents_key_acts_as_the_agent_owned_by_its_person(store: Store) -> None:
    issued = keys.create(
        store, "triage-bot", scopes=["admin:claims"], actor="ops", owner="alice", agent=True
    )
    who = ring_of(store).authenticate(f"Bearer {issued.token}")
    assert (who.name, who.owner, who.agent) == ("triage-bot", "alice", True)
    actor = who.actor(None)
    assert actor == "triage-bot"
    assert actor.person == "alice"
    assert actor.origin == Origin("admin-api", key=issued.key.id, owner="alice", agent=True)
    assert who.as_dict() == {
        "key": issued.key.id,
        "identity": "triage-bot",
        "agent": True,
        "owner": "alice",
    }
    assert issued.token not in repr(who)
    assert issued.token not in repr(actor)


def test_the_anonymous_principal_has_no_key_and_no_scopes() -> None:
    assert ANONYMOUS_PRINCIPAL.key_id is None
    assert ANONYMOUS_PRINCIPAL.scopes == ()
    actor = ANONYMOUS_PRINCIPAL.actor("127.0.0.1")
    assert actor == "anonymous"
    assert actor.origin.as_dict() == {"channel": "admin-api", "address": "127.0.0.1"}
