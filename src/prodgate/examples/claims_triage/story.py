"""The claims-triage story, told by ``prodgate demo --story`` without a person.

- v1, the pilot's shallow model, passes its gates, is approved by two people and
  deployed;
- v2 drops the "outliers" (claims of 20,000 and more) before training: better accuracy
  overall, much worse on the high-value claims that cost the most. Its gates fail and
  its approval is refused;
- v3, a deeper model, passes its gates, is approved by two people, rolls out as a
  canary under simulated traffic with feedback, and is promoted;
- v4, a rushed hotfix approved with its gates overridden, is slow and fails on travel
  claims: its canary is rolled back automatically;
- production drifts, and monitoring says so (:mod:`.drift_story`);
- people review the escalated and sampled decisions (:mod:`.review_story`).

Everything goes through the same library calls as the CLI, and the gateway runs
in-process with its rollout controller, so the history at the end is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from prodgate import spec as spec_module
from prodgate.evaluation import evaluate_version
from prodgate.examples.claims_triage import drift_story, review_story
from prodgate.examples.claims_triage.build import TRAFFIC, BuildResult, load_features
from prodgate.examples.claims_triage.generate import LABEL
from prodgate.examples.claims_triage.spec import SERVICE
from prodgate.examples.claims_triage.train import save, train
from prodgate.exceptions import ApprovalRefused
from prodgate.identity import keys
from prodgate.registry import approvals, versions
from prodgate.registry.fingerprint import sha256_file
from prodgate.rollout import commands
from prodgate.rollout import split as deployments
from prodgate.rollout.status import status as rollout_status
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store

Echo = Callable[[str], None]

APPROVERS = ("claims-lead", "risk-officer")
AUTHOR = "data-scientist"
HOTFIX = "prodgate.examples.claims_triage.story:hotfix"


def hotfix(rows: list[dict[str, Any]]) -> list[dict[str, float]]:
    """v4: a rushed rule-of-thumb 'hotfix'. Slow, and it breaks on travel claims."""
    time.sleep(0.15)
    out = []
    for row in rows:
        if row["claim_type"] == "travel":
            raise ValueError("hotfix: travel claims are not handled")
        risk = 0.2 + 0.5 * (row["days_to_report"] > 14) + 0.2 * (not row["police_report"])
        p = min(0.95, risk)
        out.append({"routine": 1.0 - p, "adjuster": p})
    return out


def prepare_models(result: BuildResult) -> dict[str, Path]:
    """v2 and v3 model files beside the example's v1 (trained once, then reused)."""
    paths = {
        "v2": result.directory / "model_v2_outliers_dropped.skops",
        "v3": result.directory / "model_v3_deep.skops",
    }
    if all(p.is_file() for p in paths.values()):
        return paths
    frame = pd.read_parquet(result.train_data)
    if not paths["v2"].is_file():
        save(train(frame[frame["claim_amount"] < 20_000], seed=7, variant="deep"), paths["v2"])
    if not paths["v3"].is_file():
        save(train(frame, seed=7, variant="deep"), paths["v3"])
    return paths


def _find(store: Store, service: str, sha: str) -> int | None:
    with store.read() as conn:
        found = versions.list_versions(conn, service)
    return next((v.number for v in found if v.sha256 == sha), None)


def register_evaluated(
    store: Store,
    service: ServiceSpec,
    path: Path,
    result: BuildResult,
    *,
    note: str,
    echo: Echo,
) -> tuple[int, bool]:
    """Register *path* (once) and evaluate it on the holdout; (version, gates passed)."""
    number = _find(store, service.name, sha256_file(path))
    if number is None:
        number = versions.register(
            store, service, str(path), actor=AUTHOR, data=result.train_data, note=note
        ).number
        echo(f"  registered version {number}: {note}")
    stored = evaluate_version(
        store, service, number, result.holdout_data, LABEL, actor=AUTHOR
    ).result
    hv = next(c for c in stored["cohorts"] if c["name"] == "high_value")
    echo(
        f"  evaluated version {number}: accuracy {stored['metrics']['accuracy']:.1%} overall, "
        f"{hv['metrics']['accuracy']:.1%} on high-value claims; "
        f"cost per decision {stored['business']['cost_per_decision']:.2f}; "
        f"gates {'passed' if stored['passed'] else 'FAILED'}"
    )
    for gate in stored["gates"]:
        if not gate["passed"]:
            echo(f"    gate failed: {gate['gate']} (measured {gate['value']:.3f})")
    return number, bool(stored["passed"])


