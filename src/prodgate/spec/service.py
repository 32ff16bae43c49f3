"""The spec as the rest of prodgate sees it: services, their owners and policies."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from prodgate.exceptions import UnknownServiceError
from prodgate.spec.features import NO_FEATURES, FeatureView, ServiceFeatures
from prodgate.spec.guard import OFF, GuardSpec
from prodgate.spec.llm import LlmService, Provider
from prodgate.spec.monitor import OFF as NO_MONITOR
from prodgate.spec.monitor import MonitorSpec
from prodgate.spec.policy import Policy
from prodgate.spec.review import NO_REVIEW, ReviewSpec


@dataclass(frozen=True)
class Owner:
    name: str
    contact: str


@dataclass(frozen=True)
class ServiceSpec:
    """One service as declared in the spec."""

    name: str
    owner: Owner
    kind: str
    contract: dict[str, Any]
    labels: tuple[str, ...] | None = None
    escalation_below: float | None = None
    max_batch_size: int | None = None
    max_wait_ms: float | None = None
    description: str = ""
    output_contract: dict[str, Any] | None = None
    policy: Policy = field(default_factory=Policy)
    #: Open for predict without a key (auth mode ``keys``).
    public: bool = False
    #: Limits on the service as a whole, across every caller: rps, rpm, rows_per_minute,
    #: concurrency.
    limits: dict[str, int] = field(default_factory=dict)
    #: The route and budgets of a service of kind ``llm``; None for other kinds.
    llm: LlmService | None = None
    #: The rails on both sides of the model (detectors, thresholds, actions).
    guard: GuardSpec = OFF
    #: The production window, drift settings, alert rules and webhooks.
    monitor: MonitorSpec = NO_MONITOR
    #: The features the model reads from feature views, besides what callers send.
    features: ServiceFeatures = NO_FEATURES
    #: Which decisions reach a person (escalations, rules, a sample), and how.
    review: ReviewSpec = NO_REVIEW

    @property
    def feature_names(self) -> list[str]:
        """The model's input fields: the contract's, in its order, then the features
        that enrichment adds from feature views."""
        return list(self.model_contract.get("properties", {}))

    @cached_property
    def model_contract(self) -> dict[str, Any]:
        """The JSON Schema of a row as the model sees it: :attr:`contract` (what callers
        send) with each feature from a view added and required (enrichment always
        fills it, with its default where the view has none to give). The same object as
        :attr:`contract` for a service without features."""
        if not self.features.on:
            return self.contract
        added = self.features.properties()
        return {
            **self.contract,
            "properties": {**self.contract.get("properties", {}), **added},
            "required": [*self.contract.get("required", []), *added],
        }

    def as_labels(self, values: Sequence[Any]) -> list[str] | None:
        """True classes *values* as the service's labels; None if some stand for none.

        The one rule for ground truth, wherever it comes from (a holdout's label column
        in ``evaluate``, a feedback's ``label``):

        - a value whose text is a declared label is that label (the spec keeps labels as
          text: ``[false, true]`` are ``"False"``, ``"True"``; ``[0, 1]`` are ``"0"``,
          ``"1"``); a whole number written as a float (``1.0``) counts as the integer;
        - otherwise integers 0..k-1, and False/True, stand for the k declared labels in
          order, unless a declared label is itself an integer other than its position
          (labels ``[1, 2]``: 1 would then mean two things);
        - all of *values* are read the same one of these two ways, never mixed;
        - without declared labels, any text, integer or boolean is a label as text.

        A value that is none of these (a list, None, 1.5) stands for no label.
        """
        plain = [_whole(v) for v in values]
        if not all(isinstance(v, (str, int)) for v in plain):  # bool is an int
            return None
        if self.labels is None:
            return [str(v) for v in plain]
        if all(str(v) in self.labels for v in plain):
            return [str(v) for v in plain]
        if not self.labels_by_position:
            return None
        if all(isinstance(v, int) and 0 <= v < len(self.labels) for v in plain):
            return [self.labels[int(v)] for v in plain]
        return None

    def as_label(self, value: Any) -> str | None:
        """One true class as the service's label (see :meth:`as_labels`), or None."""
        found = self.as_labels([value])
        return found[0] if found is not None else None

    @property
    def labels_by_position(self) -> bool:
        """Whether integers 0..k-1 may stand for the declared labels (see :meth:`as_labels`)."""
        if self.labels is None:
            return False
        return all(
            not label.lstrip("-").isdigit() or label == str(i)
            for i, label in enumerate(self.labels)
        )


def _whole(value: Any) -> Any:
    """*value* as a plain Python value, a whole float as its integer (``1.0`` is 1)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # a numpy scalar
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


@dataclass(frozen=True)
class Spec:
    path: Path
    services: dict[str, ServiceSpec] = field(default_factory=dict)
    #: The upstream LLM APIs services of kind ``llm`` may call, by name.
    providers: dict[str, Provider] = field(default_factory=dict)
    #: The feature views services read, by name.
    views: dict[str, FeatureView] = field(default_factory=dict)

    def service(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str) -> UnknownServiceError:
        """The error for a service this spec does not declare, naming those it does."""
        known = ", ".join(sorted(self.services)) or "none"
        return UnknownServiceError(f"unknown service {name!r}; {self.path.name} declares: {known}")
