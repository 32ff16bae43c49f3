"""Bounds checks for the decision trees inside a model loaded from skops.

skops (>= 0.16) leaves ``sklearn.tree._tree.Tree`` and HistGradientBoosting's
``TreePredictor`` untrusted by default: their node arrays hold raw child and
feature indices that scikit-learn's compiled predict code follows without bounds
checks, so a crafted file can crash the process or read memory out of bounds.
prodgate's allow-list trusts them so ordinary forests and boosting pipelines load,
and checks here, before the first predict, that every index is in range and every
child comes after its parent (no cycles). Best effort: it covers the node arrays
these two types carry, not every internal attribute of every estimator.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from sklearn.ensemble._hist_gradient_boosting.common import PREDICTOR_RECORD_DTYPE
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.tree._tree import Tree

from prodgate.exceptions import ArtifactError


def _refuse(what: str) -> ArtifactError:
    return ArtifactError(f"the model file holds a decision tree with {what}; it may be crafted")


def _check_nodes(left: Any, right: Any, feature: Any, leaf: Any, n_features: int) -> None:
    count = len(left)
    idx = np.arange(count)
    inner = ~leaf
    children_ok = (
        (left[inner] > idx[inner])
        & (left[inner] < count)
        & (right[inner] > idx[inner])
        & (right[inner] < count)
    )
    if not children_ok.all():
        raise _refuse("child node indices out of range")
    if not ((feature[inner] >= 0) & (feature[inner] < n_features)).all():
        raise _refuse("feature indices out of range")


def _check_tree(tree: Any, bound: int | None) -> None:
    count, capacity, n_features = int(tree.node_count), int(tree.capacity), int(tree.n_features)
    # node_count must be checked first: the node arrays below are views of that length.
    if not 0 < count <= capacity:
        raise _refuse(f"a node count of {count} for {capacity} stored nodes")
    if bound is None or n_features > bound:
        raise _refuse(f"{n_features} features where its estimator takes {bound}")
    left = np.asarray(tree.children_left, dtype=np.int64)
    right = np.asarray(tree.children_right, dtype=np.int64)
    leaf = left == -1
    if not (right[leaf] == -1).all():
        raise _refuse("a leaf that has children")
    _check_nodes(left, right, np.asarray(tree.feature, dtype=np.int64), leaf, n_features)


def _check_predictor(pred: Any, bound: int | None, categorical: Any) -> None:
    nodes = pred.nodes
    if not isinstance(nodes, np.ndarray) or nodes.dtype != PREDICTOR_RECORD_DTYPE or not len(nodes):
        raise _refuse("a malformed node array")
    if bound is None:
        raise _refuse("no known number of features")
    leaf = nodes["is_leaf"] != 0
    feature = nodes["feature_idx"].astype(np.int64)
    left, right = nodes["left"].astype(np.int64), nodes["right"].astype(np.int64)
    _check_nodes(left, right, feature, leaf, bound)
    cat = ~leaf & (nodes["is_categorical"] != 0)
    if cat.any():
        n_sets = min(len(pred.raw_left_cat_bitsets), len(pred.binned_left_cat_bitsets))
        flags = np.zeros(bound, dtype=bool) if categorical is None else np.asarray(categorical)
        if flags.shape != (bound,) or not flags[feature[cat]].all():
            raise _refuse("a categorical split on a feature that is not categorical")
        if not (nodes["bitset_idx"][cat].astype(np.int64) < n_sets).all():
            raise _refuse("category bitset indices out of range")


def check_trees(obj: Any) -> None:
    """Raise :class:`ArtifactError` if a tree inside ``obj`` has out-of-range indices."""
    _walk(obj, None, None, None, set())


def _walk(obj: Any, bound: int | None, cap: int | None, cat: Any, seen: set[int]) -> None:
    if id(obj) in seen or isinstance(obj, str | bytes | numbers.Number):
        return
    seen.add(id(obj))
    if isinstance(obj, Tree):
        _check_tree(obj, bound)
    elif isinstance(obj, TreePredictor):
        _check_predictor(obj, bound, cat)
    elif isinstance(obj, list | tuple | set | frozenset):
        for item in obj:
            _walk(item, bound, cap, cat, seen)
    elif isinstance(obj, dict):
        for item in obj.values():
            _walk(item, bound, cap, cat, seen)
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            for item in obj.ravel():
                _walk(item, bound, cap, cat, seen)
    elif hasattr(obj, "__dict__"):
        state = vars(obj)
        n = state.get("n_features_in_")
        # An estimator validates X against its own n_features_in_; without one the
        # trees below it have no known bound (and are refused).
        bound = int(n) if isinstance(n, numbers.Integral) else None
        if bound is not None and cap is not None and bound > cap:
            raise _refuse(f"a sub-estimator taking {bound} features inside one taking {cap}")
        cat = _categorical_flags(state.get("_bin_mapper"))
        for key, value in state.items():
            # Ensembles call their members without re-validating X, so a member may
            # not claim more features than the ensemble checked.
            _walk(value, bound, bound if key == "estimators_" else None, cat, seen)


def _categorical_flags(mapper: Any) -> Any:
    """Which features a HistGradientBoosting model treats as categorical (None if none).

    predict builds a 256-bit set of known categories per categorical feature from the
    bin mapper without bounds checks, so the categories must lie in [0, 256).
    """
    if mapper is None:
        return None
    flags = getattr(mapper, "is_categorical_", None)
    if flags is None:
        return None
    flags = np.asarray(flags, dtype=bool)
    thresholds = getattr(mapper, "bin_thresholds_", None)
    if flags.ndim != 1 or thresholds is None or len(thresholds) != len(flags):
        raise _refuse("a malformed bin mapper")
    for f in np.flatnonzero(flags):
        known = np.asarray(thresholds[f], dtype=np.float64)
        if not ((known >= 0) & (known < 256)).all():
            raise _refuse("categories outside 0..255")
    return flags
