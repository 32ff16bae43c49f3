"""A service's ``monitor:`` section: the production window, drift settings, alert rules
and the webhooks alerts are delivered to.

::

    monitor:
      window: 5m              # production window length (>= 1s)
      drift:
        share: 0.5            # dataset drift when this share of columns drifts
        columns: {claim_amount: {method: psi, threshold: 0.2}}
      alerts:
        - name: inputs-drifting
          when: drift share > 0.3 over 1h
        - when: null_rate(customer_age) > 0.10
        - when: estimated accuracy < 0.90 on high_value
        - when: contract violations > 1%
          for: 2              # evaluations in a row before firing (default 1)
          clear: 0.005        # resolve only once past this (default: the threshold)
      webhooks: [https://hooks.example.com/prodgate]

A rule's ``when`` reads ``METRIC[(COLUMN)] OP NUMBER[%] [over DURATION] [on COHORT]``
and is parsed once, when the spec loads. Its :attr:`Rule.key` is the *canonical
figure key*: the name under which the monitor report's flat ``figures`` mapping
(``prodgate.monitor.report.figures``) holds the value the rule is judged on. The
keys, all rates and shares as fractions in [0, 1]:

=============================  ====================================================
``drift share``                share of the monitored columns whose drift test says drifted
``drift(COL)``                 the column's drift statistic (its method's: distance,
                               PSI or p-value)
``drifted(COL)``               1.0 when the column drifted, else 0.0
``null_rate(COL)``             share of the window's rows where COL is null or absent
``out_of_range(COL)``          share of non-null numeric values outside the reference's
                               [min, max]
``new_categories(COL)``        share of non-null values in categories the reference
                               does not hold
``invalid_rate(COL)``          share of non-null values of another type than the
                               reference's (a schema change)
``stale_rate(VIEW)``           share of answered rows whose values from feature view VIEW
                               were older than its ttl (so they took defaults)
``missing_rate(VIEW)``         share of answered rows whose entity VIEW does not hold
``violation_rate``             share of requests refused for a contract violation
                               (``contract violations`` is the same metric)
``violation_rate(COL)``        share of requests refused for a violation on field COL
``error_rate``                 share of requests answered with a 5xx
``escalation_rate``            share of answered decisions escalated to a person
``estimated accuracy``         the label-free estimate of accuracy (classifiers)
``estimated cost``             the estimated business cost per decision (classifiers
                               with a ``business`` section)
``accuracy``                   realised accuracy from feedback
``cost``                       realised business cost per decision from feedback
``review_overdue``             review items waiting past their deadline (a count, as the
                               queue stands now; services with a ``review:`` section)
``review_queue``               review items waiting for a person (a count, as above)
=============================  ====================================================

A cohort adds `` on COHORT`` to the key (``estimated accuracy on high_value``,
``null_rate(customer_age) on region=north``). ``over DURATION`` is not part of the
key: it is the span the figures are computed over (default: the window), so the
evaluator asks for figures once per distinct span. A figure that is missing or None
(no traffic, no reference profile, no calibration) leaves the rule's state as it is.

A service with a ``review:`` section has one rule in force without declaring it:
``review-overdue: review_overdue > 0`` (:func:`with_review`), so an alert fires when
the queue's oldest item passes its deadline and resolves once no item is overdue. A
rule of its own named ``review-overdue`` takes its place.

COLUMN is an input field of the contract or an output (``prediction`` and, for
classifiers, ``confidence``; for LLM services ``prompt_chars``, ``answer_chars``,
``prompt_tokens``, ``completion_tokens``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prodgate.durations import parse_duration
from prodgate.exceptions import UsageError

#: The production window when a service declares none: five minutes.
DEFAULT_WINDOW_S = 300.0
#: Dataset drift when at least this share of the columns drifted (Evidently's default).
DEFAULT_DRIFT_SHARE = 0.5
#: Fewest values of a column in a production span for its drift test to be judged:
#: Evidently's distances ignore the sample's size, and smaller windows of unchanged
#: data read as drifted (see :func:`prodgate.monitor.drift.column_drift`).
DEFAULT_DRIFT_MIN_ROWS = 500
#: Drift tests a column may be given (Evidently's names for them).
DRIFT_METHODS = ("ks", "wasserstein", "chisquare", "z", "jensenshannon", "psi")
#: Outputs a rule or a drift override may name besides the input fields, by kind.
OUTPUTS: dict[str, tuple[str, ...]] = {
    "classifier": ("prediction", "confidence"),
    "regressor": ("prediction",),
    "llm": ("prompt_chars", "answer_chars", "prompt_tokens", "completion_tokens"),
}

OPS = (">=", "<=", ">", "<")
#: Metrics that name a column, that may name one, and that name none.
COLUMN_METRICS = (
    "drift",
    "drifted",
    "null_rate",
    "out_of_range",
    "new_categories",
    "invalid_rate",
)
OPTIONAL_COLUMN_METRICS = ("violation_rate",)
#: Metrics that name a feature view the service reads, not a column.
VIEW_METRICS = ("stale_rate", "missing_rate")
PLAIN_METRICS = (
    "drift share",
    "error_rate",
    "escalation_rate",
    "estimated accuracy",
    "estimated cost",
    "accuracy",
    "cost",
    "review_overdue",
    "review_queue",
)
METRICS = COLUMN_METRICS + OPTIONAL_COLUMN_METRICS + VIEW_METRICS + PLAIN_METRICS
#: Other spellings of a metric, and the canonical name each stands for.
ALIASES = {"contract violations": "violation_rate", "drift_share": "drift share"}
#: Metrics only a classifier has, and those that need the spec's business costs.
CLASSIFIER_ONLY = frozenset({"estimated accuracy", "estimated cost"})
BUSINESS_ONLY = frozenset({"estimated cost", "cost"})

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_WORDS = "|".join(re.escape(m) for m in sorted({*METRICS, *ALIASES}, key=len, reverse=True))
_RULE = re.compile(
    rf"^(?P<metric>{_WORDS}|[A-Za-z_][\w .]*?)\s*"
    r"(?:\(\s*(?P<column>[^()\s]*)\s*\))?\s*"
    r"(?P<op>>=|<=|>|<|==|=|!=)\s*"
    r"(?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?"
    r"(?:\s+over\s+(?P<over>\S+))?"
    r"(?:\s+on\s+(?P<cohort>[\w-]+(?:=\S+)?))?$"
)
FORM = "METRIC[(COLUMN)] OP NUMBER[%] [over DURATION] [on COHORT]"

MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "window": {"type": ["string", "number"]},
        "drift": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "share": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "min_rows": {"type": "integer", "minimum": 0},
                "columns": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "method": {"enum": list(DRIFT_METHODS)},
                            "threshold": {"type": "number", "minimum": 0},
                        },
                    },
                },
            },
        },
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["when"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": _NAME},
                    "when": {"type": "string", "minLength": 1},
                    "for": {"type": "integer", "minimum": 1, "maximum": 10_000},
                    "clear": {"type": ["number", "string"]},
                },
            },
        },
        "webhooks": {
            "type": "array",
            "items": {"type": "string", "pattern": "^https?://[^\\s/]+"},
        },
    },
}


@dataclass(frozen=True)
class Rule:
    """One alert rule, parsed: fires when ``figure OP threshold`` holds :attr:`for_`
    evaluations in a row; resolves when ``figure OP clear`` no longer holds."""

    name: str
    text: str  # the ``when`` as written (spaces normalised)
    metric: str  # canonical: one of METRICS
    op: str
    threshold: float
    column: str | None = None
    cohort: str | None = None
    over_s: float | None = None  # the span of the figures; None: the service's window
    for_: int = 1
    clear: float | None = None  # None: the threshold

    @property
    def key(self) -> str:
        """The canonical figure key the rule is judged on (see the module's table)."""
        key = f"{self.metric}({self.column})" if self.column else self.metric
        return f"{key} on {self.cohort}" if self.cohort else key

    @property
    def resolve_at(self) -> float:
        return self.threshold if self.clear is None else self.clear

    def breached(self, value: float) -> bool:
        """Whether *value* is past the threshold (the firing side)."""
        return _compare(value, self.op, self.threshold)

    def cleared(self, value: float) -> bool:
        """Whether *value* is back past the clear level (the resolving side)."""
        return not _compare(value, self.op, self.resolve_at)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "when": self.text,
            "key": self.key,
            "metric": self.metric,
            "column": self.column,
            "cohort": self.cohort,
            "op": self.op,
            "threshold": self.threshold,
            "over_s": self.over_s,
            "for": self.for_,
            "clear": self.resolve_at,
        }


