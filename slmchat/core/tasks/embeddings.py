"""Sentence embeddings and sentence classification with BERT-family GGUFs, through llama.cpp.

`Embedder` returns one L2-normalised vector per text, pooled the way the GGUF says (MiniLM:
mean). `Classifier` returns a label and scores per text. llama.cpp computes RoBERTa's head
(`cls` + tanh + `cls.output`, pooling RANK) itself; DistilBERT's head is `pre_classifier` + ReLU,
which llama.cpp cannot express, so such a file declares CLS pooling (llama.cpp returns the [CLS]
hidden state) and the same two tensors, and the small head is applied here in numpy.

`workers` runs several contexts side by side, one batch each at a time (llama.cpp releases the
GIL while it computes). Many texts (the document indexer) then use several cores without the
threads of one context waiting for each other at every layer: on a busy machine a context with
two threads spent about twice the CPU per passage of one thread and finished later, while two
one-thread contexts each go at their own pace (benchmarks/documents_bench.py, embedding cost).
Every batch is computed the same way whichever context takes it, so the vectors are the same as
with one.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gguf
import numpy as np

from slmchat.core.engine.native import NativeModel, NativeRunner
from slmchat.core.errors import UnsupportedModel
from slmchat.core.gguf.check import GGUFInfo, read_gguf
from slmchat.core.llama_api import llama_cpp
from slmchat.core.tasks.capabilities import (
    HEAD_ACTIVATION_KEY,
    Capability,
    Classification,
    capabilities,
)

__all__ = ["Classification", "Classifier", "Embedder"]

_HEAD_TENSORS = ("cls.weight", "cls.bias", "cls.output.weight", "cls.output.bias")
_MAX_SEQS_PER_BATCH = 16


def _file_pooling(info: GGUFInfo) -> object:
    return info.metadata.get(f"{info.architecture}.pooling_type")


def _batches(token_lists: Sequence[list[int]], budget: int) -> list[list[int]]:
    """Indices of texts grouped so each group's tokens fit one llama.cpp batch."""
    groups: list[list[int]] = [[]]
    used = 0
    for i, tokens in enumerate(token_lists):
        if groups[-1] and (used + len(tokens) > budget or len(groups[-1]) == _MAX_SEQS_PER_BATCH):
            groups.append([])
            used = 0
        groups[-1].append(i)
        used += len(tokens)
    return [g for g in groups if g]


class _PooledRunner(NativeRunner):
    """Shared by Embedder and Classifier: tokenize, batch, and read one pooled row per text."""

    def __init__(self, path: str | os.PathLike[str], *, n_threads: int | None, pooling: int | None,
                 workers: int = 1) -> None:
        self._model = NativeModel(path, embeddings=True, n_threads=n_threads, pooling=pooling,
                                  n_seq_max=_MAX_SEQS_PER_BATCH)
        self._contexts = [self._model]
        self._pool: ThreadPoolExecutor | None = None
        try:
            for _ in range(1, workers):
                self._contexts.append(NativeModel(path, embeddings=True, n_threads=n_threads, pooling=pooling,
                                                  n_seq_max=_MAX_SEQS_PER_BATCH))
        except BaseException:
            self.close()
            raise
        if len(self._contexts) > 1:
            self._pool = ThreadPoolExecutor(len(self._contexts), thread_name_prefix="embed")

    def tokens(self, text: str) -> list[int]:
        """The token ids llama.cpp sees for `text`, cut to the context (keeping the closing [SEP])."""
        tokens = self._model.tokenize(text)
        limit = self._model.n_ctx
        if len(tokens) > limit:
            tokens = tokens[: limit - 1] + tokens[-1:]
        return tokens

    def _pooled(self, texts: Sequence[str], width: int) -> np.ndarray:
        token_lists = [self.tokens(text) for text in texts]
        out = np.empty((len(texts), width), dtype=np.float32)
        idle: queue.SimpleQueue[NativeModel] = queue.SimpleQueue()
        for context in self._contexts:
            idle.put(context)

        def run(group: list[int]) -> None:
            """One batch on whichever context is free: a context slowed by other programs simply
            takes fewer batches."""
            model = idle.get()
            try:
                model.clear_memory()
                model.run_batch([token_lists[i] for i in group])
                for seq_id, i in enumerate(group):
                    out[i] = model.pooled(seq_id, width)
            finally:
                idle.put(model)

        groups = _batches(token_lists, self._model.n_ctx)
        if self._pool is None or len(groups) == 1:
            for group in groups:
                run(group)
        else:
            list(self._pool.map(run, groups))  # list(): re-raises the first failure here
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        for context in self._contexts:
            context.close()


