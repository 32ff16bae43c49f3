"""Building a real gateway app for tests: spec, registered callable versions, lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from prodgate import spec as spec_module
from prodgate.identity import keys
from prodgate.registry import approvals, versions
from prodgate.rollout import split as deployments
from prodgate.server.app import create_app
from prodgate.settings import Settings
from prodgate.store.engine import open_store

SPEC = """\
version: 1
services:
  claims:
    description: Route a claim.
    owner: {name: Claims Ops, contact: ops@example.com}
    kind: classifier
    labels: [routine, adjuster]
    contract:
      input:
        type: object
        additionalProperties: false
        required: [amount, category]
        properties:
          amount: {type: number, minimum: 0, maximum: 1000000}
          category: {type: string, enum: [auto, home, travel]}
          code: {type: string, pattern: "^[A-Z]{3}$"}
          note: {type: string, nullable: true, maxLength: 50}
          count: {type: integer, minimum: 0}
    escalation:
      confidence_below: 0.7
    batching:
      max_batch_size: 32
      max_wait_ms: 5
  idle:
    owner: {name: Nobody, contact: nobody@example.com}
    kind: classifier
    contract:
      input:
        type: object
        properties:
          x: {type: number}
"""

GOOD = {"amount": 1200.5, "category": "auto", "note": None, "count": 2}


def write_spec(settings: Settings, text: str = SPEC) -> None:
    Path(settings.config).write_text(text)


def register_and_approve(settings: Settings, ref: str = "fixture_models:claims") -> int:
    """Register *ref* as the next version of ``claims`` and approve it (gates overridden)."""
    spec = spec_module.load(settings.config)
    store = open_store(settings)
    try:
        v = versions.register(store, spec.service("claims"), ref, actor="tester")
        approvals.approve(
            store,
            spec.service("claims"),
            v.number,
            by="approver",
            override_gates=True,
            reason="test model, no evaluation",
        )
        return v.number
    finally:
        store.dispose()


def deploy(settings: Settings, number: int) -> None:
    spec = spec_module.load(settings.config)
    store = open_store(settings)
    try:
        deployments.deploy(store, spec.service("claims"), number, actor="tester")
    finally:
        store.dispose()


def register_and_deploy(settings: Settings, ref: str = "fixture_models:claims") -> int:
    number = register_and_approve(settings, ref)
    deploy(settings, number)
    return number


#: The bootstrap key tests' clients carry unless told otherwise: every scope.
BOOTSTRAP_TOKEN = "test-bootstrap-token"


def make_key(
    settings: Settings,
    name: str,
    *scopes: str,
    owner: str | None = None,
    agent: bool = False,
    **limits: int,
) -> str:
    """A new API key in the settings' store; returns the whole key."""
    store = open_store(settings)
    try:
        return keys.create(
            store,
            name,
            scopes=scopes,
            actor="tester",
            owner=owner or name,
            agent=agent,
            limits=limits,
        ).token
    finally:
        store.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running(
    settings: Settings, token: str | None = BOOTSTRAP_TOKEN
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client talking to it over ASGI.

    The client carries *token* (default: the bootstrap key, the settings' own or one
    they get when they set none), so tests of anything but access need no key of their own;
    ``token=None`` sends none."""
    if token == BOOTSTRAP_TOKEN:
        if settings.admin_token:
            token = settings.admin_token
        else:
            settings = settings.with_(admin_token=BOOTSTRAP_TOKEN)
    app = create_app(settings)
    headers = bearer(token) if token else None
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", headers=headers
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client
