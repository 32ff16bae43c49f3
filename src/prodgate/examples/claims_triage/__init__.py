"""Claims triage: decide whether an insurance claim needs a human adjuster.

The example an insurer would recognise, in four modules:

- :mod:`~prodgate.examples.claims_triage.generate`: synthetic claims, with shift knobs;
- :mod:`~prodgate.examples.claims_triage.train`: a small gradient-boosted pipeline,
  saved as a skops file;
- :mod:`~prodgate.examples.claims_triage.spec`: the input contract and ``prodgate.yaml``;
- :mod:`~prodgate.examples.claims_triage.build`: all of it built into a directory
  (``python -m prodgate.examples.claims_triage.build DIR``).

The story it tells: the model is accurate overall, yet on the high-value claims
(``claim_amount >= 20,000``), the ones that cost the business most, it misses most of
the claims that needed an adjuster.

Nothing is imported here, so importing a module does not pull in scikit-learn unless it
needs it.
"""
