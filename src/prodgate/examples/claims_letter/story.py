"""The claims-letter story, told by ``prodgate demo --story`` after the classic one.

- v1, the pilot's prompt on the large model, passes its gates on the evaluation cases,
  is approved by two people and deployed;
- v2, the same prompt on the small model, costs an eighth per call but misses every
  fraud signal: its gate on the fraud cohort fails and its approval is refused;
- v3, the small model with the signs of fraud spelled out in its prompt, passes, is
  approved, canaried under simulated traffic with feedback, and promoted;
- during v3's canary the primary provider's small model fails every call for a while
  (the mock LLM's faults): the route falls back to ``backup/large``, no request fails,
  and the circuit breaker opens, then closes once the model answers again.

Everything goes through the same library calls as the CLI, over the mock LLM that the
demo runs, and the gateway runs in-process with its rollout controller, as in the
classic story, so the history at the end is the real one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from prodgate import spec as spec_module
from prodgate.audit.record import ACTION_BREAKER, KIND_ACTION
from prodgate.evaluation import Limits, evaluate_version
from prodgate.examples.claims_letter import rails
from prodgate.examples.claims_letter.build import LetterFiles
from prodgate.examples.claims_letter.generate import Message, generate
from prodgate.examples.claims_letter.spec import SERVICE
from prodgate.examples.claims_triage.story import in_process
from prodgate.exceptions import ApprovalRefused
from prodgate.identity import keys
from prodgate.llm.mock import MockHandle
from prodgate.registry import approvals, versions
from prodgate.registry.fingerprint import sha256_file
from prodgate.rollout import commands
from prodgate.rollout import split as deployments
from prodgate.rollout.status import status as rollout_status
from prodgate.settings import Settings
from prodgate.spec import ServiceSpec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log

Echo = Callable[[str], None]

APPROVERS = ("claims-lead", "risk-officer")
AUTHOR = "prompt-engineer"
#: The model the outage takes down (v3's), and the route's fallback that absorbs it.
FAILING_MODEL = "small"
FALLBACK = "backup/large"
#: When the outage starts (canary answers seen first), and how long it lasts: at least
#: OUTAGE_S and until the fallback has answered OUTAGE_FALLBACKS canary calls (a busy
#: machine may send few calls in 1.5 s), but no longer than OUTAGE_MAX_S.
OUTAGE_AFTER_CANARY_ANSWERS = 5
OUTAGE_S = 1.5
OUTAGE_FALLBACKS = 20
OUTAGE_MAX_S = 4.0
#: Cases evaluated at once (each is a call to the mock LLM).
CONCURRENCY = 16
NOTES = {
    "v1": "the pilot's prompt on the large model",
    "v2": "the same prompt on the small model",
    "v3": "the small model, with the signs of fraud spelled out",
}


@dataclass(frozen=True)
class Evaluated:
    number: int
    passed: bool
    result: dict[str, Any]

    @property
    def cost_per_call(self) -> float:
        return float(self.result["metrics"]["cost_per_call"] or 0.0)


def _find(store: Store, sha: str) -> int | None:
    with store.read() as conn:
        found = versions.list_versions(conn, SERVICE)
    return next((v.number for v in found if v.sha256 == sha), None)


def _fraud(result: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in result["cohorts"] if c["name"] == "fraud"), None)


def register_evaluated(
    store: Store, service: ServiceSpec, files: LetterFiles, name: str, echo: Echo
) -> Evaluated:
    """Register prompt *name* (once) and evaluate it on the cases."""
    path = files.prompts[name]
    number = _find(store, sha256_file(path))
    if number is None:
        number = versions.register(store, service, str(path), actor=AUTHOR, note=NOTES[name]).number
        echo(f"  registered version {number}: {NOTES[name]}")
    stored = evaluate_version(
        store,
        service,
        number,
        files.cases,
        actor=AUTHOR,
        limits=Limits(concurrency=CONCURRENCY),
    ).result
    metrics = stored["metrics"]
    fraud = _fraud(stored)
    on_fraud = (
        f", {fraud['metrics']['accuracy']:.1%} on the {fraud['rows']} fraud signals"
        if fraud is not None and fraud["metrics"]["accuracy"] is not None
        else ""
    )
    echo(
        f"  evaluated version {number} on {stored['rows']} cases: accuracy "
        f"{metrics['accuracy']:.1%} overall{on_fraud}; JSON valid {metrics['json_valid']:.0%}; "
        f"${metrics['cost_per_call']:.6f} per call; "
        f"gates {'passed' if stored['passed'] else 'FAILED'}"
    )
    for gate in stored["gates"]:
        if not gate["passed"]:
            value = gate["value"]
            measured = f"{value:.3f}" if isinstance(value, int | float) else "none"
            echo(f"    gate failed: {gate['gate']} (measured {measured})")
    return Evaluated(number, bool(stored["passed"]), stored)


def approve_all(store: Store, service: ServiceSpec, number: int, echo: Echo, note: str) -> None:
    with store.read() as conn:
        done = {a.approver for a in approvals.list_approvals(conn, SERVICE, number)}
    for who in APPROVERS:
        if who not in done:
            approvals.approve(store, service, number, by=who, note=note)
            echo(f"  version {number} approved by {who}")


def ensure_v1(store: Store, service: ServiceSpec, files: LetterFiles, echo: Echo) -> int:
    """v1 registered, evaluated, approved by two people and in production.

    The mock LLM must be running where the spec's providers point: evaluation calls it.
    """
    with store.read() as conn:
        dep = deployments.get_deployment(conn, SERVICE)
    if dep is not None and dep.production_version is not None:
        echo(f"  version {dep.production_version} is in production")
        return dep.production_version
    v1 = register_evaluated(store, service, files, "v1", echo)
    if not v1.passed:
        raise RuntimeError("the claims-letter v1 failed its gates; the example is broken")
    approve_all(store, service, v1.number, echo, "pilot prompt reviewed")
    deployments.deploy(store, service, v1.number, actor="claims-lead", reason="first release")
    echo(f"  version {v1.number} deployed to production")
    return v1.number


@dataclass
class Sent:
    """One simulated request: when it started, and what answered it."""

    started: float
    status: int
    version: int | None = None
    model: str | None = None


@dataclass
class Traffic:
    """Simulated callers: claimant messages with routing keys, then the team's category
    as feedback on each answer."""

    client: httpx.AsyncClient
    messages: list[Message]
    sent: list[Sent] = field(default_factory=list)

    @classmethod
    def make(cls, client: httpx.AsyncClient, n: int = 2_000, seed: int = 99) -> Traffic:
        return cls(client, generate(n, seed=seed))

    def answered_by(self, version: int) -> int:
        return sum(1 for s in self.sent if s.version == version)

    async def run(self, until: Callable[[], bool], workers: int = 16, timeout: float = 90) -> None:
        counter = itertools.count()
        deadline = time.monotonic() + timeout
        path = f"/v1/services/{SERVICE}/predict"

        async def worker() -> None:
            while not until() and time.monotonic() < deadline:
                message = self.messages[next(counter) % len(self.messages)]
                body = {"inputs": message.inputs, "routing_key": f"claimant-{random.random()}"}
                started = time.monotonic()
                r = await self.client.post(path, json=body)
                if r.status_code != 200:
                    self.sent.append(Sent(started, r.status_code))
                    continue
                answer = r.json()
                self.sent.append(Sent(started, 200, answer["version"], answer["model"]))
                await self.client.post(
                    f"/v1/inferences/{answer['id']}/feedback",
                    json={"label": message.category, "source": "claims-team"},
                )

        await asyncio.gather(*(worker() for _ in range(workers)))


@dataclass
class Outage:
    """The primary provider's small model failing every call, for a while."""

    mock: MockHandle
    started: float | None = None
    ended: float | None = None
    started_us: int = 0

    async def run(self, traffic: Traffic, canary: int, echo: Echo) -> None:
        while traffic.answered_by(canary) < OUTAGE_AFTER_CANARY_ANSWERS:
            await asyncio.sleep(0.05)
        self.started_us = time.time_ns() // 1_000
        await asyncio.to_thread(
            self.mock.set_faults, error_rate=1.0, errors=["500"], models=[FAILING_MODEL]
        )
        self.started = started = time.monotonic()
        echo(
            f"    outage: primary/{FAILING_MODEL} answers every call with a 500 "
            "(the mock LLM's faults)"
        )

        def fallbacks() -> int:
            return sum(
                1
                for s in traffic.sent
                if s.started >= started and s.version == canary and s.model == FALLBACK
            )

        await asyncio.sleep(OUTAGE_S)
        while fallbacks() < OUTAGE_FALLBACKS and time.monotonic() - started < OUTAGE_MAX_S:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(self.mock.set_faults)
        self.ended = time.monotonic()
        echo(
            f"    outage over after {self.ended - started:.1f} s: "
            f"primary/{FAILING_MODEL} answers again"
        )


