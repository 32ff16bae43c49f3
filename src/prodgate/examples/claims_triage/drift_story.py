"""The story's last chapter: production drifts, monitoring sees it, and it passes.

Time is compressed: the story's gateway counts windows of :data:`WINDOW_S` seconds
(the spec says five minutes), flushes them and judges the alert rules every quarter
second. The chapter drives three kinds of traffic through the real gateway:

1. ordinary claims, answered and labelled at once: nothing moves, no alert;
2. the drift the generator's knobs make (claims inflated, a new ``cyber`` claim type
   the contract refuses), and a feature source going stale: the CRM stopped refreshing
   a share of the drifted claims' policyholders (:data:`~prodgate.examples.
   claims_triage.build.DRIFT_STALE_RATE`, 45 days old, past the ``policyholder`` view's
   30-day ttl), so the gateway serves their ``customer_age`` as the view's default,
   null. The labels are held back as they are in a real claims system: the monitor
   names each column as it moves, the alerts fire (``customer-age-missing`` and
   ``policyholder-feed-stale`` among them, while the gateway counts the stale
   lookups), and the label-free estimate of accuracy
   falls while the realised accuracy is not known yet;
3. the labels of the drifted claims arrive (the realised accuracy confirms the
   estimate), and traffic goes back to ordinary: the alerts resolve.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from prodgate.examples.claims_triage.build import DRIFT_STALE_RATE, TRAFFIC
from prodgate.examples.claims_triage.generate import CALLER_FIELDS, LABEL, LABELS, generate
from prodgate.examples.claims_triage.spec import SERVICE
from prodgate.monitor.alerts import states as alert_states
from prodgate.monitor.report import monitor_report
from prodgate.spec import Spec
from prodgate.store.engine import Store, now_us

Echo = Callable[[str], None]

#: The story's window (the spec's is five minutes; the story cannot wait that long).
WINDOW_S = 5.0
#: The drift: claims inflated by this much, a share of claims of a type the contract
#: does not know (and DRIFT_STALE_RATE of their policyholders stale in the CRM).
INFLATION = 3.0
NEW_TYPE = 0.05
#: Longest wait for each turn of the story.
PATIENCE_S = 40.0


def compressed(spec: Spec) -> Spec:
    """*spec* with the claims-triage window shortened to :data:`WINDOW_S`."""
    services = dict(spec.services)
    svc = services[SERVICE]
    services[SERVICE] = replace(svc, monitor=replace(svc.monitor, window_s=WINDOW_S))
    return replace(spec, services=services)


def rows_of(n: int, seed: int, **knobs: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """*n* claims as callers send them (the claim and its ``policy_id``, JSON values,
    nulls for missing; the gateway adds the policy's features) and their labels."""
    frame = generate(n, seed=seed, **knobs)
    inputs = frame[CALLER_FIELDS].astype(object).where(frame[CALLER_FIELDS].notna(), None)
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in inputs.to_dict("records")
    ]
    return rows, [LABELS[int(y)] for y in frame[LABEL]]


def stale_lookups(metrics: str) -> int:
    """The gateway's count of claims-triage rows whose policyholder was stale, from the
    text of its ``/metrics``."""
    pattern = (
        r"^prodgate_feature_lookups_total\{(?=[^}]*service=\"" + re.escape(SERVICE) + r"\")"
        r"(?=[^}]*view=\"policyholder\")(?=[^}]*status=\"stale\")[^}]*\} (\S+)$"
    )
    return sum(int(float(m)) for m in re.findall(pattern, metrics, flags=re.MULTILINE))


@dataclass
class Callers:
    """Claims sent by a few workers; answers labelled at once or kept for later."""

    client: httpx.AsyncClient
    held: list[tuple[str, str]] = field(default_factory=list)  # (inference id, label)
    sent: int = 0
    refused: int = 0

    async def send(
        self,
        rows: list[dict[str, Any]],
        truths: list[str],
        until: Callable[[], bool],
        *,
        label: bool,
        workers: int = 12,
    ) -> bool:
        """Send rows (round and round) until *until* holds; False when patience ran out."""
        counter = itertools.count()
        deadline = time.monotonic() + PATIENCE_S
        done = False

        async def worker() -> None:
            nonlocal done
            while not done and time.monotonic() < deadline:
                i = next(counter) % len(rows)
                r = await self.client.post(
                    f"/v1/services/{SERVICE}/predict", json={"inputs": rows[i]}
                )
                self.sent += 1
                if r.status_code != 200:
                    self.refused += 1
                elif label:
                    await self.feedback(r.json()["id"], truths[i])
                else:
                    self.held.append((r.json()["id"], truths[i]))

        async def judge() -> None:
            nonlocal done
            while not done and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                done = await asyncio.to_thread(until)

        await asyncio.gather(judge(), *(worker() for _ in range(workers)))
        return done

    async def feedback(self, inference_id: str, truth: str) -> None:
        await self.client.post(
            f"/v1/inferences/{inference_id}/feedback",
            json={"label": truth, "source": "claims-system"},
        )

    async def release(self) -> int:
        """Send the labels held back; return how many."""
        held, self.held = self.held, []
        for start in range(0, len(held), 50):
            await asyncio.gather(*(self.feedback(i, t) for i, t in held[start : start + 50]))
        return len(held)


