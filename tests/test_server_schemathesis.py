"""The gateway against its own OpenAPI document, by schemathesis (SQLite only).

Schemathesis reads ``/openapi.json`` from a real app built with ``create_app`` and
sends what the document describes: its examples, then boundary and negative cases
(coverage), then generated ones (fuzzing). Every answer must be one the document
promises: no server error, a documented status, content type, body and headers, and
an ``Allow`` header on a 405 that lists every method of the path. This is about the
HTTP contract, not the store, so it runs on SQLite only.

The run is bounded (a few examples per operation) and deterministic (derandomized,
with a fixed seed), so a failure here reproduces.

It drives schemathesis' engine, as its command line does, rather than its pytest
integration: ``schemathesis.pytest.from_fixture`` fails on pytest 9.2 (it sets
``request.node._nodeid``, which pytest no longer has), and a module-level
``schema.parametrize()`` would build the app and start it at import time. The engine
runs every phase on an app built by a fixture, and each failure is reported with the
curl command that reproduces it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.engine import events, from_schema
from schemathesis.python import asgi as schemathesis_asgi
from starlette.applications import Starlette

from gateway_support import SPEC, register_and_deploy, write_spec
from prodgate.server.app import create_app
from prodgate.settings import Settings

TOKEN = "schemathesis-admin-token"

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
    # A 405 carries Allow, listing every method the document gives the path.
    "unsupported_method",
    "allow_header_conformance",
    # The server is at least as strict as its document, and the admin token matters.
    "negative_data_rejection",
    "ignored_auth",
    # Not positive_data_acceptance: some rules are beyond what a schema can state (the
    # evaluation file must exist on the server, a feedback label must be one of the
    # labels of the decision's service, overriding gates needs a reason), so valid
    # requests by the document are rightly refused with 400, 404, 409 or 422.
)

# Every service is deployed: a declared service with nothing deployed answers 503 by
# design (the operator's state, not a fault), which not_a_server_error cannot tell
# from a bug. The shared spec's "idle" service is that case, so it is left out here.
DEPLOYED_SPEC = SPEC.split("\n  idle:\n", 1)[0] + "\n"


def _config(max_examples: int) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            # An explicit seed wins over derandomizing; either alone is deterministic.
            "seed": 20240501,
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "generation": {"max-examples": max_examples, "deterministic": True},
            # No links between operations are declared: nothing for the stateful phase.
            "phases": {"stateful": {"enabled": False}},
            "cache": {"enabled": False},
            "checks": {"enabled": False} | {name: {"enabled": True} for name in CHECKS},
        }
    )


@pytest.fixture
def app(sqlite_settings: Settings) -> Iterator[Starlette]:
    """A real app on a fresh SQLite store with version 1 deployed and the admin API
    open. Schemathesis runs its lifespan on its own event loop; it is ended here."""
    settings = sqlite_settings.with_(admin_token=TOKEN, controller=False)
    write_spec(settings, DEPLOYED_SPEC)
    register_and_deploy(settings)
    app = create_app(settings)
    assert list(app.state.spec.services) == ["claims"]  # each of them deployed
    try:
        yield app
    finally:
        schemathesis_asgi.shutdown_lifespans()


def run(schema: Any) -> tuple[list[str], Counter[tuple[str, int]]]:
    """Run schemathesis over *schema*: the failures found, and the statuses seen."""
    failures: list[str] = []
    statuses: Counter[tuple[str, int]] = Counter()
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses[(event.recorder.label, interaction.response.status_code)] += 1
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.failure_info is not None:
                        failure = node.failure_info.failure
                        failures.append(
                            f"[{event.phase}] {node.name}: {failure.operation}: "
                            f"{failure.title}\n{failure.message}\n"
                            f"{node.failure_info.code_sample}"
                        )
        elif isinstance(event, events.NonFatalError):
            failures.append(f"error in {event.label}: {event.value!r}")
        elif isinstance(event, events.FatalError):
            failures.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.EngineFinished):
            failures.extend(f"after the run: {f.title}: {f.message}" for f in event.failures)
    return failures, statuses


def test_the_data_plane_keeps_the_promises_of_its_openapi(app: Starlette) -> None:
    # The admin API is run on an app of its own (below): its kill switch answers every
    # predict request with 503 by design, which would read as a server error here.
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(25))
    failures, statuses = run(schema.exclude(tag="admin"))
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # It got through the door: valid rows were decided, broken ones refused.
    assert statuses[("POST /v1/services/claims/predict", 200)] > 0, statuses
    assert statuses[("POST /v1/services/claims/predict", 422)] > 0, statuses


def test_the_admin_api_keeps_the_promises_of_its_openapi(app: Starlette) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(10))
    failures, statuses = run(schema.include(tag="admin"))
    assert not failures, "\n\n".join(dict.fromkeys(failures))
    # With the token, the routes were reached past the door, not only refused.
    assert statuses[("GET /v1/services/{service}/history", 200)] > 0, statuses
    assert statuses[("POST /v1/services/{service}/deploy", 422)] > 0, statuses
