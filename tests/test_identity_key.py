"""One key: its token format, its digest, its secret check and what listings show."""

from __future__ import annotations

import re

import pytest

from prodgate.identity.key import (
    ALLOWANCES,
    LIMITS,
    RATES,
    ApiKey,
    digest,
    new_secret,
    new_token,
    shown_limits,
    split_token,
)

NOW = 1_700_000_000_000_000  # a fixed instant, in microseconds
HOUR = 3600 * 1_000_000


def test_a_new_token_splits_back_into_its_id_and_secret() -> None:
    seen = set()
    for _ in range(50):
        key_id, secret, token = new_token()
        assert re.fullmatch(r"[0-9a-f]{12}", key_id)
        assert token == f"pg_{key_id}_{secret}"
        assert split_token(token) == (key_id, secret)
        seen.add(token)
    assert len(seen) == 50


def test_a_new_secret_keeps_the_id() -> None:
    key_id, secret, _ = new_token()
    fresh, token = new_secret(key_id)
    assert fresh != secret
    assert split_token(token) == (key_id, fresh)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "abcdef123456_secret",  # no prefix
        "pk_abcdef123456_secret",  # wrong prefix
        "PG_abcdef123456_secret",
        "pg_abcdef12345_secret",  # id too short
        "pg_abcdef1234567_secret",  # id too long
        "pg_abcdef12345g_secret",  # not hex
        "pg_ABCDEF123456_secret",  # ids are lower case
        "pg_0x1234567890_secret",  # int(id, 16) reads these as numbers
        "pg_-12345678901_secret",
        "pg_+12345678901_secret",
        "pg_ 1234567890a_secret",
        "pg_1234_567890a_secret",
        "pg_abcdef123456",  # no secret
        "pg_abcdef123456_",  # empty secret
        "pg_abcdef123456_" + "s" * 129,  # over-long secret
    ],
)
def test_malformed_tokens_are_none(token: str) -> None:
    assert split_token(token) is None


def test_the_longest_secret_accepted() -> None:
    assert split_token("pg_abcdef123456_" + "s" * 128) == ("abcdef123456", "s" * 128)


def test_the_digest_is_sha256_hex_and_never_the_token() -> None:
    key_id, secret, token = new_token()
    d = digest(secret)
    assert re.fullmatch(r"[0-9a-f]{64}", d)
    assert d == digest(secret)
    assert d not in (secret, token, key_id)
    assert secret not in d
    assert d != digest(token)


def make(secret: str, **fields: object) -> ApiKey:
    values: dict[str, object] = {
        "id": "abcdef123456",
        "name": "app",
        "owner": "alice",
        "agent": False,
        "scopes": ("predict:claims",),
        "limits": {"rpm": 600},
        "secret_hash": digest(secret),
        "created_by": "alice",
        "created_at_us": NOW - HOUR,
        "updated_at_us": NOW - HOUR,
    }
    values.update(fields)
    return ApiKey(**values)  # type: ignore[arg-type]


def test_matches_the_current_secret_only() -> None:
    key = make("current")
    assert key.matches("current", NOW)
    assert not key.matches("other", NOW)
    assert not key.matches("", NOW)
    assert not key.matches(digest("current"), NOW)  # the hash itself is no key


def test_the_previous_secret_matches_only_inside_its_grace_window() -> None:
    key = make("new", previous_hash=digest("old"), previous_until_us=NOW + HOUR)
    assert key.matches("new", NOW)
    assert key.matches("old", NOW)
    assert key.matches("old", NOW + HOUR - 1)
    assert not key.matches("old", NOW + HOUR)
    assert not key.matches("old", NOW + 2 * HOUR)
    assert key.matches("new", NOW + 2 * HOUR)
    # A previous hash without an end of grace is no grace at all.
    assert not make("new", previous_hash=digest("old")).matches("old", NOW)


def test_state_active_revoked_expired() -> None:
    assert make("s").state(NOW) == "active"
    expiring = make("s", expires_at_us=NOW + HOUR)
    assert expiring.state(NOW) == "active"
    assert expiring.state(NOW + HOUR - 1) == "active"
    assert expiring.state(NOW + HOUR) == "expired"
    revoked = make("s", revoked_at_us=NOW - 1, revoked_by="bob", expires_at_us=NOW - 1)
    assert revoked.state(NOW) == "revoked"  # revoked wins over expired


def test_identity_is_the_person_or_the_agent() -> None:
    assert make("s").identity == "alice"
    assert make("s", name="triage-bot", agent=True).identity == "triage-bot"


def test_as_dict_never_holds_the_secret_or_its_hash() -> None:
    secret, old = "the-current-secret", "the-previous-secret"
    key = make(secret, previous_hash=digest(old), previous_until_us=NOW + HOUR)
    shown = key.as_dict(NOW)
    text = repr(shown)
    for hidden in (secret, old, digest(secret), digest(old)):
        assert hidden not in text
    assert "secret_hash" not in shown
    assert "previous_hash" not in shown
    assert shown["id"] == "abcdef123456"
    assert shown["identity"] == "alice"
    assert shown["scopes"] == ["predict:claims"]
    assert shown["limits"] == {"rpm": 600}
    assert shown["state"] == "active"
    assert shown["previous_valid_until_us"] == NOW + HOUR
    assert key.as_dict(NOW + HOUR)["previous_valid_until_us"] is None
    assert make("s", revoked_at_us=NOW).as_dict(NOW)["state"] == "revoked"


def test_budgets_are_shown_in_usd() -> None:
    key = make(
        "s",
        limits={"rpm": 600, "tokens_per_minute": 9000, "budget_day": 2_500_000, "budget_month": 1},
    )
    assert key.as_dict(NOW)["limits"] == {
        "rpm": 600,
        "tokens_per_minute": 9000,
        "budget_day": 2.5,
        "budget_month": 0.000001,
    }
    assert shown_limits({"someday": 5}) == {"someday": 5}  # unknown names as they are


def test_only_request_and_row_limits_are_rates() -> None:
    assert set(RATES) | {"concurrency"} | set(ALLOWANCES) == set(LIMITS)
    assert all(LIMITS[name].period_s > 0 for name in RATES)
    assert all(LIMITS[name].period_s == 0 for name in ALLOWANCES)
    assert {LIMITS[name].unit for name in ALLOWANCES} == {"tokens", "usd_micros"}
