"""A service version's production statistics over a time window.

The evidence is the audit log itself: every request the gateway answered (or
refused) for a version is an inference record with its status, decision and
latency, and ground truth that arrived later sits in ``feedback`` keyed by the
record's id. So a window is exactly what was recorded, and anyone can recompute it
from the log. Canary analysis (:mod:`prodgate.rollout.analysis`) compares two of
them; production metrics (:mod:`prodgate.monitor.production`) report them.

Windows are half-open, ``start_us <= ts_us < end_us``, so consecutive intervals
never count a request twice. Queries use the ``(service, ts_us)`` index and return
aggregates, one latency value and at most :data:`FEEDBACK_LIMIT` labelled rows.

A prompt version's window (a service of kind ``llm``) also carries its
:class:`~prodgate.monitor.llm.LlmFigures`: time to first token, tokens, cost per call
and the feedback on its answers, which is graded (right or wrong, or a score) rather
than compared with a ``prediction``. That reads one row per request in the window.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE
from prodgate.monitor import llm as llm_module
from prodgate.monitor.llm import LlmFigures
from prodgate.spec import Business
from prodgate.store.tables import audit_log, feedback

#: Labelled decisions read per version and window (the newest); enough for a rate
#: to be known within about a percent, small enough to keep a tick cheap.
FEEDBACK_LIMIT = 5000


@dataclass(frozen=True)
class VersionStats:
    """What one version did in one window."""

    version: int
    start_us: int
    end_us: int
    requests: int = 0  # records with a status (answered or refused)
    errors: int = 0  # status >= 500
    successes: int = 0  # status 200
    escalations: int = 0  # 200s escalated to a person
    violations: int = 0  # status 422 (contract violations)
    p95_latency_ms: float | None = None  # of the 200s
    labelled: int = 0  # 200s with feedback
    graded: int = 0  # labelled with a class label (accuracy's denominator)
    correct: int = 0
    cost_total: float | None = None  # business cost of the labelled decisions
    cost_sq: float | None = None  # sum of their squares (the spread); None: unknown
    llm: LlmFigures | None = None  # a prompt version's LLM figures; None for other kinds

    def cost_variance(self) -> float:
        """Sample variance of the per-decision cost (0 when it is not known)."""
        n = self.labelled
        if self.cost_total is None or self.cost_sq is None or n < 2:
            return 0.0
        mean = self.cost_total / n
        return max(0.0, (self.cost_sq - n * mean * mean) / (n - 1))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def escalation_rate(self) -> float:
        return self.escalations / self.successes if self.successes else 0.0

    @property
    def violation_rate(self) -> float:
        return self.violations / self.requests if self.requests else 0.0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def cost_per_decision(self) -> float | None:
        if self.cost_total is None or not self.labelled:
            return None
        return self.cost_total / self.labelled

    def as_dict(self) -> dict[str, Any]:
        """Counts and derived rates, as recorded in the audit log."""
        out = asdict(self)
        # Absent, not null, for other kinds: their records read as they always have.
        out.pop("llm")
        if self.llm is not None:
            out["llm"] = self.llm.as_dict()
        out.update(
            error_rate=self.error_rate,
            escalation_rate=self.escalation_rate,
            violation_rate=self.violation_rate,
            accuracy=self.accuracy,
            cost_per_decision=self.cost_per_decision,
        )
        return out


def window_conditions(service: str, version: int, start_us: int, end_us: int) -> list[Any]:
    """The conditions that select a version's requests in ``[start_us, end_us)``."""
    # service and ts_us first: they are the index; the rest filter the range it yields.
    # Shadow copies (action "shadow") answered nobody, so only "predict" counts.
    return [
        audit_log.c.service == service,
        audit_log.c.ts_us >= start_us,
        audit_log.c.ts_us < end_us,
        audit_log.c.kind == KIND_INFERENCE,
        audit_log.c.action == "predict",
        audit_log.c.version == version,
        audit_log.c.status.is_not(None),
    ]


