"""The store's tables (SQLAlchemy Core). Schema changes go through migrations/."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

#: Immutable registered model versions, numbered 1, 2, 3 per service.
versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("number", Integer, nullable=False),
    Column("flavor", String(32), nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    # Path relative to HOME/artifacts, or the ``module:function`` of a callable.
    Column("artifact", String(1024), nullable=False),
    Column("source", String(1024), nullable=False),
    # Trust in the artifact's code (pickle-based formats, --trust-pickle).
    Column("trusted", Boolean, nullable=False, default=False),
    # JSON list of the skops types outside the allow-list trusted by name (--trust-types).
    Column("trusted_types", Text, nullable=True),
    Column("data_fingerprint", Text, nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("created_by", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    # The person accountable when an agent registered it (its key's owner).
    Column("owner", String(128), nullable=True),
    UniqueConstraint("service", "number", name="uq_versions_service_number"),
)

#: The traffic split of each service: production, a canary at a weight (0..1), a
#: shadow that sees copies of requests, the version before production (for
#: rollback) and the kill switch.
deployments = Table(
    "deployments",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("production_version", Integer, nullable=True),
    Column("updated_by", String(128), nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("canary_version", Integer, nullable=True),
    Column("canary_weight", Float, nullable=False, default=0.0),
    Column("shadow_version", Integer, nullable=True),
    Column("previous_version", Integer, nullable=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("disabled_reason", Text, nullable=True),
)

#: Stored offline evaluations of a version on a dataset.
evaluations = Table(
    "evaluations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("dataset", Text, nullable=False),  # fingerprint JSON
    Column("label_column", String(128), nullable=False),
    Column("result", Text, nullable=False),  # metrics, business, cohorts, gates (JSON)
    Column("passed", Boolean, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Index("ix_evaluations_service_version", "service", "version"),
)

#: A person's sign-off on a version.
approvals = Table(
    "approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("approver", String(128), nullable=False),
    # The person accountable when the approver is an agent (its key's owner).
    Column("owner", String(128), nullable=True),
    Column("note", Text, nullable=False, default=""),
    Column("override_gates", Boolean, nullable=False, default=False),
    Column("reason", Text, nullable=False, default=""),
    Column("evaluation_id", Integer, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    UniqueConstraint("service", "version", "approver", name="uq_approvals_once"),
)

#: Ground truth that arrives after the decision; one per inference.
feedback = Table(
    "feedback",
    metadata,
    Column("inference_id", String(32), primary_key=True),
    Column("service", String(128), nullable=False),
    Column("version", Integer, nullable=True),
    Column("value", Text, nullable=False),  # JSON: the true label or value
    Column("source", String(128), nullable=False),
    Column("observed_at_us", BigInteger, nullable=False),
    Column("received_at_us", BigInteger, nullable=False),
    Index("ix_feedback_service_received", "service", "received_at_us"),
)

#: Canary rollouts; one active (not finished) per service at most.
rollouts = Table(
    "rollouts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service", String(64), nullable=False),
    Column("canary_version", Integer, nullable=False),
    Column("baseline_version", Integer, nullable=False),
    Column("state", String(24), nullable=False),
    Column("step", Integer, nullable=False),  # index into policy steps
    Column("failures", Integer, nullable=False),
    Column("policy", Text, nullable=False),  # JSON of the rollout policy in force
    Column("interval_started_at_us", BigInteger, nullable=False),
    Column("started_by", String(128), nullable=False),
    Column("started_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
    Column("reason", Text, nullable=False, default=""),
    Index("ix_rollouts_service_state", "service", "state"),
)

#: The append-only, hash-chained audit log of inferences and governance actions.
#: ``seq`` is contiguous from 1, ``leaf_hash`` is sha256(0x00 || canonical record)
#: as in RFC 6962, so a Merkle tree over leaves by seq (inclusion proofs, signed
#: checkpoints) can be added beside this table without rewriting it; ``chain_hash``
#: is sha256(previous chain_hash || leaf_hash) and makes a removal or reordering show.
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(32), nullable=False),
    Column("ts_us", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("service", String(128), nullable=True),
    Column("version", Integer, nullable=True),
    Column("action", String(32), nullable=False),
    Column("actor", String(128), nullable=True),
    Column("status", Integer, nullable=True),
    Column("decision", String(16), nullable=True),
    Column("confidence", Float, nullable=True),
    Column("latency_ms", Float, nullable=True),
    Column("payload", Text, nullable=False),
    Column("leaf_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False),
    UniqueConstraint("id", name="uq_audit_log_id"),
    Index("ix_audit_log_service_ts", "service", "ts_us"),
    Index("ix_audit_log_kind_service", "kind", "service", "seq"),
)

#: Small shared counters; ``generation`` moves on every control-plane change so that
#: gateways refresh their in-memory state without a per-request query.
state = Table(
    "state",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

#: API keys: who may call what, and how much. Only a hash of each key's secret is
#: stored; ``id`` is the public part of the key (``pg_<id>_<secret>``), so a lookup is
#: one primary-key read. A rotation keeps the id (the identity on audit records) and
#: moves the old hash to ``previous_hash``, valid until ``previous_until_us``.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64), nullable=False),
    Column("previous_hash", String(64), nullable=True),
    Column("previous_until_us", BigInteger, nullable=True),
    Column("scopes", Text, nullable=False),  # JSON list
    Column("owner", String(128), nullable=False),  # the accountable person
    Column("agent", Boolean, nullable=False, default=False),
    Column("limits", Text, nullable=False, default="{}"),  # JSON: rps, rpm, ...
    Column("created_by", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
    Column("expires_at_us", BigInteger, nullable=True),
    Column("revoked_at_us", BigInteger, nullable=True),
    Column("revoked_by", String(128), nullable=True),
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_api_keys_updated", "updated_at_us"),
)

#: Artifact bytes, content addressed by the sha256 versions record, so that a replica
#: with only the store's URL can serve. ``kind`` is ``file`` (the stream is the file)
#: or ``folder`` (the stream is a deterministic tar of it); ``stream_sha256`` and
#: ``size`` are of the stored stream, and ``chunks`` counts its rows in
#: ``artifact_chunks``. A row here is written in the same transaction as its chunks,
#: so it only exists when they are all stored.
artifacts = Table(
    "artifacts",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("stream_sha256", String(64), nullable=False),
    Column("chunks", Integer, nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

#: The stored stream of each artifact in pieces (bytea / BLOB), numbered from 0.
artifact_chunks = Table(
    "artifact_chunks",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("data", LargeBinary, nullable=False),
)

#: Reference profiles: per version, the statistics of the data it was registered (or
#: later profiled) with, computed once and compared with every production window.
#: ``profile`` is the JSON of :class:`prodgate.monitor.profile.Profile`.
profiles = Table(
    "profiles",
    metadata,
    Column("service", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("profile", Text, nullable=False),
    Column("source", Text, nullable=False),  # what it was computed from (file, fingerprint)
    Column("rows", BigInteger, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("created_at_us", BigInteger, nullable=False),
)

#: Production windows: what one gateway replica counted for one version in one window
#: (``start_us`` is the window's start, ``length_us`` its length). Each replica
#: replaces its own row with its running totals as it flushes, so readers merge a
#: window by summing its rows over replicas.
monitor_windows = Table(
    "monitor_windows",
    metadata,
    Column("service", String(128), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("start_us", BigInteger, primary_key=True, autoincrement=False),
    Column("replica", String(64), primary_key=True),
    Column("length_us", BigInteger, nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("counts", Text, nullable=False),  # JSON of the window's tallies
    Column("updated_at_us", BigInteger, nullable=False),
    Index("ix_monitor_windows_service_start", "service", "start_us"),
)

#: Alert rules' states: one row per service and rule; a transition is a conditional
#: update (only the replica whose update matched the old state records and delivers it).
alert_states = Table(
    "alert_states",
    metadata,
    Column("service", String(128), primary_key=True),
    Column("rule", String(128), primary_key=True),
    Column("state", String(16), nullable=False),  # ok, pending, firing
    Column("value", Float, nullable=True),  # the figure at the last evaluation
    Column("streak", Integer, nullable=False),  # evaluations in a row against the state
    Column("since_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

#: The online feature store when Redis is not configured: the latest value of each
#: feature view's features per entity (``entity`` is the key as text), written by
#: ``prodgate features materialize`` and read, one batched query per micro-batch, by
#: the gateway's enrichment stage. ``feature_values`` is the JSON of the features,
#: ``event_us`` the source's timestamp of those values (their freshness).
feature_values = Table(
    "feature_values",
    metadata,
    Column("view", String(64), primary_key=True),
    Column("entity", String(255), primary_key=True),
    Column("feature_values", Text, nullable=False),
    Column("event_us", BigInteger, nullable=False),
    Column("written_us", BigInteger, nullable=False),
)

#: Each materialisation run of a view: to which online store, of which definition, up
#: to which source timestamp (the next run's ``--since`` by default), how many rows and
#: entities.
feature_loads = Table(
    "feature_loads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("view", String(64), nullable=False),
    Column("target", String(16), nullable=False),  # store | redis
    #: What was loaded: a hash of the source (path or query), entity, timestamp column and
    #: features. A run continues from the last run's watermark only when it matches.
    Column("definition", String(64), nullable=False),
    Column("since_us", BigInteger, nullable=True),
    Column("watermark_us", BigInteger, nullable=True),
    Column("source_rows", BigInteger, nullable=False),
    Column("entities", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("at_us", BigInteger, nullable=False),
    Index("ix_feature_loads_view_target", "view", "target", "definition", "id"),
)

#: The review queue: one item per inference that a person must (escalated) or may
#: (sampled) judge. Created by the recorder in the same transaction as the inference's
#: audit record (:mod:`prodgate.pipeline.review_entry`); its life after that (claims with a
#: lease, decisions, adjudication, the final label) is :mod:`prodgate.review.queue`'s,
#: and ``attributions`` (the explanation, computed off the request path) is
#: :mod:`prodgate.review.explaining`'s.
review_items = Table(
    "review_items",
    metadata,
    Column("id", String(32), primary_key=True),  # the inference's id
    Column("service", String(128), nullable=False),
    Column("version", Integer, nullable=True),
    Column("state", String(16), nullable=False),  # open | adjudication | decided
    Column("reasons", Text, nullable=False),  # JSON list: low_confidence, guard, rule:NAME, sampled
    Column("cohort", String(128), nullable=True),
    Column("decision", String(16), nullable=False),  # the model's: auto | escalated
    Column("prediction", Text, nullable=True),  # JSON: the model's answer
    Column("reviewers", Integer, nullable=False),  # reviews needed
    Column("created_us", BigInteger, nullable=False),  # the inference's time
    Column("deadline_us", BigInteger, nullable=True),
    Column("claimed_by", String(128), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("final", Text, nullable=True),  # JSON: the final label or value
    Column("override", Boolean, nullable=True),  # the final differs from the model's answer
    Column("decided_us", BigInteger, nullable=True),
    Column("attributions", Text, nullable=True),  # JSON: the decision's explanation
    Index("ix_review_items_service_state", "service", "state", "created_us"),
)

#: Each reviewer's act on an item: a review, an adjudication, or a skip.
review_decisions = Table(
    "review_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", String(32), nullable=False),
    Column("reviewer", String(128), nullable=False),
    Column("role", String(16), nullable=False),  # review | adjudicate | skip
    Column("label", Text, nullable=True),  # JSON
    Column("note", Text, nullable=False, default=""),
    Column("claimed_us", BigInteger, nullable=True),
    Column("at_us", BigInteger, nullable=False),
    UniqueConstraint("item_id", "reviewer", "role", name="uq_review_decisions_once"),
    Index("ix_review_decisions_item", "item_id"),
)
