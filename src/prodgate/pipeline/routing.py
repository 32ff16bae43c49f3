"""The route stage: which loaded version answers a request.

The service's state (split, loaded versions, kill switch) comes from the fleet in
memory; :class:`~prodgate.rollout.router.Router` picks production or canary, sticky
by routing key. The stage has two halves around the contract check:
:func:`choose` names the version first, so that a request refused for its contract is
counted against the version it would have reached (canary analysis compares
violation rates per version); :func:`admit` then refuses what cannot be served (the
kill switch, nothing loaded), after the contract, so callers hear of their own
mistakes first.
"""

from __future__ import annotations

from prodgate.exceptions import NotDeployedError, ServiceDisabledError
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.fleet import Live, ServiceState
from prodgate.rollout.router import Router


def choose(ex: Exchange, state: ServiceState, router: Router) -> Live | None:
    """The loaded version the split sends *ex* to, if any; sets ``ex.version``.

    A disabled service chooses none: nothing would answer.
    """
    split = state.split
    if state.disabled or split is None:
        return None
    number = router.choose(ex.service, split, ex.routing_key)
    ex.version = number
    return state.versions.get(number) if number is not None else None


def admit(ex: Exchange, state: ServiceState, live: Live | None) -> Live:
    """*live*, unless the kill switch is on or no version is loaded to answer."""
    if state.disabled:
        raise ServiceDisabledError(f"{ex.service} is disabled: {state.disabled_reason}")
    if live is None:
        ex.version = None  # nothing of that version ran
        why = state.error
        raise NotDeployedError(
            f"{ex.service} cannot serve: {why}"
            if why
            else f"{ex.service} has no deployed version; run 'prodgate deploy {ex.service} VERSION'"
        )
    return live
