"""A first prodgate.yaml: what ``prodgate init`` writes, from a template or from data.

Without data it is a template to edit. Given the training data, the input contract is
drafted from it, as pandera's and Great Expectations' schema inference do, so that a
new service starts with a bounded contract (an unbounded number field once let
``1.79e308`` reach a model and crash it). Each column but the label becomes a field:

- type: ``integer`` (integer columns, and float columns whose values are all whole and
  that have missing values, which is how pandas stores integers with gaps),
  ``number``, ``boolean`` or ``string``; a column with missing values also allows null
  and is not required; every column without one is required;
- numbers: ``minimum`` and ``maximum`` from the smallest and largest value seen, each
  widened by a tenth of the range (or of the value, for a constant column), but never
  below 0 for a column with no negative values, rounded outwards to the margin's
  order of magnitude (whole numbers for integers);
- strings: an ``enum`` of the values seen when there are at most :data:`MAX_ENUM` of
  them and at most a tenth as many as rows (so an ID or free text is not taken for a
  category); otherwise a ``maxLength`` of twice the longest value seen;
- no other fields: ``additionalProperties: false``.

The label column (given, or one named ``label``, ``target`` or ``y``) is left out of the
contract and decides the kind: a label with at most :data:`MAX_ENUM` distinct values
that are not fractions is a classifier's, and its values become ``labels``; any other
is a regressor's. Cohorts and gates are drafted from the fields too; the business
costs are placeholders to replace with real figures.
"""

from __future__ import annotations

import json
import keyword
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prodgate.exceptions import UsageError

#: The most distinct values a string column may have to become an enum (or a label
#: column to be a classifier's).
MAX_ENUM = 20
#: An enum's values may be at most this share of the column's non-null rows.
ENUM_SHARE = 0.1
#: How far a number field's bounds lie beyond the values seen, as a share of their range.
MARGIN = 0.1
#: Label columns found without ``--label``, in this order.
LABEL_NAMES = ("label", "target", "y")

TEMPLATE = """\
# prodgate.yaml: the services prodgate serves. Reference: docs/spec.md
version: 1
services:
  {name}:
    description: What this service decides, in one sentence.
    owner:
      name: Your Team
      contact: team@example.com
    kind: classifier            # or regressor
    labels: [negative, positive]
    contract:
      input:                    # JSON Schema of one input row, checked on every request
        type: object
        additionalProperties: false
        required: [amount, category]
        properties:
          amount: {{type: number, minimum: 0}}
          category: {{type: string, enum: [a, b, c]}}
          note: {{type: string, nullable: true, maxLength: 200}}
    escalation:
      confidence_below: 0.7     # decisions less sure than this go to a person
    batching:
      max_batch_size: 64
      max_wait_ms: 2
    business:                   # what each outcome costs the business (docs/evaluation.md)
      positive: positive
      costs:
        false_negative: {{rate: 0.1, of: amount}}   # a missed positive: 10% of the amount
        false_positive: 40
        escalation: 25          # a person's review
    cohorts:                    # measured one by one beside the overall figures
      large: {{where: "amount >= 10000"}}
      category: {{by: category}}
    gates:                      # a version is approved only when every gate passes
      - accuracy >= 0.9
      - recall >= 0.8 on large
      - no cohort's accuracy more than 0.05 below overall
    approvals:                  # docs/governance.md
      required: 1
      separation_of_duties: true
    rollout:                    # canary steps and checks (docs/rollouts.md)
      steps: [5, 25, 50, 100]
      interval_s: 60
"""

_COHORT_NAME = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class Field:
    """One drafted input field: its JSON Schema, whether it is required, what was seen."""

    name: str
    schema: dict[str, Any]
    required: bool
    seen: str
    numeric: bool = False
    quantile_90: float | None = None