def _compare(value: float, op: str, limit: float) -> bool:
    if op == ">":
        return value > limit
    if op == ">=":
        return value >= limit
    if op == "<":
        return value < limit
    return value <= limit


@dataclass(frozen=True)
class DriftColumn:
    method: str | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class MonitorSpec:
    """A service's monitoring as declared (defaults when it declares none)."""

    window_s: float = DEFAULT_WINDOW_S
    drift_share: float = DEFAULT_DRIFT_SHARE
    drift_min_rows: int = DEFAULT_DRIFT_MIN_ROWS
    drift_columns: Mapping[str, DriftColumn] = field(default_factory=dict)
    alerts: tuple[Rule, ...] = ()
    webhooks: tuple[str, ...] = ()

    def spans(self) -> list[float]:
        """The distinct spans the rules' figures are computed over, in seconds."""
        return sorted({r.over_s or self.window_s for r in self.alerts})


OFF = MonitorSpec()

#: The rule in force for every service with review: an item waits past its deadline.
REVIEW_OVERDUE = Rule(
    name="review-overdue",
    text="review_overdue > 0",
    metric="review_overdue",
    op=">",
    threshold=0.0,
)


def with_review(monitor: MonitorSpec, review_on: bool) -> MonitorSpec:
    """*monitor* with :data:`REVIEW_OVERDUE` among its rules when the service declares
    review (*review_on*) and no rule of its own bears that name."""
    if not review_on or any(rule.name == REVIEW_OVERDUE.name for rule in monitor.alerts):
        return monitor
    return replace(monitor, alerts=(*monitor.alerts, REVIEW_OVERDUE))


