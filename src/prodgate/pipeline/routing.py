"""The route stage: which loaded version answers a request.

The service's state (split, loaded versions, kill switch) comes from the fleet in
memory; :class:`~prodgate.rollout.router.Router` picks production or canary, sticky
by routing key. A disabled service or one with nothing loaded to answer is refused
here, after the contract, so callers learn of their own mistakes first.
"""

from __future__ import annotations

from prodgate.exceptions import NotDeployedError, ServiceDisabledError
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.fleet import Live, ServiceState
from prodgate.rollout.router import Router


def route(ex: Exchange, state: ServiceState, router: Router) -> Live:
    """The version that answers *ex*; sets ``ex.version``."""
    if state.disabled:
        raise ServiceDisabledError(f"{ex.service} is disabled: {state.disabled_reason}")
    split = state.split
    number = router.choose(ex.service, split, ex.routing_key) if split is not None else None
    live = state.versions.get(number) if number is not None else None
    if live is None:
        why = state.error
        raise NotDeployedError(
            f"{ex.service} cannot serve: {why}"
            if why
            else f"{ex.service} has no deployed version; run 'prodgate deploy {ex.service} VERSION'"
        )
    ex.version = number
    return live
