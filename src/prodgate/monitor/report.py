"""The monitor report: how a service is doing in production, with or without labels.

:func:`monitor_report` answers ``prodgate monitor`` and ``GET
/v1/services/{service}/monitor``: for the production version (and a canary, or one
version asked for) over a span of time, per column the drift test and the data
quality (the production windows against the version's reference profile), dataset
drift, the label-free estimate of accuracy and business cost beside the realised
figures from feedback, per cohort where the spec declares cohorts, and the alerts
now firing. :func:`figures` flattens it into the canonical keys alert rules are
judged on (:mod:`prodgate.spec.monitor` lists them).

Where each piece comes from:

- the windows: ``monitor_windows``, merged over replicas and windows
  (:mod:`prodgate.monitor.tallies`), compared with the reference profile
  (:mod:`prodgate.monitor.profiles`) by :mod:`prodgate.monitor.drift` and
  :mod:`prodgate.monitor.quality`;
- the estimate: the calibration stored with the version's newest evaluation and the
  windows' ``calibration_counts`` (:mod:`prodgate.monitor.estimate`);
- operations and realised quality: the audit log and feedback
  (:func:`prodgate.monitor.window.window_stats`);
- per cohort: the window's newest decisions (at most :data:`COHORT_ROWS`) read from
  the audit log with their feedback, split by the cohorts' rules (the windows count
  the service as a whole; a cohort is a rule over a decision's inputs, so its rows
  are selected where the inputs are);
- alerts: ``alert_states`` (written by :mod:`prodgate.monitor.alerts`).

A piece that cannot be had says why in ``notes`` rather than failing the report: no
reference profile (drift cannot be judged; quality still can), no traffic, no
evaluation with a calibration (no estimate).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from prodgate.evaluation.scoring import _cohort_masks
from prodgate.exceptions import ProdgateError, UsageError
from prodgate.monitor import estimate as estimate_module
from prodgate.monitor import span as span_module
from prodgate.monitor.alerts import states as alert_states
from prodgate.monitor.window import window_conditions, window_stats
from prodgate.registry.approvals import latest_evaluation
from prodgate.registry.versions import get_version
from prodgate.rollout.split import get_deployment
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store, now_us
from prodgate.store.tables import audit_log, feedback

#: Decisions read per version for the cohort figures (the newest in the span).
COHORT_ROWS = 20_000
#: The version refusals before routing count under in the windows.
UNROUTED = 0


def _span(window_s: float, end_us: int | None) -> tuple[int, int]:
    end = end_us if end_us is not None else now_us()
    return end - int(window_s * 1_000_000), end


def _versions(
    conn: Connection, service: ServiceSpec, version: int | None
) -> tuple[dict[str, Any] | None, list[tuple[int, str]]]:
    """The deployment and the versions to report, each with its role."""
    dep = get_deployment(conn, service.name)
    if version is not None:
        get_version(conn, service.name, version)  # an unknown version is an error
        role = "version"
        if dep is not None and dep.production_version == version:
            role = "production"
        elif dep is not None and dep.canary_version == version:
            role = "canary"
        return (dep.as_dict() if dep else None), [(version, role)]
    if dep is None:
        return None, []
    out: list[tuple[int, str]] = []
    if dep.production_version is not None:
        out.append((dep.production_version, "production"))
    if dep.canary_version is not None and dep.canary_version != dep.production_version:
        out.append((dep.canary_version, "canary"))
    return dep.as_dict(), out


def _estimate(
    conn: Connection,
    service: ServiceSpec,
    number: int,
    current: Mapping[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """(the estimate, the calibration it used, why there is none)."""
    if service.kind != "classifier":
        return None, None, None
    evaluation = latest_evaluation(conn, service.name, number)
    cal = (evaluation or {}).get("calibration")
    if not cal:
        why = "no evaluation" if evaluation is None else "its newest evaluation has no calibration"
        return None, None, f"no label-free estimate: version {number} has {why}"
    counts = (current or {}).get("calibration_counts") or {}
    result = estimate_module.estimate(
        cal,
        counts,
        business=service.policy.business,
        escalation_below=service.escalation_below,
        column_means=span_module.column_means(current or {}),
    )
    if not result.rows:
        return None, cal, "no label-free estimate: no decision with a confidence in the span"
    return (
        {**result.as_dict(), "evaluation_id": evaluation["id"] if evaluation else None},
        cal,
        None,
    )


def _realised(
    conn: Connection, service: ServiceSpec, number: int, start: int, end: int
) -> dict[str, Any]:
    stats = window_stats(conn, service.name, number, start, end, service.policy.business)
    return {
        "requests": stats.requests,
        "answered": stats.successes,
        "errors": stats.errors,
        "error_rate": stats.error_rate if stats.requests else None,
        "escalation_rate": stats.escalation_rate if stats.successes else None,
        "labelled": stats.labelled,
        "accuracy": stats.accuracy,
        "cost_per_decision": stats.cost_per_decision,
    }


def _cohort_rows(
    conn: Connection, service: ServiceSpec, number: int, start: int, end: int
) -> list[Any]:
    return list(
        conn.execute(
            sa.select(
                audit_log.c.payload,
                audit_log.c.decision,
                audit_log.c.confidence,
                feedback.c.value,
            )
            .select_from(audit_log.outerjoin(feedback, feedback.c.inference_id == audit_log.c.id))
            .where(*window_conditions(service.name, number, start, end), audit_log.c.status == 200)
            .order_by(audit_log.c.ts_us.desc())
            .limit(COHORT_ROWS)
        ).all()
    )


def _cohorts(
    conn: Connection,
    service: ServiceSpec,
    number: int,
    start: int,
    end: int,
    cal: Mapping[str, Any] | None,
) -> list[dict[str, Any]]:
    """Per cohort entry (``name`` or ``name=value``): rows, escalation rate, the
    estimate and, from the feedback they got, realised accuracy and cost."""
    if not service.policy.cohorts or service.kind == "llm":
        return []
    rows = _cohort_rows(conn, service, number, start, end)
    if not rows:
        return []
    inputs, predictions, confidences, escalated, truth = [], [], [], [], []
    for payload_text, decision, confidence, value_text in rows:
        payload = orjson.loads(payload_text)
        row_in = payload.get("input")
        output = payload.get("output")
        inputs.append(row_in if isinstance(row_in, dict) else {})
        predictions.append(output.get("prediction") if isinstance(output, dict) else None)
        confidences.append(confidence)
        escalated.append(decision == "escalated")
        truth.append(None if value_text is None else orjson.loads(value_text))
    frame = pd.DataFrame(inputs, columns=service.feature_names)
    business = service.policy.business
    out: list[dict[str, Any]] = []
    for cohort in service.policy.cohorts:
        try:
            masks = _cohort_masks(cohort, frame)
        except ProdgateError:
            continue  # the rule needs a column the inputs lack: nothing to say
        for name, mask in masks:
            picked = np.flatnonzero(np.asarray(mask, dtype=bool))
            if not len(picked):
                continue
            out.append(
                _cohort_entry(
                    name,
                    cohort.name,
                    service,
                    cal,
                    business,
                    [inputs[i] for i in picked],
                    [predictions[i] for i in picked],
                    [confidences[i] for i in picked],
                    [escalated[i] for i in picked],
                    [truth[i] for i in picked],
                )
            )
    return out


def _cohort_entry(
    name: str,
    cohort: str,
    service: ServiceSpec,
    cal: Mapping[str, Any] | None,
    business: Any,
    inputs: Sequence[Mapping[str, Any]],
    predictions: Sequence[Any],
    confidences: Sequence[float | None],
    escalated: Sequence[bool],
    truth: Sequence[Any],
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "cohort": cohort,
        "rows": len(inputs),
        "escalation_rate": sum(escalated) / len(escalated),
        "estimate": None,
    }
    if cal is not None and service.kind == "classifier":
        means: dict[str, float] = {}
        for column in cal.get("values", {}):
            values = [r.get(column) for r in inputs]
            numbers = [float(v) for v in values if isinstance(v, (int, float))]
            if numbers:
                means[column] = sum(numbers) / len(numbers)
        counts = estimate_module.counts_of(
            [str(p) for p in predictions], [c if c is not None else None for c in confidences]
        )
        result = estimate_module.estimate(
            cal,
            counts,
            business=business,
            escalation_below=service.escalation_below,
            column_means=means,
        )
        entry["estimate"] = result.as_dict() if result.rows else None
    labelled = [i for i, t in enumerate(truth) if t is not None]
    graded = [i for i in labelled if isinstance(truth[i], str)]
    entry["labelled"] = len(labelled)
    entry["accuracy"] = (
        sum(str(predictions[i]) == truth[i] for i in graded) / len(graded) if graded else None
    )
    entry["cost_per_decision"] = None
    if business is not None and labelled:
        costs = [
            business.cost_of(inputs[i], truth[i], predictions[i], escalated[i]) for i in labelled
        ]
        entry["cost_per_decision"] = sum(costs) / len(costs)
    return entry


def _alerts(conn: Connection, service: ServiceSpec) -> list[dict[str, Any]]:
    rules = {r.name: r for r in service.monitor.alerts}
    out = []
    for state in alert_states(conn, service.name):
        rule = rules.get(state.rule)
        out.append(
            {
                "rule": state.rule,
                "when": rule.text if rule else None,
                "state": state.state,
                "value": state.value,
                "since_us": state.since_us,
                "updated_at_us": state.updated_at_us,
            }
        )
    return out


def _version_entry(
    conn: Connection,
    service: ServiceSpec,
    number: int,
    role: str,
    start: int,
    end: int,
    unrouted: Mapping[str, Any] | None,
    cohorts: bool = True,
) -> dict[str, Any]:
    notes: list[str] = []
    compared = span_module.compare(conn, service, number, start, end)
    notes.extend(compared.notes)
    current = compared.current
    estimate, cal, why = _estimate(conn, service, number, current)
    if why and compared.rows:
        notes.append(why)
    realised = _realised(conn, service, number, start, end)
    if realised["answered"] and current is None:
        notes.append(
            f"no production windows of version {number} in the span, though it answered "
            f"{realised['answered']:,} requests (monitoring off, or not flushed yet): "
            "drift and data quality need them"
        )
    # Refusals before routing belong to the service; they count against production.
    refused = int((current or {}).get("refused", 0))
    requests = int((current or {}).get("requests", 0))
    # Every field, at zero unless counted: a rule on a field's violations must see
    # them stop, not the figure vanish.
    violations: dict[str, int] = dict.fromkeys(service.feature_names, 0)
    for name, n in ((current or {}).get("violations") or {}).items():
        violations[name] = violations.get(name, 0) + int(n)
    if role == "production" and unrouted:
        refused += int(unrouted.get("refused", 0))
        requests += int(unrouted.get("requests", 0))
        for name, n in (unrouted.get("violations") or {}).items():
            violations[name] = violations.get(name, 0) + int(n)
    return {
        "version": number,
        "role": role,
        "requests": requests,
        "rows": compared.rows,
        "refused": refused,
        "violation_rate": refused / requests if requests else None,
        "violations": {
            name: {"count": n, "rate": n / requests if requests else None}
            for name, n in sorted(violations.items())
        },
        "profile": compared.profile,
        "drift": compared.drift,
        "columns": compared.columns,
        "estimate": estimate,
        "realised": realised,
        "cohorts": _cohorts(conn, service, number, start, end, cal) if cohorts else [],
        "features": _features(service, current),
        "notes": notes,
    }


def _features(service: ServiceSpec, current: Mapping[str, Any] | None) -> dict[str, Any]:
    """Per view the service reads: how its values were for the answered rows (fresh,
    stale, missing) and the shares stale and missing: a feature source that stopped
    refreshing shows here before anywhere else."""
    counted = (current or {}).get("features") or {}
    out: dict[str, Any] = {}
    for use in service.features.uses:
        counts = counted.get(use.view.name) or {}
        n = {s: int(counts.get(s, 0)) for s in ("fresh", "stale", "missing")}
        rows = sum(n.values())
        out[use.view.name] = {
            **n,
            "rows": rows,
            "stale_rate": n["stale"] / rows if rows else None,
            "missing_rate": n["missing"] / rows if rows else None,
        }
    return out


def monitor_report(
    store: Store,
    spec: Spec,
    service: str,
    window_s: float | None = None,
    version: int | None = None,
    *,
    end_us: int | None = None,
    cohorts: bool = True,
) -> dict[str, Any]:
    """How *service* did over the last *window_s* (default: its monitor window):
    the production version and any canary (or only *version*), with the alerts
    (*cohorts*: also the figures per cohort of the spec).

    Returns ``{"service", "kind", "window_s", "start_us", "end_us", "deployment",
    "versions": [{"version", "role", "requests", "rows", "refused",
    "violation_rate", "violations", "profile", "drift", "columns", "estimate",
    "realised", "cohorts", "notes"}], "alerts", "firing", "notes"}``.
    An unknown service or version is an error; everything else that is missing is
    said in ``notes``.
    """
    svc = spec.service(service)
    span = window_s if window_s is not None else svc.monitor.window_s
    start, end = _span(span, end_us)
    notes: list[str] = []
    with store.read() as conn:
        deployment, chosen = _versions(conn, svc, version)
        if not chosen:
            notes.append(f"{service} is not deployed: no production version to monitor")
        unrouted = span_module.current(conn, svc, UNROUTED, start, end)
        entries = [
            _version_entry(conn, svc, number, role, start, end, unrouted, cohorts)
            for number, role in chosen
        ]
        alerts = _alerts(conn, svc)
    if entries and not any(e["requests"] or e["realised"]["requests"] for e in entries):
        notes.append(f"no traffic in the last {_duration(span)}")
    return {
        "service": service,
        "kind": svc.kind,
        "window_s": span,
        "start_us": start,
        "end_us": end,
        "deployment": deployment,
        "versions": entries,
        "alerts": alerts,
        "firing": [a["rule"] for a in alerts if a["state"] == "firing"],
        "notes": notes,
    }


def drift_report(
    store: Store,
    spec: Spec,
    service: str,
    since_s: float,
    version: int | None = None,
    *,
    end_us: int | None = None,
) -> dict[str, Any]:
    """Drift of *service*'s production version (or *version*) over the last *since_s*:
    the span's windows merged against the reference (per column, and the dataset) and
    drift over time, one point per window.

    Returns ``{"service", "version", "since_s", "start_us", "end_us", "rows",
    "profile", "drift", "columns", "over_time", "notes"}``; ``version`` is None (and
    a note says why) when the service is not deployed.
    """
    svc = spec.service(service)
    start, end = _span(since_s, end_us)
    out: dict[str, Any] = {
        "service": service,
        "version": None,
        "since_s": since_s,
        "start_us": start,
        "end_us": end,
        "rows": 0,
        "profile": None,
        "drift": None,
        "columns": [],
        "over_time": [],
        "notes": [],
    }
    with store.read() as conn:
        _, chosen = _versions(conn, svc, version)
        if not chosen:
            out["notes"].append(f"{service} is not deployed: no production version to monitor")
            return out
        number = chosen[0][0]
        compared = span_module.compare(conn, svc, number, start, end)
        out.update(
            version=number,
            rows=compared.rows,
            profile=compared.profile,
            drift=compared.drift,
            columns=compared.columns,
            over_time=span_module.timeline(conn, svc, number, start, end),
            notes=list(compared.notes),
        )
    if not compared.rows:
        out["notes"].append(
            f"no production windows of version {number} in the last {_duration(since_s)}"
        )
    return out


def drift_html(
    store: Store,
    spec: Spec,
    service: str,
    since_s: float,
    version: int | None = None,
    *,
    end_us: int | None = None,
) -> str:
    """The drift report as a self-contained HTML page (:func:`prodgate.monitor.html.render`):
    distribution overlays per column, the verdicts with quality flags, drift over time.
    A :class:`UsageError` says why when there is nothing to plot."""
    from prodgate.monitor.html import render
    from prodgate.monitor.quality import quality

    svc = spec.service(service)
    start, end = _span(since_s, end_us)
    with store.read() as conn:
        _, chosen = _versions(conn, svc, version)
        if not chosen:
            raise UsageError(f"{service} is not deployed: no production version to report on")
        number = chosen[0][0]
        found = span_module.binned(conn, svc, number, start, end)
        points = span_module.timeline(conn, svc, number, start, end)
    if found is None:
        raise UsageError(
            f"no windows of {service} version {number} in the last {_duration(since_s)} "
            "counted on a reference profile: nothing to plot"
        )
    ref, cur = found
    over_time = [
        (dt.datetime.fromtimestamp(p["start_us"] / 1_000_000, tz=dt.UTC), p["share_drifted"])
        for p in points
        if p["share_drifted"] is not None
    ]
    return render(
        ref,
        cur,
        span_module.drift_of(svc, ref, cur),
        quality(ref, cur),
        title=f"Drift: {service} version {number}",
        subtitle=(
            f"production windows of the last {_duration(since_s)} ({cur.rows:,} decisions) "
            f"against the reference profile ({ref.rows:,} rows)"
        ),
        over_time=over_time,
    )


def _duration(seconds: float) -> str:
    for unit, size, least in (("d", 86400, 2 * 86400), ("h", 3600, 3600), ("m", 60, 60)):
        if seconds >= least and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


# -- figures: the flat mapping alert rules are judged on ---------------------------------


def _put(out: dict[str, float], key: str, value: Any) -> None:
    # bool is an int: drifted(col) reads 1.0 or 0.0.
    if isinstance(value, (int, float)) and math.isfinite(value):
        out[key] = float(value)


def flatten(report: Mapping[str, Any], version: int | None = None) -> dict[str, float]:
    """The canonical figure keys of one version of *report* (default: production, else
    the only one): see :mod:`prodgate.spec.monitor` for the keys. A figure that is not
    known (no traffic, no profile, no calibration) is absent, not None."""
    entries = report.get("versions") or []
    entry = next(
        (
            e
            for e in entries
            if (version is None and e["role"] == "production") or e["version"] == version
        ),
        entries[0] if version is None and len(entries) == 1 else None,
    )
    out: dict[str, float] = {}
    if entry is None:
        return out
    drift = entry.get("drift")
    if drift and drift.get("number_of_tested_columns"):  # none judged: unknown, not 0
        _put(out, "drift share", drift.get("share_drifted"))
    for column in entry.get("columns") or []:
        name = column["column"]
        for key in ("drift", "drifted", "null_rate", "out_of_range", "new_categories"):
            _put(out, f"{key}({name})", column.get(key))
        _put(out, f"invalid_rate({name})", column.get("invalid_rate"))
    if entry["requests"]:
        _put(out, "violation_rate", entry.get("violation_rate"))
        for name, v in (entry.get("violations") or {}).items():
            _put(out, f"violation_rate({name})", v["rate"])
    for view, counts in (entry.get("features") or {}).items():
        _put(out, f"stale_rate({view})", counts.get("stale_rate"))
        _put(out, f"missing_rate({view})", counts.get("missing_rate"))
    realised = entry.get("realised") or {}
    _put(out, "error_rate", realised.get("error_rate"))
    _put(out, "escalation_rate", realised.get("escalation_rate"))
    _put(out, "accuracy", realised.get("accuracy"))
    _put(out, "cost", realised.get("cost_per_decision"))
    estimate = entry.get("estimate") or {}
    _put(out, "estimated accuracy", estimate.get("accuracy"))
    _put(out, "estimated cost", estimate.get("cost_per_decision"))
    for cohort in entry.get("cohorts") or []:
        on = f" on {cohort['name']}"
        _put(out, "escalation_rate" + on, cohort.get("escalation_rate"))
        _put(out, "accuracy" + on, cohort.get("accuracy"))
        _put(out, "cost" + on, cohort.get("cost_per_decision"))
        est = cohort.get("estimate") or {}
        _put(out, "estimated accuracy" + on, est.get("accuracy"))
        _put(out, "estimated cost" + on, est.get("cost_per_decision"))
    return out


def figures(
    store: Store,
    spec: Spec,
    service: str,
    *,
    span_s: float | None = None,
    now_us: int | None = None,
    version: int | None = None,
) -> dict[str, float]:
    """The figures of *service*'s production version (or *version*) over the *span_s*
    seconds (default: its monitor window) ending at *now_us*, by canonical key: what
    :mod:`prodgate.monitor.alerts` judges rules on (its ``FiguresSource``)."""
    # Cohort figures read the span's decisions from the audit log: only when a rule
    # asks for one (this runs every few seconds in the server).
    wanted = any(rule.cohort for rule in spec.service(service).monitor.alerts)
    report = monitor_report(store, spec, service, span_s, version, end_us=now_us, cohorts=wanted)
    return flatten(report, version)
