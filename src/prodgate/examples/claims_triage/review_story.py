"""Step 8 of the claims-triage story: people review what the gateway escalated or
sampled, and their decisions become ground truth.

A batch of new claims arrives whose outcomes nobody knows yet. Every high-value claim
(20,000 and more) is escalated by the spec's review rule to two reviewers; 5% of the
automatic decisions are sampled, by inference id, for one. Two simulated adjusters
with known error rates (:data:`REVIEWERS`) work through the queue over the HTTP API,
each with a key of scope ``review``; where they disagree on a high-value claim, the
claims lead adjudicates. ``review stats`` then gives their agreement (Cohen's kappa)
and the automatic path's accuracy as the sample estimates it, which the story
compares with the truth the generator knows.

The queue also holds what steps 5 to 7 sent; those claims' outcomes came from the
claims system, and a simulated reviewer judges them against that.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from prodgate.examples.claims_triage.build import TRAFFIC
from prodgate.examples.claims_triage.drift_story import rows_of
from prodgate.examples.claims_triage.generate import HIGH_VALUE
from prodgate.examples.claims_triage.spec import SERVICE
from prodgate.identity import keys
from prodgate.review.stats import review_stats
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, feedback, review_items

Echo = Callable[[str], None]

#: The simulated reviewers and how often each gets a claim wrong.
REVIEWERS = {"adjuster-ana": 0.04, "adjuster-ben": 0.12}
#: Who settles a high-value claim the two reviewers disagree on (never wrong here).
ADJUDICATOR = "claims-lead"
SEED = 8


def _key(store: Store, person: str) -> str:
    """A key of scope ``review`` for *person* (the reviewer's identity)."""
    return keys.create(
        store, f"review-{person}", scopes=["review"], actor="claims-lead", owner=person
    ).token


async def _admitted(client: httpx.AsyncClient, token: str, patience_s: float = 10.0) -> None:
    """Wait until the gateway knows the new keys (it reloads them on a change)."""
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(int(patience_s / 0.1)):
        r = await client.get("/v1/review/items", params={"limit": 1}, headers=headers)
        if r.status_code == 200:
            return
        await asyncio.sleep(0.1)


async def _send(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each claim through the gateway, a few at a time; the answers in order."""
    answers: list[dict[str, Any]] = [{} for _ in rows]
    path = f"/v1/services/{SERVICE}/predict"

    async def one(i: int) -> None:
        r = await client.post(path, json={"inputs": rows[i]})
        if r.status_code == 200:
            answers[i] = r.json()

    for start in range(0, len(rows), 16):
        await asyncio.gather(*(one(i) for i in range(start, min(start + 16, len(rows)))))
    return answers


async def _work(
    client: httpx.AsyncClient,
    token: str,
    truth: Callable[[str], str | None],
    error_rate: float,
    rng: random.Random,
) -> int:
    """One reviewer: claim the next item, decide it, until nothing is left for them."""
    headers = {"Authorization": f"Bearer {token}"}
    done = 0
    while True:
        r = await client.post("/v1/review/next", json={"service": SERVICE}, headers=headers)
        r.raise_for_status()
        item = r.json()["item"]
        if item is None:
            return done
        label = truth(item["id"]) or item["prediction"]
        if rng.random() < error_rate:
            label = "routine" if label == "adjuster" else "adjuster"
        decided = await client.post(
            f"/v1/review/items/{item['id']}/decision", json={"label": label}, headers=headers
        )
        decided.raise_for_status()
        done += 1


def _known_outcomes(store: Store) -> dict[str, str]:
    """The outcomes the claims system reported for the earlier steps' decisions."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(feedback.c.inference_id, feedback.c.value).where(
                feedback.c.service == SERVICE, feedback.c.source == "claims-system"
            )
        ).all()
    return {str(i): str(orjson.loads(v)) for i, v in rows}


def _truth(store: Store, known: dict[str, str]) -> tuple[float, float]:
    """The automatic path's true accuracy: on the sampled decisions people reviewed,
    and on every automatic decision of the service whose outcome the story knows."""
    with store.read() as conn:
        sampled = {
            str(i)
            for i, reasons in conn.execute(
                sa.select(review_items.c.id, review_items.c.reasons).where(
                    review_items.c.service == SERVICE,
                    review_items.c.decision == "auto",
                    review_items.c.state == "decided",
                )
            )
            if "sampled" in orjson.loads(reasons)
        }
        decisions = conn.execute(
            sa.select(audit_log.c.id, audit_log.c.payload).where(
                audit_log.c.service == SERVICE,
                audit_log.c.kind == "inference",
                audit_log.c.action == "predict",
                audit_log.c.status == 200,
                audit_log.c.decision == "auto",
            )
        ).all()
    right = {
        str(i): orjson.loads(p)["output"]["prediction"] == known[str(i)]
        for i, p in decisions
        if str(i) in known
    }
    on_sample = [right[i] for i in sampled if i in right]
    return _share(on_sample), _share(list(right.values()))


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _pct(figure: dict[str, Any]) -> str:
    value = figure.get("value")
    return f"{value:.1%}" if value is not None else f"n/a ({figure.get('reason')})"


