"""The one error hierarchy of prodgate.

Every error a user can cause or meet derives from :class:`ProdgateError`. Each class
knows its HTTP status and its RFC 9457 problem type, so the server maps errors to
``application/problem+json`` in one place and the CLI prints one readable line and
exits with code 2 (a user's mistake) without a traceback.

::

    ProdgateError                      500  internal
    ├── UsageError                     400  usage (a bad CLI argument or option)
    ├── SpecError                      400  spec (prodgate.yaml is broken; file:line: field)
    ├── NotFoundError                  404  not-found
    │   ├── UnknownServiceError        404  unknown-service
    │   ├── UnknownVersionError        404  unknown-version
    │   ├── UnknownInferenceError      404  unknown-inference
    │   ├── UnknownReviewItemError     404  unknown-review-item
    │   └── NoRolloutError             404  no-rollout
    ├── ConflictError                  409  conflict
    │   ├── ApprovalRefused            409  approval-refused (gates failed, duties, twice)
    │   ├── ReviewRefused              409  review-refused (duties, twice, leased, decided)
    │   ├── NotApprovedError           409  not-approved (no production/canary traffic)
    │   ├── RolloutRefused             409  rollout-refused (cannot start)
    │   └── RolloutStateError          409  rollout-state (command not allowed now)
    ├── AuthError                      401  unauthorized (admin API token missing or wrong)
    │   └── ForbiddenError             403  forbidden (the admin API is off)
    │       └── ToolNotAllowedError    403  tool-not-allowed (a tool the key may not offer)
    ├── BudgetExceededError            429  budget-exceeded (with Retry-After: the period's end)
    ├── ArtifactError                  422  artifact (a model file that cannot be loaded or trusted)
    ├── RequestError                   400  bad-request (malformed request to the gateway)
    │   ├── MalformedJSONError         400  malformed-json
    │   ├── UnsupportedMediaTypeError  415  unsupported-media-type
    │   ├── PayloadTooLargeError       413  payload-too-large
    │   ├── ContractViolationError     422  contract-violation (lists every violation)
    │   │   └── FeatureUnavailableError 422 feature-unavailable (no fresh value, no default)
    │   ├── GuardBlockedError          400  guard-blocked (a rail blocked the input; 422 the answer)
    │   └── UpstreamRejectedError      400  upstream-rejected (the LLM provider refused the request)
    ├── UnavailableError               503  unavailable
    │   ├── NotDeployedError           503  not-deployed
    │   ├── ServiceDisabledError       503  disabled (the kill switch is on)
    │   ├── OverloadedError            503  overloaded (with Retry-After)
    │   ├── UpstreamUnavailableError   503  upstream-unavailable (every breaker of the route open)
    │   └── FeatureStoreError          503  feature-store (the online feature store does not answer)
    ├── UpstreamFailedError            502  upstream-failed (every model of the route failed)
    ├── OutputContractError            502  output-contract (an LLM answer breaks the output schema)
    ├── ModelError                     500  model-error (the model failed on a valid input)
    ├── StoreError                     503  store (the database refused or failed a statement)
    │   └── StoreUnreachableError      503  store (no connection: may succeed later)
    └── AuditIntegrityError            500  audit-integrity (the chain does not verify)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM_BASE = "urn:prodgate:problem:"


@dataclass(frozen=True)
class Violation:
    """One thing wrong with an input: where (a JSON Pointer) and what."""

    path: str
    message: str

    @property
    def field(self) -> str:
        """The top-level field a violation concerns, for metrics (``-`` for the root)."""
        parts = [p for p in self.path.split("/") if p]
        # /inputs/field or /instances/3/field -> field
        while parts and (parts[0] in ("inputs", "instances") or parts[0].isdigit()):
            parts.pop(0)
        return parts[0] if parts else "-"

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


class ProdgateError(Exception):
    """Root of all prodgate errors."""

    status: int = 500
    slug: str = "internal"
    title: str = "Internal error"
    #: True where the cause is the user's input or usage (CLI exit code 2, HTTP 4xx).
    user_error: bool = True

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """The RFC 9457 problem document of this error."""
        body: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class UsageError(ProdgateError):
    status, slug, title = 400, "usage", "Bad usage"


class SpecError(ProdgateError):
    """prodgate.yaml is broken; ``detail`` reads ``file:line: field.path: what is wrong``."""

    status, slug, title = 400, "spec", "Invalid spec"


class NotFoundError(ProdgateError):
    status, slug, title = 404, "not-found", "Not found"


class UnknownServiceError(NotFoundError):
    slug, title = "unknown-service", "Unknown service"


class UnknownVersionError(NotFoundError):
    slug, title = "unknown-version", "Unknown version"


class UnknownInferenceError(NotFoundError):
    slug, title = "unknown-inference", "Unknown inference"


class UnknownReviewItemError(NotFoundError):
    slug, title = "unknown-review-item", "Unknown review item"


class NoRolloutError(NotFoundError):
    slug, title = "no-rollout", "No rollout"


class ConflictError(ProdgateError):
    status, slug, title = 409, "conflict", "Conflict"


class RolloutRefused(ConflictError):
    """A rollout cannot start (nothing in production, already production, one under way)."""

    slug, title = "rollout-refused", "Rollout refused"


class RolloutStateError(ConflictError):
    """The rollout is not in a state that allows the command (e.g. confirm while running)."""

    slug, title = "rollout-state", "Rollout in the wrong state"


class ApprovalRefused(ConflictError):
    """The approval breaks a rule (gates failed, separation of duties, twice)."""

    slug, title = "approval-refused", "Approval refused"


class ReviewRefused(ConflictError):
    """A review action breaks a rule: separation of duties, reviewing an item twice,
    an item leased to someone else, or one already decided."""

    slug, title = "review-refused", "Review refused"


class NotApprovedError(ConflictError):
    """A version without its approvals was asked to take production or canary traffic."""

    slug, title = "not-approved", "Version not approved"


class AuthError(ProdgateError):
    status, slug, title = 401, "unauthorized", "Unauthorized"


class ForbiddenError(AuthError):
    status, slug, title = 403, "forbidden", "Forbidden"


class KeyRejectedError(AuthError):
    """No key, or one that does not work: *reason* is ``missing``, ``malformed``,
    ``unknown``, ``revoked`` or ``expired`` (a bounded label for metrics)."""

    def __init__(self, detail: str, reason: str, key_id: str | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.key_id = key_id


class ScopeError(ForbiddenError):
    """A working key without the scope the route needs."""

    slug, title = "insufficient-scope", "Insufficient scope"
    reason = "scope"

    def __init__(self, detail: str, key_id: str | None = None) -> None:
        super().__init__(detail)
        self.key_id = key_id


class RateLimitedError(ProdgateError):
    """Over a rate limit, quota or concurrency limit of a key or a service."""

    status, slug, title = 429, "rate-limited", "Too many requests"

    def __init__(self, detail: str, retry_after: int, headers: dict[str, str]) -> None:
        super().__init__(detail)
        self.retry_after = retry_after
        self.headers = headers


class ToolNotAllowedError(ForbiddenError):
    """A request offers the LLM a tool its key has no ``tool:NAME`` scope for."""

    slug, title = "tool-not-allowed", "Tool not allowed"
    reason = "tool"

    def __init__(self, detail: str, key_id: str | None = None) -> None:
        super().__init__(detail)
        self.key_id = key_id


class BudgetExceededError(ProdgateError):
    """A budget in USD or a token limit of a key or a service has no room for the request
    (what it may cost at most) until its calendar period ends. *limit* names it
    (``budget_day``, ``budget_month``, ``tokens_per_minute``), *subject* whose it is
    (``key`` or ``service``); both go into the problem document."""

    status, slug, title = 429, "budget-exceeded", "Budget exceeded"

    def __init__(self, detail: str, retry_after: int, *, limit: str, subject: str) -> None:
        super().__init__(detail, limit=limit, subject=subject)
        self.retry_after = retry_after
        self.limit = limit
        self.subject = subject
        self.headers = {"Retry-After": str(retry_after)}


class ArtifactError(ProdgateError):
    status, slug, title = 422, "artifact", "Unusable model artifact"


class RequestError(ProdgateError):
    status, slug, title = 400, "bad-request", "Bad request"


class MalformedJSONError(RequestError):
    slug, title = "malformed-json", "Malformed JSON"


class UnsupportedMediaTypeError(RequestError):
    status, slug, title = 415, "unsupported-media-type", "Unsupported media type"


class PayloadTooLargeError(RequestError):
    status, slug, title = 413, "payload-too-large", "Payload too large"


class ContractViolationError(RequestError):
    """The request breaks its contract (a service's input contract, or the shape of a
    feedback or admin body); carries every violation."""

    status, slug, title = 422, "contract-violation", "Contract violation"

    def __init__(self, violations: list[Violation], detail: str | None = None) -> None:
        n = len(violations)
        super().__init__(
            detail or f"{n} violation{'s' if n != 1 else ''} in the request",
            errors=[v.as_dict() for v in violations],
        )
        self.violations = violations


class GuardBlockedError(RequestError):
    """A guard rail blocked the request's input (400) or the model's answer (422). The
    problem names the direction, category, kind and detector; it never echoes the text
    that was found."""

    slug, title = "guard-blocked", "Blocked by a guard rail"

    def __init__(
        self,
        direction: str,
        category: str,
        kind: str,
        detector: str,
        *,
        path: str = "",
    ) -> None:
        where = f" in {path}" if path else ""
        what = "input" if direction == "input" else "answer"
        super().__init__(
            f"the {what} was blocked by the guard: {category} ({kind}, found by {detector}){where}",
            direction=direction,
            category=category,
            kind=kind,
            detector=detector,
        )
        self.status = 400 if direction == "input" else 422
        self.direction = direction
        #: The guard's verdict on an answer that was blocked (for its record).
        self.verdict: Any = None


class FeatureUnavailableError(ContractViolationError):
    """A feature the model needs has no fresh value for the request's entity (the entity
    is missing from its view, or its value is older than the view's ttl or null) and the
    feature has no default; carries a violation per row and key, like a contract's."""

    slug, title = "feature-unavailable", "Feature unavailable"

    def __init__(self, violations: list[Violation]) -> None:
        n = len(violations)
        super().__init__(
            violations,
            f"{n} request row{'s' if n != 1 else ''} lack{'s' if n == 1 else ''} features "
            "that have no default",
        )


