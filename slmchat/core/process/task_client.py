"""Task models (T5, embedders, classifiers) in their own process, with the chat engine's safeguards.

`TaskClient` is a `ModelProcess` (process/parent.py: memory cap, deadlines, a crash or abort
inside llama.cpp becomes EngineCrashed) hosting one of Seq2SeqTask / Embedder / Classifier.
Imports no llama.cpp: what crosses back is plain records (tasks/capabilities.py) and numpy arrays.
"""

from __future__ import annotations

import enum
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from slmchat.core.errors import UnsupportedModel
from slmchat.core.process.child import RunnerSpec
from slmchat.core.process.parent import ModelProcess, ProcessLimits
from slmchat.core.tasks.capabilities import Classification, Seq2SeqKind, Seq2SeqResult
from slmchat.paths import Paths


class TaskKind(str, enum.Enum):
    """Which runner the process hosts."""

    SEQ2SEQ = "seq2seq"  # Translate and Summarize (flan-t5)
    EMBED = "embed"  # semantic search (MiniLM)
    CLASSIFY = "classify"  # sentiment (DistilBERT SST-2)


_FACTORIES = {
    TaskKind.SEQ2SEQ: "slmchat.core.tasks.t5:Seq2SeqTask",
    TaskKind.EMBED: "slmchat.core.tasks.embeddings:Embedder",
    TaskKind.CLASSIFY: "slmchat.core.tasks.embeddings:Classifier",
}


class TaskClient(ModelProcess):
    """A task model loaded in its own process.

    Blocks until loaded; raises the runner's typed error (UnsupportedModel for a model of the
    wrong kind, ModelFileDamaged, NotEnoughMemory), EngineCrashed when llama.cpp kills the
    process, EngineHung past `load_timeout_s`. An Embedder client satisfies tasks/semantic.py's
    `TextEmbedder` (model_name, dim, embed).
    """

    def __init__(self, kind: TaskKind | str, path: str | os.PathLike[str], *,
                 n_threads: int | None = None, n_ctx: int | None = None,
                 paths: Paths | None = None, limits: ProcessLimits | None = None,
                 load_timeout_s: float = 120.0) -> None:
        self.kind = TaskKind(kind)
        kwargs: dict[str, Any] = {"n_threads": n_threads}
        if n_ctx is not None:
            if self.kind is not TaskKind.SEQ2SEQ:
                raise ValueError("only a seq2seq model takes a context size; encoders use their own")
            kwargs["n_ctx"] = n_ctx
        spec = RunnerSpec(_FACTORIES[self.kind], (str(path),), kwargs,
                          label=Path(path).stem, load_timeout_s=load_timeout_s)
        super().__init__(spec, paths=paths, limits=limits)
        self.path = Path(path)
        self.n_ctx: int = self.described["n_ctx"]
        self.dim: int = self.described.get("dim", 0)  # embedders
        self.model_name: str = self.described.get("model_name", self.path.stem)
        self.labels: list[str] = list(self.described.get("labels", []))  # classifiers

    def _require(self, kind: TaskKind) -> None:
        if self.kind is not kind:
            raise UnsupportedModel(f"{self.path.name} is loaded as a {self.kind.value} model, "
                                   f"not for {kind.value}.")

    # --- Translate and Summarize --------------------------------------------------------------
    def run(self, kind: Seq2SeqKind | str, text: str, *, max_tokens: int = 128,
            source: str = "English", target: str = "German",
            cancel: threading.Event | None = None) -> Seq2SeqResult:
        """As `Seq2SeqTask.run` (source and target languages are for Translate); `cancel` (or
        `cancel()`) stops it at the next token, with the text so far and finish reason STOPPED."""
        self._require(TaskKind.SEQ2SEQ)
        return self.call("run", Seq2SeqKind(kind).value, text, max_tokens=max_tokens,
                         source=source, target=target, cancel=cancel, stoppable=True)

    def generate(self, prompt: str, *, max_tokens: int = 128,
                 cancel: threading.Event | None = None) -> Seq2SeqResult:
        """As `Seq2SeqTask.generate` (a raw prompt), stoppable like `run`."""
        self._require(TaskKind.SEQ2SEQ)
        return self.call("generate", prompt, max_tokens=max_tokens, cancel=cancel, stoppable=True)

    # --- vectors and labels -------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """As `Embedder.embed`: float32 unit vectors, (len(texts), dim)."""
        self._require(TaskKind.EMBED)
        return self.call("embed", list(texts))

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        """As `Classifier.classify`: a label and scores per text."""
        self._require(TaskKind.CLASSIFY)
        return self.call("classify", list(texts))

    def tokens(self, text: str) -> list[int]:
        """The token ids llama.cpp sees for `text` (what the counters count)."""
        return self.call("tokenize" if self.kind is TaskKind.SEQ2SEQ else "tokens", text)
