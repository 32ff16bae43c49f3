"""Offline evaluation: standard and business metrics, per cohort, and quality gates.

- :func:`score` measures a set of decisions against the truth (pure, no store);
- :func:`evaluate_version` runs a registered version over a labelled file and stores
  the result with an audit record; :func:`compare` scores two versions side by side;
- :mod:`prodgate.evaluation.report` turns both into text for the CLI.
"""

from prodgate.evaluation.evaluate import StoredEvaluation, compare, evaluate_version
from prodgate.evaluation.gates import MIN_COHORT_ROWS
from prodgate.evaluation.scoring import score

__all__ = ["MIN_COHORT_ROWS", "StoredEvaluation", "compare", "evaluate_version", "score"]
