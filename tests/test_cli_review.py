"""``prodgate review``: list, next, show, decide, skip on both stores; bad input exits 2."""

from __future__ import annotations

import json

import pytest

from gateway_support import register_and_approve, write_spec
from prodgate.settings import Settings
from prodgate.store.engine import Store, now_us, open_store
from review_support import REVIEW_SPEC, actions, add_item
from test_cli import assert_one_line_error, run


@pytest.fixture
def queued(settings: Settings) -> tuple[Settings, list[str]]:
    """The review spec, version 1 registered by tester, and two items (oldest first)."""
    write_spec(settings, REVIEW_SPEC)
    register_and_approve(settings)
    store = open_store(settings)
    try:
        ids = [
            add_item(store, created_us=now_us() - 2000, reasons=("low_confidence",)),
            add_item(store, created_us=now_us() - 1000, cohort="big"),
        ]
    finally:
        store.dispose()
    return settings, ids


def _store(settings: Settings) -> Store:
    return open_store(settings)


def test_a_reviewer_works_through_the_queue(queued: tuple[Settings, list[str]]) -> None:
    s, (first, second) = queued
    listed = run(s, "review", "list", "claims", "--json")
    assert listed.exit_code == 0, listed.output
    assert [i["id"] for i in json.loads(listed.output)["items"]] == [first, second]
    text = run(s, "review", "list", "--reason", "sampled")
    assert text.exit_code == 0
    assert second in text.output
    assert first not in text.output
    assert second in run(s, "review", "list", "--cohort", "big").output
    got = run(s, "review", "next", "claims", "--by", "bob", "--json")
    assert got.exit_code == 0, got.output
    item = json.loads(got.output)["item"]
    assert item["id"] == first
    assert item["lease"]["claimed_by"] == "bob"
    shown = run(s, "review", "show", first)
    assert "low_confidence" in shown.output
    assert "claimed by bob" in shown.output
    assert "category: auto" in shown.output
    # Explained on the spot (no server has): the callable through the permutation
    # method, over its input fields, the amount (all it reads) first.
    assert "explanation  permutation attributions towards 'routine'" in shown.output
    first_field = shown.output.split("base ")[1].splitlines()[1].split()[0]
    assert first_field == "amount"
    decided = run(s, "review", "decide", first, "--label", "adjuster", "--note", "n", "--by", "bob")
    assert decided.exit_code == 0, decided.output
    assert "decided: adjuster (overrides the model)" in decided.output
    # PRODGATE_USER (alice) acts when --by is not given.
    assert run(s, "review", "skip", second).exit_code == 0
    none = run(s, "review", "next", "claims")
    assert "nothing to review for alice" in none.output
    store = _store(s)
    try:
        assert [a["actor"] for a in actions(store, "review_claim")] == ["bob"]
        assert [a["actor"] for a in actions(store, "review_decide")] == ["bob"]
        (skip,) = actions(store, "review_skip")
        assert skip["actor"] == "alice"
        assert skip["origin"]["channel"] == "cli"
    finally:
        store.dispose()
    assert json.loads(run(s, "review", "list", "--state", "decided", "--json").output)["items"]


def test_bad_input_is_one_line_and_exit_2(queued: tuple[Settings, list[str]]) -> None:
    s, (first, _) = queued
    assert_one_line_error(run(s, "review", "decide", first, "--label", "maybe"), "labels")
    assert_one_line_error(run(s, "review", "decide", first), "--label")
    assert_one_line_error(
        run(s, "review", "decide", first, "--label", "routine", "--value", "2"), "once"
    )
    assert_one_line_error(run(s, "review", "decide", first, "--value", "x"), "number")
    assert_one_line_error(run(s, "review", "show", "nope"), "no review item")
    assert_one_line_error(run(s, "review", "next", "nope"), "nope")
    assert_one_line_error(run(s, "review", "list", "--state", "closed"), "closed")
    # Separation of duties: tester registered version 1.
    refused = run(s, "review", "decide", first, "--label", "routine", "--by", "Tester")
    assert_one_line_error(refused, "registered version 1", "separation of duties")
    assert run(s, "review", "decide", first, "--label", "routine", "--by", "bob").exit_code == 0
    assert_one_line_error(
        run(s, "review", "decide", first, "--label", "routine", "--by", "bob"), "decided already"
    )


def test_stats_and_export_are_part_of_the_group(queued: tuple[Settings, list[str]]) -> None:
    s, _ = queued
    listed = run(s, "review", "--help")
    assert listed.exit_code == 0
    for name in ("list", "next", "show", "decide", "skip", "stats", "export"):
        assert name in listed.output