def breaker_changes(store: Store, since_us: int) -> list[str]:
    """The states primary/small's circuit breaker went through since *since_us*."""
    with store.read() as conn:
        rows = conn.execute(
            sa.select(audit_log.c.payload)
            .where(
                audit_log.c.kind == KIND_ACTION,
                audit_log.c.action == ACTION_BREAKER,
                audit_log.c.ts_us >= since_us,
            )
            .order_by(audit_log.c.seq)
        ).all()
    states = []
    for (payload,) in rows:
        change = orjson.loads(payload)
        if (change.get("provider"), change.get("model")) == ("primary", FAILING_MODEL):
            states.append(str(change.get("state")))
    return states


async def _canary(
    store: Store,
    service: ServiceSpec,
    number: int,
    traffic: Traffic,
    outage: Outage,
    echo: Echo,
) -> str:
    """Start a canary of *number*, drive traffic (and the outage) until it ends."""
    r = commands.start(store, service, number, actor="claims-lead", reason="story")
    echo(f"  canary of version {number} started at {r.weight:.0%}")
    seen: list[str] = []
    final: dict[str, Any] = {}

    def finished() -> bool:
        with store.read() as conn:
            info = rollout_status(conn, SERVICE)
        at = f" at {info['weight']:.0%}" if info["active"] else ""
        mark = f"{info['state']}{at}, {info['failures']} failure(s)"
        if not seen or seen[-1] != mark:
            seen.append(mark)
            echo(f"    rollout: {mark}")
            judged = info.get("last_judgement") or {}
            if info["failures"] > final.get("failures", 0) and judged.get("checks"):
                for check in judged["checks"]:
                    if not check["passed"]:
                        echo(f"      check failed: {check['detail']}")
        final.update(info)
        return not info["active"]

    before = len(traffic.sent)
    task = asyncio.create_task(outage.run(traffic, number, echo))
    try:
        await traffic.run(finished)
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if outage.ended is None:  # the canary ended first: never leave the mock failing
            await asyncio.to_thread(outage.mock.set_faults)
    echo(f"    ({len(traffic.sent) - before} requests sent meanwhile)")
    return str(final.get("state"))


