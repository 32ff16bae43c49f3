"""The callable adapter: plain functions named ``module:function``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from prodgate.exceptions import ArtifactError
from prodgate.runtime.base import ModelInfo
from prodgate.runtime.callable import callable_fingerprint, load_callable

LABELS = ["cat", "dog"]


def label_by_size(rows):
    return ["dog" if r["weight"] > 10 else "cat" for r in rows]


def probabilities_by_size(rows):
    return [
        {"cat": 0.8, "dog": 0.2} if r["weight"] <= 10 else {"cat": 0.1, "dog": 0.9} for r in rows
    ]


def price(rows):
    return [r["weight"] * 2 for r in rows]


def too_few(rows):
    return rows[:-1]


def not_a_list(rows):
    return {"cat": 1.0}


def unknown_label(rows):
    return ["horse" for _ in rows]


def mutates(rows):
    for r in rows:
        r["weight"] = 0
    return [0.0 for _ in rows]


class Holder:
    @staticmethod
    def predict(rows):
        return [1.5 for _ in rows]


NOT_CALLABLE = 42
ROWS = [{"weight": 3}, {"weight": 30}]


def ref(name: str) -> str:
    return f"{__name__}:{name}"


def test_labels():
    model = load_callable(ref("label_by_size"), ModelInfo("classifier", ["weight"], LABELS))
    assert model.flavor == "callable"
    assert model.labels == LABELS
    preds = model.predict(ROWS)
    assert [(p.value, p.probabilities) for p in preds] == [("cat", None), ("dog", None)]


def test_probability_dicts_predict_the_argmax():
    model = load_callable(ref("probabilities_by_size"), ModelInfo("classifier", ["weight"], LABELS))
    preds = model.predict(ROWS)
    assert [p.value for p in preds] == ["cat", "dog"]
    assert preds[1].probabilities == {"cat": 0.1, "dog": 0.9}
    assert preds[1].confidence == 0.9


def test_regressor_values_and_dotted_attributes():
    assert [
        p.value
        for p in load_callable(ref("price"), ModelInfo("regressor", ["weight"])).predict(ROWS)
    ] == [6.0, 60.0]
    model = load_callable(ref("Holder.predict"), ModelInfo("regressor", ["weight"]))
    assert [type(p.value) for p in model.predict(ROWS)] == [float, float]


def test_the_callers_rows_are_not_changed():
    rows = [{"weight": 3}]
    load_callable(ref("mutates"), ModelInfo("regressor", ["weight"])).predict(rows)
    assert rows == [{"weight": 3}]


@pytest.mark.parametrize(
    ("name", "kind", "message"),
    [
        ("too_few", "regressor", "returned 1 items for 2 rows"),
        ("not_a_list", "classifier", "returned a dict; it must return a list"),
        ("unknown_label", "classifier", "the label 'horse', not one of"),
        ("label_by_size", "regressor", "expected a number"),
        ("Holder.predict", "classifier", "expected a label or a {label: probability} dict"),
    ],
)
def test_wrong_answers_are_clear_errors(name, kind, message):
    model = load_callable(
        ref(name), ModelInfo(kind, ["weight"], LABELS if kind == "classifier" else None)
    )
    with pytest.raises(ArtifactError, match=message.replace("{", r"\{").replace("}", r"\}")):
        model.predict(ROWS)


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("no_such_module_xyz:predict", "cannot import module 'no_such_module_xyz'"),
        (ref("missing"), "does not exist: no attribute 'missing'"),
        (ref("NOT_CALLABLE"), "names a int, which is not callable"),
        ("not a reference", "not a callable reference"),
    ],
)
def test_missing_callables_are_refused(location, message):
    with pytest.raises(ArtifactError, match=message):
        load_callable(location, ModelInfo("classifier", ["weight"]))


def test_fingerprint_hashes_the_module_source():
    data = Path(__file__).read_bytes()
    assert callable_fingerprint(ref("price")) == (hashlib.sha256(data).hexdigest(), len(data))
    with pytest.raises(ArtifactError, match="no source file"):
        callable_fingerprint("sys:exit")
