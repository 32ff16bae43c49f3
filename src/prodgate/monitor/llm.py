"""What an LLM service's versions did and cost over a window, from the audit log.

Every call to a service of kind ``llm`` is an inference record whose payload carries an
``llm`` object: the model actually used, whether a fallback answered, retries, tokens
(``estimated`` when prodgate counted them because the upstream gave none), cost in
USD, time to first token and finish reason. :func:`read_figures` sums those over a
window into :class:`LlmFigures`; canary analysis judges them (time to first token,
cost per call, feedback quality) and ``prodgate metrics`` reports them (:func:`report`).

Only the ``llm`` member of each payload leaves the database (``json_extract`` on
SQLite, a ``json`` cast on PostgreSQL): an LLM record also holds the messages and the
answer, often kilobytes, which none of these figures need.

Feedback on an answer is graded when it arrives (:func:`grade`, called by
:mod:`prodgate.monitor.feedback`): whether a label or a correct answer matches what the
model said needs the service's output contract, and the readers of windows (the
rollout controller among them) see the store, not the spec. So the stored feedback of
an LLM answer carries its verdict, ``match``, beside the truth, in the audit log too.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from prodgate.audit.record import KIND_INFERENCE
from prodgate.spec import ServiceSpec
from prodgate.store.engine import now_us
from prodgate.store.tables import audit_log, feedback, versions

if TYPE_CHECKING:
    from prodgate.store.engine import Store

#: The registry flavor of a prompt version: a version of a service of kind ``llm``.
PROMPT_FLAVOR = "prompt"

#: A score at least this counts as a good answer (cost per good answer, positive share).
POSITIVE_SCORE = 0.5

#: Rated answers read per version and window (the newest), as for classifiers.
FEEDBACK_LIMIT = 5000


# -- which answer a label or a correct answer is compared with ---------------------------


def normalize(text: str) -> str:
    """Text as answers are compared: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def label_field(service: ServiceSpec) -> str | None:
    """The field of a structured answer (``output.parsed``) that holds its label.

    From the output contract: a property named ``label``; else the first property
    whose ``enum`` lists exactly the service's declared labels; else the one property
    with an ``enum``, when there is exactly one. None: the label is the answer's text.
    """
    props = (service.output_contract or {}).get("properties")
    if not isinstance(props, Mapping):
        return None
    if "label" in props:
        return "label"
    enums = [
        name
        for name, schema in props.items()
        if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list)
    ]
    if service.labels:
        for name in enums:
            if {str(v) for v in props[name]["enum"]} == set(service.labels):
                return str(name)
    return str(enums[0]) if len(enums) == 1 else None


def answer_label(service: ServiceSpec, output: Any) -> str | None:
    """The label an answer gave: ``output.parsed[label_field]``, else its text (a
    declared label when the text is one, whatever its case); None without either."""
    if not isinstance(output, Mapping):
        return None
    name = label_field(service)
    parsed = output.get("parsed")
    if name is not None and isinstance(parsed, Mapping) and parsed.get(name) is not None:
        raw = parsed[name]
        label = service.as_label(raw)
        return label if label is not None else str(raw)
    text = output.get("text")
    if not isinstance(text, str):
        return None
    clean = " ".join(text.split())
    for declared in service.labels or ():
        if normalize(declared) == normalize(clean):
            return declared
    return clean


def grade(service: ServiceSpec, output: Any, truth: Mapping[str, Any]) -> dict[str, Any]:
    """*truth* (``{"label": ...}``, ``{"correct": ...}`` or ``{"score": ...}``) with its
    verdict on the answer *output*: ``match``, for a label or a correct answer.

    A label matches the answer's label (:func:`answer_label`); a correct answer matches
    when it is the answer's text or its label. Both compare :func:`normalize`-d text.
    """
    out = dict(truth)
    if "label" in truth:
        said = answer_label(service, output)
        out["match"] = said is not None and normalize(said) == normalize(str(truth["label"]))
    elif "correct" in truth:
        want = normalize(str(truth["correct"]))
        said = answer_label(service, output)
        text = output.get("text") if isinstance(output, Mapping) else None
        out["match"] = want in {normalize(t) for t in (text, said) if isinstance(t, str)}
    return out


# -- the figures ---------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of *values* (sorted ascending), as the windows take it."""
    if not values:
        return None
    return float(values[max(0, math.ceil(q * len(values)) - 1)])


@dataclass(frozen=True)
class ModelFigures:
    """The calls of one version that ended on one model (``provider/model``)."""

    model: str
    calls: int = 0
    errors: int = 0  # status >= 500
    fallback: int = 0  # answered or failed there as a fallback
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "calls": self.calls,
            "errors": self.errors,
            "fallback": self.fallback,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_tokens": self.cached_tokens,
            "cost_usd": self.cost_usd,
            "cost_per_call": self.cost_usd / self.calls if self.calls else None,
        }