class Embedder(_PooledRunner):
    """Turns texts into unit vectors with an embedding GGUF (all-MiniLM-L6-v2, TinyBERT, …).

    Pooling comes from the file's `<arch>.pooling_type`; a file without one gets mean pooling
    (what sentence-transformers uses for MiniLM) rather than per-token output. `workers`
    contexts of `n_threads` threads each embed the batches of one call side by side.
    """

    def __init__(self, path: str | os.PathLike[str], *, n_threads: int | None = None, workers: int = 1) -> None:
        info = read_gguf(path)
        if Capability.EMBED not in capabilities(info):
            raise UnsupportedModel(f"{info.path.name} is not a text embedding model.")
        undeclared = _file_pooling(info) in (None, llama_cpp.LLAMA_POOLING_TYPE_NONE)
        super().__init__(path, n_threads=n_threads,
                         pooling=llama_cpp.LLAMA_POOLING_TYPE_MEAN if undeclared else None, workers=workers)
        self.dim = self._model.n_embd
        self.model_name = self.path.stem

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """A float32 array (len(texts), dim); each row has length 1 (cosine = dot product)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._pooled(texts, self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


class Classifier(_PooledRunner):
    """Labels texts (e.g. sentiment) with a sequence-classification GGUF."""

    def __init__(self, path: str | os.PathLike[str], *, n_threads: int | None = None) -> None:
        info = read_gguf(path)  # decide from the metadata before paying for a load
        if Capability.CLASSIFY not in capabilities(info):
            raise UnsupportedModel(f"{info.path.name} is not a text classifier.")
        pooling = _file_pooling(info)
        activation = info.metadata.get(HEAD_ACTIVATION_KEY)
        self._head: tuple[np.ndarray, ...] | None = None
        if pooling == llama_cpp.LLAMA_POOLING_TYPE_CLS and activation == "relu":
            self._head = _read_head(info.path)
        elif pooling != llama_cpp.LLAMA_POOLING_TYPE_RANK:
            raise UnsupportedModel(
                f"{info.path.name} has a classifier head slmchat cannot run.",
                detail=f"pooling {pooling}, activation {activation!r}")
        super().__init__(path, n_threads=n_threads, pooling=None)
        model = self._model
        self.labels = [
            (llama_cpp.llama_model_cls_label(model.model, i) or b"").decode("utf-8", "replace")
            for i in range(llama_cpp.llama_model_n_cls_out(model.model))
        ]
        n_outputs = len(self.labels) if self._head is None else self._head[2].shape[0]
        if not all(self.labels) or n_outputs != len(self.labels):
            self.close()
            raise UnsupportedModel(f"{self.path.name} does not name its classifier's labels.")
        # RANK: llama.cpp returns the logits; the ReLU head: it returns the [CLS] hidden state.
        self.width = len(self.labels) if self._head is None else model.n_embd

    def logits(self, texts: Sequence[str]) -> np.ndarray:
        """Raw logits, (len(texts), len(labels))."""
        pooled = self._pooled(texts, self.width)
        if self._head is None:
            return pooled
        w1, b1, w2, b2 = self._head
        hidden = np.maximum(pooled @ w1.T + b1, 0.0)
        return hidden @ w2.T + b2

    def classify(self, texts: Sequence[str]) -> list[Classification]:
        results = []
        for row in self.logits(texts):
            probs = _softmax(row.astype(np.float64))
            results.append(Classification(
                label=self.labels[int(np.argmax(row))],
                scores={label: float(p) for label, p in zip(self.labels, probs)},
                logits=tuple(float(x) for x in row),
            ))
        return results


def _read_head(path: Path) -> tuple[np.ndarray, ...]:
    """The pre_classifier and classifier weights, read as float32 from the GGUF's tensors."""
    reader = gguf.GGUFReader(path)
    found = {t.name: t for t in reader.tensors if t.name in _HEAD_TENSORS}
    missing = [name for name in _HEAD_TENSORS if name not in found]
    if missing:
        raise UnsupportedModel(f"{path.name} lacks its classifier head ({', '.join(missing)}).")
    arrays = []
    for name in _HEAD_TENSORS:
        tensor = found[name]
        data = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists dims innermost first
        arrays.append(np.asarray(data, dtype=np.float32).reshape(shape))
    return tuple(arrays)
