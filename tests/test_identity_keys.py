"""Making, finding, revoking and rotating keys in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.exceptions import NotFoundError, UsageError
from prodgate.identity import keys
from prodgate.identity.actor import Actor, Origin
from prodgate.identity.key import digest, split_token
from prodgate.identity.keyring import KeyRing, read_keys
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import api_keys, audit_log


def raw_rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(api_keys))]


def audit_rows(store: Store) -> list[dict[str, Any]]:
    with store.read() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.select(audit_log))]


def actions(store: Store, name: str) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log).where(audit_log.c.action == name).order_by(audit_log.c.seq)
        ).all()
    return [log.as_dict(r) for r in rows]


def assert_nowhere(store: Store, *secrets: str) -> None:
    """None of *secrets* is in any column of api_keys or of the audit log."""
    stored = [*raw_rows(store), *audit_rows(store)]
    assert stored
    for row in stored:
        for column, value in row.items():
            for secret in secrets:
                assert secret not in str(value), f"{secret!r} found in {column}"


def secret_of(token: str) -> str:
    parts = split_token(token)
    assert parts is not None
    return parts[1]


def make(store: Store, name: str = "app", **kwargs: Any) -> keys.Issued:
    kwargs.setdefault("scopes", ["predict:claims"])
    kwargs.setdefault("actor", "alice")
    return keys.create(store, name, **kwargs)


# -- create ------------------------------------------------------------------------


def test_create_stores_only_the_hash(store: Store) -> None:
    issued = make(store, limits={"rpm": 600, "rps": None})
    secret = secret_of(issued.token)
    (row,) = raw_rows(store)
    assert row["id"] == issued.key.id
    assert row["secret_hash"] == digest(secret)
    assert issued.key.limits == {"rpm": 600}
    assert_nowhere(store, secret, issued.token)
    (created,) = actions(store, "key_create")
    assert created["key"] == issued.key.id


def test_changes_bump_the_store_generation(store: Store) -> None:
    before = store.generation()
    issued = make(store)
    after_create = store.generation()
    assert after_create > before
    keys.rotate(store, issued.key.id, actor="alice", grace_s=0)
    after_rotate = store.generation()
    assert after_rotate > after_create
    keys.revoke(store, issued.key.id, actor="alice")
    assert store.generation() > after_rotate


def test_a_persons_key_belongs_to_the_actor_unless_told(store: Store) -> None:
    mine = make(store, "laptop").key
    assert (mine.owner, mine.agent, mine.identity, mine.created_by) == (
        "alice",
        False,
        "alice",
        "alice",
    )
    theirs = make(store, "ci", owner="bob").key
    assert (theirs.owner, theirs.identity, theirs.created_by) == ("bob", "bob", "alice")


def test_an_agents_key_needs_an_owner(store: Store) -> None:
    for owner in (None, ""):
        with pytest.raises(UsageError, match="--owner PERSON"):
            make(store, "triage-bot", agent=True, owner=owner)
    with pytest.raises(UsageError, match="owner"):
        make(store, "triage-bot", agent=True, owner="   ")
    assert raw_rows(store) == []
    bot = make(store, "triage-bot", agent=True, owner="carol").key
    assert (bot.owner, bot.agent, bot.identity, bot.created_by) == (
        "carol",
        True,
        "triage-bot",
        "alice",
    )


#: Keys that must be refused, and what the refusal says.
BAD: list[tuple[dict[str, Any], str]] = [
    ({"scopes": []}, "at least one --scope"),
    ({"scopes": ["predict:claims", "write:claims"]}, "unknown scope 'write:claims'"),
    ({"limits": {"rpm": 0}}, "--rpm must be a whole number above 0"),
    ({"limits": {"rps": -5}}, "--rps must be"),
    ({"limits": {"concurrency": True}}, "--concurrency must be"),
    ({"limits": {"rows_per_minute": 2.5}}, "--rows-per-minute must be"),
    ({"limits": {"rpm": "600"}}, "--rpm must be"),
    ({"limits": {"rph": 5}}, "unknown limit 'rph'"),
    ({"limits": {"tokens_per_minute": 0}}, "--tokens-per-minute must be a whole number"),
    ({"limits": {"tokens_per_minute": "9"}}, "--tokens-per-minute must be"),
    ({"limits": {"budget_day": 0}}, "--budget-day must be an amount in USD above 0"),
    ({"limits": {"budget_day": "-1"}}, "--budget-day must be an amount in USD above 0"),
    ({"limits": {"budget_day": "five"}}, "--budget-day must be an amount in USD above 0"),
    ({"limits": {"budget_day": "2,50"}}, "--budget-day must be an amount in USD above 0"),
    ({"limits": {"budget_day": "NaN"}}, "--budget-day must be"),
    ({"limits": {"budget_day": float("inf")}}, "--budget-day must be"),
    ({"limits": {"budget_day": True}}, "--budget-day must be"),
    ({"limits": {"budget_month": "0.0000001"}}, "--budget-month is counted in micro-dollars"),
    ({"limits": {"budget_month": keys.MAX_USD + 1}}, "--budget-month must be at most"),
    ({"limits": {"budget_month": "1e30"}}, "--budget-month must be at most"),
    ({"expires_in_s": 0}, "--expires must be longer than zero"),
    ({"expires_in_s": -60}, "--expires must be longer than zero"),
    # Beyond what the store's integers and JSON hold.
    ({"limits": {"rpm": 10**30}}, "--rpm must be at most 1000000000"),
    ({"limits": {"rps": keys.MAX_LIMIT + 1}}, "--rps must be at most"),
    ({"expires_in_s": 1e20}, "--expires must be at most 36500d"),
    ({"expires_in_s": float("inf")}, "--expires must be longer than zero"),
    ({"expires_in_s": float("nan")}, "--expires must be longer than zero"),
]


@pytest.mark.parametrize(
    ("given", "stored", "shown"),
    [
        ("2.50", 2_500_000, 2.5),
        ("$2.50", 2_500_000, 2.5),
        (" 5 ", 5_000_000, 5.0),
        (5, 5_000_000, 5.0),
        (2.675, 2_675_000, 2.675),  # a float by its decimal, not 2.67499999...
        (Decimal("0.000001"), 1, 0.000001),
        ("1234.567891", 1_234_567_891, 1234.567891),
        ("1e3", 1_000_000_000, 1000.0),
        (keys.MAX_USD, keys.MAX_USD * 1_000_000, float(keys.MAX_USD)),
    ],
)
def test_budgets_are_stored_in_micro_dollars_exactly(
    store: Store, given: Any, stored: int, shown: float
) -> None:
    issued = make(store, limits={"budget_day": given, "tokens_per_minute": 20_000})
    assert issued.key.limits == {"budget_day": stored, "tokens_per_minute": 20_000}
    key = keys.resolve(store, issued.key.id)
    assert key.limits == issued.key.limits
    listed = key.as_dict(now_us())["limits"]
    assert listed == {"budget_day": shown, "tokens_per_minute": 20_000}
    # What a listing shows, given back, is what was stored.
    again = make(store, "again", limits={"budget_day": str(listed["budget_day"])})
    assert again.key.limits == {"budget_day": stored}
    (created, _) = actions(store, "key_create")
    assert created["limits"] == {"budget_day": shown, "tokens_per_minute": 20_000}
    ring = KeyRing()
    ring.load(read_keys(store))
    who = ring.authenticate(f"Bearer {issued.token}")
    assert who.limits == {"budget_day": stored, "tokens_per_minute": 20_000}


def test_a_rotated_key_keeps_its_budgets(store: Store) -> None:
    issued = make(store, limits={"budget_day": "2.5", "budget_month": "40"})
    rotated = keys.rotate(store, issued.key.id, actor="alice")
    assert rotated.key.limits == {"budget_day": 2_500_000, "budget_month": 40_000_000}


def test_bad_keys_are_refused_and_nothing_is_stored(store: Store) -> None:
    generation = store.generation()
    for kwargs, needle in BAD:
        with pytest.raises(UsageError) as caught:
            make(store, **kwargs)
        assert needle in caught.value.detail, kwargs
    assert raw_rows(store) == []
    assert audit_rows(store) == []
    assert store.generation() == generation


@pytest.mark.parametrize(("name", "needle"), [("", "a key needs a name"), ("  ", "a name")])
def test_a_key_needs_a_printable_name(store: Store, name: str, needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        make(store, name)
    with pytest.raises(UsageError, match="control characters"):
        make(store, "app\nroot")
    with pytest.raises(UsageError, match="at most 128"):
        make(store, "x" * 129)
    assert make(store, "  x" * 42 + "  ").key.name == ("  x" * 42).strip()


def test_scopes_are_checked_deduplicated_and_sorted(store: Store) -> None:
    key = make(store, scopes=[" review", "predict:claims", "review", "audit:read"]).key
    assert key.scopes == ("audit:read", "predict:claims", "review")


def test_an_expiry_is_set_from_now(store: Store) -> None:
    start = now_us()
    key = make(store, expires_in_s=90 * 86400).key
    assert key.expires_at_us is not None
    assert start + 90 * 86400 * 10**6 <= key.expires_at_us <= now_us() + 90 * 86400 * 10**6
    assert make(store, "forever").key.expires_at_us is None


# -- list and resolve --------------------------------------------------------------


def test_list_hides_revoked_keys_unless_asked(store: Store) -> None:
    first = make(store, "first").key
    second = make(store, "second").key
    keys.revoke(store, "first", actor="alice")
    assert [k.id for k in keys.list_keys(store)] == [second.id]
    listed = keys.list_keys(store, include_revoked=True)
    assert [k.id for k in listed] == [first.id, second.id]
    assert listed[0].state(now_us()) == "revoked"
    assert listed[0].revoked_by == "alice"


def test_resolve_by_id_whole_key_or_unique_name(store: Store) -> None:
    issued = make(store, "app")
    other = make(store, "other")
    key_id = issued.key.id
    assert keys.resolve(store, key_id).id == key_id
    assert keys.resolve(store, f" {key_id} ").id == key_id
    assert keys.resolve(store, issued.token).id == key_id
    assert keys.resolve(store, "app").id == key_id
    assert keys.resolve(store, "other").id == other.key.id


def test_resolve_says_which_keys_share_a_name(store: Store) -> None:
    a = make(store, "app").key
    b = make(store, "app").key
    with pytest.raises(UsageError) as caught:
        keys.resolve(store, "app")
    message = caught.value.detail
    assert "2 active keys are named 'app'" in message
    assert a.id in message
    assert b.id in message
    assert "give the id" in message
    # A revoked namesake no longer counts: the name is unique again.
    keys.revoke(store, a.id, actor="alice")
    assert keys.resolve(store, "app").id == b.id


def test_resolve_an_unknown_key(store: Store) -> None:
    make(store, "app")
    for ref in ("nope", "abcdef123456", ""):
        with pytest.raises(NotFoundError, match="prodgate keys list"):
            keys.resolve(store, ref)


def test_an_unknown_whole_key_is_not_repeated_in_the_error(store: Store) -> None:
    token = "pg_abcdef123456_thisIsTheSecretPart"
    with pytest.raises(NotFoundError) as caught:
        keys.resolve(store, token)
    assert "thisIsTheSecretPart" not in caught.value.detail
    assert "abcdef123456" in caught.value.detail


# -- revoke ------------------------------------------------------------------------


def test_revoke_once(store: Store) -> None:
    issued = make(store)
    revoked = keys.revoke(store, issued.key.id, actor="bob", reason="laptop lost")
    assert revoked.state(now_us()) == "revoked"
    assert revoked.revoked_by == "bob"
    generation = store.generation()
    with pytest.raises(UsageError, match=f"key {issued.key.id} \\(app\\) is already revoked"):
        keys.revoke(store, issued.key.id, actor="bob")
    with pytest.raises(UsageError, match="already revoked"):
        keys.revoke(store, issued.token, actor="bob")
    assert store.generation() == generation
    assert len(actions(store, "key_revoke")) == 1


# -- rotate ------------------------------------------------------------------------


def test_rotate_keeps_the_key_but_its_secret(store: Store) -> None:
    old = make(
        store,
        "triage-bot",
        agent=True,
        owner="carol",
        scopes=["predict:claims", "feedback:claims"],
        limits={"rpm": 60, "concurrency": 4},
        expires_in_s=3600,
    )
    new = keys.rotate(store, "triage-bot", actor="carol", grace_s=3600)
    assert new.token != old.token
    assert split_token(new.token) is not None
    assert new.key.id == old.key.id
    for field in ("name", "owner", "agent", "scopes", "limits", "expires_at_us", "created_by"):
        assert getattr(new.key, field) == getattr(old.key, field), field
    assert new.key.created_at_us == old.key.created_at_us
    (row,) = raw_rows(store)
    assert row["secret_hash"] == digest(secret_of(new.token))
    assert row["previous_hash"] == digest(secret_of(old.token))
    assert_nowhere(store, secret_of(old.token), secret_of(new.token), old.token, new.token)


def test_the_old_secret_works_within_the_grace_and_not_after(store: Store) -> None:
    old = make(store)
    start = now_us()
    new = keys.rotate(store, old.key.id, actor="alice", grace_s=60)
    key = keys.resolve(store, old.key.id)
    assert key.previous_until_us is not None
    assert start + 60 * 10**6 <= key.previous_until_us <= now_us() + 60 * 10**6
    assert key.matches(secret_of(new.token), now_us())
    assert key.matches(secret_of(old.token), now_us())
    assert not key.matches(secret_of(old.token), key.previous_until_us)
    assert key.matches(secret_of(new.token), key.previous_until_us)

    # With a tiny grace, on the real clock.
    newer = keys.rotate(store, old.key.id, actor="alice", grace_s=0.05)
    key = keys.resolve(store, old.key.id)
    assert key.matches(secret_of(new.token), now_us())
    assert not key.matches(secret_of(old.token), now_us())  # two rotations back
    time.sleep(0.06)
    assert not key.matches(secret_of(new.token), now_us())
    assert key.matches(secret_of(newer.token), now_us())


def test_a_grace_of_zero_ends_the_old_secret_at_once(store: Store) -> None:
    old = make(store)
    new = keys.rotate(store, old.key.id, actor="alice", grace_s=0)
    key = keys.resolve(store, old.key.id)
    assert (key.previous_hash, key.previous_until_us) == (None, None)
    assert not key.matches(secret_of(old.token), now_us())
    assert key.matches(secret_of(new.token), now_us())
    for grace in (-1, float("nan"), float("-inf")):
        with pytest.raises(UsageError, match="--grace must not be negative"):
            keys.rotate(store, old.key.id, actor="alice", grace_s=grace)
    for grace in (1e20, float("inf")):
        with pytest.raises(UsageError, match="--grace must"):
            keys.rotate(store, old.key.id, actor="alice", grace_s=grace)
    assert len(actions(store, "key_rotate")) == 1


def test_the_largest_limits_and_lifetimes_are_stored(store: Store) -> None:
    longest = keys.MAX_DAYS * 86400.0
    issued = make(store, limits={"rpm": keys.MAX_LIMIT}, expires_in_s=longest)
    key = keys.resolve(store, issued.key.id)
    assert key.limits == {"rpm": keys.MAX_LIMIT}
    assert key.expires_at_us is not None
    assert key.expires_at_us - key.created_at_us == int(longest * 1e6)
    rotated = keys.rotate(store, issued.key.id, actor="alice", grace_s=longest).key
    assert rotated.previous_until_us is not None


def test_a_revoked_or_expired_key_cannot_be_rotated(store: Store) -> None:
    revoked = make(store, "gone").key
    keys.revoke(store, revoked.id, actor="alice")
    with pytest.raises(UsageError, match=f"key {revoked.id} \\(gone\\) is revoked"):
        keys.rotate(store, revoked.id, actor="alice")
    expired = make(store, "old", expires_in_s=3600).key
    with store.write() as conn:  # an hour later
        conn.execute(
            api_keys.update().where(api_keys.c.id == expired.id).values(expires_at_us=now_us())
        )
    with pytest.raises(UsageError, match=f"key {expired.id} \\(old\\) is expired; make a new one"):
        keys.rotate(store, "old", actor="alice")
    assert actions(store, "key_rotate") == []


# -- two changes at once ----------------------------------------------------------


def race(
    store: Store,
    key_id: str,
    *changes: Callable[[], object],
    meanwhile: dict[str, Any] | None = None,
) -> list[object]:
    """Run *changes* at once, each having read the key before any of them may write it:
    the test holds the key's row locked until every change is waiting for it, and
    writes *meanwhile* to it (another process's change) before letting them go."""
    results: list[object] = []

    def attempt(change: Callable[[], object]) -> None:
        try:
            results.append(change())
        except UsageError as exc:
            results.append(exc)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in changes]
    with store.write() as conn:
        conn.execute(
            api_keys.update()
            .where(api_keys.c.id == key_id)
            .values(updated_at_us=api_keys.c.updated_at_us)
        )
        for t in threads:
            t.start()
        time.sleep(0.3)  # each change has read the key and waits to write it
        if meanwhile:
            conn.execute(api_keys.update().where(api_keys.c.id == key_id).values(**meanwhile))
    for t in threads:
        t.join(30)
    assert len(results) == len(changes)
    return results