@dataclass(frozen=True)
class OutageFigures:
    requests: int
    canary_requests: int
    fallbacks: int
    failures: int


def outage_figures(traffic: Traffic, started: float, ended: float, canary: int) -> OutageFigures:
    """What the requests started between *started* and *ended* (the outage) got."""
    during = [s for s in traffic.sent if started <= s.started < ended]
    return OutageFigures(
        requests=len(during),
        canary_requests=sum(1 for s in during if s.version == canary),
        fallbacks=sum(1 for s in during if s.version == canary and s.model == FALLBACK),
        failures=sum(1 for s in during if s.status >= 500),
    )


@dataclass
class Told:
    """How the steps before the canary ended."""

    ok: bool
    v1_cost: float
    v3: Evaluated


def _versions(store: Store, service: ServiceSpec, files: LetterFiles, echo: Echo) -> Told:
    """Steps 1 to 3: v1 to production, v2 refused, v3 approved."""
    ok = True
    echo("\n1. v1: the pilot's prompt on the large model goes to production")
    v1 = ensure_v1(store, service, files, echo)
    with store.read() as conn:
        v1_result = approvals.latest_evaluation(conn, SERVICE, v1)
    if v1_result is None:
        raise RuntimeError(f"{SERVICE} version {v1} has no evaluation")
    v1_cost = float(v1_result["metrics"]["cost_per_call"])

    echo("\n2. v2: the same prompt on the small model")
    v2 = register_evaluated(store, service, files, "v2", echo)
    echo(
        f"  v2 costs ${v2.cost_per_call:.6f} per call, {v1_cost / v2.cost_per_call:.1f}x "
        f"cheaper than v1 (${v1_cost:.6f})"
    )
    try:
        approvals.approve(store, service, v2.number, by=APPROVERS[0], note="8x cheaper")
        echo("  UNEXPECTED: v2 was approved")
        ok = False
    except ApprovalRefused as exc:
        echo(f"  approval refused: {exc.detail}")
    ok = ok and not v2.passed

    echo("\n3. v3: the small model, with the signs of fraud spelled out in its prompt")
    v3 = register_evaluated(store, service, files, "v3", echo)
    echo(
        f"  v3 costs ${v3.cost_per_call:.6f} per call, "
        f"{v1_cost / v3.cost_per_call:.1f}x cheaper than v1"
    )
    ok = ok and v3.passed
    approve_all(store, service, v3.number, echo, "gates passed")
    return Told(ok, v1_cost, v3)


