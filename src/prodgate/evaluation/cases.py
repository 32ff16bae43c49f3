"""Test cases for a prompt version: a JSON Lines file, one case a line.

::

    {"inputs": {"message": "My car was stolen", "amount": 12000},
     "label": "new_claim", "contains": ["claim"], "regex": "^[a-z_]+$"}
    {"inputs": {"message": "Where is my money?"}, "expected": "status_question"}

- ``inputs`` (required): the template's variables, as a request to the service would
  carry them; the spec's cohorts are conditions over these fields, as for classifiers.
- ``expected``: the right answer. Text is compared with the answer's text (both
  stripped); a JSON object or list with the parsed answer of a JSON prompt. A judge
  model (``llm.judge`` in the spec) grades answers against it.
- ``label``: the right class of a classification prompt, one of the service's
  ``labels`` when it declares them (0..k-1 and false/true stand for them in order, by
  the spec's one rule, :meth:`ServiceSpec.as_labels`).
- ``contains``: text, or a list of texts, the answer must all contain (case counts).
- ``regex``: a Python regular expression the answer must match somewhere
  (:func:`re.search`; write ``(?i)`` for case-blind, ``^...$`` for the whole answer).
- ``id``: an optional name for the case, kept in the result.

Everything is checked before a single call is made: a bad line is one
:class:`UsageError` naming the file and line, and nothing is run or stored.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from prodgate.exceptions import UsageError
from prodgate.spec import ServiceSpec

#: The fields a case may have.
FIELDS = ("inputs", "expected", "label", "contains", "regex", "id")


@dataclass(frozen=True)
class Case:
    """One test case, checked."""

    line: int  # in the file, from 1: every later complaint names it
    inputs: dict[str, Any]
    expected: Any = None  # text, or a JSON object or list; None: not given
    label: str | None = None  # as one of the service's labels
    contains: tuple[str, ...] = ()
    regex: re.Pattern[str] | None = field(default=None, compare=False)
    id: str | None = None


@dataclass(frozen=True)
class Cases:
    """A cases file read and checked, with its fingerprint for the record."""

    cases: tuple[Case, ...]
    fingerprint: dict[str, Any]
    path: Path

    def __len__(self) -> int:
        return len(self.cases)

    def where(self, case: Case) -> str:
        """``cases.jsonl:3``, for messages about *case*."""
        return f"{self.path}:{case.line}"


def _label(service: ServiceSpec, value: Any, where: str) -> str:
    if isinstance(value, (bool, str, int)):
        found = service.as_label(value)
        if found is not None:
            return found
    if service.labels is None:
        raise UsageError(f"{where}: label: text, a whole number or a boolean, not {value!r}")
    positions = (
        f"; 0..{len(service.labels) - 1} stand for them in order"
        if service.labels_by_position
        else ""
    )
    raise UsageError(
        f"{where}: label: {value!r} is not a label of the service "
        f"({', '.join(service.labels)}{positions})"
    )


def _contains(value: Any, where: str) -> tuple[str, ...]:
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t for t in texts):
        raise UsageError(f"{where}: contains: a text, or a list of texts, none of them empty")
    return tuple(texts)


def _regex(value: Any, where: str) -> re.Pattern[str]:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: regex: a regular expression as text")
    try:
        return re.compile(value)
    except re.error as exc:
        raise UsageError(f"{where}: regex: {value!r} is not a regular expression: {exc}") from None


def parse_case(service: ServiceSpec, raw: Any, line: int, where: str) -> Case:
    """One case from a decoded line; :class:`UsageError` names *where* and the field."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a case is a JSON object with inputs (and expected, label...)")
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise UsageError(
            f"{where}: unknown field(s) {', '.join(unknown)}; a case has {', '.join(FIELDS)} "
            "(variables go inside inputs)"
        )
    inputs = raw.get("inputs")
    if not isinstance(inputs, dict):
        raise UsageError(f"{where}: inputs: a JSON object of the template's variables")
    expected = raw.get("expected")
    if expected is not None and not isinstance(expected, (str, dict, list)):
        raise UsageError(f"{where}: expected: text, or a JSON object or list, not {expected!r}")
    case_id = raw.get("id")
    if case_id is not None and not isinstance(case_id, (str, int)):
        raise UsageError(f"{where}: id: text or a number")
    return Case(
        line=line,
        inputs=inputs,
        expected=expected,
        label=None if raw.get("label") is None else _label(service, raw["label"], where),
        contains=() if raw.get("contains") is None else _contains(raw["contains"], where),
        regex=None if raw.get("regex") is None else _regex(raw["regex"], where),
        id=None if case_id is None else str(case_id),
    )


def parse_cases(service: ServiceSpec, data: bytes, path: Path) -> list[Case]:
    """Every case in the JSON Lines *data*; blank lines are skipped."""
    out = []
    for number, text in enumerate(data.splitlines(), start=1):
        if not text.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"{where}: not JSON: {exc}") from None
        out.append(parse_case(service, raw, number, where))
    return out


def fingerprint(path: Path, data: bytes, cases: Sequence[Case]) -> dict[str, Any]:
    """What the record says about the file: name, sha256, cases, the variables given,
    and how many cases carry each kind of check."""
    variables = sorted({name for case in cases for name in case.inputs})
    return {
        "file": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "rows": len(cases),
        "columns": dict.fromkeys(variables, "input"),
        "checks": {
            "expected": sum(c.expected is not None for c in cases),
            "label": sum(c.label is not None for c in cases),
            "contains": sum(bool(c.contains) for c in cases),
            "regex": sum(c.regex is not None for c in cases),
        },
    }


def read_cases(service: ServiceSpec, path: Path | str) -> Cases:
    """Read and check the cases file at *path* for *service*."""
    file = Path(path)
    if file.suffix.lower() not in (".jsonl", ".ndjson"):
        raise UsageError(
            f"{file}: the cases of a prompt version are JSON Lines (.jsonl), one case a line"
        )
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{file}: no such cases file") from None
    except OSError as exc:
        raise UsageError(f"{file}: cannot read it: {exc.strerror or exc}") from None
    cases = parse_cases(service, data, file)
    if not cases:
        raise UsageError(f"{file}: no cases; write one JSON object a line")
    missing = _missing_required(service, cases)
    if missing:
        case, names = missing
        raise UsageError(f"{file}:{case.line}: inputs: lacks required field(s) {', '.join(names)}")
    return Cases(tuple(cases), fingerprint(file, data, cases), file)


def _missing_required(service: ServiceSpec, cases: Sequence[Case]) -> tuple[Case, list[str]] | None:
    """The first case lacking a variable the model reads (the contract's required fields,
    and the service's features: a case carries them itself): the template would fail on
    it (or answer nonsense), so it is the file's mistake, not the version's."""
    required: Sequence[str] = service.model_contract.get("required", [])
    for case in cases:
        names = [n for n in required if n not in case.inputs]
        if names:
            return case, names
    return None


def input_frame(service: ServiceSpec, cases: Sequence[Case]) -> Any:
    """The cases' inputs as a DataFrame with a column per input field of the service
    (missing values as None), for cohort conditions."""
    import pandas as pd

    fields: list[str] = list(service.feature_names)
    extra = sorted({n for c in cases for n in c.inputs} - set(fields))
    columns: Mapping[str, list[Any]] = {
        name: [c.inputs.get(name) for c in cases] for name in [*fields, *extra]
    }
    return pd.DataFrame(dict(columns), index=range(len(cases)))
