"""LLM services in the spec: providers, their models and prices, and each service's route.

Declared in prodgate.yaml::

    providers:
      openai:
        base_url: https://api.openai.com/v1
        api_key_env: OPENAI_API_KEY          # the variable's name; the key is never stored
        breaker: {failures: 5, failure_rate: 0.5, window_s: 30, cooldown_s: 15}
        models:
          gpt-4.1:      {input: 2.0, output: 8.0, cached_input: 0.5}   # USD per 1M tokens
          gpt-4.1-mini: {input: 0.4, output: 1.6}
    services:
      claims-letter:
        kind: llm
        contract:
          input:  {type: object, properties: {message: {type: string}}, required: [message]}
          output: {type: object, properties: {category: {enum: [...]}}}   # structured output
        llm:
          fallbacks: [backup/gpt-4.1]        # after the prompt version's own model
          retry: {attempts: 2, backoff_ms: 100, max_backoff_ms: 2000}
          timeouts: {connect_ms: 2000, first_token_ms: 30000, total_ms: 120000}
          max_tokens: 1024                   # the ceiling when a request names none
          budgets: {day: 50, month: 1000}    # USD, across every caller
          judge: openai/gpt-4.1              # the model evaluation may ask to grade answers

A model is named ``provider/model``; a model name may itself hold slashes
(``vllm/meta-llama/Llama-3.1-8B``), a provider's name may not.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Budget periods a spec or a key may name, in the order they are shown.
BUDGET_PERIODS = ("day", "month")


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cached input tokens cost ``cached_input`` when the
    provider says how many were cached, else the input price."""

    input: float
    output: float
    cached_input: float | None = None


@dataclass(frozen=True)
class Breaker:
    """Open after ``failures`` failures within ``window_s`` that are also at least
    ``failure_rate`` of the calls in it (a model that fails now and then stays in the
    route: retries absorb it); after ``cooldown_s`` let one probe through (half-open);
    its success closes the breaker, its failure reopens it."""

    failures: int = 5
    window_s: float = 30.0
    cooldown_s: float = 15.0
    failure_rate: float = 0.5


@dataclass(frozen=True)
class Provider:
    """An OpenAI-compatible upstream API."""

    name: str
    base_url: str  # up to and including the version, e.g. ``https://api.openai.com/v1``
    api_key_env: str | None = None  # the environment variable that holds its key
    models: dict[str, Price] = field(default_factory=dict)
    breaker: Breaker = field(default_factory=Breaker)
    max_connections: int = 256


@dataclass(frozen=True)
class Retry:
    """Retries of one model before the route falls back to the next: ``attempts`` more
    tries after the first, waiting ``backoff_ms * 2**n`` (capped, with full jitter), or
    the upstream's ``Retry-After`` when it gives one and it is within the cap."""

    attempts: int = 2
    backoff_ms: float = 100.0
    max_backoff_ms: float = 2000.0


@dataclass(frozen=True)
class Timeouts:
    connect_ms: float = 2000.0
    first_token_ms: float = 30000.0  # until the first chunk (streaming) or the answer
    total_ms: float = 120000.0


@dataclass(frozen=True)
class ModelRef:
    """``provider/model``."""

    provider: str
    model: str

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        provider, sep, model = text.partition("/")
        if not sep or not provider or not model:
            raise ValueError(f"name a model as 'provider/model', not {text!r}")
        return cls(provider, model)

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@dataclass(frozen=True)
class LlmService:
    """The ``llm`` section of a service of kind ``llm``."""

    fallbacks: tuple[ModelRef, ...] = ()
    retry: Retry = field(default_factory=Retry)
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_tokens: int = 1024
    budgets: dict[str, float] = field(default_factory=dict)  # period -> USD
    judge: ModelRef | None = None
    #: Every provider of the spec (a prompt version may name any of their models).
    providers: dict[str, Provider] = field(default_factory=dict)

    def price(self, ref: ModelRef) -> Price:
        """The price of a model the spec declares (KeyError otherwise)."""
        return self.providers[ref.provider].models[ref.model]


def check_model(ref: ModelRef, providers: dict[str, Provider]) -> str | None:
    """What is wrong with naming *ref*, or None."""
    provider = providers.get(ref.provider)
    if provider is None:
        known = ", ".join(sorted(providers)) or "none"
        return f"unknown provider {ref.provider!r}; the spec's providers: {known}"
    if ref.model not in provider.models:
        known = ", ".join(sorted(provider.models)) or "none"
        return f"provider {ref.provider!r} has no model {ref.model!r}; its models: {known}"
    return None
