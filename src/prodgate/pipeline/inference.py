"""The infer stage: the request's rows through the version's micro-batcher (which,
for a service that reads feature views, looks their features up for the whole batch
first: :mod:`prodgate.pipeline.enrichment`).

A model that fails on a valid input is the operator's problem, not the caller's: the
caller gets a generic 500 naming the audit record, while the exception's text goes to
the log and into that record (:class:`~prodgate.exceptions.ModelError` carries it as
``cause``), where the people who run the model can read it.
"""

from __future__ import annotations

import logging

from prodgate.exceptions import ModelError, ProdgateError
from prodgate.pipeline.exchange import Exchange
from prodgate.pipeline.fleet import Live
from prodgate.runtime.base import Prediction

logger = logging.getLogger("prodgate.gateway")


async def infer(ex: Exchange, live: Live) -> list[Prediction]:
    """One prediction per row of *ex*, from a batch shared with concurrent requests."""
    try:
        assert live.batcher is not None  # a model version
        return await live.batcher.predict(ex.rows, ex)
    except ProdgateError:  # shed, or refused by the enrich step: the caller's answer
        raise
    except Exception as exc:
        cause = f"{type(exc).__name__}: {exc}"
        # One line per failed call; the traceback only when debugging.
        logger.warning("%s v%s failed on a batch: %s", ex.service, ex.version, cause)
        logger.debug("model failure", exc_info=exc)
        raise ModelError(
            "the model failed on this input; the operators can read why in its audit record",
            cause=cause,
        ) from None