class MonitorProblem(ValueError):
    """A problem at a path inside the service's mapping."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def _seconds(text: Any, what: str, path: tuple[str, ...]) -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
        if seconds <= 0:
            raise MonitorProblem(path, f"{what} must be longer than zero")
        return seconds
    try:
        return parse_duration(str(text), what)
    except UsageError as exc:
        raise MonitorProblem(path, str(exc)) from None


def _number(text: Any, path: tuple[str, ...]) -> float:
    """A number, or a percentage written ``1.5%``."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    raw = str(text).strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise MonitorProblem(path, f"{text!r} is not a number (e.g. 0.005 or 0.5%)") from None


def parse_rule(
    text: str,
    *,
    columns: Sequence[str] = (),
    kind: str = "classifier",
    cohorts: Sequence[str] = (),
    business: bool = False,
    any_column: bool = False,
    views: Sequence[str] = (),
) -> Rule:
    """Parse a rule's ``when`` (named by itself); ValueError says what is wrong.

    *columns* are the names a column metric may take (unless *any_column*); *cohorts*
    the declared cohorts; *business* whether the service declares business costs.
    """
    clean = " ".join(text.split())
    m = _RULE.match(clean)
    if not m:
        raise ValueError(f"cannot read {clean!r}; write {FORM}")
    raw_metric = " ".join(m["metric"].split())
    metric = ALIASES.get(raw_metric, raw_metric)
    if metric not in METRICS:
        known = ", ".join([*METRICS, *ALIASES])
        raise ValueError(f"unknown metric {raw_metric!r}; known: {known}")
    op = m["op"]
    if op not in OPS:
        raise ValueError(f"unsupported operator {op!r}; use one of {', '.join(OPS)}")
    column = m["column"]
    if column is not None and metric in PLAIN_METRICS:
        raise ValueError(f"{metric} takes no column")
    if column is not None and metric == "violation_rate" and raw_metric != metric:
        raise ValueError(f"{raw_metric} takes no column; write violation_rate({column})")
    if metric in COLUMN_METRICS and not column:
        raise ValueError(f"{metric} needs a column: {metric}(COLUMN)")
    if metric in VIEW_METRICS:
        if not column:
            raise ValueError(f"{metric} needs a feature view: {metric}(VIEW)")
        if not any_column and column not in views:
            known = ", ".join(views) or "none"
            raise ValueError(f"unknown feature view {column!r}; the service reads: {known}")
    elif column is not None and not any_column and column not in columns:
        known = ", ".join(columns) or "none"
        raise ValueError(f"unknown column {column!r}; the contract's fields and outputs: {known}")
    if metric in CLASSIFIER_ONLY and kind != "classifier":
        raise ValueError(f"{metric} needs a classifier")
    if metric in BUSINESS_ONLY and not business:
        raise ValueError(f"{metric} needs the service's 'business' section (its costs)")
    if metric == "accuracy" and kind == "regressor":
        raise ValueError("accuracy needs a classifier or an llm service")
    cohort = m["cohort"]
    if cohort is not None:
        name = cohort.split("=", 1)[0]
        if name not in cohorts:
            declared = ", ".join(cohorts) or "none"
            raise ValueError(f"no cohort named {name!r}; declared: {declared}")
    over_s = None
    if m["over"] is not None:
        try:
            over_s = parse_duration(m["over"], "over")
        except UsageError as exc:
            raise ValueError(str(exc)) from None
    threshold = float(m["value"]) / (100 if m["pct"] else 1)
    return Rule(
        name=clean,
        text=clean,
        metric=metric,
        op=op,
        threshold=threshold,
        column=column or None,
        cohort=cohort,
        over_s=over_s,
    )


