"""Review statistics: agreement (kappa, alpha), reviewers against the final label, the
automatic path's accuracy with its interval, overrides, the queue and its alert figures."""

from __future__ import annotations

import random

import krippendorff
import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from prodgate.exceptions import UnknownServiceError
from prodgate.review.stats import kappa, review_figures, review_stats, wilson
from prodgate.settings import Settings
from prodgate.store.engine import Store
from review_report_support import HOUR, NOW, Item, add, load_spec, row

LABELS = ("routine", "adjuster")


def test_kappa_of_two_reviewers_is_scikit_learns(settings: Settings, store: Store) -> None:
    spec = load_spec(settings)
    rng = random.Random(7)
    a, b, items = [], [], []
    for i in range(40):
        truth = rng.choice(LABELS)
        la = truth if rng.random() < 0.85 else rng.choice(LABELS)
        lb = truth if rng.random() < 0.75 else rng.choice(LABELS)
        a.append(la)
        b.append(lb)
        final = la if la == lb else truth
        adjudication = None if la == lb else ("carol", truth)
        items.append(
            Item(
                row(1000.0 + i),
                "routine",
                reviews={"alice": la, "bob": lb},
                adjudication=adjudication,
                final=final,
            )
        )
    add(store, items)
    stats = review_stats(store, spec, "claims", now_us=NOW)
    overall = stats["agreement"]["overall"]
    assert overall["method"] == "cohen_kappa"
    assert overall["value"] == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)
    assert overall["n"] == 40
    (pair,) = stats["agreement"]["pairs"]
    assert (pair["a"], pair["b"], pair["n"]) == ("alice", "bob", 40)
    assert pair["value"] == overall["value"]
    # The adjudicator is not a rater; alpha over the two agrees with its own package.
    codes = {"routine": 0, "adjuster": 1}
    expected = krippendorff.alpha(
        reliability_data=[[codes[x] for x in a], [codes[x] for x in b]],
        level_of_measurement="nominal",
    )
    assert stats["agreement"]["alpha"]["value"] == pytest.approx(expected)
    assert stats["agreement"]["reviewers"] == 2
    # Each reviewer against the final label.
    by = {r["reviewer"]: r for r in stats["reviewers"]}
    finals = [it.final for it in items]
    share_a = sum(x == f for x, f in zip(a, finals, strict=True)) / 40
    assert by["alice"]["with_final"] == {"value": share_a, "n": 40, "reason": None}
    assert by["bob"]["reviews"] == 40


def test_alpha_over_three_reviewers_is_krippendorffs(settings: Settings, store: Store) -> None:
    spec = load_spec(settings)
    rng = random.Random(3)
    people = ("alice", "bob", "carol")
    matrix = np.full((3, 30), np.nan)
    items = []
    for j in range(30):
        truth = rng.choice(LABELS)
        reviews = {}
        for i, who in enumerate(rng.sample(people, rng.choice((2, 3)))):
            label = truth if rng.random() < 0.8 else rng.choice(LABELS)
            reviews[who] = label
            matrix[people.index(who), j] = LABELS.index(label)
        del i
        items.append(Item(row(500.0 + j), "routine", reviews=reviews, final=truth))
    add(store, items)
    agreement = review_stats(store, spec, "claims", now_us=NOW)["agreement"]
    assert agreement["overall"]["method"] == "krippendorff_alpha"
    expected = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert agreement["overall"]["value"] == pytest.approx(expected)
    assert agreement["overall"]["n"] == 30
    assert len(agreement["pairs"]) == 3
    for pair in agreement["pairs"]:
        both = ~np.isnan(matrix[people.index(pair["a"])]) & ~np.isnan(
            matrix[people.index(pair["b"])]
        )
        assert pair["n"] == int(both.sum())
        x, y = matrix[people.index(pair["a"])][both], matrix[people.index(pair["b"])][both]
        assert pair["value"] == pytest.approx(cohen_kappa_score(x, y))


def test_automatic_accuracy_with_a_wilson_interval_by_cohort(
    settings: Settings, store: Store
) -> None:
    spec = load_spec(settings)
    items = []
    # 17 of 20 sampled automatic decisions kept, 4 of 5 in the large cohort.
    for i in range(20):
        final = "routine" if i < 17 else "adjuster"
        items.append(Item(row(100.0 + i), "routine", reviews={"alice": final}))
    for i in range(5):
        final = "adjuster" if i < 4 else "routine"
        items.append(Item(row(6000.0 + i), "adjuster", cohort="large", reviews={"bob": final}))
    # Escalations and unsampled items are not part of the estimate.
    items.append(
        Item(
            row(30000.0),
            "adjuster",
            decision="escalated",
            reasons=("rule:huge",),
            reviews={"bob": "routine"},
        )
    )
    items.append(
        Item(
            row(50.0),
            "routine",
            decision="escalated",
            reasons=("low_confidence",),
            reviews={"alice": "adjuster"},
        )
    )
    add(store, items)
    stats = review_stats(store, spec, "claims", now_us=NOW)
    accuracy = stats["automatic"]["accuracy"]
    assert (accuracy["n"], accuracy["correct"]) == (25, 21)
    assert accuracy["value"] == pytest.approx(21 / 25)
    ci = binomtest(21, 25).proportion_ci(method="wilson")
    assert accuracy["ci"] == pytest.approx([ci.low, ci.high])
    assert accuracy["ci"] == pytest.approx(list(wilson(21, 25)))
    cohorts = {c["cohort"]: c for c in stats["automatic"]["cohorts"]}
    assert cohorts["large"]["value"] == pytest.approx(4 / 5)
    assert cohorts[None]["n"] == 20
    assert stats["overrides"]["count"] == 3 + 1 + 2
    assert stats["overrides"]["of_auto"] == 4
    assert stats["overrides"]["of_escalated"] == 2
    # One reviewer per item: no pair, no agreement; said so, with no number.
    agreement = stats["agreement"]
    assert agreement["pairs"] == [
        {"a": "alice", "b": "bob", "value": None, "n": 0, "reason": agreement["pairs"][0]["reason"]}
    ]
    assert "too few" in agreement["pairs"][0]["reason"]
    assert agreement["overall"]["value"] is None
    assert agreement["alpha"]["value"] is None


