"""How good and how fast the guard's fast layer is, on the corpus's test split.

Usage: python bench/guard_quality.py [--json] [--threshold 0.5] [--repeat 3] [--data DIR]

Reads every bench/data/guard/*.jsonl (one object per line: text, label, kind,
group, split, source, spans) and evaluates the test split only:

- injection (InjectionDetector): recall per group and per layer (patterns, decoded,
  model), precision, and the false-positive rate on hard negatives and on ordinary
  text separately. A text is flagged when a finding scores at least --threshold.
- pii and secret (PiiDetector, SecretsDetector, imported lazily; a category whose
  module is missing is skipped): a positive span is found when a finding of its
  category overlaps it; FPR is the share of look-alikes with any finding.
- latency of the whole fast layer (normalise + injection + pii + secrets, whichever
  exist) per corpus text, per 1,000-character text cut from the benign texts (ordinary
  traffic) and from all texts (dense with attacks, PII and secrets), p50 and p99 on
  this machine, and of the injection detector on 100-character texts.

With ``--data DIR`` it reads DIR's *.jsonl instead and evaluates every line (no
split): a set made apart from the corpus, such as bench/data/guard-heldout/ (written by
someone who saw neither the detectors nor the corpus). Its benign lines are told apart
by group: ``ordinary`` and ``hard_negative`` for injection, ``lookalike`` for PII and
secrets.

Prints the table and the targets with PASS/FAIL (exit 1 if one fails); --json prints
one JSON object instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.report import aligned, verdict
from prodgate.guard.finding import Finding

DATA = Path(__file__).parent / "data" / "guard"
Detector = Any

TARGETS = {
    "injection recall": (">=", 0.90),
    "injection FPR (hard negatives)": ("<=", 0.02),
    "pii recall": (">=", 0.98),
    "pii FPR (look-alikes)": ("<=", 0.01),
    "secret recall": (">=", 0.98),
    "secret FPR (look-alikes)": ("<=", 0.01),
    "fast layer p50 ms / 1,000 chars": ("<=", 1.0),
    "fast layer p99 ms / 1,000 chars": ("<=", 5.0),
    "fast layer p50 ms / 1,000 chars, dense": ("<=", 1.0),
    "fast layer p99 ms / 1,000 chars, dense": ("<=", 5.0),
}


def load_rows(data: Path = DATA) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in sorted(data.glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    r["file"] = path.stem
                    rows.append(r)
    return rows


def detectors() -> dict[str, Detector]:
    """The fast layer's detectors that exist in this checkout, by category."""
    out: dict[str, Detector] = {}
    for category, module, cls in (
        ("injection", "prodgate.guard.injection", "InjectionDetector"),
        ("pii", "prodgate.guard.pii", "PiiDetector"),
        ("secret", "prodgate.guard.secrets", "SecretsDetector"),
    ):
        try:
            out[category] = getattr(importlib.import_module(module), cls)()
        except (ImportError, AttributeError):
            continue
    return out


def ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


@dataclass
class Counts:
    pos: int = 0
    tp: int = 0
    fp_texts: int = 0
    neg: int = 0
    extra: int = 0  # findings that hit nothing (precision)
    by: dict[str, list[int]] = field(default_factory=dict)  # name -> [found, total]

    def tally(self, name: str, hit: bool) -> None:
        c = self.by.setdefault(name, [0, 0])
        c[0] += hit
        c[1] += 1