@dataclass(frozen=True)
class LlmFigures:
    """What one prompt version's calls did and cost in one window, and how people
    rated its answers."""

    calls: int = 0  # records with LLM details (the route was called)
    answered: int = 0  # of them, status 200
    streams: int = 0
    p50_ttft_ms: float | None = None  # of the answered
    p95_ttft_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    estimated: int = 0  # calls whose usage prodgate counted (the upstream gave none)
    priced: int = 0  # calls with a cost
    cost_total: float = 0.0  # USD
    cost_sq: float = 0.0  # sum of the squares of each call's cost (the spread)
    fallbacks: int = 0  # calls that went to a fallback model
    retries: int = 0
    finish_reasons: dict[str, int] = field(default_factory=dict)
    models: tuple[ModelFigures, ...] = ()
    labelled: int = 0  # answered with feedback (of any kind)
    graded: int = 0  # with a label or a correct answer: right or wrong
    correct: int = 0
    scored: int = 0  # with a score 0..1
    score_total: float = 0.0
    score_sq: float = 0.0
    positive: int = 0  # right, or scored at least POSITIVE_SCORE

    @property
    def cost_per_call(self) -> float | None:
        return self.cost_total / self.priced if self.priced else None

    def cost_variance(self) -> float:
        """Sample variance of the cost of a call (0 when under two are priced)."""
        return _variance(self.priced, self.cost_total, self.cost_sq)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.graded if self.graded else None

    @property
    def mean_score(self) -> float | None:
        return self.score_total / self.scored if self.scored else None

    def score_variance(self) -> float:
        return _variance(self.scored, self.score_total, self.score_sq)

    @property
    def positive_share(self) -> float | None:
        """Of the answers with a verdict or a score, the share that were good."""
        rated = self.graded + self.scored
        return self.positive / rated if rated else None

    @property
    def cost_per_positive(self) -> float | None:
        """The cost of one good answer: every call's cost over the answers expected to
        be good (the answered times the positive share among the rated ones). With
        feedback on every answer, the total cost over the good answers."""
        share = self.positive_share
        if not share or not self.answered:
            return None
        return self.cost_total / (self.answered * share)

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.calls if self.calls else 0.0

    @property
    def estimated_share(self) -> float:
        return self.estimated / self.calls if self.calls else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as reported and recorded: sums, the derived values, by model."""
        return {
            "calls": self.calls,
            "answered": self.answered,
            "streams": self.streams,
            "ttft_ms": {"p50": self.p50_ttft_ms, "p95": self.p95_ttft_ms},
            "tokens": {
                "input": self.input_tokens,
                "output": self.output_tokens,
                "cached": self.cached_tokens,
                "estimated_calls": self.estimated,
                "estimated_share": self.estimated_share,
            },
            "cost_usd": {
                "total": self.cost_total,
                "priced_calls": self.priced,
                "per_call": self.cost_per_call,
                "sum_sq": self.cost_sq,
                "per_positive": self.cost_per_positive,
            },
            "fallbacks": self.fallbacks,
            "fallback_rate": self.fallback_rate,
            "retries": self.retries,
            "finish_reasons": dict(self.finish_reasons),
            "models": [m.as_dict() for m in self.models],
            "feedback": {
                "labelled": self.labelled,
                "graded": self.graded,
                "correct": self.correct,
                "accuracy": self.accuracy,
                "scored": self.scored,
                "mean_score": self.mean_score,
                "score_sq": self.score_sq,
                "positive": self.positive,
                "positive_share": self.positive_share,
            },
        }


def _variance(n: int, total: float, sq: float) -> float:
    if n < 2:
        return 0.0
    mean = total / n
    return max(0.0, (sq - n * mean * mean) / (n - 1))


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _count(value: Any) -> int:
    number = _number(value)
    return int(number) if number is not None and number > 0 else 0


# -- reading -------------------------------------------------------------------------------


def llm_part(conn: Connection) -> sa.ColumnElement[Any]:
    """The payload's ``llm`` member as JSON text (NULL when absent), in this dialect."""
    if conn.dialect.name == "postgresql":
        # PostgreSQL refuses the escape \u0000 in any JSON it takes apart (the payload's
        # text is valid JSON: orjson escapes a NUL so). Another escape of the same
        # length keeps it valid JSON, and the figures read no text.
        text = sa.func.replace(audit_log.c.payload, "\\u0000", "\\ufffd")
        return sa.cast(sa.cast(text, postgresql.JSON)["llm"], sa.Text)
    return sa.func.json_extract(audit_log.c.payload, "$.llm")