async def _serve_canary(
    settings: Settings,
    spec: Any,
    store: Store,
    service: ServiceSpec,
    number: int,
    outage: Outage,
    token: str,
    echo: Echo,
) -> tuple[str, Traffic]:
    """Step 4: the gateway in-process, its controller judging v3's canary."""
    async with in_process(settings, spec, token) as client:
        traffic = Traffic.make(client)
        state = await _canary(store, service, number, traffic, outage, echo)
    return state, traffic


async def _serve_rails(
    settings: Settings, spec: Any, mock: MockHandle, token: str, echo: Echo
) -> rails.RailsSeen:
    """Step 5: the gateway in-process again, its guard rails at work."""
    async with in_process(settings, spec, token) as client:
        return await rails.show(client, mock, echo)


def _tell(
    settings: Settings, store: Store, files: LetterFiles, mock: MockHandle, echo: Echo
) -> bool:
    spec = spec_module.load(settings.config)
    service = spec.service(SERVICE)
    echo(f"\nThe {SERVICE} story: prompt versions of an LLM service, over the mock LLM")
    told = _versions(store, service, files, echo)
    v3 = told.v3

    portal = keys.create(
        store,
        "letter-portal",
        scopes=[f"predict:{SERVICE}", f"feedback:{SERVICE}"],
        actor=AUTHOR,
        owner=AUTHOR,
        agent=True,
    )
    echo(f"\n  key {portal.key.id}: the claims portal, an agent owned by {AUTHOR}")
    echo(
        f"\n4. Canary of v3 under simulated traffic, with feedback; "
        f"primary/{FAILING_MODEL} goes down during it"
    )
    outage = Outage(mock)
    state, traffic = asyncio.run(
        _serve_canary(settings, spec, store, service, v3.number, outage, portal.token, echo)
    )
    echo(f"  v3: {state}")
    ok = told.ok and state == "promoted"
    if outage.started is None or outage.ended is None:
        echo("  UNEXPECTED: the canary ended before the outage was over")
        return False
    figures = outage_figures(traffic, outage.started, outage.ended, v3.number)
    states = breaker_changes(store, outage.started_us)
    opened, closed = states.count("open"), "closed" in states
    echo(
        f"  during the outage: {figures.requests} requests, {figures.canary_requests} of them "
        f"to v3; {figures.fallbacks} answered by the fallback {FALLBACK}; "
        f"{figures.failures} failed"
    )
    echo(
        f"  circuit breaker of primary/{FAILING_MODEL}: "
        + (" -> ".join(states) if states else "no change")
        + (
            f" (opened {'once' if opened == 1 else f'{opened} times'}, "
            "closed again once the model answered)"
            if opened and closed
            else ""
        )
    )
    ok = ok and figures.failures == 0 and figures.fallbacks > 0 and opened > 0 and closed
    with store.read() as conn:
        dep = deployments.get_deployment(conn, SERVICE)
    production = dep.production_version if dep else None
    echo(
        f"\n{SERVICE}: production is version {production}, "
        f"${v3.cost_per_call:.6f} per call instead of v1's ${told.v1_cost:.6f}."
    )
    ok = ok and production == v3.number

    echo("\n5. The guard rails: at the door and on the way out, streams included")
    seen = asyncio.run(_serve_rails(settings, spec, mock, portal.token, echo))
    for entry in rails.recorded(store, seen.record_ids):
        verdicts = entry["guard"] or {}
        said = "; ".join(
            f"{d} {v['verdict']}: "
            + ", ".join(sorted({f"{f['category']}/{f['kind']}" for f in v["findings"]}))
            for d, v in verdicts.items()
        )
        echo(f"  record {entry['id']}: status {entry['status']}, {said}")
    echo(f"  each is in the audit log and in 'prodgate history {SERVICE}'")
    return ok and seen.ok


def tell(
    settings: Settings, store: Store, files: LetterFiles, mock: MockHandle, echo: Echo
) -> bool:
    """Run the claims-letter story; True when every step ended as the story says.

    *settings* name the demo's spec, whose providers point at *mock*.
    """
    # The story says what the breaker did; the route's own log lines would only
    # drown it. They are in the audit trail.
    logging.getLogger("prodgate.llm").setLevel(logging.ERROR)
    logging.getLogger("prodgate.gateway").setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        return _tell(settings, store, files, mock, echo)
    return False
