"""Offline evaluation: standard and business metrics, per cohort, and quality gates.

- :func:`score` measures a set of decisions against the truth (pure, no store);
- :func:`evaluate_version` runs a registered version over a labelled file and stores
  the result with an audit record; :func:`compare` scores two versions side by side;
- a prompt version (a service of kind ``llm``) is run over test cases
  (:func:`read_cases`) through its route, concurrently and within :class:`Limits`,
  and scored and stored the same way (:mod:`prodgate.evaluation.prompts`);
- :mod:`prodgate.evaluation.report` turns both into text for the CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prodgate.evaluation.cases import read_cases
    from prodgate.evaluation.evaluate import StoredEvaluation, compare, evaluate_version
    from prodgate.evaluation.gates import MIN_COHORT_ROWS
    from prodgate.evaluation.prompts import Limits
    from prodgate.evaluation.scoring import score

__all__ = [
    "MIN_COHORT_ROWS",
    "Limits",
    "StoredEvaluation",
    "compare",
    "evaluate_version",
    "read_cases",
    "score",
]

#: Where each public name lives. They are imported on first use: scoring needs
#: scikit-learn, which every ``prodgate`` command would otherwise pay for at start.
_HOME = {
    "MIN_COHORT_ROWS": "gates",
    "Limits": "prompts",
    "StoredEvaluation": "evaluate",
    "compare": "evaluate",
    "evaluate_version": "evaluate",
    "read_cases": "cases",
    "score": "scoring",
}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"prodgate.evaluation.{_HOME[name]}"), name)