def is_prompt_version(conn: Connection, service: str, version: int) -> bool:
    """Whether *version* of *service* is a registered prompt version."""
    flavor = conn.execute(
        sa.select(versions.c.flavor).where(
            versions.c.service == service, versions.c.number == version
        )
    ).scalar()
    return flavor == PROMPT_FLAVOR


@dataclass(frozen=True)
class Call:
    """One inference record, as much of it as the figures need."""

    status: int
    decision: str | None
    latency_ms: float | None
    llm: Mapping[str, Any] | None


def read_calls(conn: Connection, where: Sequence[Any], *, llm: bool = True) -> list[Call]:
    """The records matching *where* (a window's conditions); their ``llm`` details too
    when *llm*."""
    part = llm_part(conn) if llm else sa.null()
    rows = conn.execute(
        sa.select(audit_log.c.status, audit_log.c.decision, audit_log.c.latency_ms, part).where(
            *where
        )
    ).all()
    calls = []
    for status, decision, latency, text in rows:
        details = orjson.loads(text) if text is not None else None
        calls.append(
            Call(
                int(status),
                decision,
                float(latency) if latency is not None else None,
                details if isinstance(details, Mapping) else None,
            )
        )
    return calls


def read_feedback(conn: Connection, where: Sequence[Any], limit: int = FEEDBACK_LIMIT) -> list[Any]:
    """The stored feedback of the answered records matching *where*, newest first."""
    rows = conn.execute(
        sa.select(feedback.c.value)
        .join(feedback, feedback.c.inference_id == audit_log.c.id)
        .where(*where, audit_log.c.status == 200)
        .order_by(audit_log.c.ts_us.desc())
        .limit(limit)
    ).scalars()
    return [orjson.loads(v) for v in rows]


def figures(calls: Sequence[Call], ratings: Sequence[Any] = ()) -> LlmFigures:
    """Sum *calls* and the feedback *ratings* of answers into :class:`LlmFigures`."""
    ttfts: list[float] = []
    sums: Counter[str] = Counter()
    cost_total = cost_sq = 0.0
    reasons: Counter[str] = Counter()
    by_model: dict[str, dict[str, Any]] = {}
    for call in calls:
        details = call.llm
        if details is None:
            continue
        sums["calls"] += 1
        ok = call.status == 200
        sums["answered"] += ok
        sums["streams"] += bool(details.get("stream"))
        ttft = _number(details.get("ttft_ms"))
        if ok and ttft is not None:
            ttfts.append(ttft)
        usage = details.get("usage")
        usage = usage if isinstance(usage, Mapping) else {}
        tokens = (
            _count(usage.get("input_tokens")),
            _count(usage.get("output_tokens")),
            _count(usage.get("cached_tokens")),
        )
        sums["input"] += tokens[0]
        sums["output"] += tokens[1]
        sums["cached"] += tokens[2]
        sums["estimated"] += bool(usage.get("estimated"))
        cost = _number(details.get("cost_usd"))
        if cost is not None:
            sums["priced"] += 1
            cost_total += cost
            cost_sq += cost * cost
        model, named = _model(details)
        # A call no target took (every breaker open) names no model; its flag then
        # compares an empty name with the prompt's and says nothing of a fallback.
        fallback = named and bool(details.get("fallback"))
        sums["fallbacks"] += fallback
        sums["retries"] += _count(details.get("retries"))
        reason = details.get("finish_reason")
        if isinstance(reason, str):
            reasons[reason] += 1
        m = by_model.setdefault(model, {"model": model})
        for key, value in (
            ("calls", 1),
            ("errors", int(call.status >= 500)),
            ("fallback", int(fallback)),
            ("input_tokens", tokens[0]),
            ("output_tokens", tokens[1]),
            ("cached_tokens", tokens[2]),
            ("cost_usd", cost or 0.0),
        ):
            m[key] = m.get(key, 0) + value
    rated = _rate(ratings)
    ttfts.sort()
    return LlmFigures(
        calls=sums["calls"],
        answered=sums["answered"],
        streams=sums["streams"],
        p50_ttft_ms=percentile(ttfts, 0.50),
        p95_ttft_ms=percentile(ttfts, 0.95),
        input_tokens=sums["input"],
        output_tokens=sums["output"],
        cached_tokens=sums["cached"],
        estimated=sums["estimated"],
        priced=sums["priced"],
        cost_total=cost_total,
        cost_sq=cost_sq,
        fallbacks=sums["fallbacks"],
        retries=sums["retries"],
        finish_reasons=dict(sorted(reasons.items())),
        models=tuple(
            ModelFigures(**m)
            for m in sorted(by_model.values(), key=lambda m: (-m["calls"], m["model"]))
        ),
        **rated,
    )


