"""Build the claims-triage example into a directory: data, model, spec.

::

    python -m prodgate.examples.claims_triage.build DIR

writes ``DIR/train.parquet`` and ``DIR/holdout.parquet`` (synthetic claims, different
seeds), ``DIR/model.skops`` (the trained pipeline), ``DIR/prodgate.yaml`` (the spec)
and ``DIR/build.json`` (what was built with which parameters, and the holdout figures).
A second run with the same parameters finds everything in place and does nothing;
a file that is missing, or was built with other parameters, is built again.

The model reads three facts of the policy that callers do not send; the gateway looks
them up in the spec's feature views. :func:`load_features` writes the views' sources
(``DIR/policies.parquet``, ``DIR/policyholders.parquet``: the policies of the holdout,
of the production claims the demo sends, :data:`TRAFFIC`, and of the example request),
stamped as of now, and loads both views into the online store; the demo runs it on
each start, after deploying.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime as dt
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from prodgate.examples.claims_triage.generate import (
    FEATURES,
    HIGH_VALUE,
    LABEL,
    generate,
    policy_sources,
)
from prodgate.examples.claims_triage.spec import (
    EXAMPLE_POLICY,
    EXAMPLE_ROW,
    POLICIES_FILE,
    POLICYHOLDERS_FILE,
    VIEWS,
    write_spec,
)
from prodgate.examples.claims_triage.train import save, train, untrusted_types

if TYPE_CHECKING:
    from prodgate.features.materialize import Load
    from prodgate.settings import Settings
    from prodgate.spec import Spec
    from prodgate.store.engine import Store

TRAIN_FILE = "train.parquet"
HOLDOUT_FILE = "holdout.parquet"
MODEL_FILE = "model.skops"
SPEC_FILE = "prodgate.yaml"
MANIFEST_FILE = "build.json"
_FORMAT = 1
_HOLDOUT_SEED_OFFSET = 1_000

#: The production claims the demo sends, as (rows, seed) of :func:`generate`: the
#: story's canary traffic, then its drift chapter's ordinary, drifted and calm traffic.
TRAFFIC: dict[str, tuple[int, int]] = {
    "canary": (6_000, 99),
    "ordinary": (4_000, 21),
    "drifted": (4_000, 22),
    "calm": (4_000, 23),
    "reviewed": (1_000, 24),
}
#: The share of the drifted claims' policyholders whose CRM rows stopped being refreshed.
DRIFT_STALE_RATE = 0.3


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build` left in the directory, and how the model does on the holdout.

    ``built`` names the files this call wrote (empty when everything was in place).
    Recall is that of the ``adjuster`` class: the share of the claims that needed an
    adjuster which the model sent to one.
    """

    directory: Path
    train_data: Path
    holdout_data: Path
    model: Path
    spec: Path
    manifest: Path
    accuracy: float
    accuracy_high_value: float
    recall: float
    recall_high_value: float
    built: tuple[str, ...] = ()


def example_request() -> dict[str, Any]:
    """One valid input row (the contract's example), e.g. for a curl line."""
    return copy.deepcopy(EXAMPLE_ROW)


