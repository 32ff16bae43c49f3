"""The claims-letter files a person works with, written beside the demo's spec.

::

    python -m prodgate.examples.claims_letter.build DIR

writes ``DIR/cases.jsonl`` (the evaluation cases), ``DIR/v1.yaml``, ``DIR/v2.yaml``,
``DIR/v3.yaml`` (the prompt versions shipped in this package) and ``DIR/mock.yaml``
(the mock LLM's config), so that the CLI can be pointed at them::

    prodgate mock-llm --answers DIR/mock.yaml
    prodgate register claims-letter DIR/v1.yaml
    prodgate evaluate claims-letter 1 --data DIR/cases.jsonl

A file already there with the same content is left alone.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prodgate.examples.claims_letter.generate import write_cases

#: The package's own files: the prompt versions and the mock LLM's config.
PACKAGE = Path(__file__).parent
PROMPTS = {name: PACKAGE / "prompts" / f"{name}.yaml" for name in ("v1", "v2", "v3")}
MOCK_CONFIG = PACKAGE / "mock.yaml"
#: The evaluation cases: how many, and the seed they are drawn with.
CASES = 400
CASES_SEED = 0


@dataclass(frozen=True)
class LetterFiles:
    directory: Path
    cases: Path
    prompts: dict[str, Path]
    mock_config: Path
    built: tuple[str, ...] = ()


def _copy(source: Path, target: Path) -> bool:
    data = source.read_bytes()
    if target.is_file() and target.read_bytes() == data:
        return False
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return True


def build(directory: Path) -> LetterFiles:
    """Write the cases, prompts and mock config into *directory* (see the module)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    built: list[str] = []
    cases = directory / "cases.jsonl"
    fresh = directory / "cases.jsonl.new"
    write_cases(fresh, CASES, CASES_SEED)
    if cases.is_file() and cases.read_bytes() == fresh.read_bytes():
        fresh.unlink()
    else:
        fresh.replace(cases)
        built.append(cases.name)
    prompts = {}
    for name, source in PROMPTS.items():
        prompts[name] = directory / source.name
        if _copy(source, prompts[name]):
            built.append(source.name)
    mock_config = directory / MOCK_CONFIG.name
    if _copy(MOCK_CONFIG, mock_config):
        built.append(MOCK_CONFIG.name)
    return LetterFiles(directory, cases, prompts, mock_config, tuple(built))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write the files into a directory and say what was written."""
    parser = argparse.ArgumentParser(
        prog="python -m prodgate.examples.claims_letter.build",
        description="Write the claims-letter cases, prompt versions and mock LLM config.",
    )
    parser.add_argument("directory", type=Path, help="where to write the files")
    args = parser.parse_args(argv)
    files = build(args.directory)
    shown = [
        (files.cases, f"{CASES} evaluation cases"),
        *((path, f"prompt version {name}") for name, path in files.prompts.items()),
        (files.mock_config, "the mock LLM's config"),
    ]
    for path, what in shown:
        verb = "wrote" if path.name in files.built else "kept "
        print(f"{verb} {path}  ({what})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
