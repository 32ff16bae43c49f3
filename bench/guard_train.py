"""Train the injection detector's model from the corpus's train split; write its weights.

Usage: python bench/guard_train.py [--corpus FILE] [--out FILE] [--c C] [--fpr F] [--cv]

Logistic regression over the word unigrams and bigrams of the normalised text
(``prodgate.guard.injection.features``, the same function the detector scores with),
each text's n-gram counts weighted 1/sqrt(number of n-grams) so that long and short texts
compare. Long benign texts are also cut into the detector's windows, so that a window of
an ordinary document is known to be ordinary.

What keeps one word from carrying the score:

- function words ("and", "your", "as", "this", ...) are not features on their own (their
  bigrams are): long jailbreak prompts are full of them, so a model free to weigh them
  learns "long and wordy", not "attack";
- texts that are an attack wrapped in base64, hex, rot13 or URL-encoding are left out:
  the detector's decoded layer reads their payload, and a model trained on their
  wrappers learns "encoded", "string" and rot13 gibberish;
- the score leaves out the strongest single n-gram of the text (of each window, in the
  detector): the rest of the text has to agree before it crosses the line;
- an n-gram must occur in at least MIN_COUNT texts.

The operating point: the bias is shifted so that the score 0.5 keeps the false-positive
rate on the train split's hard negatives at most ``--fpr``, measured out of fold with
folds by template family (all texts of a template in one fold), so the test split is
never looked at. The shift may be negative: leaving the top n-gram out lowers every
score, and the threshold follows the hard negatives, not 0.5. ``--cv`` prints that
cross-validation for a few values of C and stops.
Deterministic: the same corpus gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from prodgate.guard.injection import MODEL_FILE, features
from prodgate.guard.normalise import normalise

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "bench" / "data" / "guard" / "injection.jsonl"
OUT = ROOT / "src" / "prodgate" / "guard" / "data" / MODEL_FILE
WINDOW, STRIDE = 48, 24
MIN_COUNT = 3  # an n-gram seen in fewer train texts is not a feature
MAX_FEATURES = 20000
#: A text's score leaves out its strongest n-gram: the rest of the text has to agree.
AGREE = True
#: Attacks in an encoding: the decoded layer's job, not the model's.
ENCODED = frozenset({"written:base64", "written:hex", "written:rot13", "written:url"})
#: Function words: never a feature alone (their bigrams are).
_STOP_WORDS = (
    "a an the and or but if of to in on at by for with from as is are was were be been being "
    "it its this that these those i you he she we they me him her us them my your his our "
    "their what which who whom there here so than then too very can will would could should "
    "just do does did have has had not no all any some each every also about into over up out "
    "one only more most such s t m ll re ve d n"
)
STOP = frozenset(_STOP_WORDS.split())


@dataclass
class Example:
    words: list[str]
    label: int
    group: str  # corpus group, or "window" for a window cut from a long benign text
    family: str  # the template (or prompt) it came from: folds keep a family together


def family(r: dict[str, str]) -> str:
    s = r["source"]
    if s.count(":") >= 2:  # written:<set>:<template index>
        return s
    key = " ".join(r["text"].lower().split())[:40]
    return s + ":" + hashlib.sha256(key.encode()).hexdigest()[:8]


def examples(path: Path) -> list[Example]:
    out: list[Example] = []
    for line in path.read_text("utf-8").split("\n"):
        if not line.strip():
            continue
        r = json.loads(line)
        if r["split"] != "train" or r["label"] not in ("injection", "benign"):
            continue
        if r["source"] in ENCODED:
            continue
        words = list(normalise(r["text"]).words)
        y = int(r["label"] == "injection")
        fam = family(r)
        out.append(Example(words, y, r["group"], fam))
        if not y and len(words) > WINDOW:
            for s in range(0, len(words) - STRIDE, STRIDE):
                out.append(Example(words[s : s + WINDOW], 0, "window", fam))
    return out


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
    kept = sorted(
        (f for f, c in counts.items() if c >= MIN_COUNT and f not in STOP),
        key=lambda f: (-counts[f], f),
    )
    return {f: i for i, f in enumerate(sorted(kept[:MAX_FEATURES]))}


def fit(x: csr_matrix, y: np.ndarray, c: float) -> LogisticRegression:
    clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, solver="liblinear")
    clf.fit(x, y)
    return clf


def train(ex: list[Example], c: float) -> tuple[dict[str, float], float]:
    """The weights (n-gram -> weight, tiny ones dropped) and the bias of a fit on *ex*."""
    docs = [e.words for e in ex]
    vocab = build_vocab(docs)
    clf = fit(matrix(docs, vocab), np.array([e.label for e in ex]), c)
    names = sorted(vocab, key=vocab.__getitem__)
    coef = clf.coef_[0]
    weights = {n: round(float(w), 4) for n, w in zip(names, coef, strict=True) if abs(w) >= 1e-3}
    return weights, float(clf.intercept_[0])


def decision(weights: dict[str, float], bias: float, words: list[str]) -> float:
    """The model's decision value as the detector computes it (the top n-gram left out)."""
    vals = [weights.get(n, 0.0) for n in features(words)]
    top = max(0.0, *vals) if AGREE and vals else 0.0
    return bias + ((sum(vals) - top) / math.sqrt(len(vals)) if vals else 0.0)


