"""An Actor is its declared name, carrying where the action came from."""

from __future__ import annotations

import copy
import os
import pickle
import pwd
import socket

import pytest

from prodgate.audit import log
from prodgate.identity.actor import Actor, Origin, login_name


def test_an_actor_is_its_name_with_an_origin() -> None:
    actor = Actor.cli("alice")
    assert actor == "alice"
    assert hash(actor) == hash("alice")
    assert f"by {actor}" == "by alice"
    assert actor.origin == Origin("cli", os_user=login_name(), host=socket.gethostname())
    assert actor.origin.as_dict() == {
        "channel": "cli",
        "os_user": login_name(),
        "host": socket.gethostname(),
    }
    with pytest.raises(AttributeError):
        actor.origin = Origin("admin-api")  # type: ignore[misc]
    for twin in (copy.copy(actor), copy.deepcopy(actor), pickle.loads(pickle.dumps(actor))):
        assert isinstance(twin, Actor)
        assert (twin, twin.origin) == (actor, actor.origin)


def test_the_login_name_comes_from_the_user_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "mallory")
    monkeypatch.setenv("LOGNAME", "mallory")
    assert login_name() == pwd.getpwuid(os.getuid()).pw_name


def test_the_audit_writer_records_the_origin_beside_the_name() -> None:
    origin = Origin("admin-api", address="10.0.0.7")
    record = log.action("deploy", actor=Actor("alice", origin), service="svc", version=1)
    assert type(record.actor) is str
    assert record.actor == "alice"
    assert record.payload["origin"] == {"channel": "admin-api", "address": "10.0.0.7"}
    # A plain name (the rollout controller, a library caller) has no origin to record.
    plain = log.action("deploy", actor="controller", service="svc", version=1)
    assert "origin" not in plain.payload
