"""Two real ``prodgate serve`` processes on one store draw the same review sample: the
items they create are exactly the answered decisions whose id falls in the sample."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from gateway_support import GOOD, SPEC, register_and_deploy, write_spec
from prodgate.pipeline.review_entry import draw
from prodgate.settings import Settings
from prodgate.store.engine import open_store
from prodgate.store.tables import audit_log, review_items
from test_replicas import PREDICT, _replicas

RATE = 0.2
SAMPLED = SPEC.replace("    escalation:\n", f"    review: {{sample: {RATE}}}\n    escalation:\n", 1)


def test_replicas_sample_the_same_ids(settings: Settings) -> None:
    write_spec(settings, SAMPLED)
    register_and_deploy(settings)
    body = {"instances": [{**GOOD, "amount": 100.0 + i} for i in range(20)]}  # all automatic
    with _replicas(settings, 2, {}) as stack:
        bases: list[str] = stack.bases  # type: ignore[attr-defined]
        for i in range(20):
            r = httpx.post(bases[i % 2] + PREDICT, json=body, timeout=30)
            assert r.status_code == 200, r.text
    store = open_store(settings)
    try:
        with store.read() as conn:
            answered = list(
                conn.execute(
                    sa.select(audit_log.c.id).where(
                        audit_log.c.kind == "inference", audit_log.c.status == 200
                    )
                ).scalars()
            )
            items = set(conn.execute(sa.select(review_items.c.id)).scalars())
    finally:
        store.dispose()
    assert len(answered) == 400
    expected = {i for i in answered if draw("claims", i) < RATE}
    assert items == expected
    assert 40 <= len(items) <= 120  # 20% of 400, give or take a binomial's spread


def test_reviewers_on_two_replicas_never_get_the_same_item(settings: Settings) -> None:
    """Two reviewers, each on a replica of their own, take items as fast as they can:
    every item is claimed and decided exactly once."""
    import concurrent.futures

    from gateway_support import bearer, make_key
    from review_support import add_item

    write_spec(settings, SAMPLED)
    register_and_deploy(settings)
    store = open_store(settings)
    try:
        ids = {add_item(store, created_us=1_000_000 + i) for i in range(40)}
    finally:
        store.dispose()
    tokens = [make_key(settings, name, "review") for name in ("ana", "ben")]
    with _replicas(settings, 2, {}) as stack:
        bases: list[str] = stack.bases  # type: ignore[attr-defined]

        def work(base: str, token: str) -> list[str]:
            got: list[str] = []
            with httpx.Client(base_url=base, headers=bearer(token), timeout=30) as client:
                while True:
                    r = client.post("/v1/review/next", json={"service": "claims"})
                    assert r.status_code == 200, r.text
                    item = r.json()["item"]
                    if item is None:
                        return got
                    decided = client.post(
                        f"/v1/review/items/{item['id']}/decision", json={"label": "routine"}
                    )
                    assert decided.status_code == 200, decided.text
                    got.append(item["id"])

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            done = list(pool.map(work, bases, tokens))
    assert sorted(done[0] + done[1]) == sorted(ids)  # each once: no item twice
    assert done[0]
    assert done[1]
