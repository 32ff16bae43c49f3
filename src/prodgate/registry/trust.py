"""What a person trusts when registering an artifact, decided once and recorded.

Loading a pickle runs its code, so a pickle-based artifact (a pickle/joblib file, an
MLflow model pickled with pickle or cloudpickle) needs ``--trust-pickle``. A skops
file runs no code of its own, but each type it names outside prodgate's allow-list
is code the loader will import and call; those are trusted by name with
``--trust-types``. The names are recorded on the version, so loading it later, in
``evaluate`` or in a gateway, trusts exactly those and nothing the file adds.

``--trust-types all`` trusts every type the file names outside the allow-list. For an
MLflow model saved with skops, its MLmodel's ``skops_trusted_types`` (the list its
author gave ``mlflow.sklearn.log_model``) is honoured as the bound of ``all``: a type
the file names that its MLmodel does not declare is refused, as MLflow would refuse it.
The MLmodel alone never trusts anything: the artifact would be vouching for itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prodgate.exceptions import ArtifactError, UsageError
from prodgate.runtime.base import Trust

#: ``--trust-types all``: every type the file names outside the allow-list.
ALL = "all"


@dataclass(frozen=True)
class _Content:
    """What loading an artifact involves: unpickling, or a skops file's types."""

    kind: str  # "pickle", "skops" or "" (nothing a person needs to trust)
    skops_file: Path | None = None
    declared: tuple[str, ...] | None = None  # MLflow's skops_trusted_types


def _content(flavor: str, location: str) -> _Content:
    if flavor == "pickle":
        return _Content("pickle")
    if flavor == "skops":
        return _Content("skops", Path(location))
    if flavor == "mlflow":
        from prodgate.runtime import mlflow

        if mlflow.loader_module(location) != "mlflow.sklearn":
            return _Content("")  # ONNX, or a loader the adapter refuses anyway
        sk = mlflow.sklearn_model(location)
        if sk.pickled:
            return _Content("pickle")
        return _Content("skops", sk.file, sk.declared_types)
    return _Content("")


def parse_types(values: Sequence[str]) -> list[str]:
    """``--trust-types`` values (repeated, or comma-separated) as a list of names."""
    names = [n.strip() for v in values for n in v.split(",")]
    return list(dict.fromkeys(n for n in names if n))


def decide(
    flavor: str, location: str, path: str, *, trust_pickle: bool, trust_types: Sequence[str]
) -> Trust:
    """The :class:`Trust` to record for the artifact at *location* (the user's *path*).

    Refuses with a one-line error naming the flag that is needed, or the flag that
    does nothing for this kind of artifact.
    """
    content = _content(flavor, location)
    if content.kind == "pickle":
        if trust_types:
            raise UsageError(
                f"{path} is pickle-based: loading it runs its code, so trust is all or "
                "nothing; pass --trust-pickle instead of --trust-types"
            )
        if not trust_pickle:
            what = "a pickle file" if flavor == "pickle" else "a pickled MLflow model"
            raise ArtifactError(
                f"{path}: {what} runs code when it is loaded; pass --trust-pickle if you "
                "trust its source, or save the model with skops"
            )
        return Trust(pickle=True)
    if content.kind == "skops":
        assert content.skops_file is not None
        return Trust(types=_skops_types(content, path, trust_pickle, trust_types))
    if trust_pickle or trust_types:
        flag = "--trust-pickle" if trust_pickle else "--trust-types"
        raise UsageError(
            f"{path}: {flag} is for pickle and skops files, and this {flavor} model is "
            "neither; leave it out"
        )
    return Trust()


def _skops_types(
    content: _Content, path: str, trust_pickle: bool, trust_types: Sequence[str]
) -> tuple[str, ...]:
    from prodgate.runtime.sklearn import skops_types, types_refusal

    assert content.skops_file is not None
    _, needed = skops_types(path, content.skops_file.read_bytes())
    if trust_pickle:
        hint = f" --trust-types {','.join(needed)}" if needed else "out either flag"
        raise UsageError(
            f"{path} is a skops file: it runs no code of its own, so --trust-pickle does "
            f"not apply; register it with{hint}"
        )
    names = parse_types(trust_types)
    if not needed:
        if names and names != [ALL]:  # 'all' of nothing is harmless
            raise UsageError(
                f"{path} names no types outside the skops allow-list; leave out --trust-types"
            )
        return ()
    declared = content.declared
    if ALL in names and len(names) > 1:
        raise UsageError(f"--trust-types {ALL} stands alone; it trusts every type {path} needs")
    if names == [ALL]:
        undeclared = [t for t in needed if declared is not None and t not in declared]
        if undeclared:
            raise ArtifactError(
                f"{path} names types its MLmodel does not declare in skops_trusted_types "
                f"({', '.join(undeclared)}), so MLflow would refuse them too; if you trust "
                f"its source, name them with --trust-types {','.join(needed)}"
            )
        return tuple(needed)
    unknown = [n for n in names if n not in needed]
    if unknown:
        raise UsageError(
            f"--trust-types names {', '.join(unknown)}, which {path} does not need trusted "
            f"(it needs: {', '.join(needed)})"
        )
    missing = [t for t in needed if t not in names]
    if missing:
        if names or not declared or not set(needed) <= set(declared):
            raise types_refusal(path, missing)
        raise ArtifactError(
            f"{path} names types outside the skops allow-list ({', '.join(needed)}), which "
            "its MLmodel declares in skops_trusted_types; if you trust its source, register "
            "it with --trust-types all"
        )
    return tuple(needed)
