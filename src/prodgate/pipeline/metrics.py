"""The gateway's Prometheus metrics, in a registry of its own (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

UNKNOWN = "(unknown)"  # label for names that are not declared: bounded cardinality

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "prodgate_requests",
            "Prediction requests by service, version and HTTP status.",
            ["service", "version", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "prodgate_request_duration_seconds",
            "Time from request to response of prediction requests.",
            ["service"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "prodgate_batch_size",
            "Rows per model call.",
            ["service", "version"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.violations = Counter(
            "prodgate_contract_violations",
            "Contract violations by service and input field ((unknown) for undeclared ones).",
            ["service", "field"],
            registry=r,
        )
        self.decisions = Counter(
            "prodgate_decisions",
            "Decisions by service, version and outcome (auto, escalated).",
            ["service", "version", "decision"],
            registry=r,
        )
        self.escalations = Counter(
            "prodgate_escalations",
            "Decisions escalated to a person (confidence below the service's threshold).",
            ["service", "version"],
            registry=r,
        )
        self.feature_lookups = Counter(
            "prodgate_feature_lookups",
            "Rows looked up in a feature view, by service, view and outcome: fresh, stale "
            "(older than the view's ttl) or missing (no such entity).",
            ["service", "view", "status"],
            registry=r,
        )
        self.feature_defaults = Counter(
            "prodgate_feature_defaults",
            "Features that took their view's default (missing, stale or null values).",
            ["service", "view", "feature"],
            registry=r,
        )
        self.feature_lookup_seconds = Histogram(
            "prodgate_feature_lookup_duration_seconds",
            "Time of one batched lookup in the online feature store (redis, store, feast).",
            ["view", "store"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
            registry=r,
        )
        self.feature_batch_size = Histogram(
            "prodgate_feature_lookup_batch_size",
            "Entities per batched lookup (concurrent requests share one).",
            ["view"],
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.feature_age = Histogram(
            "prodgate_feature_age_seconds",
            "Age of the oldest feature value in each batched lookup of a view (now minus "
            "its source timestamp): freshness.",
            ["view"],
            buckets=(60, 600, 3600, 21_600, 86_400, 604_800, 2_592_000, 7_776_000, 31_536_000),
            registry=r,
        )
        self.shed = Counter(
            "prodgate_shed_requests",
            "Requests refused with 503 because the model's queue was full.",
            ["service"],
            registry=r,
        )
        self.audit_commit = Histogram(
            "prodgate_audit_commit_records",
            "Audit records per store transaction (group commit).",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.audit_spooled = Counter(
            "prodgate_audit_spooled_records",
            "Audit records written to the local journal because the store was unreachable.",
            registry=r,
        )
        self.journal_records = Gauge(
            "prodgate_audit_journal_records",
            "Audit records in the local journal, waiting to be replayed into the store.",
            registry=r,
        )
        self.audit_commit_seconds = Histogram(
            "prodgate_audit_commit_seconds",
            "Time one audit group commit takes.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "prodgate_queue_rows",
            "Rows waiting for a model call.",
            ["service", "version"],
            registry=r,
        )
        self.load_failed = Gauge(
            "prodgate_version_load_failed",
            "1 while a deployed version cannot be loaded here; role is serving "
            "(production or canary) or shadow.",
            ["service", "version", "role"],
            registry=r,
        )
        self.auth_denied = Counter(
            "prodgate_auth_denied_total",
            "Requests refused for their key: reason is missing, malformed, unknown, revoked, "
            "expired (401) or scope (403).",
            ["reason"],
            registry=r,
        )
        self.rate_limited = Counter(
            "prodgate_rate_limited_total",
            "Requests refused with 429 by a limit: subject is key or service, limit its name "
            "(rps, rpm, rows_per_minute, concurrency), or unavailable while Redis is unreachable "
            "and the fail mode is closed.",
            ["subject", "limit"],
            registry=r,
        )
        self.limits_store_up = Gauge(
            "prodgate_limits_store_up",
            "1 while the store of limits (Redis, or this process's memory) answers; 0 while "
            "limit checks take the fail mode.",
            registry=r,
        )
        self.keys_loaded = Gauge(
            "prodgate_keys_loaded", "API keys this gateway holds in memory.", registry=r
        )
        self.llm = LlmMetrics(r)
        self.guard_verdicts = Counter(
            "prodgate_guard_verdicts",
            "Guard findings acted on, by service, direction (input, output), category "
            "(injection, pii, secret, leak, banned, schema) and action (block, redact, "
            "escalate, log).",
            ["service", "direction", "category", "action"],
            registry=r,
        )
        self.guard_timeouts = Counter(
            "prodgate_guard_timeouts",
            "Scans by a plug-in model that ran past its latency budget (their findings "
            "are not waited for).",
            ["service", "direction", "detector"],
            registry=r,
        )


class LlmMetrics:
    """What LLM services add: tokens, money, attempts, time to first token, breakers.

    ``key`` is the calling key's id (``-`` without one): bounded by the keys there are.
    """

    def __init__(self, r: CollectorRegistry) -> None:
        labels = ["service", "version", "provider", "model", "key"]
        self.tokens = Counter(
            "prodgate_llm_tokens",
            "Tokens of LLM calls by service, version, provider, model, key and kind "
            "(input, output, cached); estimated counts included.",
            [*labels, "kind"],
            registry=r,
        )
        self.cost = Counter(
            "prodgate_llm_cost_usd",
            "Cost in USD of LLM calls, from the providers' price table.",
            labels,
            registry=r,
        )
        self.calls = Counter(
            "prodgate_llm_calls",
            "LLM calls by service, version, provider, model, key and outcome (ok, error, "
            "stream_error, output_contract).",
            [*labels, "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "prodgate_llm_attempts",
            "Tries of an upstream model, by provider, model and outcome (ok, rate_limited, "
            "server, connect, timeout, dropped, stalled, client, breaker_open, ...).",
            ["provider", "model", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "prodgate_llm_fallbacks",
            "Calls answered by another model than the prompt version's own.",
            ["service", "version"],
            registry=r,
        )
        self.ttft = Histogram(
            "prodgate_llm_time_to_first_token_seconds",
            "Time from request to the first streamed chunk (or the whole answer).",
            ["service", "version"],
            buckets=(*_LATENCY_BUCKETS, 10.0, 30.0),
            registry=r,
        )
        self.breaker = Gauge(
            "prodgate_llm_breaker_state",
            "Circuit breaker of each provider and model: 0 closed, 1 half-open, 2 open.",
            ["provider", "model"],
            registry=r,
        )
