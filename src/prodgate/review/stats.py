"""How a service's review is going: agreement between reviewers, the automatic path's
accuracy as the sample measures it, overrides, and the queue.

Read only: ``review_items`` and ``review_decisions`` are written by
:mod:`prodgate.review.queue`; this module reads them as they stand.

- Agreement is measured on the ``review`` decisions (an adjudicator breaks a tie and
  is not a rater of the item): Cohen's kappa for each pair of reviewers on the items
  both reviewed, and over everyone Cohen's kappa when there are two reviewers,
  Krippendorff's alpha (nominal) when there are more. Each reviewer's agreement with
  the final label is the share of their reviews of decided items that match it.
- The automatic path's accuracy is estimated from the decided items whose reasons
  include ``sampled`` and whose model decision was ``auto``: an unbiased sample of
  what nobody would otherwise have looked at. Correct means the reviewers did not
  override the model (the item's ``override``, set when it was decided). The interval
  is Wilson's at 95%, overall and per sampling cohort.
- The queue is its current state whatever ``since`` says: open items, items in
  adjudication, claimed ones (a lease that has not expired), the oldest waiting
  item's age and how many are past their deadline. Time to decision is over the
  items decided since ``since``.

A figure that cannot be computed is ``{"value": null, "n": ..., "reason": ...}``:
too few items, or one label only (kappa and alpha are undefined when nobody could
have disagreed by chance), never a number made up to fill the gap.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.monitor.alerts import Figures
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.engine import now_us as wall_clock_us
from prodgate.store.tables import review_decisions, review_items

OPEN, ADJUDICATION, DECIDED = "open", "adjudication", "decided"
STATES = (OPEN, ADJUDICATION, DECIDED)
REVIEW, ADJUDICATE = "review", "adjudicate"
SAMPLED = "sampled"
#: Fewest items a kappa or an alpha is computed on.
MIN_ITEMS = 2
#: The confidence level of the automatic path's interval.
LEVEL = 0.95
#: The alert figures this module gives (``prodgate.spec.monitor`` names them).
FIGURE_OVERDUE, FIGURE_QUEUE = "review_overdue", "review_queue"


def figure(value: float | None, n: int, reason: str | None = None) -> dict[str, Any]:
    """A measured figure with the number of items behind it, or None and why."""
    return {"value": value, "n": n, "reason": None if value is not None else reason}


def label_key(text: str | None) -> str | None:
    """A stored label (JSON text) as one canonical string, so equal labels compare equal
    however they were spelled."""
    if text is None:
        return None
    return orjson.dumps(orjson.loads(text), option=orjson.OPT_SORT_KEYS).decode()


def wilson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson's interval for *k* successes in *n* trials (``n`` > 0)."""
    from scipy.stats import binomtest  # scipy: when measured

    ci = binomtest(k, n).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def kappa(a: Sequence[str], b: Sequence[str]) -> dict[str, Any]:
    """Cohen's kappa of two raters' labels on the same items (scikit-learn's)."""
    n = len(a)
    if n < MIN_ITEMS:
        return figure(None, n, f"too few items reviewed by both ({n}; at least {MIN_ITEMS})")
    if len(set(a) | set(b)) < 2:
        return figure(None, n, "every review gave the same label: kappa is undefined")
    from sklearn.metrics import cohen_kappa_score  # scikit-learn: when measured

    return figure(float(cohen_kappa_score(list(a), list(b))), n)


