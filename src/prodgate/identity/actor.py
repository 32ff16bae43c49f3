"""Who acts, and from where: the name an action is recorded under, with its origin.

Over HTTP, who acts is the identity of the API key the request carried
(:mod:`prodgate.identity.keyring`): a person, or an agent with the person accountable
for it, recorded with the key's id. On the command line the name is declared
(``--by``, ``PRODGATE_USER``): whoever can run the CLI against the store can already
change anything in it. What is recorded beside it is where the action came from: the
channel (``cli``) and the operating-system account and host that ran the command.
That is evidence for a later audit, not authentication: it tells an auditor that
``--by alice`` was typed by the account ``dana`` on ``build-7``.

An :class:`Actor` *is* its name, a ``str``. Every library function that takes
``actor: str`` takes one unchanged, stores the name where it did and compares names as
before (separation of duties compares declared names); only the audit writer
(:func:`prodgate.audit.log.action`) looks further and adds :attr:`Actor.origin` to the
record. There is no global or ambient state: whoever builds the Actor (the CLI from its
settings, the admin API from its request) hands it down with the call, so an action
made without one is simply recorded without an origin.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any

#: The channel of actions taken through the ``prodgate`` command.
CLI = "cli"


@dataclass(frozen=True)
class Origin:
    """Where an action came from; fields that do not apply stay None."""

    channel: str
    """How the action arrived: ``cli``; an HTTP API would say ``admin-api``."""
    os_user: str | None = None
    """The operating-system account the acting process runs as (from its user id)."""
    host: str | None = None
    """The name of the machine the acting process runs on."""
    address: str | None = None
    """The network address a request came from (HTTP channels)."""
    key: str | None = None
    """The id of the API key the request carried (HTTP channels); never the key."""
    owner: str | None = None
    """For an agent's key: the person accountable for the agent."""
    agent: bool | None = None
    """True when the actor is an AI agent or service account, not a person."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def this_process(cls, channel: str) -> Origin:
        """The origin of actions this process takes through *channel*."""
        return cls(channel, os_user=login_name(), host=socket.gethostname())


def same_person(name: str) -> str:
    """The identity a name stands for, as people mean it: case and surrounding blanks
    do not count (``Alice``, ``alice`` and `` alice `` are one person). The rule for
    separation of duties and for counting distinct people, in approvals and reviews."""
    return name.strip().casefold()


class Actor(str):
    """A declared name together with the :class:`Origin` of the action; immutable.

    It equals, hashes and prints as its name. String operations (``strip``,
    f-strings) give plain names, so code that must keep the origin passes the Actor
    itself along.
    """

    __slots__ = ("origin",)
    origin: Origin

    def __new__(cls, name: str, origin: Origin) -> Actor:
        self = super().__new__(cls, name)
        object.__setattr__(self, "origin", origin)
        return self

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("an Actor cannot be changed")

    def __reduce__(self) -> tuple[Any, ...]:
        return (Actor, (str(self), self.origin))

    def __repr__(self) -> str:
        return f"Actor({str(self)!r}, {self.origin!r})"

    @property
    def person(self) -> str:
        """The person answerable for the action: an agent's owner, else the actor."""
        return self.origin.owner or str(self)

    @classmethod
    def cli(cls, name: str) -> Actor:
        """*name* acting through the ``prodgate`` command of this process."""
        return cls(name, Origin.this_process(CLI))


def login_name() -> str:
    """The operating-system account this process runs as.

    Read from the process's user id where there is one: ``USER`` and ``LOGNAME`` are
    variables anyone can set, and this name is evidence.
    """
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, AttributeError, KeyError):  # no pwd (Windows) or an unnamed uid
        try:
            return getpass.getuser()
        except (KeyError, OSError):
            return "unknown"
