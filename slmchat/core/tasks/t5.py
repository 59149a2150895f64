"""flan-t5's Translate and Summarize through llama.cpp's encoder-decoder API.

llama-cpp-python's high-level `Llama` cannot drive T5, so `Seq2SeqTask` uses the low-level API:
`llama_encode` the prompt once, then decode token by token from the decoder start token.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from slmchat.core.engine.native import NativeModel, NativeRunner
from slmchat.core.errors import UnsupportedModel
from slmchat.core.generation import FinishReason
from slmchat.core.llama_api import llama_cpp
from slmchat.core.tasks.capabilities import Seq2SeqKind, Seq2SeqResult

__all__ = ["Seq2SeqKind", "Seq2SeqResult", "Seq2SeqTask", "task_prompt"]


def task_prompt(kind: Seq2SeqKind | str, text: str, *, source: str = "English", target: str = "German") -> str:
    """The instruction prefixes flan-t5 was trained with."""
    if Seq2SeqKind(kind) is Seq2SeqKind.TRANSLATE:
        return f"translate {source} to {target}: {text}"
    return f"summarize: {text}"


class Seq2SeqTask(NativeRunner):
    """Runs an encoder-decoder GGUF (flan-t5) on one input at a time. Not thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, n_threads: int | None = None, n_ctx: int = 512) -> None:
        self._model = NativeModel(path, n_ctx=n_ctx, n_threads=n_threads)
        if not llama_cpp.llama_model_has_encoder(self._model.model):
            self.close()
            raise UnsupportedModel("This model has no encoder: use it for chat or completion instead.")
        start = llama_cpp.llama_model_decoder_start_token(self._model.model)
        # T5 starts decoding from <pad>; a file without the key falls back to BOS.
        self._start = start if start >= 0 else llama_cpp.llama_vocab_bos(self._model.vocab)

    def run(self, kind: Seq2SeqKind | str, text: str, *, max_tokens: int = 128,
            should_stop: Callable[[], bool] | None = None, **prompt_options: str) -> Seq2SeqResult:
        """Translate or summarize `text`; `prompt_options` are task_prompt's source and target."""
        return self.generate(task_prompt(kind, text, **prompt_options), max_tokens=max_tokens,
                             should_stop=should_stop)

    def generate(self, prompt: str, *, max_tokens: int = 128,
                 should_stop: Callable[[], bool] | None = None) -> Seq2SeqResult:
        """Greedy decoding (what flan-t5 is evaluated with); `should_stop` is polled per token."""
        model = self._model
        tokens = self.tokenize(prompt)
        if len(tokens) > model.n_ctx:
            tokens = tokens[: model.n_ctx - 1] + tokens[-1:]  # keep the closing </s>
        llama_cpp.llama_perf_context_reset(model.ctx)
        model.clear_memory()
        model.run_batch([tokens], encode=True)
        sampler = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(sampler, llama_cpp.llama_sampler_init_greedy())
        out: list[int] = []
        reason = FinishReason.LENGTH
        try:
            token = self._start
            for pos in range(min(max_tokens, model.n_ctx)):
                if should_stop is not None and should_stop():
                    reason = FinishReason.STOPPED
                    break
                model.run_batch([[token]], start_pos=pos, every_output=False)
                token = llama_cpp.llama_sampler_sample(sampler, model.ctx, -1)
                if model.is_end(token):
                    reason = FinishReason.DONE
                    break
                out.append(token)
        finally:
            llama_cpp.llama_sampler_free(sampler)
        text = b"".join(model.piece(t) for t in out).decode("utf-8", errors="replace")
        _, generated = self.counters()
        return Seq2SeqResult(text.strip(), tuple(out), reason, len(tokens), generated)

    def last_scores(self) -> list[float]:
        """llama.cpp's logits behind the last token `generate` chose (one per vocabulary entry):
        what greedy decoding compared, for checking the model's arithmetic against a reference."""
        model = self._model
        n_vocab = llama_cpp.llama_vocab_n_tokens(model.vocab)
        return llama_cpp.llama_get_logits_ith(model.ctx, -1)[:n_vocab]

    def tokenize(self, text: str) -> list[int]:
        """The encoder's input for `text`, as llama.cpp tokenizes it (with the closing </s>)."""
        return self._model.tokenize(text)

    def counters(self) -> tuple[int, int]:
        """llama.cpp's counters for the last run: (tokens encoded, decoder steps)."""
        return self._model.eval_counts()