def alpha(ratings: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """Krippendorff's alpha (nominal) of *ratings* (item -> reviewer -> label); ``n``
    counts the items with at least two reviews (the others hold no pair)."""
    rated = {item: by for item, by in ratings.items() if len(by) >= 2}
    n = len(rated)
    if n < MIN_ITEMS:
        return figure(
            None, n, f"too few items with two reviews or more ({n}; at least {MIN_ITEMS})"
        )
    labels = sorted({label for by in rated.values() for label in by.values()})
    if len(labels) < 2:
        return figure(None, n, "every review gave the same label: alpha is undefined")
    reviewers = sorted({r for by in rated.values() for r in by})
    code = {label: i for i, label in enumerate(labels)}
    data = np.full((len(reviewers), n), np.nan)
    for j, by in enumerate(rated.values()):
        for i, reviewer in enumerate(reviewers):
            if reviewer in by:
                data[i, j] = code[by[reviewer]]
    import krippendorff  # when measured

    value = krippendorff.alpha(
        reliability_data=data,
        value_domain=list(range(len(labels))),
        level_of_measurement="nominal",
    )
    return figure(float(value), n)


@dataclass(frozen=True)
class Queue:
    """A service's queue as it stands at ``now_us``."""

    open: int = 0
    adjudication: int = 0
    decided: int = 0
    claimed: int = 0
    overdue: int = 0
    oldest_created_us: int | None = None
    now_us: int = 0

    @property
    def waiting(self) -> int:
        return self.open + self.adjudication

    @property
    def oldest_age_s(self) -> float | None:
        if self.oldest_created_us is None:
            return None
        return max(0.0, (self.now_us - self.oldest_created_us) / 1e6)

    def as_dict(self) -> dict[str, Any]:
        return {
            "open": self.open,
            "adjudication": self.adjudication,
            "waiting": self.waiting,
            "claimed": self.claimed,
            "overdue": self.overdue,
            "oldest_age_s": self.oldest_age_s,
            "decided": self.decided,
        }


def _count(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def queues(conn: Connection, services: Iterable[str], now_us: int) -> dict[str, Queue]:
    """The queue of each of *services* at *now_us*, in one grouped query."""
    names = list(services)
    c = review_items.c
    leased = c.claimed_by.is_not(None) & (c.lease_until_us > now_us)
    rows = conn.execute(
        sa.select(
            c.service,
            c.state,
            sa.func.count(),
            sa.func.min(c.created_us),
            _count(c.deadline_us < now_us),
            _count(leased),
        )
        .where(c.service.in_(names))
        .group_by(c.service, c.state)
    ).all()
    counts: dict[str, dict[str, Any]] = {name: {"now_us": now_us} for name in names}
    for service, state, n, oldest, overdue, claimed in rows:
        out = counts[service]
        out[state if state in STATES else OPEN] = out.get(state, 0) + int(n)
        if state == DECIDED:
            continue
        out["overdue"] = out.get("overdue", 0) + int(overdue or 0)
        out["claimed"] = out.get("claimed", 0) + int(claimed or 0)
        first = out.get("oldest_created_us")
        out["oldest_created_us"] = int(oldest) if first is None else min(first, int(oldest))
    return {name: Queue(**values) for name, values in counts.items()}


def review_figures(
    store: Store, spec: Spec, service: str, *, span_s: float, now_us: int
) -> Figures:
    """The alert figures of *service*'s review (a ``FiguresSource``): ``review_overdue``
    (items past their deadline) and ``review_queue`` (items waiting for a person), as
    the queue stands at *now_us*; nothing for a service without review."""
    declared = spec.services.get(service)
    if declared is None or not declared.review.on:
        return {}
    with store.read() as conn:
        queue = queues(conn, [service], now_us)[service]
    return {FIGURE_OVERDUE: float(queue.overdue), FIGURE_QUEUE: float(queue.waiting)}


def _accuracy(correct: Sequence[bool]) -> dict[str, Any]:
    n, k = len(correct), sum(correct)
    if n == 0:
        return {**figure(None, 0, "no sampled automatic decision has been reviewed"), "ci": None}
    low, high = wilson(k, n)
    return {**figure(k / n, n), "correct": k, "ci": [low, high], "level": LEVEL}


def _percentiles(seconds: Sequence[float]) -> dict[str, Any]:
    n = len(seconds)
    if n == 0:
        why = "no item has been decided"
        return {"median_s": None, "p90_s": None, "n": 0, "reason": why}
    median, p90 = np.percentile(np.asarray(seconds, dtype=float), [50, 90])
    return {"median_s": float(median), "p90_s": float(p90), "n": n, "reason": None}


def review_stats(
    store: Store,
    spec: Spec,
    service: str,
    since_us: int | None = None,
    *,
    now_us: int | None = None,
) -> dict[str, Any]:
    """The review figures of *service*: agreement, reviewers, the automatic path's
    accuracy, overrides, the queue and time to decision (see the module's docstring).

    *since_us* keeps the items that entered review from then on (the queue's figures
    are its current state regardless). An undeclared service is an
    :class:`~prodgate.exceptions.UnknownServiceError`.
    """
    spec.service(service)
    now = wall_clock_us() if now_us is None else now_us
    c, d = review_items.c, review_decisions.c
    window = [c.service == service]
    if since_us is not None:
        window.append(c.created_us >= since_us)
    with store.read() as conn:
        queue = queues(conn, [service], now)[service]
        decided = conn.execute(
            sa.select(
                c.id,
                c.reasons,
                c.cohort,
                c.decision,
                c.prediction,
                c.final,
                c.override,
                c.created_us,
                c.decided_us,
            ).where(*window, c.state == DECIDED)
        ).all()
        reviews = conn.execute(
            sa.select(d.item_id, d.reviewer, d.label)
            .join(review_items, review_items.c.id == d.item_id)
            .where(*window, d.role == REVIEW, d.label.is_not(None))
            .order_by(d.item_id, d.id)
        ).all()
    ratings: dict[str, dict[str, str]] = defaultdict(dict)
    for item, reviewer, label in reviews:
        key = label_key(label)
        if key is not None:
            ratings[item][reviewer] = key
    finals = {row.id: label_key(row.final) for row in decided}
    return {
        "service": service,
        "since_us": since_us,
        "now_us": now,
        "items": {"decided": len(decided), "reviewed": len(ratings)},
        "agreement": _agreement(ratings),
        "reviewers": _reviewers(ratings, finals),
        "automatic": _automatic(decided),
        "overrides": _overrides(decided),
        "queue": queue.as_dict(),
        "time_to_decision": _percentiles(
            [(r.decided_us - r.created_us) / 1e6 for r in decided if r.decided_us is not None]
        ),
    }


def _agreement(ratings: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    reviewers = sorted({r for by in ratings.values() for r in by})
    pairs = []
    for a, b in itertools.combinations(reviewers, 2):
        both = [by for by in ratings.values() if a in by and b in by]
        pairs.append({"a": a, "b": b, **kappa([by[a] for by in both], [by[b] for by in both])})
    krippendorff_alpha = alpha(ratings)
    if len(reviewers) == 2:
        overall = {"method": "cohen_kappa", **pairs[0]}
        del overall["a"], overall["b"]
    elif len(reviewers) > 2:
        overall = {"method": "krippendorff_alpha", **krippendorff_alpha}
    else:
        overall = {"method": None, **figure(None, 0, "agreement needs two reviewers or more")}
    return {
        "reviewers": len(reviewers),
        "overall": overall,
        "alpha": krippendorff_alpha,
        "pairs": pairs,
    }


def _reviewers(
    ratings: Mapping[str, Mapping[str, str]], finals: Mapping[str, str | None]
) -> list[dict[str, Any]]:
    matches: dict[str, list[bool]] = defaultdict(list)
    reviewed: dict[str, int] = defaultdict(int)
    for item, by in ratings.items():
        final = finals.get(item)
        for reviewer, label in by.items():
            reviewed[reviewer] += 1
            if final is not None:
                matches[reviewer].append(label == final)
    out = []
    for reviewer in sorted(reviewed):
        agreed = matches[reviewer]
        n = len(agreed)
        share = sum(agreed) / n if n else None
        out.append(
            {
                "reviewer": reviewer,
                "reviews": reviewed[reviewer],
                "with_final": figure(share, n, "none of their items has been decided"),
            }
        )
    return out


def _reasons(text: str | None) -> list[str]:
    found = orjson.loads(text) if text else []
    return [str(r) for r in found] if isinstance(found, list) else []


def _automatic(decided: Sequence[Any]) -> dict[str, Any]:
    by_cohort: dict[str | None, list[bool]] = defaultdict(list)
    everything: list[bool] = []
    for row in decided:
        if row.decision != "auto" or SAMPLED not in _reasons(row.reasons):
            continue
        # Correct: the reviewers kept the model's answer (the queue set ``override``
        # when it decided; one rule for what an override is).
        right = row.override is False or (row.override is None and not _overridden(row))
        everything.append(right)
        by_cohort[row.cohort].append(right)
    cohorts = [
        {"cohort": cohort, **_accuracy(values)}
        for cohort, values in sorted(by_cohort.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    ]
    return {"accuracy": _accuracy(everything), "cohorts": cohorts}


def _overridden(row: Any) -> bool:
    """Without a stored ``override``: whether the final differs from the prediction."""
    return row.prediction is None or label_key(row.final) != label_key(row.prediction)


def _overrides(decided: Sequence[Any]) -> dict[str, Any]:
    overrides = [row for row in decided if row.override]
    auto = sum(row.decision == "auto" for row in overrides)
    n = len(decided)
    return {
        "count": len(overrides),
        "of_auto": auto,
        "of_escalated": len(overrides) - auto,
        "decided": n,
        "share": figure(len(overrides) / n if n else None, n, "no item has been decided"),
    }