def _firing(store: Store) -> set[str]:
    with store.read() as conn:
        return {s.rule for s in alert_states(conn, SERVICE) if s.state == "firing"}


def _production(report: dict[str, Any]) -> dict[str, Any]:
    return next((v for v in report["versions"] if v["role"] == "production"), {})


def _pct(value: Any) -> str:
    return "unknown" if value is None else f"{value:.1%}"


def _describe(entry: dict[str, Any], echo: Echo) -> list[str]:
    """Echo what moved; return the names of the columns that drifted."""
    moved = []
    for col in entry.get("columns") or []:
        notes = []
        if col.get("drifted"):
            notes.append(f"drifted ({col.get('method')} {col.get('drift'):.3f})")
            moved.append(col["column"])
        ref, cur = col.get("reference_null_rate"), col.get("null_rate")
        if cur is not None and ref is not None and cur - ref > 0.05:
            notes.append(f"empty in {cur:.0%} of rows (reference {ref:.0%})")
        if col.get("out_of_range"):
            notes.append(f"{col['out_of_range']:.0%} out of the reference's range")
        if notes:
            echo(f"    {col['column']}: " + "; ".join(notes))
    for name, v in (entry.get("violations") or {}).items():
        if v.get("count"):
            echo(f"    {name}: {v['count']} request(s) refused by the contract ({v['rate']:.1%})")
    return moved


async def tell(store: Store, spec: Spec, client: httpx.AsyncClient, echo: Echo) -> bool:
    """The chapter; True when it ended as it says."""
    callers = Callers(client)
    ok = True

    def judged() -> bool:  # a window's worth of answers, and the estimate of it
        entry = _production(monitor_report(store, spec, SERVICE, cohorts=False))
        return bool(
            entry.get("requests", 0) >= 200 and (entry.get("estimate") or {}).get("accuracy")
        )

    echo(f"  (time compressed: windows of {WINDOW_S:g} s instead of the spec's five minutes)")
    rows, truths = rows_of(*TRAFFIC["ordinary"])
    ok = await callers.send(rows, truths, judged, label=True) and ok
    before = _production(monitor_report(store, spec, SERVICE, cohorts=False))
    est_before = (before.get("estimate") or {}).get("accuracy")
    drift = before.get("drift") or {}
    share = (
        f"drift share {drift.get('share_drifted', 0):.0%}"
        if drift.get("number_of_tested_columns")
        else "drift not judged yet (too few rows)"
    )
    echo(
        f"  ordinary claims: {before.get('requests', 0)} in the last {WINDOW_S:g} s, {share}, "
        f"estimated accuracy {_pct(est_before)}, firing: {sorted(_firing(store)) or 'none'}"
    )

    echo(
        f"\n  claims inflate x{INFLATION:g}, {NEW_TYPE:.0%} are of a new type, and the CRM "
        f"stopped refreshing {DRIFT_STALE_RATE:.0%} of their policyholders 45 days ago "
        "(the labels come later)"
    )
    wanted = {
        "claim-amounts-moving",
        "customer-age-missing",
        "policyholder-feed-stale",
        "contract-violations",
    }
    stale_before = stale_lookups((await client.get("/metrics")).text)
    n, seed = TRAFFIC["drifted"]
    rows, truths = rows_of(n, seed, inflation=INFLATION, new_claim_type_rate=NEW_TYPE)
    fired = await callers.send(rows, truths, lambda: wanted <= _firing(store), label=False)
    echo(f"  firing: {', '.join(sorted(_firing(store))) or 'none'}")
    # One more window of the drift alone, so that the figures below are of it only.
    settled = time.monotonic() + WINDOW_S
    sent = callers.sent
    await callers.send(rows, truths, lambda: time.monotonic() > settled, label=False)
    stale = stale_lookups((await client.get("/metrics")).text) - stale_before
    echo(
        f"  policyholder lookups stale (older than the view's ttl): {stale}, answered with "
        f"customer_age null ({callers.sent - sent} drifted claims in the last window)"
    )
    ok = ok and stale > 0
    end = now_us()
    during = _production(monitor_report(store, spec, SERVICE, end_us=end, cohorts=False))
    moved = _describe(during, echo)
    est_during = (during.get("estimate") or {}).get("accuracy")
    realised = (during.get("realised") or {}).get("accuracy")
    echo(
        f"  estimated accuracy {_pct(est_before)} -> {_pct(est_during)}, "
        f"before any label (realised: {_pct(realised)})"
    )
    ok = ok and fired and "claim_amount" in moved and realised is None
    ok = ok and est_before is not None and est_during is not None and est_during < est_before

    released = await callers.release()
    labelled = _production(monitor_report(store, spec, SERVICE, end_us=end, cohorts=False))
    confirmed = (labelled.get("realised") or {}).get("accuracy")
    echo(f"  {released} labels arrive: realised accuracy of those claims {_pct(confirmed)}")
    ok = ok and confirmed is not None

    echo("\n  traffic goes back to ordinary")
    rows, truths = rows_of(*TRAFFIC["calm"])
    resolved = await callers.send(rows, truths, lambda: not (wanted & _firing(store)), label=True)
    echo(f"  firing: {', '.join(sorted(_firing(store))) or 'none'} (the alerts resolved)")
    echo(f"  ({callers.sent} requests, {callers.refused} refused by the contract)")
    return ok and resolved