def injection_quality(rows: Sequence[dict[str, Any]], det: Detector, thr: float) -> dict[str, Any]:
    layers = ("injection.patterns", "injection.decoded", "injection.model")
    pos = [r for r in rows if r["label"] == "injection"]
    neg = [r for r in rows if r["label"] == "benign"]
    flagged_pos = 0
    by_group: dict[str, list[int]] = {}
    by_layer = {name: [0, 0] for name in layers}  # [true flags, false flags]
    fp_group: dict[str, list[int]] = {}
    missed: list[str] = []
    for r in pos:
        fs = [f for f in det.scan(r["text"]) if f.score >= thr]
        hit = bool(fs)
        flagged_pos += hit
        g = by_group.setdefault(r["group"], [0, 0])
        g[0] += hit
        g[1] += 1
        for name in {f.detector for f in fs}:
            by_layer[name][0] += 1
        if not hit:
            missed.append(r["text"][:100])
    false_alarms: list[str] = []
    for r in neg:
        fs = [f for f in det.scan(r["text"]) if f.score >= thr]
        g = fp_group.setdefault(r["group"], [0, 0])
        g[0] += bool(fs)
        g[1] += 1
        for name in {f.detector for f in fs}:
            by_layer[name][1] += 1
        if fs:
            false_alarms.append(f"{r['group']}: {r['text'][:100]}")
    fp_all = sum(v[0] for v in fp_group.values())
    return {
        "texts": len(pos) + len(neg),
        "recall": ratio(flagged_pos, len(pos)),
        "precision": ratio(flagged_pos, flagged_pos + fp_all),
        "fpr_hard_negative": ratio(*fp_group.get("hard_negative", [0, 0])),
        "fpr_ordinary": ratio(*fp_group.get("ordinary", [0, 0])),
        "recall_by_group": {k: ratio(*v) for k, v in sorted(by_group.items())},
        "positives_by_group": {k: v[1] for k, v in sorted(by_group.items())},
        "negatives_by_group": {k: v[1] for k, v in sorted(fp_group.items())},
        "layers": {
            name: {
                "recall": ratio(tp, len(pos)),
                "precision": ratio(tp, tp + fp),
                "fpr": ratio(fp, len(neg)),
            }
            for name, (tp, fp) in by_layer.items()
        },
        "missed_examples": missed[:10],
        "false_alarm_examples": false_alarms[:10],
    }


def span_quality(
    rows: Sequence[dict[str, Any]], det: Detector, category: str, thr: float
) -> dict[str, Any]:
    found = total = extra = fp_texts = neg = 0
    by_kind: dict[str, list[int]] = {}
    for r in rows:
        fs: list[Finding] = [
            f for f in det.scan(r["text"]) if f.score >= thr and f.category == category
        ]
        if r["label"] == category:
            used: set[int] = set()
            for start, end, kind in r.get("spans") or []:
                hits = [i for i, f in enumerate(fs) if f.start < end and start < f.end]
                used.update(hits)
                k = by_kind.setdefault(kind, [0, 0])
                k[0] += bool(hits)
                k[1] += 1
                found += bool(hits)
                total += 1
            extra += len(fs) - len(used)
        else:
            neg += 1
            fp_texts += bool(fs)
            extra += len(fs)
    return {
        "spans": total,
        "lookalikes": neg,
        "recall": ratio(found, total),
        "precision": ratio(found, found + extra),
        "fpr_lookalike": ratio(fp_texts, neg),
        "recall_by_kind": {k: ratio(*v) for k, v in sorted(by_kind.items())},
    }


def percentile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def timed(fn: Callable[[str], object], texts: Sequence[str], repeat: int) -> list[float]:
    for t in texts[:50]:  # warm up: lazy model load, regex caches
        fn(t)
    out: list[float] = []
    clock = time.perf_counter_ns
    for _ in range(repeat):
        for t in texts:
            t0 = clock()
            fn(t)
            out.append((clock() - t0) / 1e6)
    return out


def sized_texts(rows: Sequence[dict[str, Any]], size: int, count: int) -> list[str]:
    """*count* texts of exactly *size* characters, cut from the corpus's texts."""
    rng = random.Random(size)
    pool = [r["text"] for r in rows]
    out = []
    while len(out) < count:
        parts: list[str] = []
        while sum(map(len, parts)) < size:
            parts.append(rng.choice(pool))
        out.append(" ".join(parts)[:size])
    return out