async def tell(store: Store, spec: Spec, client: httpx.AsyncClient, echo: Echo) -> bool:
    """Run step 8; True when every item was decided and the figures could be computed."""
    rows, truths = rows_of(*TRAFFIC["reviewed"])
    answers = await _send(client, rows)
    outcome = {a["id"]: t for a, t in zip(answers, truths, strict=True) if a}
    high = [
        a["id"]
        for a, row in zip(answers, rows, strict=True)
        if a and row["claim_amount"] >= HIGH_VALUE
    ]
    with store.read() as conn:
        entered = {
            str(i): (str(r), int(n))
            for i, r, n in conn.execute(
                sa.select(
                    review_items.c.id, review_items.c.reasons, review_items.c.reviewers
                ).where(review_items.c.id.in_(list(outcome)))
            )
        }
        waiting = conn.execute(
            sa.select(sa.func.count()).where(
                review_items.c.service == SERVICE, review_items.c.state != "decided"
            )
        ).scalar_one()
    sampled = sum("sampled" in reasons for reasons, _ in entered.values())
    auto = [a for a in answers if a and a["decision"] == "auto"]
    both = sum(1 for i in high if entered.get(i, ("", 0))[1] == 2)
    echo(f"  {len(outcome)} new claims: {len(high)} of {HIGH_VALUE:,} or more, each to two people")
    echo(
        f"    ({both} of them in the queue with two reviewers), {len(auto)} decided automatically,"
    )
    echo(f"    {sampled} sampled for review; {waiting} items wait in the queue in all")
    known = {**_known_outcomes(store), **outcome}
    rng = random.Random(SEED)
    tokens = {person: _key(store, person) for person in (*REVIEWERS, ADJUDICATOR)}
    await _admitted(client, tokens[ADJUDICATOR])
    # Both adjusters work until neither finds anything: one may stop while the other
    # holds an item that still needs a second review.
    rngs = {p: random.Random(rng.random()) for p in REVIEWERS}
    counts = [0] * len(REVIEWERS)
    while True:
        done = await asyncio.gather(
            *(_work(client, tokens[p], known.get, rate, rngs[p]) for p, rate in REVIEWERS.items())
        )
        counts = [a + b for a, b in zip(counts, done, strict=True)]
        if not any(done):
            break
    adjudicated = await _work(client, tokens[ADJUDICATOR], known.get, 0.0, rng)
    for (person, rate), n in zip(REVIEWERS.items(), counts, strict=True):
        echo(f"  {person} (wrong {rate:.0%} of the time) decided {n} items")
    echo(f"  {ADJUDICATOR} settled {adjudicated} disagreements")
    stats = await asyncio.to_thread(review_stats, store, spec, SERVICE)
    pair = stats["agreement"]["overall"]
    if pair.get("value") is not None:
        echo(
            f"  the two adjusters' agreement: Cohen's kappa {pair['value']:.3f} "
            f"on {pair['n']} claims"
        )
    else:
        echo(f"  the two adjusters' agreement: n/a ({pair.get('reason')})")
    for each in stats["reviewers"]:
        agreed = each["with_final"]
        echo(
            f"    {each['reviewer']} agrees with the final label on {_pct(agreed)} of {agreed['n']}"
        )
    accuracy = stats["automatic"]["accuracy"]
    interval = ""
    if accuracy.get("ci"):
        interval = f" [{accuracy['ci'][0]:.1%}, {accuracy['ci'][1]:.1%}]"
    echo(
        f"  the automatic path's accuracy as the reviewers judged {accuracy['n']} sampled "
        f"decisions: {_pct(accuracy)}{interval}"
    )
    same, every = await asyncio.to_thread(_truth, store, known)
    echo(
        f"    the truth the generator knows: {same:.1%} on those same decisions, "
        f"{every:.1%} on all the story's automatic decisions"
    )
    echo("    (a sample is as good as its reviewers: their mistakes read as the model's)")
    queue = stats["queue"]
    echo(f"  queue: {queue['open']} open, {queue['adjudication']} in adjudication")
    return queue["open"] == 0 and queue["adjudication"] == 0 and pair.get("value") is not None
