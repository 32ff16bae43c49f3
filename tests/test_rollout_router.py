"""The traffic split: sticky, uniform, monotone routing by key; random routing without."""

from __future__ import annotations

import random

import pytest

from prodgate.rollout.router import Router, Split, bucket

KEYS = [f"customer-{i}" for i in range(100_000)]


def canary_keys(router: Router, split: Split) -> set[str]:
    return {k for k in KEYS if router.choose("claims", split, k) == split.canary}


@pytest.mark.parametrize("weight", [0.05, 0.25, 0.5])
def test_keyed_shares_match_the_weight(weight: float) -> None:
    router, split = Router(), Split(1, 2, weight)
    picks = [router.choose("claims", split, k) for k in KEYS]
    assert abs(picks.count(2) / len(KEYS) - weight) < 0.01
    assert abs(picks.count(1) / len(KEYS) - (1 - weight)) < 0.01
    assert picks.count(1) + picks.count(2) == len(KEYS)


def test_a_key_keeps_its_version_while_the_split_stands() -> None:
    split = Split(1, 2, 0.3)
    first = [Router().choose("claims", split, k) for k in KEYS[:5000]]
    # another router (another gateway replica) and another pass agree
    again = [Router(random.Random(7)).choose("claims", split, k) for k in KEYS[:5000]]
    assert first == again


def test_raising_the_weight_only_moves_keys_to_the_canary() -> None:
    router = Router()
    at_5 = canary_keys(router, Split(1, 2, 0.05))
    at_25 = canary_keys(router, Split(1, 2, 0.25))
    at_50 = canary_keys(router, Split(1, 2, 0.5))
    assert at_5 <= at_25 <= at_50
    assert len(at_5) < len(at_25) < len(at_50)


def test_each_canary_samples_its_own_keys() -> None:
    router = Router()
    v2 = canary_keys(router, Split(1, 2, 0.25))
    v3 = canary_keys(router, Split(1, 3, 0.25))
    overlap = len(v2 & v3) / len(v2)
    assert abs(overlap - 0.25) < 0.02  # independent, not the same unlucky customers


def test_weight_zero_and_one() -> None:
    router = Router()
    assert all(router.choose("claims", Split(1, 2, 0.0), k) == 1 for k in KEYS[:2000])
    assert all(router.choose("claims", Split(1, 2, 1.0), k) == 2 for k in KEYS[:2000])
    assert all(router.choose("claims", Split(1, 2, 0.0)) == 1 for _ in range(2000))
    assert all(router.choose("claims", Split(1, 2, 1.0)) == 2 for _ in range(2000))


def test_no_canary_means_production() -> None:
    router = Router()
    assert router.choose("claims", Split(1), "k") == 1
    assert router.choose("claims", Split(1, None, 0.5), "k") == 1
    assert router.choose("claims", Split(None)) is None


def test_missing_production_is_not_replaced_by_the_canary() -> None:
    # Production not loaded: its share must fail (503), not flood the canary.
    router = Router()
    chosen = [router.choose("claims", Split(None, 2, 0.1), k) for k in KEYS[:10_000]]
    assert 0.08 < chosen.count(2) / len(chosen) < 0.12
    assert chosen.count(None) == len(chosen) - chosen.count(2)


def test_random_routing_share() -> None:
    router = Router(random.Random(42))
    split = Split(1, 2, 0.25)
    picks = [router.choose("claims", split) for _ in range(100_000)]
    assert abs(picks.count(2) / len(picks) - 0.25) < 0.01
    assert picks.count(1) + picks.count(2) == len(picks)


def test_random_routing_is_reproducible_with_a_seed() -> None:
    split = Split(1, 2, 0.5)
    r1, r2 = Router(random.Random(3)), Router(random.Random(3))
    assert [r1.choose("claims", split) for _ in range(500)] == [
        r2.choose("claims", split) for _ in range(500)
    ]


def test_bucket_is_in_the_unit_interval() -> None:
    values = [bucket("claims", 2, k) for k in KEYS[:10_000]]
    assert all(0.0 <= u < 1.0 for u in values)
    assert bucket("claims", 2, "x") == bucket("claims", 2, "x")
    assert bucket("claims", 2, "x") != bucket("other", 2, "x")


def test_split_rejects_a_weight_outside_0_1() -> None:
    with pytest.raises(ValueError, match="canary_weight"):
        Split(1, 2, 1.5)
    with pytest.raises(ValueError, match="canary_weight"):
        Split(1, 2, -0.1)