def test_two_revocations_at_once_revoke_once(store: Store) -> None:
    key_id = make(store).key.id
    results = race(
        store,
        key_id,
        lambda: keys.revoke(store, key_id, actor="bob"),
        lambda: keys.revoke(store, key_id, actor="carol"),
    )
    refused = [r for r in results if isinstance(r, UsageError)]
    assert len(refused) == 1
    assert "already revoked" in refused[0].detail
    (revocation,) = actions(store, "key_revoke")
    assert keys.resolve(store, key_id).revoked_by == revocation["actor"]


def test_two_rotations_at_once_never_hand_out_a_dead_key(store: Store) -> None:
    old = make(store)
    key_id = old.key.id
    results = race(
        store,
        key_id,
        lambda: keys.rotate(store, key_id, actor="bob", grace_s=3600),
        lambda: keys.rotate(store, key_id, actor="carol", grace_s=3600),
    )
    ring = KeyRing()
    ring.load(read_keys(store))
    for result in results:
        if isinstance(result, keys.Issued):
            assert ring.authenticate(f"Bearer {result.token}").key_id == key_id
        else:
            assert isinstance(result, UsageError)
            assert "changed while it was being rotated" in result.detail
    assert sum(isinstance(r, keys.Issued) for r in results) == 1
    assert len(actions(store, "key_rotate")) == 1
    assert ring.authenticate(f"Bearer {old.token}").key_id == key_id