def build(
    raw: Any,
    kind: str,
    fields: Sequence[str],
    cohorts: Sequence[str] = (),
    business: bool = False,
    views: Sequence[str] = (),
) -> MonitorSpec:
    """A service's monitoring from its ``monitor`` section (already schema-checked);
    raises :class:`MonitorProblem` saying where and what is wrong."""
    if raw is None:
        return OFF
    columns = [*fields, *(o for o in OUTPUTS.get(kind, ()) if o not in fields)]
    window = _seconds(raw["window"], "window", ("monitor", "window")) if "window" in raw else None
    if window is not None and window < 1:
        raise MonitorProblem(("monitor", "window"), "the window must be at least 1s")
    drift = raw.get("drift") or {}
    overrides: dict[str, DriftColumn] = {}
    for name, options in (drift.get("columns") or {}).items():
        if name not in columns:
            raise MonitorProblem(
                ("monitor", "drift", "columns", str(name)),
                f"unknown column {name!r}; the contract's fields and outputs: "
                f"{', '.join(columns) or 'none'}",
            )
        overrides[str(name)] = DriftColumn(options.get("method"), options.get("threshold"))
    rules: list[Rule] = []
    names: set[str] = set()
    for i, item in enumerate(raw.get("alerts") or []):
        where = ("monitor", "alerts", str(i))
        try:
            rule = parse_rule(
                str(item["when"]),
                columns=columns,
                kind=kind,
                cohorts=cohorts,
                business=business,
                views=views,
            )
        except ValueError as exc:
            raise MonitorProblem((*where, "when"), str(exc)) from None
        name = str(item.get("name", rule.text))
        if len(name) > 128:
            raise MonitorProblem((*where, "name"), "give the rule a name of at most 128 characters")
        if name in names:
            raise MonitorProblem(
                (*where, "name" if "name" in item else "when"),
                f"another rule is named {name!r}; give each rule its own name",
            )
        names.add(name)
        clear = None
        if "clear" in item:
            clear = _number(item["clear"], (*where, "clear"))
            if _compare(clear, rule.op, rule.threshold) and clear != rule.threshold:
                side = "at or below" if rule.op in (">", ">=") else "at or above"
                raise MonitorProblem(
                    (*where, "clear"),
                    f"clear {clear:g} must be {side} the threshold {rule.threshold:g} "
                    "(an alert resolves on the other side of it)",
                )
        rules.append(
            Rule(
                name=name,
                text=rule.text,
                metric=rule.metric,
                op=rule.op,
                threshold=rule.threshold,
                column=rule.column,
                cohort=rule.cohort,
                over_s=rule.over_s,
                for_=int(item.get("for", 1)),
                clear=clear,
            )
        )
    return MonitorSpec(
        window_s=window if window is not None else DEFAULT_WINDOW_S,
        drift_share=float(drift.get("share", DEFAULT_DRIFT_SHARE)),
        drift_min_rows=int(drift.get("min_rows", DEFAULT_DRIFT_MIN_ROWS)),
        drift_columns=overrides,
        alerts=tuple(rules),
        webhooks=tuple(raw.get("webhooks") or ()),
    )