def out_of_fold(ex: list[Example], c: float) -> np.ndarray:
    """Decision values of each example from a model that never saw its template family."""
    y = np.array([e.label for e in ex])
    oof = np.zeros(len(ex))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=9)
    for tr, te in folds.split(np.zeros(len(ex)), y, [e.family for e in ex]):
        weights, bias = train([ex[i] for i in tr], c)
        for i in te:
            oof[i] = decision(weights, bias, ex[i].words)
    return oof


def operating_point(ex: list[Example], oof: np.ndarray, fpr: float) -> float:
    hard = np.sort([v for e, v in zip(ex, oof, strict=True) if e.group == "hard_negative"])
    k = math.floor(fpr * len(hard))
    return float(hard[::-1][k]) + 1e-6 if len(hard) else 0.0


def report(ex: list[Example], oof: np.ndarray, shift: float) -> str:
    y = np.array([e.label for e in ex])
    grp = np.array([e.group for e in ex])
    return (
        f"recall {np.mean(oof[y == 1] > shift):.3f}, FPR hard negatives "
        f"{np.mean(oof[grp == 'hard_negative'] > shift):.3f}, ordinary "
        f"{np.mean(oof[grp == 'ordinary'] > shift):.3f}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--c", type=float, default=4.0, help="inverse regularisation [4]")
    p.add_argument("--fpr", type=float, default=0.005, help="hard-negative FPR at 0.5 [0.005]")
    p.add_argument("--cv", action="store_true", help="cross-validate a few C, write nothing")
    args = p.parse_args()
    ex = examples(args.corpus)
    if args.cv:
        for c in (0.25, 0.5, 1.0, 2.0, 4.0):
            oof = out_of_fold(ex, c)
            shift = operating_point(ex, oof, args.fpr)
            print(f"C={c}: out of fold, model alone, shift {shift:.3f}: {report(ex, oof, shift)}")
        return
    oof = out_of_fold(ex, args.c)
    shift = operating_point(ex, oof, args.fpr)
    weights, bias = train(ex, args.c)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "about": "prodgate injection model: logistic regression over word 1-2 grams of the "
        "normalised text (function words only in bigrams), features weighted 1/sqrt(n), the "
        "strongest n-gram left out of a score; "
        "built by bench/guard_train.py",
        "window": WINDOW,
        "stride": STRIDE,
        "agree": AGREE,
        "bias": round(bias - shift, 6),
        "weights": dict(sorted(weights.items())),
    }
    args.out.write_text(json.dumps(payload, separators=(",", ":"), sort_keys=False) + "\n")
    print(
        f"{len(ex)} train examples, {len(weights)} weights; operating point shift {shift:.3f}; "
        f"out of fold (model alone): {report(ex, oof, shift)}; wrote {args.out} "
        f"({args.out.stat().st_size} bytes)"
    )


if __name__ == "__main__":
    main()