@dataclass(frozen=True)
class Draft:
    """What the data says about a service: its fields, and its label if it has one."""

    source: str
    rows: int
    fields: list[Field]
    label: str | None = None
    kind: str = "classifier"
    labels: list[Any] | None = None
    positive: Any = None  # the rarer label: what the business section calls positive

    def contract(self) -> dict[str, Any]:
        """The drafted input contract, a JSON Schema."""
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [f.name for f in self.fields if f.required],
            "properties": {f.name: f.schema for f in self.fields},
        }


# -- drafting -----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A numpy or pandas scalar as the Python value YAML and JSON know."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def _shown(value: float) -> str:
    """A value seen, for a comment: whole numbers in full, others to 6 digits."""
    plain = _plain(value)
    return str(plain) if isinstance(plain, int) else f"{plain:.6g}"


def _bounds(low: float, high: float, integer: bool) -> tuple[Any, Any]:
    """The range of a number field: the values seen, widened (see the module's doc)."""
    span = high - low
    margin = MARGIN * (span if span > 0 else max(abs(high), 1.0))
    lower = low - margin if low < 0 else max(0.0, low - margin)
    upper = high + margin
    exponent = math.floor(math.log10(margin))
    step = 10.0**exponent
    if integer:
        step = max(step, 1.0)
    digits = max(0, -exponent)
    # round(..., 9) first: 6.3 / 0.1 is 62.99999999999999 in floating point.
    lower = round(math.floor(round(lower / step, 9)) * step, digits)
    upper = round(math.ceil(round(upper / step, 9)) * step, digits)
    if integer:
        return int(lower), int(upper)
    return _plain(lower), _plain(upper)


def _python_types(values: list[Any]) -> list[str]:
    kinds: list[str] = []
    for v in values:
        if isinstance(v, bool):
            kind = "boolean"
        elif isinstance(v, int):
            kind = "integer"
        elif isinstance(v, float):
            kind = "number"
        elif isinstance(v, str):
            kind = "string"
        else:
            kind = "string"  # dates, decimals...: as JSON carries them
        if kind not in kinds:
            kinds.append(kind)
    if set(kinds) == {"integer", "number"}:
        return ["number"]
    return kinds


def _number_field(name: str, values: Any, integer: bool, nulls: int) -> Field:
    import numpy as np

    finite = values[np.isfinite(values.astype(np.float64))]
    kind = "integer" if integer else "number"
    schema: dict[str, Any] = {"type": kind}
    seen = "no finite values"
    q90 = None
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        schema["minimum"], schema["maximum"] = _bounds(low, high, integer)
        seen = f"seen {_shown(low)} .. {_shown(high)}"
        q90 = float(np.quantile(finite.astype(np.float64), 0.9))
    return Field(name, schema, nulls == 0, seen, numeric=True, quantile_90=q90)


def _string_field(values: list[str]) -> dict[str, Any]:
    distinct = sorted(set(values))
    if len(distinct) <= MAX_ENUM and len(distinct) <= ENUM_SHARE * len(values):
        return {"type": "string", "enum": distinct}
    return {"type": "string", "maxLength": max(1, 2 * max(map(len, values), default=0))}


def draft_field(name: str, series: Any) -> Field:
    """The :class:`Field` for one column of training data."""
    import pandas as pd

    present = series.dropna()
    nulls = len(series) - len(present)
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        field = Field(name, {"type": "boolean"}, nulls == 0, "true/false")
    elif pd.api.types.is_integer_dtype(dtype):
        field = _number_field(name, present.to_numpy(), True, nulls)
    elif pd.api.types.is_float_dtype(dtype):
        values = present.to_numpy()
        whole = nulls > 0 and len(values) > 0 and bool((values == values.round()).all())
        field = _number_field(name, values, whole, nulls)
    elif pd.api.types.is_datetime64_any_dtype(dtype):
        field = Field(name, {"type": "string", "format": "date-time"}, nulls == 0, "dates")
    else:
        cells = [_plain(v) for v in present.tolist()]
        kinds = _python_types(cells)
        if kinds == ["string"]:
            schema = _string_field([str(v) for v in cells])
            seen = f"{len(set(cells))} distinct values"
        elif kinds in (["integer"], ["number"]):
            return draft_field(name, pd.to_numeric(series))
        else:
            schema = {"type": kinds[0] if len(kinds) == 1 else kinds}
            seen = "values of " + ", ".join(kinds) if kinds else "no values"
            if not kinds:
                schema = {"type": "null"}
        field = Field(name, schema, nulls == 0 and bool(kinds), seen)
    if nulls:
        field = _nullable(field, nulls, len(series))
    return field