def latency(
    rows: Sequence[dict[str, Any]], dets: dict[str, Detector], repeat: int
) -> dict[str, Any]:
    layer = list(dets.values())

    def fast(text: str) -> object:
        return [d.scan(text) for d in layer]

    corpus = [r["text"] for r in rows]
    # Traffic is mostly ordinary text: the 1,000-character texts are cut from the benign
    # texts. The dense ones are cut from every text (attacks, PII and secret samples:
    # a dozen findings to a text), the worst case.
    k1 = sized_texts([r for r in rows if r["label"] == "benign"] or rows, 1000, 300)
    dense = sized_texts(rows, 1000, 300)
    c100 = sized_texts(rows, 100, 1000)
    per_text = timed(fast, corpus, repeat)
    per_1k = timed(fast, k1, repeat)
    per_dense = timed(fast, dense, repeat)
    out: dict[str, Any] = {
        "detectors": sorted(dets),
        "per_text_ms": {"p50": percentile(per_text, 0.5), "p99": percentile(per_text, 0.99)},
        "per_1000_chars_ms": {"p50": percentile(per_1k, 0.5), "p99": percentile(per_1k, 0.99)},
        "per_1000_dense_chars_ms": {
            "p50": percentile(per_dense, 0.5),
            "p99": percentile(per_dense, 0.99),
        },
        "per_100_chars_ms": {},
    }
    fast100 = timed(fast, c100, repeat)
    out["per_100_chars_ms"]["fast layer"] = {
        "p50": percentile(fast100, 0.5),
        "p99": percentile(fast100, 0.99),
    }
    for name, d in dets.items():
        xs = timed(d.scan, c100, repeat)
        ys = timed(d.scan, k1, repeat)
        out["per_100_chars_ms"][name] = {"p50": percentile(xs, 0.5), "p99": percentile(xs, 0.99)}
        out["per_1000_chars_ms"][name] = {
            "p50": percentile(ys, 0.5),
            "p99": percentile(ys, 0.99),
        }
    return out


def checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    q = result["quality"]
    lat = result["latency"]["per_1000_chars_ms"]
    dense = result["latency"]["per_1000_dense_chars_ms"]
    figures = {
        "injection recall": q.get("injection", {}).get("recall"),
        "injection FPR (hard negatives)": q.get("injection", {}).get("fpr_hard_negative"),
        "pii recall": q.get("pii", {}).get("recall"),
        "pii FPR (look-alikes)": q.get("pii", {}).get("fpr_lookalike"),
        "secret recall": q.get("secret", {}).get("recall"),
        "secret FPR (look-alikes)": q.get("secret", {}).get("fpr_lookalike"),
        "fast layer p50 ms / 1,000 chars": lat["p50"],
        "fast layer p99 ms / 1,000 chars": lat["p99"],
        "fast layer p50 ms / 1,000 chars, dense": dense["p50"],
        "fast layer p99 ms / 1,000 chars, dense": dense["p99"],
    }
    out = []
    for name, (op, target) in TARGETS.items():
        v = figures[name]
        if v is None:
            out.append({"check": name, "figure": None, "target": f"{op} {target}", "ok": None})
            continue
        ok = v >= target if op == ">=" else v <= target
        out.append({"check": name, "figure": v, "target": f"{op} {target}", "ok": ok})
    return out


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def text_report(result: dict[str, Any]) -> str:
    lines = [f"guard quality on the test split ({result['machine']})", ""]
    q = result["quality"]
    inj = q.get("injection")
    if inj:
        rows = [["injection", "recall", "precision", "FPR", "texts"]]
        rows.append(
            [
                "all layers",
                fmt(inj["recall"]),
                fmt(inj["precision"]),
                f"hard {fmt(inj['fpr_hard_negative'])} / ordinary {fmt(inj['fpr_ordinary'])}",
                str(inj["texts"]),
            ]
        )
        for name, v in inj["layers"].items():
            rows.append([name, fmt(v["recall"]), fmt(v["precision"]), fmt(v["fpr"]), ""])
        for g, v in inj["recall_by_group"].items():
            rows.append([f"  group {g}", fmt(v), "", "", str(inj["positives_by_group"][g])])
        lines += [*aligned(rows), ""]
    for cat in ("pii", "secret"):
        c = q.get(cat)
        if c is None:
            lines += [f"{cat}: skipped (detector or corpus missing)", ""]
            continue
        rows = [[cat, "recall", "precision", "FPR look-alikes", "spans / look-alikes"]]
        rows.append(
            [
                "all kinds",
                fmt(c["recall"]),
                fmt(c["precision"]),
                fmt(c["fpr_lookalike"]),
                f"{c['spans']} / {c['lookalikes']}",
            ]
        )
        for k, v in c["recall_by_kind"].items():
            rows.append([f"  {k}", fmt(v), "", "", ""])
        lines += [*aligned(rows), ""]
    lat = result["latency"]
    rows = [["latency (ms)", "p50", "p99"]]
    rows.append(
        [
            "fast layer, per corpus text",
            fmt(lat["per_text_ms"]["p50"]),
            fmt(lat["per_text_ms"]["p99"]),
        ]
    )
    rows.append(
        [
            "fast layer, per 1,000 chars of ordinary text",
            fmt(lat["per_1000_chars_ms"]["p50"]),
            fmt(lat["per_1000_chars_ms"]["p99"]),
        ]
    )
    rows.append(
        [
            "fast layer, per 1,000 chars, dense (attacks, PII, secrets)",
            fmt(lat["per_1000_dense_chars_ms"]["p50"]),
            fmt(lat["per_1000_dense_chars_ms"]["p99"]),
        ]
    )
    for name in lat["detectors"]:
        v = lat["per_1000_chars_ms"][name]
        rows.append([f"  {name}, per 1,000 chars", fmt(v["p50"]), fmt(v["p99"])])
    for name, v in lat["per_100_chars_ms"].items():
        rows.append([f"{name}, per 100 chars", fmt(v["p50"], 4), fmt(v["p99"], 4)])
    lines += [f"fast layer: {', '.join(lat['detectors'])}", *aligned(rows), ""]
    rows = [["target", "figure", "target", "result"]]
    for c in result["checks"]:
        res = "SKIP" if c["ok"] is None else verdict(c["ok"])
        rows.append([c["check"], fmt(c["figure"]), c["target"], res])
    lines += aligned(rows)
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threshold", type=float, default=0.5, help="the policy threshold [0.5]")
    p.add_argument("--repeat", type=int, default=3, help="timing passes over the texts [3]")
    p.add_argument(
        "--data",
        type=Path,
        default=None,
        help="evaluate every line of this directory's *.jsonl (a held-out set) instead",
    )
    args = p.parse_args()
    heldout = args.data is not None
    # A held-out set is all test; the corpus, its test split only.
    rows = load_rows(args.data) if heldout else [r for r in load_rows() if r["split"] == "test"]
    dets = detectors()
    quality: dict[str, Any] = {}
    if "injection" in dets:
        inj_rows = [
            r
            for r in rows
            if (
                r["label"] == "injection"
                or (r["label"] == "benign" and r["group"] in ("ordinary", "hard_negative"))
            )
            if heldout
        ] or [r for r in rows if r["file"].startswith("injection")]
        quality["injection"] = injection_quality(inj_rows, dets["injection"], args.threshold)
    for cat in ("pii", "secret"):
        cat_rows = [
            r
            for r in rows
            if r["label"] == cat
            or (heldout and r["label"] == "benign" and r["group"] == "lookalike")
            or (
                not heldout
                and r["label"] == "benign"
                and r["file"] in ("pii", "secrets")
                and (r["file"] == "pii") == (cat == "pii")
            )
        ]
        if cat in dets and any(r["label"] == cat for r in cat_rows):
            quality[cat] = span_quality(cat_rows, dets[cat], cat, args.threshold)
    result: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}",
        "date": time.strftime("%Y-%m-%d"),
        "threshold": args.threshold,
        "quality": quality,
        "latency": latency(rows, dets, args.repeat),
    }
    result["checks"] = checks(result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(text_report(result))
        inj = quality.get("injection")
        if inj and inj["missed_examples"]:
            print("\nmissed injections (first 10):")
            print("\n".join(f"  {t!r}" for t in inj["missed_examples"]))
        if inj and inj["false_alarm_examples"]:
            print("\nfalse alarms (first 10):")
            print("\n".join(f"  {t!r}" for t in inj["false_alarm_examples"]))
    failed = [c for c in result["checks"] if c["ok"] is False]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
