"""llama.cpp's low-level API, wrapped just enough for the non-chat task runners.

llama-cpp-python's high-level `Llama` cannot drive an encoder-decoder (T5) and assumes `n_embd`
floats per pooled sequence (wrong for a classifier head), so these runners talk to llama.cpp
directly. `NativeModel` owns one model and one context and frees both in `close()`. llama.cpp's
log is left alone here: the model process (process/child.py) routes it into its log file.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from slmchat.core.engine import backend
from slmchat.core.errors import ModelFileDamaged, NotEnoughMemory
from slmchat.core.generation import EngineConfig
from slmchat.core.gguf.check import GGUFInfo, check_gguf
from slmchat.core.llama_api import llama_cpp


class NativeModel:
    """One GGUF loaded through llama.cpp's C API with one context.

    `embeddings=True` asks the context for pooled sequence outputs (BERT); `pooling` overrides
    the file's pooling type (a llama_cpp.LLAMA_POOLING_TYPE_* value) when not None;
    `n_seq_max` is how many sequences one batch may carry (embedding several texts at once).
    """

    def __init__(self, path: str | os.PathLike[str], *, embeddings: bool = False, n_ctx: int = 0,
                 n_threads: int | None = None, pooling: int | None = None, n_seq_max: int = 1) -> None:
        self.path = Path(path)
        self.model = self.ctx = None
        self.info = check_gguf(self.path)  # typed errors before llama.cpp ever sees the bytes
        llama_cpp.llama_backend_init()
        # backend.decide turns use_extra_bufts off on AMX CPUs (a llama.cpp bug), picks GPU
        # offload and threads, and sizes the context: min(asked, trained, what fits in memory).
        wanted = n_ctx or self.info.context_length or EngineConfig.n_ctx
        config = EngineConfig(model_path=self.path, n_threads=n_threads, n_ctx=wanted)
        self.resolved = backend.decide(config, backend.detect(), self.info)
        self.model = llama_cpp.llama_model_load_from_file(
            str(self.path).encode(), backend.model_params(self.resolved))
        if not self.model:
            raise ModelFileDamaged(
                f"llama.cpp could not load {self.path.name}: the file is damaged or of a kind it "
                "does not know.")
        try:
            self.vocab = llama_cpp.llama_model_get_vocab(self.model)
            self.n_ctx_train = llama_cpp.llama_model_n_ctx_train(self.model)
            cparams = llama_cpp.llama_context_default_params()
            self.n_ctx = self.resolved.n_ctx
            cparams.n_ctx = self.n_ctx
            # Encoders attend to the whole input at once: one batch must hold all of it.
            cparams.n_batch = cparams.n_ubatch = self.n_ctx
            cparams.n_seq_max = n_seq_max
            cparams.kv_unified = True  # one shared context, not n_ctx split per sequence
            cparams.n_threads = self.resolved.n_threads
            cparams.n_threads_batch = self.resolved.n_threads_batch
            cparams.embeddings = embeddings
            if pooling is not None:
                cparams.pooling_type = pooling
            self.ctx = llama_cpp.llama_init_from_model(self.model, cparams)
            if not self.ctx:
                raise NotEnoughMemory(f"There is not enough memory to start {self.path.name}.")
        except BaseException:
            self.close()
            raise

    # --- metadata ---------------------------------------------------------------------------
    @property
    def n_embd(self) -> int:
        return llama_cpp.llama_model_n_embd(self.model)

    # --- tokens -----------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        buf = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, False)
        if n < 0:  # only when capacity was too small: retry at the size llama.cpp asked for
            capacity = -n
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_special, False)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render as nothing)."""
        buf = ctypes.create_string_buffer(64)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def is_end(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))

    # --- running ----------------------------------------------------------------------------
    def clear_memory(self) -> None:
        """Forget the decoder's KV cache (encoder-only models have none)."""
        memory = llama_cpp.llama_get_memory(self.ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)

    def run_batch(self, sequences: Sequence[Sequence[int]], *, start_pos: int = 0,
                  encode: bool = False, every_output: bool = True) -> None:
        """Evaluate token sequences (one llama.cpp sequence id each) in one batch.

        every_output: pooled embeddings need an output row per token; next-token sampling
        needs only each sequence's last one.
        """
        total = sum(len(seq) for seq in sequences)
        if total > self.n_ctx:
            raise ValueError(f"{total} tokens do not fit one batch of {self.n_ctx}")
        batch = llama_cpp.llama_batch_init(total, 0, 1)
        try:
            i = 0
            for seq_id, seq in enumerate(sequences):
                for pos, token in enumerate(seq):
                    batch.token[i] = token
                    batch.pos[i] = start_pos + pos
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = seq_id
                    batch.logits[i] = every_output or pos == len(seq) - 1
                    i += 1
            batch.n_tokens = total
            call = llama_cpp.llama_encode if encode else llama_cpp.llama_decode
            status = call(self.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama.cpp {call.__name__} failed with status {status}")
        finally:
            llama_cpp.llama_batch_free(batch)

    def pooled(self, seq_id: int, width: int) -> list[float]:
        """The pooled output of one sequence: n_embd floats, or n_cls_out for a RANK head."""
        ptr = llama_cpp.llama_get_embeddings_seq(self.ctx, seq_id)
        if not ptr:
            raise RuntimeError(f"llama.cpp returned no pooled output for sequence {seq_id}")
        return ptr[:width]

    def eval_counts(self) -> tuple[int, int]:
        """llama.cpp's own counters: (prompt tokens evaluated, tokens generated)."""
        perf = llama_cpp.llama_perf_context(self.ctx)
        return perf.n_p_eval, perf.n_eval

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            llama_cpp.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class NativeRunner:
    """Base of the task runners (Seq2SeqTask, Embedder, Classifier): owns one NativeModel and
    frees it in close() or at the end of a with-block."""

    _model: NativeModel

    @property
    def path(self) -> Path:
        return self._model.path

    @property
    def gguf(self) -> GGUFInfo:
        """The file's facts as the GGUF check read them (the memory estimate uses them)."""
        return self._model.info

    @property
    def n_ctx(self) -> int:
        return self._model.n_ctx

    def close(self) -> None:
        self._model.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