def _nullable(field: Field, nulls: int, rows: int) -> Field:
    schema = dict(field.schema)
    kind = schema.get("type")
    if kind != "null":
        schema["type"] = [*(kind if isinstance(kind, list) else [kind]), "null"]
    if "enum" in schema:
        schema["enum"] = [*schema["enum"], None]
    share = nulls / rows
    seen = f"{field.seen}; {share:.0%} missing" if share >= 0.005 else f"{field.seen}; some missing"
    return Field(
        field.name, schema, False, seen, numeric=field.numeric, quantile_90=field.quantile_90
    )


def _label(frame: Any, column: str) -> tuple[str, list[Any] | None, Any]:
    """(kind, labels, the rarer label) of a label column."""
    import pandas as pd

    present = frame[column].dropna()
    if not len(present):
        raise UsageError(f"the label column {column!r} has no values")
    values = [_plain(v) for v in present.tolist()]
    counts = pd.Series(values).value_counts()
    fractional = any(isinstance(v, float) for v in values)
    if len(counts) > MAX_ENUM or fractional or len(counts) < 2:
        return "regressor", None, None
    labels = sorted(counts.index.tolist(), key=lambda v: (str(type(v)), v))
    rarest = min(reversed(labels), key=lambda v: counts[v])
    return "classifier", [_plain(v) for v in labels], _plain(rarest)


def draft(frame: Any, source: str, label: str | None = None) -> Draft:
    """Draft the fields of a service from *frame*, its training data (read from *source*)."""
    frame = frame.rename(columns=str)
    columns = list(frame.columns)
    if label is not None and label not in columns:
        raise UsageError(f"no column {label!r} in {source}; it has: {', '.join(columns)}")
    if label is None:
        label = next((c for c in LABEL_NAMES if c in columns), None)
    if len(frame) == 0:
        raise UsageError(f"{source} has no rows to draft a contract from")
    inputs = [c for c in columns if c != label]
    if not inputs:
        raise UsageError(f"{source} has no column besides the label {label!r}")
    fields = [draft_field(c, frame[c]) for c in inputs]
    if label is None:
        return Draft(source, len(frame), fields)
    kind, labels, positive = _label(frame, label)
    return Draft(source, len(frame), fields, label, kind, labels, positive)


def draft_file(path: Path, label: str | None = None) -> Draft:
    """:func:`draft` of a CSV, Parquet or JSON lines file."""
    from prodgate.registry.fingerprint import read_table

    if not path.is_file():
        raise UsageError(f"{path}: no such data file")
    return draft(read_table(path), path.name, label)


# -- writing the spec ------------------------------------------------------------------