def test_too_few_items_give_null_with_the_reason(settings: Settings, store: Store) -> None:
    spec = load_spec(settings)
    stats = review_stats(store, spec, "claims", now_us=NOW)
    assert stats["agreement"]["overall"] == {
        "method": None,
        "value": None,
        "n": 0,
        "reason": "agreement needs two reviewers or more",
    }
    assert stats["automatic"]["accuracy"]["value"] is None
    assert stats["automatic"]["accuracy"]["ci"] is None
    assert "no sampled" in stats["automatic"]["accuracy"]["reason"]
    assert stats["time_to_decision"]["median_s"] is None
    assert stats["queue"]["oldest_age_s"] is None
    # One shared item: kappa is not computed on it.
    add(
        store,
        [
            Item(
                row(10.0),
                "routine",
                reviews={"alice": "routine", "bob": "adjuster"},
                adjudication=("carol", "routine"),
            )
        ],
    )
    overall = review_stats(store, spec, "claims", now_us=NOW)["agreement"]["overall"]
    assert (overall["value"], overall["n"]) == (None, 1)
    assert "too few items" in overall["reason"]
    # Everyone always says the same: kappa is undefined, not 1 nor 0.
    assert kappa(["a", "a", "a"], ["a", "a", "a"])["reason"].endswith("kappa is undefined")


def test_queue_figures_and_time_to_decision(settings: Settings, store: Store) -> None:
    spec = load_spec(settings)
    add(
        store,
        [
            # Waiting: one open and past its deadline, one claimed, one in adjudication.
            Item(row(1.0), "routine", created_us=NOW - 3 * HOUR),
            Item(
                row(2.0),
                "routine",
                created_us=NOW - HOUR // 2,
                claimed_by="alice",
                lease_until_us=NOW + 60_000_000,
            ),
            Item(
                row(3.0),
                "routine",
                created_us=NOW - HOUR // 4,
                claimed_by="bob",
                lease_until_us=NOW - 1,
            ),  # an expired lease: not claimed
            Item(
                row(4.0),
                "routine",
                state="adjudication",
                reviews={"alice": "routine", "bob": "adjuster"},
                created_us=NOW - 2 * HOUR,
            ),
            # Decided in 10, 20 and 60 minutes.
            Item(
                row(5.0),
                "routine",
                reviews={"alice": "routine"},
                created_us=NOW - 5 * HOUR,
                decided_us=NOW - 5 * HOUR + 600_000_000,
            ),
            Item(
                row(6.0),
                "routine",
                reviews={"alice": "routine"},
                created_us=NOW - 5 * HOUR,
                decided_us=NOW - 5 * HOUR + 1_200_000_000,
            ),
            Item(
                row(7.0),
                "routine",
                reviews={"alice": "routine"},
                created_us=NOW - 30 * HOUR,
                decided_us=NOW - 29 * HOUR,
            ),
        ],
    )
    stats = review_stats(store, spec, "claims", now_us=NOW)
    assert stats["queue"] == {
        "open": 3,
        "adjudication": 1,
        "waiting": 4,
        "claimed": 1,
        "overdue": 2,
        "oldest_age_s": 3 * 3600.0,
        "decided": 3,
    }
    ttd = stats["time_to_decision"]
    assert ttd["n"] == 3
    assert ttd["median_s"] == pytest.approx(1200.0)
    assert ttd["p90_s"] == pytest.approx(np.percentile([600, 1200, 3600], 90))
    # Since: the decided items of the last day only; the queue is as it stands.
    recent = review_stats(store, spec, "claims", since_us=NOW - 24 * HOUR, now_us=NOW)
    assert recent["time_to_decision"]["n"] == 2
    assert recent["queue"] == stats["queue"]
    assert review_figures(store, spec, "claims", span_s=300.0, now_us=NOW) == {
        "review_overdue": 2.0,
        "review_queue": 4.0,
    }


def test_no_review_no_figures_and_unknown_service(settings: Settings, store: Store) -> None:
    from test_evaluation_store import SPEC as PLAIN

    spec = load_spec(settings, PLAIN)
    assert review_figures(store, spec, "claims", span_s=60.0, now_us=NOW) == {}
    assert review_figures(store, spec, "nope", span_s=60.0, now_us=NOW) == {}
    with pytest.raises(UnknownServiceError, match="unknown service 'nope'"):
        review_stats(store, spec, "nope")
