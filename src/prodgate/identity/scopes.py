"""What a key may do: the scope grammar, and whether a key's scopes grant a need.

A scope is one of:

===================  ==================================================================
``predict:SERVICE``  call the service's predict route (``predict:*``: every service)
``feedback:SERVICE`` send the true outcome of the service's decisions (``feedback:*``)
``admin:SERVICE``    govern the service over HTTP: deploy, roll out, roll back, the
                     kill switch, approvals, and read its versions and history
``tool:NAME``        offer the LLM the tool (function) NAME in a request (``tool:*``:
                     any); a key without tool scopes may offer none
``review``           decide escalated and sampled inferences
``audit:read``       read inference records and every service's history
``admin``            everything
===================  ==================================================================

Each route declares the :class:`Need` s that admit it (any one is enough); a key is
admitted when one of its scopes grants one of them. Only ``admin`` grants across
kinds: ``admin:SERVICE`` does not grant ``predict:SERVICE``, so the keys of an
application and of the people governing it stay apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from prodgate.exceptions import UsageError

#: Scopes that name a service (``kind:SERVICE`` or ``kind:*``).
PER_SERVICE = ("predict", "feedback", "admin", "tool")
#: Scopes that stand alone.
GLOBAL = ("review", "audit:read", "admin")
EVERY = "*"
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Need:
    """What a route needs: a kind (``predict``), and the service it acts on, if any."""

    kind: str
    service: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.service}" if self.service else self.kind


def parse(text: str) -> str:
    """*text* as a scope, checked; UsageError saying which scopes exist if it is none."""
    scope = text.strip()
    if scope in GLOBAL:
        return scope
    kind, sep, service = scope.partition(":")
    if sep and kind in PER_SERVICE and (service == EVERY or _SERVICE.match(service)):
        return scope
    raise UsageError(
        f"unknown scope {text!r}; scopes are predict:SERVICE, feedback:SERVICE, "
        "admin:SERVICE (SERVICE may be *), tool:NAME, review, audit:read and admin"
    )


def grants(scopes: Iterable[str], need: Need) -> bool:
    """Whether any of *scopes* grants *need*."""
    for scope in scopes:
        if scope == "admin" or (scope == need.kind and need.service is None):
            return True
        kind, _, service = scope.partition(":")
        if kind == need.kind and need.service is not None and service in (EVERY, need.service):
            return True
    return False


def services(scopes: Iterable[str], kind: str) -> set[str] | None:
    """The services *scopes* grant *kind* on; None when it is every service (and for
    a kind that names no service, when the scopes grant it at all)."""
    if kind not in PER_SERVICE:
        return None if grants(scopes, Need(kind)) else set()
    named: set[str] = set()
    for scope in scopes:
        if scope == "admin":
            return None
        k, _, service = scope.partition(":")
        if k == kind:
            if service == EVERY:
                return None
            named.add(service)
    return named