class UpstreamRejectedError(RequestError):
    """The LLM provider refused the request itself (a 4xx such as a context too long):
    retrying or another model would not help; the caller must change it."""

    slug, title = "upstream-rejected", "Refused by the model's provider"


class UnavailableError(ProdgateError):
    status, slug, title = 503, "unavailable", "Service unavailable"
    user_error = False


class NotDeployedError(UnavailableError):
    slug, title = "not-deployed", "No version deployed"


class ServiceDisabledError(UnavailableError):
    slug, title = "disabled", "Service disabled"


class OverloadedError(UnavailableError):
    slug, title = "overloaded", "Overloaded"

    def __init__(self, detail: str, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class UpstreamUnavailableError(UnavailableError):
    """Every model of an LLM route is behind an open circuit breaker: nothing was sent."""

    slug, title = "upstream-unavailable", "Every model of the route is unavailable"

    def __init__(self, detail: str, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = retry_after


class FeatureStoreError(UnavailableError):
    """The online feature store (Redis, the store, or Feast's) did not answer a lookup."""

    slug, title = "feature-store", "Feature store unavailable"
    user_error = False


class UpstreamFailedError(ProdgateError):
    """Every model of an LLM route failed (after retries and fallbacks)."""

    status, slug, title = 502, "upstream-failed", "The model's provider failed"
    user_error = False


class OutputContractError(ProdgateError):
    """An LLM answer breaks the service's output contract (structured output)."""

    status, slug, title = 502, "output-contract", "The answer breaks the output contract"
    user_error = False

    def __init__(self, violations: list[Violation], text: str) -> None:
        n = len(violations)
        super().__init__(
            f"the model's answer breaks the output contract ({n} violation{'s' * (n != 1)})",
            errors=[v.as_dict() for v in violations],
        )
        self.violations = violations
        self.text = text


class ModelError(ProdgateError):
    """The model failed on a valid input: the operator's problem, not the caller's.

    ``detail`` is what the caller reads; ``cause`` (the model's own exception) goes to
    the log and the audit record only, since it may quote inputs or internals.
    """

    status, slug, title = 500, "model-error", "Model error"
    user_error = False

    def __init__(self, detail: str, cause: str = "") -> None:
        super().__init__(detail)
        self.cause = cause


class StoreError(ProdgateError):
    status, slug, title = 503, "store", "Store unavailable"
    user_error = False


class StoreUnreachableError(StoreError):
    """The store could not be reached (refused, lost or timed-out connection): what was
    asked may well succeed later, unlike a statement the store refuses."""


class AuditIntegrityError(ProdgateError):
    status, slug, title = 500, "audit-integrity", "Audit chain broken"
    user_error = False