def _count(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def window_stats(
    conn: Connection,
    service: str,
    version: int,
    start_us: int,
    end_us: int,
    business: Business | None = None,
    *,
    quality_start_us: int | None = None,
    feedback_limit: int = FEEDBACK_LIMIT,
    llm: bool | None = None,
) -> VersionStats:
    """Measure *version* of *service* over ``[start_us, end_us)``.

    Requests, errors, 422s, escalations and the p95 latency of successful requests
    come from the audit log's inference records; accuracy and (with *business*) the
    business cost per decision come from the feedback those decisions received, for
    the decisions made from *quality_start_us* (default *start_us*) on: ground truth
    arrives late, so quality is better judged over a longer stretch than operations.

    A prompt version (*llm*; None: look its flavor up in the registry) also gets its
    :class:`~prodgate.monitor.llm.LlmFigures`, and its accuracy counts the answers
    whose feedback graded them right among those graded right or wrong.
    """
    where = window_conditions(service, version, start_us, end_us)
    ok = audit_log.c.status == 200
    row = conn.execute(
        sa.select(
            sa.func.count(),
            _count(audit_log.c.status >= 500),
            _count(ok),
            _count(ok & (audit_log.c.decision == "escalated")),
            _count(audit_log.c.status == 422),
            _count(ok & audit_log.c.latency_ms.is_not(None)),
        ).where(*where)
    ).one()
    requests, errors, successes, escalations, violations, timed = (int(v or 0) for v in row)
    p95 = None
    if timed:
        # Nearest-rank percentile, computed by the database so only one value travels.
        rank = math.ceil(0.95 * timed) - 1
        p95_value = conn.execute(
            sa.select(audit_log.c.latency_ms)
            .where(*where, ok, audit_log.c.latency_ms.is_not(None))
            .order_by(audit_log.c.latency_ms)
            .offset(rank)
            .limit(1)
        ).scalar()
        p95 = float(p95_value) if p95_value is not None else None
    quality_start = start_us if quality_start_us is None else quality_start_us
    if llm if llm is not None else llm_module.is_prompt_version(conn, service, version):
        figures = llm_module.read_figures(
            conn,
            where,
            window_conditions(service, version, quality_start, end_us),
            feedback_limit=feedback_limit,
        )
        return VersionStats(
            version=version,
            start_us=start_us,
            end_us=end_us,
            requests=requests,
            errors=errors,
            successes=successes,
            escalations=escalations,
            violations=violations,
            p95_latency_ms=p95,
            labelled=figures.labelled,
            graded=figures.graded,
            correct=figures.correct,
            llm=figures,
        )
    labelled = graded = correct = 0
    cost = 0.0 if business is not None else None
    cost_sq = 0.0 if business is not None else None
    if successes or quality_start < start_us:
        rows = conn.execute(
            sa.select(audit_log.c.payload, audit_log.c.decision, feedback.c.value)
            .join(feedback, feedback.c.inference_id == audit_log.c.id)
            .where(*window_conditions(service, version, quality_start, end_us), ok)
            .order_by(audit_log.c.ts_us.desc())
            .limit(feedback_limit)
        ).all()
        for payload_text, decision, value_text in rows:
            payload = orjson.loads(payload_text)
            truth = orjson.loads(value_text)
            output = payload.get("output") or {}
            prediction = output.get("prediction") if isinstance(output, dict) else None
            labelled += 1
            # Classifier feedback is stored as the label's text; a number is a
            # regressor's true value, for which accuracy means nothing.
            if isinstance(truth, str):
                graded += 1
                correct += str(prediction) == truth
            if business is not None and cost is not None and cost_sq is not None:
                row_in = payload.get("input")
                one = business.cost_of(
                    row_in if isinstance(row_in, dict) else {},
                    truth,
                    prediction,
                    decision == "escalated",
                )
                cost += one
                cost_sq += one * one
    return VersionStats(
        version=version,
        start_us=start_us,
        end_us=end_us,
        requests=requests,
        errors=errors,
        successes=successes,
        escalations=escalations,
        violations=violations,
        p95_latency_ms=p95,
        labelled=labelled,
        graded=graded,
        correct=correct,
        cost_total=cost,
        cost_sq=cost_sq,
    )