def test_a_key_revoked_while_being_rotated_is_not_rotated(store: Store) -> None:
    key_id = make(store).key.id
    (result,) = race(
        store,
        key_id,
        lambda: keys.rotate(store, key_id, actor="carol", grace_s=60),
        meanwhile={"revoked_at_us": now_us(), "revoked_by": "bob"},
    )
    assert isinstance(result, UsageError)
    assert actions(store, "key_rotate") == []
    assert keys.resolve(store, key_id).revoked_by == "bob"


def test_a_key_rotated_while_being_revoked_is_revoked_once(store: Store) -> None:
    key_id = make(store).key.id
    (revoked,) = race(
        store,
        key_id,
        lambda: keys.revoke(store, key_id, actor="carol"),
        meanwhile={"secret_hash": digest("rotated elsewhere")},
    )
    assert isinstance(revoked, keys.ApiKey)
    assert revoked.state(now_us()) == "revoked"
    assert revoked.secret_hash == digest("rotated elsewhere")


# -- audit -------------------------------------------------------------------------


def test_every_change_is_an_audit_action_naming_the_key_and_actor(store: Store) -> None:
    alice = Actor("alice", Origin("cli", os_user="dana", host="build-7"))
    issued = keys.create(
        store,
        "triage-bot",
        scopes=["predict:claims"],
        actor=alice,
        owner="carol",
        agent=True,
        limits={"rpm": 60},
    )
    key_id = issued.key.id
    rotated = keys.rotate(store, key_id, actor=Actor("bob", Origin("admin-api", key="k1")))
    keys.revoke(store, "triage-bot", actor="carol", reason="retired")

    (created,) = actions(store, "key_create")
    assert (created["actor"], created["key"], created["name"]) == ("alice", key_id, "triage-bot")
    assert (created["owner"], created["agent"]) == ("carol", True)
    assert created["scopes"] == ["predict:claims"]
    assert created["limits"] == {"rpm": 60}
    assert created["origin"] == {"channel": "cli", "os_user": "dana", "host": "build-7"}
    assert created["service"] is None

    (rotation,) = actions(store, "key_rotate")
    assert (rotation["actor"], rotation["key"]) == ("bob", key_id)
    assert rotation["origin"] == {"channel": "admin-api", "key": "k1"}
    assert rotation["previous_valid_until_us"] == keys.resolve(store, key_id).previous_until_us

    (revocation,) = actions(store, "key_revoke")
    assert (revocation["actor"], revocation["key"], revocation["reason"]) == (
        "carol",
        key_id,
        "retired",
    )
    assert_nowhere(store, secret_of(issued.token), secret_of(rotated.token))
