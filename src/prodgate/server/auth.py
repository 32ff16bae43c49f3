"""Who may use the admin API. One check, in one place, so scoped API keys slot in here.

The admin API is open only with ``Authorization: Bearer $PRODGATE_ADMIN_TOKEN``;
with no token configured it is off. The token is compared as a SHA-256 digest in
constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from prodgate.exceptions import AuthError, ForbiddenError
from prodgate.identity.actor import Actor, Origin

#: The channel, and the default name, of actions taken through the admin API.
ADMIN_API = "admin-api"


class AdminAuth:
    def __init__(self, token: str) -> None:
        self._digest = hashlib.sha256(token.encode()).digest() if token else None

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def actor(self, request: Request) -> Actor:
        """Check the request's bearer token; return who acts (``X-Prodgate-Actor``), with
        the channel and the client's address as the action's origin."""
        if self._digest is None:
            raise ForbiddenError(
                "the admin API is off; set PRODGATE_ADMIN_TOKEN on the server to open it"
            )
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise AuthError("send Authorization: Bearer <admin token>")
        digest = hashlib.sha256(given.strip().encode()).digest()
        if not hmac.compare_digest(digest, self._digest):
            raise AuthError("the admin token is not valid")
        name = request.headers.get("x-prodgate-actor", "").strip()[:128] or ADMIN_API
        address = request.client.host if request.client else None
        return Actor(name, Origin(ADMIN_API, address=address))
