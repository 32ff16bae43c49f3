"""Reviewed inferences as a dataset: for retraining, and for ``prodgate evaluate``.

One row per decided review item: the row the model saw (the request's input fields
and the features enrichment added, one column each), the model's answer, and the
final label in the column ``label``, which is where ``prodgate evaluate`` looks for
the truth when not told otherwise; so ``prodgate evaluate SERVICE VERSION --data
export.parquet`` scores a version on what people decided. Beside them: the model's
decision, the reasons the item was reviewed, its cohort, who reviewed it, whether
the final overrode the model, and the lineage back to the audit log (the inference's
id and its record's ``seq``).

Parquet by default, CSV when the path ends in ``.csv``. An input field that shares a
name with one of these columns keeps its name; the review's column is then prefixed
``review_`` (and ``--label review_label`` tells evaluate where the truth is).
Writing an export is a governance action: recorded in the audit log
(``review_export``) with the file's path, row count and sha256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa

from prodgate.audit import log
from prodgate.exceptions import UsageError
from prodgate.spec import ServiceSpec, Spec
from prodgate.store.engine import Store
from prodgate.store.tables import audit_log, review_decisions, review_items

ACTION_EXPORT = "review_export"
DECIDED = "decided"
#: The columns an export adds after the input fields, in order.
COLUMNS = (
    "label",
    "prediction",
    "confidence",
    "decision",
    "override",
    "reasons",
    "cohort",
    "reviewers",
    "adjudicator",
    "version",
    "inference_id",
    "audit_seq",
    "inferred_at",
    "decided_at",
)
FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


def _format(path: Path) -> str:
    found = FORMATS.get(path.suffix.lower())
    if found is None:
        raise UsageError(f"{path}: write .parquet or .csv (the suffix says which)")
    return found


def _plain(text: str | None) -> Any:
    """A stored JSON value as a cell: scalars as they are, anything else as JSON text."""
    if text is None:
        return None
    value = orjson.loads(text)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def _matches(reasons: list[str], wanted: str | None) -> bool:
    """``--reason``: a reason as listed (``sampled``, ``rule:high-value``), or ``rule``
    for any rule."""
    if wanted is None:
        return True
    return wanted in reasons or (wanted == "rule" and any(r.startswith("rule:") for r in reasons))


def rows(
    store: Store, service: ServiceSpec, since_us: int | None = None, reason: str | None = None
) -> list[dict[str, Any]]:
    """The export's rows (see the module's docstring), oldest inference first."""
    i, a, d = review_items.c, audit_log.c, review_decisions.c
    where = [i.service == service.name, i.state == DECIDED]
    if since_us is not None:
        where.append(i.created_us >= since_us)
    with store.read() as conn:
        found = conn.execute(
            sa.select(
                i.id,
                i.version,
                i.reasons,
                i.cohort,
                i.decision,
                i.prediction,
                i.final,
                i.override,
                i.created_us,
                i.decided_us,
                a.seq,
                a.payload,
                a.confidence,
            )
            .join(audit_log, a.id == i.id)
            .where(*where)
            .order_by(i.created_us, i.id)
        ).all()
        people: dict[str, dict[str, list[str]]] = {}
        ids = [r.id for r in found]
        for start in range(0, len(ids), 500):
            chunk = conn.execute(
                sa.select(d.item_id, d.reviewer, d.role)
                .where(d.item_id.in_(ids[start : start + 500]), d.role != "skip")
                .order_by(d.item_id, d.at_us, d.id)
            ).all()
            for item, reviewer, role in chunk:
                people.setdefault(item, {}).setdefault(role, []).append(reviewer)
    fields = service.feature_names
    names = _names(fields)
    out = []
    for r in found:
        reasons = [str(x) for x in orjson.loads(r.reasons or "[]")]
        if not _matches(reasons, reason):
            continue
        payload = orjson.loads(r.payload)
        seen = {**(payload.get("input") or {}), **(payload.get("features") or {})}
        acts = people.get(r.id, {})
        review = {
            "label": _plain(r.final),
            "prediction": _plain(r.prediction),
            "confidence": r.confidence,
            "decision": r.decision,
            "override": r.override,
            "reasons": ",".join(reasons),
            "cohort": r.cohort,
            "reviewers": ",".join(acts.get("review", [])),
            "adjudicator": ",".join(acts.get("adjudicate", [])) or None,
            "version": r.version,
            "inference_id": r.id,
            "audit_seq": int(r.seq),
            "inferred_at": r.created_us,
            "decided_at": r.decided_us,
        }
        out.append(
            {
                **{f: seen.get(f) for f in fields},
                **{names[k]: v for k, v in review.items()},
            }
        )
    return out


def _names(fields: list[str]) -> dict[str, str]:
    taken = set(fields)
    return {c: f"review_{c}" if c in taken else c for c in COLUMNS}


def export(
    store: Store,
    spec: Spec,
    service: str,
    path: Path | str,
    since_us: int | None = None,
    reason: str | None = None,
    *,
    actor: str = "prodgate",
) -> dict[str, Any]:
    """Write *service*'s decided review items to *path* (Parquet, or CSV by suffix) and
    record the export in the audit log; a summary of what was written. *actor* is who
    exported (an :class:`~prodgate.identity.actor.Actor` keeps where it acted from)."""
    import pandas as pd  # when exporting

    declared = spec.service(service)
    target = Path(path)
    kind = _format(target)
    if not target.parent.is_dir():
        raise UsageError(f"{target}: no such folder {str(target.parent)!r}")
    found = rows(store, declared, since_us, reason)
    names = _names(declared.feature_names)
    columns = [*declared.feature_names, *names.values()]
    frame = pd.DataFrame(found, columns=columns)
    for name in ("inferred_at", "decided_at"):
        column = names[name]
        frame[column] = pd.to_datetime(frame[column], unit="us", utc=True)
    try:
        if kind == "parquet":
            frame.to_parquet(target, index=False)
        else:
            frame.to_csv(target, index=False)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write it: {exc.strerror or exc}") from None
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    record = log.action(
        ACTION_EXPORT,
        actor=actor,  # an Actor keeps where it acted from
        service=service,
        rows=len(found),
        path=str(target.resolve()),
        format=kind,
        sha256=digest,
        since_us=since_us,
        reason=reason,
    )
    with store.write() as conn:
        log.append(store, conn, [record])
    return {
        "service": service,
        "path": str(target),
        "format": kind,
        "rows": len(found),
        "columns": columns,
        "label_column": names["label"],
        "sha256": digest,
        "since_us": since_us,
        "reason": reason,
        "audit_id": record.id,
    }