def sources(
    holdout: pd.DataFrame, now: dt.datetime, *, stale_rate: float = DRIFT_STALE_RATE
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The views' sources as of *now*: ``(policies, policyholders)`` of the *holdout*'s
    claims, of every :data:`TRAFFIC` (the drifted traffic's policyholders *stale_rate*
    stale) and of the example request's policy."""
    parts = [policy_sources(holdout, now, seed=1)]
    for i, (name, (n, seed)) in enumerate(TRAFFIC.items()):
        rate = stale_rate if name == "drifted" else 0.0
        parts.append(policy_sources(generate(n, seed=seed), now, stale_rate=rate, seed=2 + i))
    example = pd.DataFrame([EXAMPLE_POLICY])
    parts.append(policy_sources(example, now, seed=0))
    policies = pd.concat([p for p, _ in parts], ignore_index=True)
    holders = pd.concat([h for _, h in parts], ignore_index=True)
    return policies, holders


def load_features(
    settings: Settings,
    store: Store,
    spec: Spec,
    actor: str,
    *,
    now: dt.datetime | None = None,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Load]:
    """Write the views' sources beside *spec* (stamped as of *now*) and load every row
    of both into the online store (Redis when the settings name one, else the store).

    Each run loads everything again (``full``), so values written as of an earlier run
    are replaced by those as of this one: a demo started a month later does not serve
    a month-old CRM."""
    from prodgate.features.materialize import materialize
    from prodgate.features.online import build_online

    directory = spec.path.parent
    holdout = pd.read_parquet(directory / HOLDOUT_FILE)
    policies, holders = sources(holdout, now or dt.datetime.now(dt.UTC))
    _write_parquet(policies, directory / POLICIES_FILE)
    _write_parquet(holders, directory / POLICYHOLDERS_FILE)
    online = build_online(settings, store)
    loads: dict[str, Load] = {}
    try:
        for name in VIEWS:
            load = materialize(spec.views[name], directory, online, store, actor, full=True)
            loads[name] = load
            if echo is not None:
                echo(f"  feature view {name}: {load.entities:,} policies loaded ({load.target})")
    finally:
        asyncio.run(online.close())
    return loads


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def _load_model(path: Path) -> Any:
    import skops.io

    return skops.io.load(path, trusted=untrusted_types(path))


def holdout_metrics(model: Any, holdout: pd.DataFrame) -> dict[str, float]:
    """Accuracy and ``adjuster`` recall of *model* on *holdout*, overall and high-value."""
    y = holdout[LABEL].to_numpy()
    predicted = np.asarray(model.predict(holdout[FEATURES]))
    high = holdout["claim_amount"].to_numpy() >= HIGH_VALUE

    def accuracy(mask: np.ndarray) -> float:
        return float(np.mean(predicted[mask] == y[mask])) if mask.any() else float("nan")

    def recall(mask: np.ndarray) -> float:
        positive = mask & (y == 1)
        return float(np.mean(predicted[positive] == 1)) if positive.any() else float("nan")

    everything = np.ones(len(y), dtype=bool)
    return {
        "accuracy": accuracy(everything),
        "accuracy_high_value": accuracy(high),
        "recall": recall(everything),
        "recall_high_value": recall(high),
    }


def build(
    directory: Path, *, n_train: int = 20_000, n_holdout: int = 5_000, seed: int = 7
) -> BuildResult:
    """Generate the data, train and save the model, and write the spec into *directory*.

    Training data comes from *seed*, the holdout from another seed. Work already done
    with the same parameters (according to ``build.json``) is skipped, so a second call
    is fast; the spec is written only when missing, so hand edits to it are kept.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        name: directory / name
        for name in (TRAIN_FILE, HOLDOUT_FILE, MODEL_FILE, SPEC_FILE, MANIFEST_FILE)
    }
    params = {"format": _FORMAT, "n_train": n_train, "n_holdout": n_holdout, "seed": seed}
    manifest = _read_manifest(paths[MANIFEST_FILE])
    fresh = manifest is not None and manifest.get("params") == params
    built: list[str] = []

    def needed(name: str) -> bool:
        return not (fresh and paths[name].is_file())

    train_df: pd.DataFrame | None = None
    if needed(TRAIN_FILE):
        train_df = generate(n_train, seed=seed)
        _write_parquet(train_df, paths[TRAIN_FILE])
        built.append(TRAIN_FILE)
    holdout_df: pd.DataFrame | None = None
    if needed(HOLDOUT_FILE):
        holdout_df = generate(n_holdout, seed=seed + _HOLDOUT_SEED_OFFSET)
        _write_parquet(holdout_df, paths[HOLDOUT_FILE])
        built.append(HOLDOUT_FILE)
    model: Any = None
    if TRAIN_FILE in built or needed(MODEL_FILE):
        if train_df is None:
            train_df = pd.read_parquet(paths[TRAIN_FILE])
        model = train(train_df, seed=seed)
        save(model, paths[MODEL_FILE])
        built.append(MODEL_FILE)
    if not paths[SPEC_FILE].is_file():
        write_spec(paths[SPEC_FILE])
        built.append(SPEC_FILE)

    metrics = manifest.get("metrics") if manifest is not None and fresh else None
    if model is not None or holdout_df is not None or not isinstance(metrics, dict):
        if model is None:
            model = _load_model(paths[MODEL_FILE])
        if holdout_df is None:
            holdout_df = pd.read_parquet(paths[HOLDOUT_FILE])
        metrics = holdout_metrics(model, holdout_df)
    if built or not fresh:
        document = {"params": params, "metrics": metrics, "files": sorted(paths)}
        tmp = paths[MANIFEST_FILE].with_name(MANIFEST_FILE + ".tmp")
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        tmp.replace(paths[MANIFEST_FILE])
        built.append(MANIFEST_FILE)

    return BuildResult(
        directory=directory,
        train_data=paths[TRAIN_FILE],
        holdout_data=paths[HOLDOUT_FILE],
        model=paths[MODEL_FILE],
        spec=paths[SPEC_FILE],
        manifest=paths[MANIFEST_FILE],
        accuracy=float(metrics["accuracy"]),
        accuracy_high_value=float(metrics["accuracy_high_value"]),
        recall=float(metrics["recall"]),
        recall_high_value=float(metrics["recall_high_value"]),
        built=tuple(built),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: build the example into a directory and say what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m prodgate.examples.claims_triage.build",
        description="Build the claims-triage example: data, model and prodgate.yaml.",
    )
    parser.add_argument("directory", type=Path, help="where to write the files")
    parser.add_argument("--n-train", type=int, default=20_000, help="training claims")
    parser.add_argument("--n-holdout", type=int, default=5_000, help="holdout claims")
    parser.add_argument("--seed", type=int, default=7, help="seed of the training data")
    args = parser.parse_args(argv)

    result = build(args.directory, n_train=args.n_train, n_holdout=args.n_holdout, seed=args.seed)
    files = (
        (result.train_data, f"{args.n_train:,} training claims"),
        (result.holdout_data, f"{args.n_holdout:,} holdout claims"),
        (result.model, "the trained pipeline (skops)"),
        (result.spec, "the service spec"),
        (result.manifest, "build parameters and holdout figures"),
    )
    for path, what in files:
        verb = "wrote" if path.name in result.built else "kept "
        print(f"{verb} {path}  ({what})")
    print(
        f"holdout accuracy {result.accuracy:.1%} overall, "
        f"{result.accuracy_high_value:.1%} on claims >= {HIGH_VALUE:,}; "
        f"adjuster recall {result.recall:.1%} overall, {result.recall_high_value:.1%} high-value"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
