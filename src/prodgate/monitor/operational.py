"""Where the alert rules' figures come from.

The monitor report (``prodgate.monitor.report.figures``) gives every figure the
spec's rules can name: drift and data quality from the production windows, the
label-free estimate, and the operational rates. Beside it, :func:`operational_figures`
reads the few figures the audit log alone answers (error, contract-violation and
escalation rates of the service; realised accuracy and cost of its production
version), so rules on those work without reference profiles or windows.
:func:`default_source` is what the server evaluates with: the report's figures over
the operational ones where the report is installed, else the operational ones, and
in both cases the review queue's (:func:`prodgate.review.stats.review_figures`).
"""

from __future__ import annotations

import importlib
from typing import Any

import sqlalchemy as sa

from prodgate.audit.record import KIND_INFERENCE
from prodgate.monitor.alerts import Figures, FiguresSource
from prodgate.monitor.window import window_stats
from prodgate.review.stats import review_figures
from prodgate.rollout.split import get_deployment
from prodgate.spec import Spec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log


def _count(condition: Any) -> Any:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


def operational_figures(
    store: Store, spec: Spec, service: str, *, span_s: float, now_us: int
) -> Figures:
    """``error_rate``, ``violation_rate`` and ``escalation_rate`` of every request to
    *service* in the *span_s* seconds before *now_us* (refusals before a version was
    chosen included), and ``accuracy`` and ``cost`` of its production version's
    decisions that received feedback; None where nothing was counted."""
    start = now_us - int(span_s * 1_000_000)
    c = audit_log.c
    ok = c.status == 200
    with store.read() as conn:
        row = conn.execute(
            sa.select(
                sa.func.count(),
                _count(c.status >= 500),
                _count(c.status == 422),
                _count(ok),
                _count(ok & (c.decision == "escalated")),
            ).where(
                c.service == service,
                c.ts_us >= start,
                c.ts_us < now_us,
                c.kind == KIND_INFERENCE,
                c.action == "predict",
                c.status.is_not(None),
            )
        ).one()
        requests, errors, refused, answered, escalated = (int(v or 0) for v in row)
        deployment = get_deployment(conn, service)
        version = deployment.production_version if deployment is not None else None
        quality = None
        if version is not None and service in spec.services:
            business = spec.services[service].policy.business
            quality = window_stats(conn, service, version, start, now_us, business, llm=False)
    figures: dict[str, float | None] = {
        "error_rate": errors / requests if requests else None,
        "violation_rate": refused / requests if requests else None,
        "escalation_rate": escalated / answered if answered else None,
        "accuracy": quality.accuracy if quality is not None else None,
        "cost": quality.cost_per_decision if quality is not None else None,
    }
    return figures


def combined(*sources: FiguresSource) -> FiguresSource:
    """A source whose figures are those of *sources*, a later one's known values
    winning over an earlier one's."""

    def figures(store: Store, spec: Spec, service: str, *, span_s: float, now_us: int) -> Figures:
        out: dict[str, float | None] = {}
        for source in sources:
            for key, value in source(store, spec, service, span_s=span_s, now_us=now_us).items():
                if value is not None or key not in out:
                    out[key] = value
        return out

    return figures


def default_source() -> FiguresSource:
    """The server's source of figures (see the module's docstring)."""
    try:
        report = importlib.import_module("prodgate.monitor.report")
    except ImportError:
        return combined(operational_figures, review_figures)
    found: FiguresSource | None = getattr(report, "figures", None)
    first = combined(operational_figures, review_figures)
    return first if found is None else combined(first, found)