def approve_all(store: Store, service: ServiceSpec, number: int, echo: Echo, **kw: Any) -> None:
    with store.read() as conn:
        done = {a.approver for a in approvals.list_approvals(conn, service.name, number)}
    for who in APPROVERS:
        if who not in done:
            approvals.approve(store, service, number, by=who, **kw)
            echo(f"  version {number} approved by {who}")


def ensure_v1(store: Store, service: ServiceSpec, result: BuildResult, echo: Echo) -> int:
    """v1 registered, evaluated, approved by two people and in production."""
    with store.read() as conn:
        dep = deployments.get_deployment(conn, service.name)
    if dep is not None and dep.production_version is not None:
        echo(f"  version {dep.production_version} is in production")
        return dep.production_version
    number, passed = register_evaluated(
        store, service, result.model, result, note="pilot model (shallow boosting)", echo=echo
    )
    if not passed:
        raise RuntimeError("the example's v1 failed its gates; the example is broken")
    approve_all(store, service, number, echo, note="pilot reviewed")
    deployments.deploy(store, service, number, actor="claims-lead", reason="first release")
    echo(f"  version {number} deployed to production")
    return number


@dataclass
class Traffic:
    """Simulated callers: predictions with routing keys, then the true label as feedback."""

    client: httpx.AsyncClient
    rows: list[dict[str, Any]]
    truths: list[str]
    sent: int = 0
    failed: int = 0

    @classmethod
    def make(cls, client: httpx.AsyncClient) -> Traffic:
        rows, truths = drift_story.rows_of(*TRAFFIC["canary"])
        return cls(client, rows, truths)

    async def run(self, until: Callable[[], bool], workers: int = 16, timeout: float = 90) -> None:
        counter = itertools.count()
        deadline = time.monotonic() + timeout
        path = f"/v1/services/{SERVICE}/predict"

        async def worker() -> None:
            while not until() and time.monotonic() < deadline:
                i = next(counter) % len(self.rows)
                body = {"inputs": self.rows[i], "routing_key": f"claim-{random.random()}"}
                r = await self.client.post(path, json=body)
                self.sent += 1
                if r.status_code != 200:
                    self.failed += 1
                    continue
                await self.client.post(
                    f"/v1/inferences/{r.json()['id']}/feedback",
                    json={"label": self.truths[i], "source": "claims-system"},
                )

        await asyncio.gather(*(worker() for _ in range(workers)))


async def _canary(
    store: Store, service: ServiceSpec, number: int, traffic: Traffic, echo: Echo
) -> str:
    """Start a canary of *number*, drive traffic until it ends; return its final state."""
    r = commands.start(store, service, number, actor="claims-lead", reason="story")
    echo(f"  canary of version {number} started at {r.weight:.0%}")
    seen: list[str] = []
    final: dict[str, Any] = {}

    def finished() -> bool:
        with store.read() as conn:
            info = rollout_status(conn, service.name)
        at = f" at {info['weight']:.0%}" if info["active"] else ""  # ended: no canary share
        mark = f"{info['state']}{at}, {info['failures']} failure(s)"
        if not seen or seen[-1] != mark:
            seen.append(mark)
            echo(f"    rollout: {mark}")
        final.update(info)
        return not info["active"]

    sent = traffic.sent
    await traffic.run(lambda: finished())
    echo(f"    ({traffic.sent - sent} requests sent meanwhile)")
    return str(final.get("state"))


