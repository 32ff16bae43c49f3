"""Train the injection detector's model from the corpus's train split; write its weights.

Usage: python bench/guard_train.py [--corpus FILE] [--out FILE] [--c C] [--fpr F]

Logistic regression over the word unigrams and bigrams of the normalised text
(``prodgate.guard.injection.features``, the same function the detector scores with),
each text's n-gram counts weighted 1/sqrt(number of n-grams) so that long and short texts compare.
Long benign texts are also cut into the detector's windows, so that a window of an
ordinary document is known to be ordinary. The operating point: the bias is shifted
so that the score 0.5 is the threshold that keeps the false-positive rate on the
train split's hard negatives at most ``--fpr``, measured out of fold (5 folds), so
the test split is never looked at. Deterministic: the same corpus gives the same file.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from prodgate.guard.injection import MODEL_FILE, features
from prodgate.guard.normalise import normalise

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "data" / "guard" / "injection.jsonl"
OUT = ROOT / "src" / "prodgate" / "guard" / "data" / MODEL_FILE
WINDOW, STRIDE = 48, 24
MIN_COUNT = 2  # an n-gram seen in fewer train texts is not a feature
MAX_FEATURES = 20000


def examples(path: Path) -> tuple[list[list[str]], list[int], list[str]]:
    docs: list[list[str]] = []
    labels: list[int] = []
    groups: list[str] = []
    for line in path.read_text("utf-8").split("\n"):
        if not line.strip():
            continue
        r = json.loads(line)
        if r["split"] != "train" or r["label"] not in ("injection", "benign"):
            continue
        words = list(normalise(r["text"]).words)
        y = int(r["label"] == "injection")
        docs.append(words)
        labels.append(y)
        groups.append(r["group"])
        if not y and len(words) > WINDOW:
            for s in range(0, len(words) - STRIDE, STRIDE):
                docs.append(words[s : s + WINDOW])
                labels.append(0)
                groups.append("window")
    return docs, labels, groups


def matrix(docs: list[list[str]], vocab: dict[str, int]) -> csr_matrix:
    rows, cols, vals = [], [], []
    for i, words in enumerate(docs):
        f = features(words)
        scale = 1.0 / math.sqrt(len(f)) if f else 0.0
        for name in f:  # counted: a repeated n-gram adds up (csr_matrix sums duplicates)
            j = vocab.get(name)
            if j is not None:
                rows.append(i)
                cols.append(j)
                vals.append(scale)
    return csr_matrix((vals, (rows, cols)), shape=(len(docs), len(vocab)))


def build_vocab(docs: list[list[str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for words in docs:
        for f in set(features(words)):
            counts[f] = counts.get(f, 0) + 1
    kept = sorted((f for f, c in counts.items() if c >= MIN_COUNT), key=lambda f: (-counts[f], f))
    return {f: i for i, f in enumerate(sorted(kept[:MAX_FEATURES]))}


def fit(x: csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear")
    clf.fit(x, y)
    return clf


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--c", type=float, default=4.0, help="inverse regularisation [4]")
    p.add_argument("--fpr", type=float, default=0.01, help="hard-negative FPR at 0.5 [0.01]")
    args = p.parse_args()
    docs, labels, groups = examples(args.corpus)
    vocab = build_vocab(docs)
    x = matrix(docs, vocab)
    y = np.array(labels)
    # Out-of-fold decision values on the train split, to place the operating point.
    oof = np.zeros(len(y))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=9)
    for tr, te in folds.split(x, y):
        oof[te] = fit(x[tr], y[tr], args.c).decision_function(x[te])
    hard = np.array([g == "hard_negative" for g in groups]) & (y == 0)
    neg = np.sort(oof[hard])[::-1]
    k = math.floor(args.fpr * len(neg))
    threshold = float(neg[k]) + 1e-6 if len(neg) else 0.0
    threshold = max(threshold, 0.0)  # never below the model's own 0.5
    clf = fit(x, y, args.c)
    names = sorted(vocab, key=vocab.__getitem__)
    coef = clf.coef_[0]
    weights = {n: round(float(w), 4) for n, w in zip(names, coef, strict=True) if abs(w) >= 1e-3}
    bias = float(clf.intercept_[0]) - threshold
    recall = float(np.mean(oof[y == 1] > threshold))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "about": "prodgate injection model: logistic regression over word 1-2 grams of the "
        "normalised text, features weighted 1/sqrt(n); built by bench/guard_train.py",
        "window": WINDOW,
        "stride": STRIDE,
        "bias": round(bias, 6),
        "weights": dict(sorted(weights.items())),
    }
    args.out.write_text(json.dumps(payload, separators=(",", ":"), sort_keys=False) + "\n")
    print(
        f"{len(docs)} train examples, {len(vocab)} features, {len(weights)} kept; "
        f"operating point shift {threshold:.3f}; out-of-fold recall {recall:.3f} at "
        f"hard-negative FPR <= {args.fpr}; wrote {args.out} ({args.out.stat().st_size} bytes)"
    )


if __name__ == "__main__":
    main()
