"""Claims letter: an LLM service beside the claims-triage classifier.

A claimant writes to the insurer; the service sorts the message (complaint, new claim,
status question, fraud signal) and drafts the reply, over the bundled mock LLM:

- :mod:`~prodgate.examples.claims_letter.generate`: synthetic messages with the
  category the claims team gave each, written as a cases file for evaluation;
- ``prompts/v1.yaml``, ``v2.yaml``, ``v3.yaml``: the prompt versions of the story;
- ``mock.yaml``: the mock LLM's models and rules (a small model that misses fraud
  signals unless the prompt spells out their signs);
- :mod:`~prodgate.examples.claims_letter.spec`: the service and its providers in the
  demo's ``prodgate.yaml``;
- :mod:`~prodgate.examples.claims_letter.build`: cases, prompts and mock config written
  beside the demo's spec;
- :mod:`~prodgate.examples.claims_letter.story`: the LLM story ``prodgate demo
  --story`` tells after the classic one.

The story: v1, the pilot's prompt on a large model, passes its gates and goes to
production; v2, the same prompt on a model 8x cheaper, misses every fraud signal and
its approval is refused; v3, the cheap model with the signs of fraud spelled out,
passes, is canaried and promoted, and a provider outage during its canary is absorbed
by the fallback model without a failed request.
"""