def _model(details: Mapping[str, Any]) -> tuple[str, bool]:
    """The model a call ended on, ``provider/model``, and whether the record names it;
    when it does not (no target was tried), the prompt version's model."""
    provider, model = details.get("provider"), details.get("model")
    if isinstance(provider, str) and isinstance(model, str) and provider and model:
        return f"{provider}/{model}", True
    prompt_model = details.get("prompt_model")
    return (prompt_model if isinstance(prompt_model, str) and prompt_model else "-"), False


def _rate(ratings: Sequence[Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(("labelled", "graded", "correct", "scored", "positive"), 0)
    out.update(score_total=0.0, score_sq=0.0)
    for truth in ratings:
        out["labelled"] += 1
        if not isinstance(truth, Mapping):
            continue  # not an LLM answer's feedback (the service changed kind)
        match = truth.get("match")
        if isinstance(match, bool):
            out["graded"] += 1
            out["correct"] += match
            out["positive"] += match
        score = _number(truth.get("score"))
        if score is not None:
            out["scored"] += 1
            out["score_total"] += score
            out["score_sq"] += score * score
            out["positive"] += score >= POSITIVE_SCORE
    return out


def read_figures(
    conn: Connection,
    where: Sequence[Any],
    quality_where: Sequence[Any] | None = None,
    *,
    feedback_limit: int = FEEDBACK_LIMIT,
) -> LlmFigures:
    """The figures of the records matching *where*, rated by the feedback on the
    records matching *quality_where* (default *where*)."""
    ratings = read_feedback(conn, where if quality_where is None else quality_where, feedback_limit)
    return figures(read_calls(conn, where), ratings)


# -- the report of ``prodgate metrics`` ----------------------------------------------------


def _versions_in(conn: Connection, service: str, start: int, end: int) -> list[int]:
    rows = conn.execute(
        sa.select(audit_log.c.version)
        .where(
            audit_log.c.service == service,
            audit_log.c.ts_us >= start,
            audit_log.c.ts_us < end,
            audit_log.c.kind == KIND_INFERENCE,
            audit_log.c.action == "predict",
            audit_log.c.version.is_not(None),
        )
        .distinct()
    ).scalars()
    return sorted(int(v) for v in rows)


def _operations(version: int, calls: Sequence[Call]) -> dict[str, Any]:
    """Calls, errors, decisions and latency of one version: what every kind reports."""
    n = len(calls)
    errors = sum(c.status >= 500 for c in calls)
    latencies = sorted(c.latency_ms for c in calls if c.status == 200 and c.latency_ms is not None)
    decisions = Counter(c.decision or "-" for c in calls)
    return {
        "version": version,
        "calls": n,
        "answered": sum(c.status == 200 for c in calls),
        "errors": errors,
        "error_rate": errors / n if n else 0.0,
        "decisions": dict(sorted(decisions.items())),
        "latency_ms": {"p50": percentile(latencies, 0.50), "p95": percentile(latencies, 0.95)},
    }


def report(
    store: Store,
    service: ServiceSpec,
    window_s: float,
    *,
    end_us: int | None = None,
    version: int | None = None,
) -> dict[str, Any]:
    """Each version's calls over the last *window_s* (or only *version*'s).

    Every kind: calls, answered, errors, decisions, p50/p95 latency of the answered.
    Kind ``llm`` adds ``llm`` (:meth:`LlmFigures.as_dict`: time to first token,
    tokens, cost, cost per good answer, fallbacks, by model, feedback). Other kinds add
    the production metrics of :mod:`prodgate.monitor.production` (``operations`` and
    the feedback-scored ``quality`` with cohorts and gates).
    """
    # window imports this module (a prompt version's window carries LLM figures).
    from prodgate.monitor.window import window_conditions

    end = end_us if end_us is not None else now_us()
    start = end - int(window_s * 1_000_000)
    is_llm = service.kind == "llm"
    out: list[dict[str, Any]] = []
    with store.read() as conn:
        numbers = _versions_in(conn, service.name, start, end)
        for number in numbers if version is None else [v for v in numbers if v == version]:
            where = window_conditions(service.name, number, start, end)
            calls = read_calls(conn, where, llm=is_llm)
            entry = _operations(number, calls)
            if is_llm:
                entry["llm"] = figures(calls, read_feedback(conn, where)).as_dict()
            out.append(entry)
    if out and not is_llm:
        from prodgate.monitor.production import production_metrics

        quality = {
            v["version"]: v
            for v in production_metrics(store, service, window_s, end_us=end)["versions"]
        }
        for entry in out:
            found = quality.get(entry["version"], {})
            entry["operations"] = found.get("operations")
            entry["quality"] = found.get("quality")
    return {
        "service": service.name,
        "kind": service.kind,
        "window_s": window_s,
        "start_us": start,
        "end_us": end,
        "versions": out,
    }
