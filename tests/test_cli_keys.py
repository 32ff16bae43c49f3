"""``prodgate keys``: a key is printed once, never listed, and mistakes are one line."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import Result

from prodgate.exceptions import KeyRejectedError
from prodgate.identity.keyring import KeyRing, Principal, read_keys
from prodgate.settings import Settings
from prodgate.store.engine import now_us, open_store
from test_cli import assert_one_line_error, run

TOKEN = re.compile(r"pg_[0-9a-f]{12}_\S+")
DAY_US = 86400 * 10**6


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result


def printed_key(result: Result) -> str:
    """The key a command printed: the one stdout line that is a key, and nowhere else."""
    lines = [line for line in result.stdout.splitlines() if TOKEN.search(line)]
    assert len(lines) == 1, result.stdout
    assert TOKEN.fullmatch(lines[0]), lines[0]
    token = lines[0]
    assert result.stdout.count(token) == 1
    assert token not in result.stderr
    return token


def authenticate(settings: Settings, token: str) -> Principal:
    store = open_store(settings)
    try:
        ring = KeyRing()
        ring.load(read_keys(store))
        return ring.authenticate(f"Bearer {token}")
    finally:
        store.dispose()


def listed(settings: Settings, *args: str) -> list[dict[str, Any]]:
    result = ok(run(settings, "keys", "list", "--json", *args))
    out = json.loads(result.stdout)
    assert isinstance(out, list)
    return out


def test_create_prints_the_key_once(settings: Settings) -> None:
    result = ok(run(settings, "keys", "create", "app", "--scope", "predict:claims", "--rpm", "600"))
    token = printed_key(result)
    assert "shown this once" in result.stderr
    assert "made key" in result.stdout
    assert "for alice: predict:claims" in result.stdout
    assert "limits: rpm=600" in result.stdout
    who = authenticate(settings, token)
    assert (who.name, who.scopes, who.limits) == ("alice", ("predict:claims",), {"rpm": 600})
    assert f"made key {who.key_id} (app)" in result.stdout


def test_create_json_holds_the_key_in_its_key_field(settings: Settings) -> None:
    result = ok(
        run(
            settings,
            "keys",
            "create",
            "triage-bot",
            "--agent",
            "--owner",
            "carol",
            "--scope",
            "predict:*",
            "--scope",
            "feedback:claims",
            "--concurrency",
            "4",
            "--json",
        )
    )
    made = json.loads(result.stdout)
    token = made.pop("key")
    assert TOKEN.fullmatch(token)
    assert token not in json.dumps(made)
    assert "secret_hash" not in made
    assert (made["name"], made["owner"], made["agent"], made["identity"]) == (
        "triage-bot",
        "carol",
        True,
        "triage-bot",
    )
    assert made["scopes"] == ["feedback:claims", "predict:*"]
    assert made["limits"] == {"concurrency": 4}
    assert made["state"] == "active"
    assert made["created_by"] == "alice"
    who = authenticate(settings, token)
    assert (who.key_id, who.name, who.owner, who.agent) == (made["id"], "triage-bot", "carol", True)


def test_token_limits_and_budgets(settings: Settings) -> None:
    made = ok(
        run(
            settings,
            "keys",
            "create",
            "chat",
            "--scope",
            "predict:letters",
            "--rpm",
            "60",
            "--tokens-per-minute",
            "20000",
            "--budget-day",
            "2.50",
            "--budget-month",
            "$100.123456",
        )
    )
    text = "rpm=60, tokens_per_minute=20000, budget_day=$2.50, budget_month=$100.123456"
    assert f"limits: {text}" in made.stdout
    who = authenticate(settings, printed_key(made))
    assert who.limits == {
        "rpm": 60,
        "tokens_per_minute": 20_000,
        "budget_day": 2_500_000,
        "budget_month": 100_123_456,
    }
    assert text in ok(run(settings, "keys", "list")).stdout
    (row,) = listed(settings)
    assert row["limits"] == {
        "rpm": 60,
        "tokens_per_minute": 20_000,
        "budget_day": 2.5,
        "budget_month": 100.123456,
    }
    # The JSON listing's amounts, given back to create, make the same limits.
    again = ok(
        run(
            settings,
            "keys",
            "create",
            "again",
            "--scope",
            "review",
            "--budget-day",
            str(row["limits"]["budget_day"]),
            "--budget-month",
            str(row["limits"]["budget_month"]),
            "--json",
        )
    )
    assert json.loads(again.stdout)["limits"] == {"budget_day": 2.5, "budget_month": 100.123456}


def test_list_never_shows_a_secret(settings: Settings) -> None:
    app = ok(run(settings, "keys", "create", "app", "--scope", "predict:claims"))
    bot = ok(
        run(settings, "keys", "create", "bot", "--agent", "--owner", "carol", "--scope", "review")
    )
    assert "for agent bot, owned by carol: review" in bot.stdout
    tokens = [printed_key(app), printed_key(bot)]
    tokens.append(printed_key(ok(run(settings, "keys", "rotate", "app", "--grace", "1h"))))
    secrets = [t.split("_", 2)[2] for t in tokens]
    for args in (("--json",), ("--json", "--all"), (), ("--all",)):
        result = ok(run(settings, "keys", "list", *args))
        for token, secret in zip(tokens, secrets, strict=True):
            assert token not in result.output
            assert secret not in result.output
        assert "hash" not in result.output
    rows = listed(settings)
    assert [r["name"] for r in rows] == ["app", "bot"]
    assert rows[0]["previous_valid_until_us"] is not None
    text = ok(run(settings, "keys", "list")).stdout
    assert text.splitlines()[0].split() == [
        "ID",
        "NAME",
        "IDENTITY",
        "SCOPES",
        "LIMITS",
        "STATE",
        "EXPIRES",
    ]
    assert "bot (agent of carol)" in text
    assert "active" in text


def test_list_with_no_keys_says_how_to_make_one(settings: Settings) -> None:
    assert "prodgate keys create NAME" in ok(run(settings, "keys", "list")).stdout
    assert listed(settings) == []


def test_expires_sets_an_expiry_about_that_far_ahead(settings: Settings) -> None:
    start = now_us()
    result = ok(
        run(settings, "keys", "create", "app", "--scope", "predict:claims", "--expires", "90d")
    )
    assert "expires:" in result.stdout
    (key,) = listed(settings)
    assert start + 90 * DAY_US <= key["expires_at_us"] <= now_us() + 90 * DAY_US
    ok(run(settings, "keys", "create", "short", "--scope", "review", "--expires", "12h"))
    short = next(k for k in listed(settings) if k["name"] == "short")
    assert abs(short["expires_at_us"] - (now_us() + DAY_US // 2)) < 60 * 10**6


def test_revoke_by_name(settings: Settings) -> None:
    token = printed_key(ok(run(settings, "keys", "create", "app", "--scope", "predict:claims")))
    ok(run(settings, "keys", "create", "other", "--scope", "review"))
    result = ok(run(settings, "keys", "revoke", "app", "--reason", "laptop lost"))
    (revoked,) = [k for k in listed(settings, "--all") if k["name"] == "app"]
    assert result.stdout.strip() == f"revoked key {revoked['id']} (app)"
    assert (revoked["state"], revoked["revoked_by"]) == ("revoked", "alice")
    assert [k["name"] for k in listed(settings)] == ["other"]
    with pytest.raises(KeyRejectedError) as caught:
        authenticate(settings, token)
    assert caught.value.reason == "revoked"
    # Again, by id: refused, one line.
    assert_one_line_error(
        run(settings, "keys", "revoke", revoked["id"]), f"key {revoked['id']} (app) is already"
    )
    # By the whole key, with JSON out.
    other = printed_key(ok(run(settings, "keys", "rotate", "other", "--grace", "0")))
    shown = json.loads(ok(run(settings, "keys", "revoke", other, "--json")).stdout)
    assert (shown["name"], shown["state"]) == ("other", "revoked")
    assert other not in json.dumps(shown)


def test_rotate_with_no_grace(settings: Settings) -> None:
    old = printed_key(ok(run(settings, "keys", "create", "app", "--scope", "predict:claims")))
    result = ok(run(settings, "keys", "rotate", "app", "--grace", "0"))
    new = printed_key(result)
    assert new != old
    assert new.split("_")[1] == old.split("_")[1]  # the same id
    assert "rotated key" in result.stdout
    assert "the old key works until" not in result.stdout
    assert authenticate(settings, new).key_id == new.split("_")[1]
    with pytest.raises(KeyRejectedError) as caught:
        authenticate(settings, old)
    assert caught.value.reason == "unknown"
    for zero in ("0s", "0m", "0h", "0d", "0.0h", " 0 "):
        newer = printed_key(ok(run(settings, "keys", "rotate", "app", "--grace", zero)))
        with pytest.raises(KeyRejectedError):
            authenticate(settings, new)
        new = newer


def test_rotate_keeps_the_old_key_for_its_grace(settings: Settings) -> None:
    old = printed_key(ok(run(settings, "keys", "create", "app", "--scope", "predict:claims")))
    result = ok(run(settings, "keys", "rotate", "app", "--json"))  # 24h by default
    rotated = json.loads(result.stdout)
    new = rotated.pop("key")
    assert new not in json.dumps(rotated)
    start = now_us()
    assert abs(rotated["previous_valid_until_us"] - (start + DAY_US)) < 60 * 10**6
    assert authenticate(settings, old).key_id == rotated["id"]
    assert authenticate(settings, new).key_id == rotated["id"]
    text = ok(run(settings, "keys", "rotate", "app", "--grace", "2h")).stdout
    assert "the old key works until" in text


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (
            ("create", "app", "--scope", "predict:claims", "--scope", "root"),
            ("unknown scope 'root'",),
        ),
        (("create", "app", "--scope", "predict"), ("unknown scope", "audit:read")),
        (("create", "bot", "--agent", "--scope", "review"), ("--owner PERSON",)),
        (("create", "bot", "--agent", "--owner", "", "--scope", "review"), ("--owner PERSON",)),
        (("create", "app", "--scope", "review", "--rpm", "0"), ("--rpm", "0")),
        (("create", "app", "--scope", "review", "--rps", "-3"), ("--rps",)),
        (("create", "app", "--scope", "review", "--rpm", "lots"), ("--rpm",)),
        (("create", "app", "--scope", "review", "--rpm", str(10**30)), ("--rpm must be at most",)),
        (
            ("create", "app", "--scope", "review", "--budget-day", "lots"),
            ("--budget-day must be an amount in USD above 0, like 2.50",),
        ),
        (("create", "app", "--scope", "review", "--budget-month", "0"), ("--budget-month",)),
        (
            ("create", "app", "--scope", "review", "--budget-day", "0.0000001"),
            ("--budget-day is counted in micro-dollars",),
        ),
        (("create", "app", "--scope", "review", "--tokens-per-minute", "0"), ("--tokens-per",)),
        (("create", "app", "--scope", "review", "--expires", "soon"), ("--expires 'soon'",)),
        (("create", "app", "--scope", "review", "--expires", "0d"), ("--expires",)),
        (("create", "app", "--scope", "review", "--expires", "90"), ("--expires '90'",)),
        (("create", "app", "--scope", "review", "--expires", f"{10**15}d"), ("--expires",)),
        (("create", "app"), ("--scope",)),
        (("create", "--scope", "review"), ("NAME",)),
        (("create", "a\tb", "--scope", "review"), ("control characters",)),
        (("revoke", "nope"), ("no key with id or name 'nope'", "prodgate keys list")),
        (("rotate", "nope"), ("no key with id or name 'nope'",)),
        (("revoke", "pg_abcdef123456_topsecret"), ("no key with id 'abcdef123456'",)),
        (("rotate", "app", "--grace", "later"), ("--grace 'later'",)),
        (("rotate", "app", "--grace", "-1h"), ("--grace '-1h'",)),
        (("rotate", "app", "--grace", "0x"), ("--grace '0x'",)),
        (("frobnicate",), ("frobnicate",)),
    ],
)
def test_user_errors_are_one_line(
    sqlite_settings: Settings, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    s = sqlite_settings
    if args[0] == "rotate" and args[1] == "app":
        ok(run(s, "keys", "create", "app", "--scope", "review"))
    result = run(s, "keys", *args)
    assert_one_line_error(result, *needles)
    assert result.stdout == ""
    assert "topsecret" not in result.output
    if args[0] == "create":
        assert listed(s) == []


def test_an_ambiguous_name_lists_the_ids(settings: Settings) -> None:
    for _ in range(2):
        ok(run(settings, "keys", "create", "app", "--scope", "review"))
    ids = [k["id"] for k in listed(settings)]
    for verb in ("revoke", "rotate"):
        assert_one_line_error(run(settings, "keys", verb, "app"), "2 active keys", *ids)
    assert [k["state"] for k in listed(settings)] == ["active", "active"]


def test_the_actor_and_origin_are_recorded(settings: Settings) -> None:
    ok(run(settings, "keys", "create", "app", "--scope", "review", "--by", "bob"))
    ok(run(settings, "keys", "revoke", "app", "--by", "carol", "--reason", "done"))
    history = json.loads(ok(run(settings, "audit", "tail", "--json")).stdout)
    made = next(h for h in history if h["action"] == "key_create")
    revoked = next(h for h in history if h["action"] == "key_revoke")
    (key,) = listed(settings, "--all")
    assert (made["actor"], made["key"], made["owner"]) == ("bob", key["id"], "bob")
    assert (revoked["actor"], revoked["key"], revoked["reason"]) == ("carol", key["id"], "done")
    assert made["origin"]["channel"] == "cli"


def test_keys_help_lists_the_subcommands(sqlite_settings: Settings) -> None:
    settings = sqlite_settings
    result = ok(run(settings, "keys", "--help"))
    commands = result.stdout.split("Commands:")[1].split()
    for sub in ("create", "list", "revoke", "rotate"):
        assert sub in commands
    assert "prodgate keys create app --scope predict:claims-triage" in result.stdout
    assert "--scope" in ok(run(settings, "keys", "create", "--help")).stdout