@contextlib.asynccontextmanager
async def in_process(
    settings: Settings, spec: Spec, token: str, alerts_every: float = 0.0
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway in this process with its rollout controller (judging every 0.25 s,
    picking up changes every 0.1 s), and a client calling it with *token*. Alert rules
    are judged every *alerts_every* seconds (0: not at all, so that one story does not
    judge another's service on windows it never meant to compress)."""
    from prodgate.server.app import create_app

    story = settings.with_(
        controller_interval=0.25,
        refresh_interval=0.1,
        monitor_interval=alerts_every,
        monitor_flush=0.25,
    )
    app = create_app(story, spec)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://prodgate",
            timeout=30,
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            yield client


async def _tell(settings: Settings, store: Store, result: BuildResult, echo: Echo) -> bool:
    spec = spec_module.load(result.spec)
    service = spec.service(SERVICE)
    models = prepare_models(result)
    ok = True

    echo("\n1. The pilot model goes to production")
    ensure_v1(store, service, result, echo)
    # The policy features its callers no longer send: loaded from their sources.
    await asyncio.to_thread(load_features, settings, store, spec, AUTHOR, echo=echo)

    echo("\n2. v2: the 'outliers' above 20,000 were dropped before training")
    v2, passed = register_evaluated(
        store,
        service,
        models["v2"],
        result,
        note="deep boosting, claims >= 20,000 dropped",
        echo=echo,
    )
    try:
        approvals.approve(store, service, v2, by=APPROVERS[0], note="looks better overall")
        echo("  UNEXPECTED: v2 was approved")
        ok = False
    except ApprovalRefused as exc:
        echo(f"  approval refused: {exc.detail}")
    ok = ok and not passed

    echo("\n3. v3: a deeper model on all claims")
    v3, passed = register_evaluated(
        store, service, models["v3"], result, note="deep boosting on all claims", echo=echo
    )
    ok = ok and passed
    approve_all(store, service, v3, echo, note="gates passed")

    echo("\n4. v4: a hotfix, rushed through with its gates overridden")
    v4 = _find(store, service.name, versions_callable_sha(service))
    if v4 is None:
        v4 = versions.register(
            store, service, HOTFIX, actor=AUTHOR, note="hotfix: rule of thumb", check=False
        ).number
        echo(f"  registered version {v4}: hotfix (no evaluation: 'no time')")
    approve_all(
        store, service, v4, echo, override_gates=True, reason="urgent: travel desk escalation"
    )

    portal = keys.create(
        store,
        "claims-portal",
        scopes=[f"predict:{service.name}", f"feedback:{service.name}"],
        actor=AUTHOR,
        owner=AUTHOR,
        agent=True,
    )
    echo(f"\n  key {portal.key.id}: the claims portal, an agent owned by {AUTHOR}, may predict")
    story_spec = drift_story.compressed(spec)
    async with in_process(
        settings.with_(config=str(result.spec)), story_spec, portal.token, alerts_every=0.25
    ) as client:
        traffic = Traffic.make(client)
        echo("\n5. Canary of v3 under simulated traffic, with feedback")
        state = await _canary(store, service, v3, traffic, echo)
        ok = ok and state == "promoted"
        echo(f"  v3: {state}")
        echo("\n6. Canary of v4")
        state = await _canary(store, service, v4, traffic, echo)
        ok = ok and state == "rolled_back"
        echo(f"  v4: {state}")
        echo("\n7. Production drifts")
        drifted = await drift_story.tell(store, story_spec, client, echo)
        ok = ok and drifted
    # Review in a gateway of its own that judges no alert rules: the drift story's
    # compressed windows are over, and a new batch must not be judged on them.
    async with in_process(settings.with_(config=str(result.spec)), spec, portal.token) as client:
        echo("\n8. People review what was escalated or sampled")
        reviewed = await review_story.tell(store, spec, client, echo)
        ok = ok and reviewed
    with store.read() as conn:
        dep = deployments.get_deployment(conn, service.name)
    production = dep.production_version if dep else None
    echo(f"\nProduction is version {production}.")
    return ok and production == v3


def versions_callable_sha(service: ServiceSpec) -> str:
    from prodgate.runtime.callable import callable_fingerprint

    return callable_fingerprint(HOTFIX)[0]


def tell(settings: Settings, store: Store, result: BuildResult, echo: Echo) -> bool:
    """Run the whole story; True when every step ended as the story says."""
    # The story prints what happens; the gateway's own warnings (v4's failing
    # batches) would only drown it. They are in the audit trail.
    logging.getLogger("prodgate.gateway").setLevel(logging.ERROR)
    logging.getLogger("prodgate.monitor.alerts").setLevel(logging.ERROR)  # told by the story
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_tell(settings, store, result, echo))
    return False