def _flow(value: Any) -> str:
    """*value* as one line of YAML."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _cohort_name(column: str, prefix: str = "") -> str | None:
    name = _COHORT_NAME.sub("_", (prefix + column).lower()).strip("-")
    return name or None


def _cohorts(fields: list[Field]) -> dict[str, str]:
    """Cohort name -> its one-line YAML: the top tenth of the first number field, and
    one cohort per value of the first enum field."""
    out: dict[str, str] = {}
    # A condition names its column as a Python name.
    usable = [f for f in fields if f.name.isidentifier() and not keyword.iskeyword(f.name)]
    number = next((f for f in usable if f.numeric and f.quantile_90 is not None), None)
    if number is not None and number.quantile_90 is not None:
        name = _cohort_name(number.name, "high_")
        cut = _plain(float(f"{number.quantile_90:.2g}"))
        if name:
            condition = json.dumps(f"{number.name} >= {cut}")  # quoted, as YAML reads it too
            out[name] = f"{{where: {condition}}}   # about the top tenth"
    category = next((f for f in fields if "enum" in f.schema), None)
    if category is not None:
        name = _cohort_name(category.name)
        if name and name not in out:
            out[name] = _flow({"by": category.name})
    return out


def render(service: str, d: Draft | None) -> str:
    """The text of prodgate.yaml for *service*: the template, or drafted from *d*."""
    if d is None:
        return TEMPLATE.format(name=service)
    classifier = d.kind == "classifier"
    labelled = d.labels is not None
    lines = [
        "# prodgate.yaml: the services prodgate serves. Reference: docs/spec.md",
        f"# The contract was drafted from {d.source} ({d.rows} rows); check it before",
        "# registering a model. How it is drafted: docs/spec.md, 'A first spec from data'.",
        "version: 1",
        "services:",
        f"  {_flow(service)}:",
        "    description: What this service decides, in one sentence.",
        "    owner:",
        "      name: Your Team",
        "      contact: team@example.com",
    ]
    if d.label is None:
        lines += [
            "    kind: classifier            # no label column in the data: set kind and labels",
            "    labels: [negative, positive]",
        ]
    else:
        pad = " " * (22 - len(d.kind))  # comments line up at column 33, as in the template
        lines.append(f"    kind: {d.kind}{pad}# from the label column {d.label}")
        if labelled:
            lines.append(f"    labels: {_flow(d.labels)}")
    lines += [
        "    contract:",
        "      input:                    # JSON Schema of one input row, checked on every request",
        "        type: object",
        "        additionalProperties: false",
        f"        required: {_flow([f.name for f in d.fields if f.required])}",
        "        properties:",
    ]
    for f in d.fields:
        lines.append(f"          {_flow(f.name)}: {_flow(f.schema)}   # {f.seen}")
    if classifier:
        lines += [
            "    escalation:",
            "      confidence_below: 0.7     # decisions less sure than this go to a person",
        ]
    lines += ["    batching:", "      max_batch_size: 64", "      max_wait_ms: 2"]
    if classifier:
        positive = d.positive if labelled else "positive"
        lines += [
            "    business:                   # placeholders: what each outcome costs "
            "(docs/evaluation.md)",
            f"      positive: {_flow(positive)}" + ("   # the rarer label" if labelled else ""),
            "      costs:                    # a number, or {rate: 0.1, of: FIELD}",
            "        false_negative: 100",
            "        false_positive: 40",
            "        escalation: 25          # a person's review",
        ]
    cohorts = _cohorts(d.fields)
    if cohorts:
        lines.append("    cohorts:                    # measured one by one beside the overall")
        lines += [f"      {name}: {text}" for name, text in cohorts.items()]
    lines.append("    gates:                      # a version is approved when every gate passes")
    if classifier:
        lines.append("      - accuracy >= 0.9")
        where = next((n for n, t in cohorts.items() if "where" in t), None)
        if where:
            lines.append(f"      - recall >= 0.8 on {where}")
        if cohorts:
            lines.append("      - no cohort's accuracy more than 0.05 below overall")
    else:
        lines.append("      - r2 >= 0.5")
    lines += [
        "    approvals:                  # docs/governance.md",
        "      required: 1",
        "      separation_of_duties: true",
        "    rollout:                    # canary steps and checks (docs/rollouts.md)",
        "      steps: [5, 25, 50, 100]",
        "      interval_s: 60",
    ]
    return "\n".join(lines) + "\n"
