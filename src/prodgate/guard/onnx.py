"""A slot for a local ONNX text classifier, run in its own threads within a time budget.

A team that has a heavier detector on disk (a Prompt Guard-class model exported to
ONNX, or its own scikit-learn text pipeline converted with skl2onnx) plugs it in here.
Two kinds of model are fed:

- a model whose first input is a string tensor takes the text itself (skl2onnx's
  TfidfVectorizer + a classifier); its class probabilities are read from its ZipMap or
  its probability tensor;
- any other model takes token ids: ``input_ids`` and ``attention_mask`` (and
  ``token_type_ids`` as zeros) made by a ``tokenizer.json`` read with the optional
  ``tokenizers`` package; its logits go through a softmax. A text longer than
  ``max_length`` tokens is scored in up to eight overlapping windows and the highest
  score counts, so an injection at the end of a long document is not cut off.

Nothing is downloaded: the model and the tokenizer are files. The whole text is the
finding's span and the probability of ``label`` its score; the policy's threshold
decides. ``scan_async`` runs the model in the classifier's own thread pool and gives
up after ``budget_ms``: the request goes on without this detector's opinion and
``timeouts`` counts it (a run already started finishes in the background; queued ones
are dropped).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from prodgate.exceptions import SpecError
from prodgate.guard.finding import INJECTION, Finding
from prodgate.runtime._onnxmeta import class_labels
from prodgate.runtime.onnx import cpu_session

NAME = "onnx"

#: Windows of ``max_length`` tokens scored at most, for a long text.
MAX_WINDOWS = 8
#: A text model reads at most this many characters per ``max_length`` (bounded cost).
CHARS_PER_TOKEN = 64
_INTS = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
_FLOATS = ("tensor(float)", "tensor(double)", "tensor(float16)")
_TOKENIZERS_HOWTO = "pip install tokenizers"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _slug(label: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(label).lower()).strip("_") or "model"


class OnnxClassifier:
    """A local ONNX text classifier as a detector: one whole-text finding whose score is
    the probability of ``label`` (a class index, or a class name when the model names
    its classes). ``threads`` is the size of its thread pool; each run uses one core."""

    name = NAME

    def __init__(
        self,
        path: str | Path,
        *,
        tokenizer: str | Path | None = None,
        label: int | str = 1,
        max_length: int = 512,
        budget_ms: float = 50.0,
        category: str = INJECTION,
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.category = category
        self.budget_ms = budget_ms
        self.max_length = max_length
        self.timeouts = 0
        self.errors = 0
        self._lock = threading.Lock()
        if budget_ms <= 0:
            raise SpecError(f"{path}: budget_ms must be positive, not {budget_ms}")
        if max_length < 8:
            raise SpecError(f"{path}: max_length must be at least 8, not {max_length}")
        if threads < 1:
            raise SpecError(f"{path}: threads must be at least 1, not {threads}")
        if not self.path.is_file():
            raise SpecError(f"{path}: there is no ONNX model file there")
        try:
            self.session = cpu_session(self.path)
        except Exception as exc:
            what = f"not a loadable ONNX model ({_one_line(exc)})"
            if "locale" in str(exc):  # skl2onnx's text models ask for en_US unless told
                what = (
                    "its string normaliser needs a locale this machine lacks: convert it with "
                    "the vectorizer option locale='C.UTF-8', or install that locale"
                )
            raise SpecError(f"{path}: {what}") from exc
        inputs = self.session.get_inputs()
        if not inputs:
            raise SpecError(f"{path}: the ONNX model has no input")
        self._text_input = inputs[0].type == "tensor(string)"
        self.classes: list[str | int] | None = None
        self._tokenizer: Any = None
        if self._text_input:
            self._plan_text(inputs[0])
        else:
            self._plan_tokens(inputs, tokenizer)
        self._index, self.kind = self._resolve(label, tokenizer)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="prodgate-onnx")
        try:
            self._probability("A short text to check that the model runs.")
        except SpecError:
            raise
        except Exception as exc:
            raise SpecError(f"{path}: the model fails on a text ({_one_line(exc)})") from exc

    # -- planning, once -----------------------------------------------------------

    def _plan_text(self, node: Any) -> None:
        self._text_rank = len(node.shape)
        outputs = self.session.get_outputs()
        maps = [o for o in outputs if o.type.startswith("seq(map(")]
        tables = [o for o in outputs if o.type in _FLOATS and len(o.shape) == 2]
        tables.sort(key=lambda o: "prob" not in o.name.lower())
        if maps:
            self._output, self._zipmap, self._softmax = maps[0].name, True, False
        elif tables:
            self._output, self._zipmap = tables[0].name, False
            self._softmax = "prob" not in tables[0].name.lower()
        else:
            raise SpecError(f"{self.path}: the text model has no class probability output")
        self.classes = class_labels(self.path.read_bytes())

    def _plan_tokens(self, inputs: list[Any], tokenizer: str | Path | None) -> None:
        if tokenizer is None:
            raise SpecError(
                f"{self.path}: the model takes token ids ({inputs[0].name}); "
                "give it a tokenizer (the model's tokenizer.json)"
            )
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise SpecError(
                f"{self.path}: reading {tokenizer} needs the tokenizers package: "
                f"{_TOKENIZERS_HOWTO}"
            ) from None
        if not Path(tokenizer).is_file():
            raise SpecError(f"{tokenizer}: there is no tokenizer file there")
        try:
            tok = Tokenizer.from_file(str(tokenizer))
            tok.no_padding()
            tok.enable_truncation(self.max_length, stride=self.max_length // 8)
        except Exception as exc:
            raise SpecError(f"{tokenizer}: not a tokenizer.json ({_one_line(exc)})") from exc
        self._tokenizer = tok
        self._feeds: list[tuple[str, str, Any]] = []
        self._length: int | None = None
        for node in inputs:
            role = next(
                (r for r in ("input_ids", "attention_mask", "token_type_ids") if r in node.name),
                None,
            )
            if role is None or node.type not in _INTS:
                raise SpecError(
                    f"{self.path}: cannot feed the model's input {node.name!r} ({node.type}): "
                    "a token model takes input_ids, attention_mask and token_type_ids as integers"
                )
            if len(node.shape) == 2 and isinstance(node.shape[1], int):
                self._length = node.shape[1]  # a fixed sequence length: pad to it
            self._feeds.append((node.name, role, _INTS[node.type]))
        if not any(role == "input_ids" for _, role, _ in self._feeds):
            raise SpecError(f"{self.path}: the token model has no input_ids input")
        floats = [o for o in self.session.get_outputs() if o.type in _FLOATS]
        if not floats:
            raise SpecError(f"{self.path}: the model has no float output (logits)")
        floats.sort(key=lambda o: "logit" not in o.name.lower())
        self._output, self._zipmap = floats[0].name, False
        self._softmax = "prob" not in floats[0].name.lower()
        # Padding is masked out, so its id matters little; the tokenizer's own if it has one.
        pads = [tok.token_to_id(t) for t in ("[PAD]", "<pad>", "<PAD>")]
        self._pad = next((int(p) for p in pads if p is not None), 0)

    def _resolve(self, label: int | str, tokenizer: str | Path | None) -> tuple[int, str]:
        """The column of ``label`` and the findings' kind."""
        names = self.classes
        if names is None and isinstance(label, str):
            names = self._config_labels(tokenizer)
        if isinstance(label, bool) or not isinstance(label, int | str):
            raise SpecError(f"{self.path}: label must be a class index or name, not {label!r}")
        if isinstance(label, str):
            if names is None:
                raise SpecError(
                    f"{self.path}: the model does not name its classes; give label as an index"
                )
            known = [str(n) for n in names]
            if label not in known:
                raise SpecError(f"{self.path}: no class {label!r}; the model's classes are {known}")
            return known.index(label), _slug(label)
        if label < 0 or (names is not None and label >= len(names)):
            raise SpecError(f"{self.path}: no class at index {label}")
        if names is not None and isinstance(names[label], str):
            return label, _slug(names[label])
        return label, "model"

    def _config_labels(self, tokenizer: str | Path | None) -> list[str | int] | None:
        """Class names from a Hugging Face config.json (``id2label``) beside the files."""
        folders = {self.path.parent} | ({Path(tokenizer).parent} if tokenizer else set())
        for folder in folders:
            try:
                config = json.loads((folder / "config.json").read_text())
                id2label = config["id2label"]
                return [id2label[str(i)] for i in range(len(id2label))]
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return None

    # -- scanning -------------------------------------------------------------------

    def _column(self, table: Any) -> float:
        """The highest probability of the label over the rows (windows) of a score table."""
        scores = np.asarray(table, dtype=np.float64)
        if scores.ndim == 1:
            scores = scores.reshape(1, -1)
        if scores.shape[1] == 1:  # one logit: a sigmoid of the positive class
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return float((p if self._index == 1 else 1.0 - p).max())
        if self._index >= scores.shape[1]:
            raise SpecError(
                f"{self.path}: no class at index {self._index}; the model scores "
                f"{scores.shape[1]} classes"
            )
        if self._softmax:
            scores = np.exp(scores - scores.max(axis=1, keepdims=True))
            scores /= scores.sum(axis=1, keepdims=True)
        return float(scores[:, self._index].max())

    def _probability(self, text: str) -> float:
        if self._text_input:
            text = text[: self.max_length * CHARS_PER_TOKEN]
            batch = np.array([[text]] if self._text_rank == 2 else [text], dtype=object)
            (out,) = self.session.run([self._output], {self.session.get_inputs()[0].name: batch})
            if self._zipmap:
                key = self.classes[self._index] if self.classes else self._index
                return float(out[0][key])
            return self._column(out)
        enc = self._tokenizer.encode(text)
        windows = [enc, *enc.overflowing][:MAX_WINDOWS]
        width = self._length or max(len(w.ids) for w in windows) or 1
        ids = np.full((len(windows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(windows), width), dtype=np.int64)
        for row, window in enumerate(windows):
            n = min(len(window.ids), width)
            ids[row, :n] = window.ids[:n]
            mask[row, :n] = 1
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {name: arrays[role].astype(dtype) for name, role, dtype in self._feeds}
        (out,) = self.session.run([self._output], feeds)
        return self._column(out)

    def scan(self, text: str) -> list[Finding]:
        """The model's verdict on *text*; no finding for a blank text or a failed run
        (counted in ``errors``)."""
        if not text.strip():
            return []
        try:
            p = self._probability(text)
        except Exception:
            with self._lock:
                self.errors += 1
            return []
        if not math.isfinite(p):
            with self._lock:
                self.errors += 1
            return []
        return [Finding(self.category, self.kind, NAME, min(1.0, max(0.0, p)), 0, len(text))]

    async def scan_async(self, text: str) -> list[Finding]:
        """:meth:`scan` in the classifier's thread pool, or no finding (and one more
        ``timeouts``) if it takes longer than ``budget_ms``.

        A verdict that comes in after the budget is dropped too, even when the event loop
        sees it before its timer (the worker may hold the GIL past the deadline): what
        counts is the time the request waited.
        """
        loop = asyncio.get_running_loop()
        budget = self.budget_ms / 1000
        started = time.perf_counter()
        future = loop.run_in_executor(self._pool, self.scan, text)
        try:
            found = await asyncio.wait_for(future, budget)
        except TimeoutError:
            found = None
        if found is None or time.perf_counter() - started > budget:
            with self._lock:
                self.timeouts += 1
            return []
        return found

    def close(self) -> None:
        """Stop the thread pool (queued runs are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
