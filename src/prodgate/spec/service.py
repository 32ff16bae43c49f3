"""The spec as the rest of prodgate sees it: services, their owners and policies."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodgate.exceptions import UnknownServiceError
from prodgate.spec.policy import Policy


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

    @property
    def feature_names(self) -> list[str]:
        """Input fields in the order the contract declares them."""
        return list(self.contract.get("properties", {}))


@dataclass(frozen=True)
class Spec:
    path: Path
    services: dict[str, ServiceSpec] = field(default_factory=dict)

    def service(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            raise self.unknown(name) from None

    def unknown(self, name: str) -> UnknownServiceError:
        """The error for a service this spec does not declare, naming those it does."""
        known = ", ".join(sorted(self.services)) or "none"
        return UnknownServiceError(f"unknown service {name!r}; {self.path.name} declares: {known}")
