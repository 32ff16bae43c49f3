"""The contract stage: every row of a request against the service's compiled contract.

It runs before routing, so a request that breaks the contract is refused the same way
whichever version would have answered it, and never reaches a model.
"""

from __future__ import annotations

from prodgate.contract import Contract
from prodgate.exceptions import ContractViolationError, Violation
from prodgate.pipeline.exchange import Exchange


def validate(ex: Exchange, contract: Contract) -> None:
    """Raise :class:`ContractViolationError` listing every violation in *ex*'s rows."""
    is_valid = contract.is_valid
    bad = [i for i, row in enumerate(ex.rows) if not is_valid(row)]
    if not bad:  # the common case: one compiled check per row, nothing else
        return
    violations: list[Violation] = []
    for i in bad:
        prefix = "/inputs" if ex.single else f"/instances/{i}"
        violations.extend(contract.violations(ex.rows[i], prefix))
    raise ContractViolationError(violations)
