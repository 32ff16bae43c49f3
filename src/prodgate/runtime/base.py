"""What every model adapter provides: batch prediction with class probabilities.

An adapter wraps one loaded model. The gateway calls :meth:`Model.predict` with a
batch of rows that already passed the input contract (dicts keyed by field name)
and gets one :class:`Prediction` per row, in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prodgate.exceptions import ArtifactError

#: Flavors prodgate knows. ``pickle`` covers joblib and pickle files; ``prompt`` is a
#: prompt version of a service of kind ``llm`` (:mod:`prodgate.llm.prompt`).
FLAVORS = ("skops", "pickle", "onnx", "mlflow", "callable", "prompt")


@dataclass(frozen=True)
class Prediction:
    """One row's answer: the label (classifiers) or value (regressors), and for
    classifiers whose model has them, the probability of each label."""

    value: Any
    probabilities: dict[str, float] | None = None

    @property
    def confidence(self) -> float | None:
        if not self.probabilities:
            return None
        return max(self.probabilities.values())


@dataclass(frozen=True)
class Trust:
    """What a person trusted when registering a version, and nothing more.

    ``pickle``: the artifact's code (a pickle/joblib file, a pickled MLflow model);
    loading runs it, so it may do anything. ``types``: the types of a skops file
    outside prodgate's allow-list, by fully qualified name; only these may load.

    Truthy only when the code is trusted, as the plain flag was, so a check written
    ``if not info.trusted`` still refuses what it refused before.
    """

    pickle: bool = False
    types: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.pickle


@dataclass(frozen=True)
class ModelInfo:
    """How to load a model: what the registry knows of a version plus the service's spec."""

    kind: str  # "classifier" or "regressor"
    features: Sequence[str]  # input field names in contract order
    labels: Sequence[str] | None = None  # the service's output labels, if declared
    #: The version's :class:`Trust`; a plain True trusts the artifact's code.
    trusted: Trust | bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trust(self) -> Trust:
        return self.trusted if isinstance(self.trusted, Trust) else Trust(pickle=self.trusted)


class Model(Protocol):
    flavor: str
    #: The labels of the classes in the model's own order (None for regressors).
    labels: Sequence[str] | None

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> list[Prediction]: ...


def map_labels(classes: Sequence[Any], labels: Sequence[str] | None) -> list[str]:
    """The service's label for each of the model's classes, in the model's order.

    - no labels declared: the classes themselves, as strings;
    - classes that are the labels (as strings, in any order): taken as they are;
    - integer classes 0..k-1 (or False/True) and k labels: the i-th label.
    """
    as_text = [str(c) for c in classes]
    if labels is None:
        return as_text
    if sorted(as_text) == sorted(str(x) for x in labels):
        return as_text
    plain = [c.item() if hasattr(c, "item") else c for c in classes]
    if len(plain) == len(labels):
        if all(isinstance(c, bool) for c in plain) and list(plain) == [False, True]:
            return [str(x) for x in labels]
        if all(isinstance(c, int) and not isinstance(c, bool) for c in plain) and sorted(
            plain
        ) == list(range(len(labels))):
            return [str(labels[int(c)]) for c in plain]
    raise ArtifactError(
        f"the model's classes {as_text} do not match the service's labels {list(labels)}"
    )
