"""One loaded llama.cpp model: chat formatting, streaming, cancel, KV reuse, context policy, stats.

Plain Python and blocking; a cancel `threading.Event` set from another thread stops a reply
within one token. A reply may name its conversation (`session`): when the engine moves to
another conversation, or closes, it saves the KV cache of the one it leaves to disk
(engine/kv_state.py), and restores it when that conversation comes back, even in a fresh process. It
drives llama.cpp's C API directly (not llama-cpp-python's `Llama`): that constructor compiles untrusted chat templates and hides `use_extra_bufts`, and a lean loop over
llama.cpp's own sampler chain keeps the decode speed close to llama-bench's.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

from slmchat.core.engine import backend, rollback, threads
from slmchat.core.engine.kv_state import (
    DEFAULT_CAP_BYTES,
    KVStateStore,
    StateIdentity,
    forget_everywhere,
    model_identity,
)
from slmchat.core.engine import thinking
from slmchat.core.engine.lookup import PromptLookup
from slmchat.core.engine.templates import ChatFormat, SpecialTokens, choose_format
from slmchat.core.engine.thinking import ThinkingStyle, ThinkingTracker
from slmchat.core.errors import (
    ContextFull,
    EngineError,
    ModelFileDamaged,
    NotAChatModel,
    NotEnoughMemory,
)
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    Generation,
    GenerationSettings,
    GenerationStats,
    ModelInfo,
    OverflowPolicy,
    Role,
)
from slmchat.core.gguf.check import check_gguf
from slmchat.core.llama_api import llama_cpp
from slmchat.core.plaintext import plain_text
from slmchat.paths import Paths

log = logging.getLogger(__name__)

_PENALTY_WINDOW = 64  # tokens the repeat penalty looks back over (llama.cpp's default)
_ABORT_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_void_p)


class LlamaCounters(NamedTuple):
    """llama.cpp's own perf counters for the context (llama_perf_context).

    llama.cpp counts every multi-token batch as prompt evaluation (n_p_eval), the speculative
    verify batches of the reply too: its count when the prompt was done is `prompt_evaluated`,
    what it counted after that is `verified`.
    """

    prompt_evaluated: int  # n_p_eval by the end of the prompt: prompt tokens evaluated
    decoded: int  # n_eval: single-token evaluations
    verified: int = 0  # n_p_eval since: positions evaluated in speculative verify batches


class FittedChat(NamedTuple):
    """A conversation after the context policy: what is sent, as messages and as tokens."""

    messages: list[ChatMessage]
    tokens: list[int]
    dropped: int  # messages dropped from the front (after the system prompt)
    # A thinking model's reply as the prompt leaves it: the thinking block the prompt opens
    # itself (yielded as the reply's first piece), or the prompt closed an empty block (thinking
    # switched off); `written`: how many of `tokens`, at the end, are a stopped reply's own.
    head: str = ""
    closed: bool = False
    written: int = 0


class _Closing(NamedTuple):
    """The close marker the engine wrote into a reply at the thinking budget."""

    text: str
    tokens: int


class Engine:
    """One GGUF model with one context. Not for concurrent generations: one reply at a time.

    `kv_states` is the folder for saved conversation states (default: Paths.kv_states),
    `kv_cap_bytes` its size cap.
    """

    def __init__(self, config: EngineConfig, detected: backend.Detected | None = None, *,
                 kv_states: Path | None = None, kv_cap_bytes: int = DEFAULT_CAP_BYTES) -> None:
        self.config = config
        self._model = self._ctx = None
        self._piece_buffer = ctypes.create_string_buffer(256)
        self._session: str | None = None
        path = Path(config.model_path)
        gguf = check_gguf(path)  # typed errors, before llama.cpp ever sees the bytes
        llama_cpp.llama_backend_init()
        self.gguf = gguf
        self.resolved = backend.decide(config, detected or backend.detect(), gguf)
        # Drafts are verified in batches: exact only where a batch's logits equal those of one
        # token at a time. Measured so on the CPU with flash attention; without it llama.cpp's
        # attention rounds a batch differently (logits off by ~0.5) and greedy replies drift.
        self.speculation = self.resolved.backend == "CPU" and self.resolved.flash_attn is True
        self._model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), backend.model_params(self.resolved)
        )
        if not self._model:
            raise ModelFileDamaged(
                f"llama.cpp could not load {path.name}: the file is damaged or of a kind this "
                "version does not support."
            )
        try:
            self._ctx = llama_cpp.llama_init_from_model(self._model, backend.context_params(self.resolved))
            if not self._ctx:
                raise NotEnoughMemory(
                    f"There is not enough memory for {path.name} with a context of "
                    f"{self.resolved.n_ctx} tokens. Close other programs or choose a smaller context."
                )
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            self._memory = llama_cpp.llama_get_memory(self._ctx)
            self._threads = threads.decode_threads(self._ctx, config, self.resolved)
            self.n_ctx = llama_cpp.llama_n_ctx(self._ctx)
            self._format = choose_format(
                gguf.chat_template,
                gguf.architecture,
                gguf.metadata,
                self._is_single_special_token,
                SpecialTokens(bos=self._token_text(llama_cpp.llama_vocab_bos(self._vocab)),
                              eos=self._token_text(llama_cpp.llama_vocab_eos(self._vocab))),
            )
            self._thinking: ThinkingStyle | None = thinking.detect(self._format) if self._format else None
            self._marker_pieces = self._hidden_marker_pieces()
        except BaseException:
            self.close()
            raise
        self.info = self._describe(path, gguf, self._format)
        self._cached: list[int] = []  # tokens whose keys and values sit in the context (seq 0)
        self._states = KVStateStore(
            kv_states or Paths.default().kv_states,
            StateIdentity(model_identity(path), self.n_ctx, llama_cpp.__version__,
                          self.resolved.key_cache_type),
            kv_cap_bytes)
        self._state_on_disk = False  # the session's file holds exactly what the cache holds
        self._abort_flag: threading.Event | None = None
        self._abort_callback = _ABORT_CALLBACK(self._should_abort)  # referenced: C holds it
        self._active: Generation | None = None
        self._prompt_batched: int | None = None  # llama.cpp's raw n_p_eval once the prompt was done

    # --- describing the model -----------------------------------------------------------
    def _describe(self, path: Path, gguf: Any, chat_format: ChatFormat | None) -> ModelInfo:
        return ModelInfo(
            path=path,
            name=plain_text(gguf.name or path.stem, 120),
            architecture=plain_text(gguf.architecture, 60),
            parameter_count=int(llama_cpp.llama_model_n_params(self._model)),
            context_length=int(llama_cpp.llama_model_n_ctx_train(self._model)),
            n_ctx=self.n_ctx,
            quantization=plain_text(gguf.quantization or "", 40),
            chat_template=chat_format.template_text if chat_format else gguf.chat_template,
            template_source=chat_format.source if chat_format else "none",
            is_chat=chat_format is not None,
            backend=self.resolved.backend,
            n_threads=self.resolved.n_threads,
            n_gpu_layers=self.resolved.n_gpu_layers,
            thinking=self._thinking.markers if self._thinking else None,
            thinking_switch=bool(self._thinking and self._thinking.switch),
            extra={
                "use_extra_bufts": "on" if self.resolved.use_extra_bufts else "off",
                "flash_attn": {None: "auto", True: "on", False: "off"}[self.resolved.flash_attn],
                "speculative": "available" if self.speculation else "off (needs flash attention on the CPU)",
                "key_cache_type": self.resolved.key_cache_type,
                "n_ubatch": str(self.resolved.n_ubatch),
                "llama_build": _system_info(),
                "llama_cpp_python": llama_cpp.__version__,
                **({"template_problem": plain_text(gguf.template_problem, 300)} if gguf.template_problem else {}),
            },
        )

    def counters(self) -> LlamaCounters:
        """llama.cpp's own counters since the current (or last) reply began: the proof of KV reuse.

        llama.cpp reports each as at least 1, and counts a one-token prompt evaluation as a
        decode; either way `prompt_evaluated` equals the prompt tokens evaluated (always >= 1).
        """
        perf = llama_cpp.llama_perf_context(self._ctx)
        batched = _raw_batched(perf.n_p_eval)
        prompt = batched if self._prompt_batched is None else self._prompt_batched
        return LlamaCounters(max(1, prompt), perf.n_eval, batched - prompt)

    # --- tokens -----------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        while True:
            buf = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(self._vocab, data, len(data), buf, capacity,
                                         add_special, parse_special)
            if n >= 0:
                return list(buf[:n])
            capacity = -n

    def _piece(self, token: int) -> bytes:
        buf = self._piece_buffer
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, False)
        return buf.raw[:n]

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        text = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", "replace") if text else ""

    def _is_single_special_token(self, text: str) -> bool:
        return len(self.tokenize(text, add_special=False, parse_special=True)) == 1

    def _hidden_marker_pieces(self) -> dict[int, bytes]:
        """Thinking markers that are one control token, whose text llama.cpp does not show as a
        piece: by token, the text to show instead, so the raw reply keeps its markers."""
        if self._thinking is None:
            return {}
        found = {}
        for marker in (self._thinking.markers.open, self._thinking.markers.close):
            tokens = self.tokenize(marker, add_special=False, parse_special=True)
            if len(tokens) == 1 and self._piece(tokens[0]) != marker.encode():
                found[tokens[0]] = marker.encode()
        return found

    def _reply_tokens(self, text: str) -> list[int]:
        """A stopped reply's text as the model wrote it: plain text, but a thinking model's
        markers as the tokens it generated for them (plain tokenizing would spell them out)."""
        if self._thinking is None:
            return self.tokenize(text, add_special=False, parse_special=False)
        tokens: list[int] = []
        for marker in (self._thinking.markers.open, self._thinking.markers.close):
            before, found, text = text.partition(marker)
            if not found:
                text = before
                break
            tokens += self.tokenize(before, add_special=False, parse_special=False)
            tokens += self.tokenize(marker, add_special=False, parse_special=True)
        return tokens + self.tokenize(text, add_special=False, parse_special=False)

    def _prompt_tokens(self, text: str) -> list[int]:
        """Tokens of a rendered chat prompt: its markers parsed as special tokens, one BOS."""
        tokens = self.tokenize(text, add_special=False, parse_special=True)
        bos = llama_cpp.llama_vocab_bos(self._vocab)
        if llama_cpp.llama_vocab_get_add_bos(self._vocab) and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def _chat_tokens(self, chat_format: ChatFormat, messages: Sequence[ChatMessage],
                     switch: bool | None, dropped: int) -> FittedChat:
        """The prompt's tokens (`switch`: the template's thinking switch). When the last
        message is the assistant's, it is a reply to continue: the history before it with the
        generation prompt, then its text as it stands, with no end of turn. Its text is
        tokenized on its own, as the model wrote it, so the tokens match those the interrupted
        reply generated and its KV entries are reused; a thinking block the prompt opens itself
        is not repeated from the reply's text."""
        continuing = bool(messages) and _role(messages[-1]) == Role.ASSISTANT.value
        text = chat_format.render(messages[:-1] if continuing else messages, add_generation_prompt=True,
                                  thinking=switch)
        tokens = self._prompt_tokens(text)
        markers = self._thinking.markers if self._thinking else None
        head = thinking.prompt_head(text, markers) if markers else ""
        closed = bool(markers) and thinking.prompt_closes_block(text, markers)
        if not continuing:
            return FittedChat(list(messages), tokens, dropped, head, closed)
        reply = messages[-1].content
        if head and reply.lstrip().startswith(head.strip()):
            reply = reply.lstrip()[len(head.strip()):]
            reply = reply.removeprefix(head[len(head.rstrip()):])  # the whitespace the prompt has after the marker
        written = self._reply_tokens(reply)
        return FittedChat(list(messages), tokens + written, dropped, head, closed, len(written))

    # --- public API ---------------------------------------------------------------------------
    def stream_chat(
        self,
        messages: Sequence[ChatMessage],
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
        *,
        session: str | None = None,
    ) -> Generation:
        """Reply to `messages` (the whole history, oldest first), streamed piece by piece.

        When the last message is the assistant's (a reply that was stopped), the reply goes on
        from its text instead of starting anew, and the pieces are only the continuation; right
        after the stop, only the tokens not yet in the KV cache are evaluated.

        `session` names the conversation (e.g. its id): moving to another one saves this one's
        KV state to disk, and a conversation whose saved state starts its prompt is restored
        from disk instead of evaluated again (`stats.prompt_reused` counts restored tokens,
        and `stats.prompt_restored` how many of them came from disk).
        Raises NotAChatModel for base models and ContextFull when the history does not fit and
        the overflow policy is REFUSE; with TRIM the oldest turns go and `stats.dropped_messages`
        says how many.
        """
        fitted = self.fit(messages, settings)
        return self._start(fitted.tokens, settings or GenerationSettings(), cancel, fitted.dropped,
                           session, fitted)

    def complete(
        self,
        text: str,
        settings: GenerationSettings | None = None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Continue `text` as plain text (what base models are for)."""
        settings = settings or GenerationSettings()
        tokens = self.tokenize(text, add_special=True, parse_special=False)
        if not tokens:
            raise EngineError("There is no text to continue.")
        if len(tokens) >= self.n_ctx:
            raise ContextFull(
                f"The text is {len(tokens)} tokens long; this model's context holds {self.n_ctx}."
            )
        return self._start(tokens, settings, cancel, dropped=0, session=None)

    # --- conversations' states on disk ------------------------------------------------------
    @property
    def session(self) -> str | None:
        """The conversation whose KV state the context holds (None: an unnamed one)."""
        return self._session

    def save_session(self) -> bool:
        """Write the current conversation's KV state to disk now; False when there is nothing
        new to write. Called on a switch and on close; call it between replies, never during.
        A failure to write (disk full) is logged, never raised: the state is only a cache."""
        if self._session is None or not self._cached or self._state_on_disk or not self._ctx:
            return False
        ctx, tokens = self._ctx, list(self._cached)
        started = time.perf_counter()

        def fill(buffer: memoryview) -> int:
            target = (ctypes.c_uint8 * len(buffer)).from_buffer(buffer)
            return llama_cpp.llama_state_seq_get_data(ctx, target, len(buffer), 0)

        try:
            path = self._states.save(self._session, tokens,
                                     llama_cpp.llama_state_seq_get_size(ctx, 0), fill)
        except OSError as error:
            log.warning("could not save the KV state of the conversation: %s", error)
            return False
        self._state_on_disk = True
        log.info("saved KV state of %d tokens to %s in %.2f s", len(tokens), path.name,
                 time.perf_counter() - started)
        return True

    def forget_session(self, key: str) -> None:
        """Delete every saved state of conversation `key` (deleted for good); if the context
        holds it, it is no longer saved from there."""
        if key == self._session:
            self._session = None
        forget_everywhere(self._states.folder, key)

    def _switch_session(self, session: str | None, prompt: list[int]) -> int:
        """Save the conversation being left; restore `session` from disk when that spares
        more prompt evaluation than the cache in memory does. Returns how many tokens were
        restored (0: none)."""
        if session == self._session:
            return 0
        self.save_session()
        self._session, self._state_on_disk = session, False
        if session is None:
            return 0
        saved = self._states.load(session)
        if saved is None or _shared(saved.tokens, prompt) <= _shared(self._cached, prompt):
            return 0
        started = time.perf_counter()
        llama_cpp.llama_memory_clear(self._memory, True)
        source = (ctypes.c_uint8 * len(saved.data)).from_buffer(saved.data)
        if llama_cpp.llama_state_seq_set_data(self._ctx, source, len(saved.data), 0) == 0:
            log.warning("llama.cpp refused the saved KV state of this conversation; evaluating")
            llama_cpp.llama_memory_clear(self._memory, True)
            self._cached = []
            return 0
        self._cached = saved.tokens
        self._state_on_disk = True
        log.info("restored KV state of %d tokens in %.3f s", len(saved.tokens),
                 time.perf_counter() - started)
        return len(saved.tokens)

    def close(self) -> None:
        """Save the current conversation's state, then free llama.cpp's context and model
        (idempotent)."""
        if self._ctx:
            self.save_session()
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- context policy -----------------------------------------------------------------------
    def fit(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None) -> FittedChat:
        """The messages that will be sent and their tokens, after the context policy.

        Drops the fewest oldest turns (never the system prompt, never the last user message) that
        leave room for a reply of `settings.max_tokens` (at most a quarter of the context).
        Raises ContextFull under the REFUSE policy, or when even the last message cannot fit.
        """
        if self._format is None:
            raise NotAChatModel(
                f"{self.info.name} is a base model: it continues text rather than answering "
                "questions, and it has no chat format. Use text completion with it, or choose "
                "a chat (instruct) model to chat."
            )
        chat_format = self._format
        settings = settings or GenerationSettings()
        messages = list(messages)
        if self._thinking is not None:  # earlier replies go back as their answers only
            messages = [thinking.answer_only(m, self._thinking.markers) for m in messages[:-1]] + messages[-1:]
        switch = thinking.template_switch(self._thinking, settings.thinking)
        budget = self.n_ctx - max(1, min(settings.max_tokens, self.n_ctx // 4))
        head = messages[:1] if messages and _role(messages[0]) == Role.SYSTEM.value else []
        start = len(head)

        def keeping_from(first_kept: int) -> FittedChat:
            return self._chat_tokens(chat_format, head + messages[first_kept:], switch, first_kept - start)

        fitted = keeping_from(start)
        if len(fitted.tokens) <= budget:
            return fitted
        if self.config.overflow is OverflowPolicy.REFUSE:
            raise ContextFull(
                f"This conversation needs {len(fitted.tokens)} tokens but the model's context holds "
                f"{self.n_ctx} (with room for a reply). Start a new conversation, or allow "
                "dropping the oldest messages in the settings."
            )
        # A kept history must open with a user turn; the last user turn is never dropped.
        cuts = [i for i in range(start + 1, len(messages)) if _role(messages[i]) == Role.USER.value]
        low, high, best = 0, len(cuts) - 1, None
        while low <= high:  # fewer tokens the more is dropped: find the smallest cut that fits
            middle = (low + high) // 2
            candidate = keeping_from(cuts[middle])
            if len(candidate.tokens) <= budget:
                best, high = candidate, middle - 1
            else:
                low = middle + 1
        if best is None:
            raise ContextFull(
                f"Your message is too long for this model: its context holds {self.n_ctx} tokens. "
                "Shorten the message or choose a model with a longer context."
            )
        return best

    # --- the token loop -----------------------------------------------------------------------
    def _start(self, prompt: list[int], settings: GenerationSettings,
               cancel: threading.Event | None, dropped: int, session: str | None,
               fitted: FittedChat | None = None) -> Generation:
        if self._active is not None:
            self._active.close()
        # STOPPED until it ends some other way: a reply closed before its first piece was stopped.
        stats = GenerationStats(finish_reason=FinishReason.STOPPED, prompt_tokens=len(prompt),
                                dropped_messages=dropped)
        tracker, head = self._thinking_tracker(prompt, settings, fitted)
        self._active = Generation(
            self._run(prompt, settings, cancel or threading.Event(), stats, session, tracker, head), stats)
        return self._active

    def _thinking_tracker(self, prompt: list[int], settings: GenerationSettings,
                          fitted: FittedChat | None) -> tuple[ThinkingTracker | None, str]:
        """For a thinking model's chat reply: the tracker that follows its thinking, set to
        where the prompt (and a stopped reply's text) leave it, and the head to yield first (a
        stopped reply's text has it already). The budget counts the stopped reply's thinking too."""
        if self._thinking is None or fitted is None:
            return None, ""
        tracker = ThinkingTracker(self._thinking.markers, settings.thinking_budget, closed=fitted.closed)
        if fitted.head:
            tracker.feed(fitted.head, token=False)
        for token in prompt[len(prompt) - fitted.written:]:
            tracker.feed(self._token_piece(token).decode("utf-8", "replace"))
        continuing = _role(fitted.messages[-1]) == Role.ASSISTANT.value
        return tracker, "" if continuing else fitted.head

    def _token_piece(self, token: int) -> bytes:
        return self._marker_pieces.get(token) or self._piece(token)

    def _reuse_prefix(self, prompt: list[int]) -> int:
        """Keep the KV entries shared with `prompt`, drop the rest; returns how many were kept."""
        shared = min(_shared(self._cached, prompt), len(prompt) - 1)  # the last prompt token is evaluated for its logits
        if shared < len(self._cached) and not rollback.keep_prefix(self._memory, self._model, shared):
            shared = 0  # a cache that cannot be cut back exactly there (rollback.py): start over
        del self._cached[shared:]
        return shared

    def _should_abort(self, _data: Any) -> bool:
        flag = self._abort_flag
        return bool(flag is not None and flag.is_set())

    def _prefill(self, tokens: list[int], cancel: threading.Event) -> bool:
        """Evaluate `tokens` in batches; False when cancelled part way (Stop during a long prompt)."""
        n_batch = llama_cpp.llama_n_batch(self._ctx)
        self._abort_flag = cancel
        llama_cpp.llama_set_abort_callback(self._ctx, self._abort_callback, None)
        try:
            for offset in range(0, len(tokens), n_batch):
                if cancel.is_set():
                    return False
                chunk = tokens[offset:offset + n_batch]
                array = (llama_cpp.llama_token * len(chunk))(*chunk)  # kept alive through decode
                status = llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(array, len(chunk)))
                if status == 2:  # aborted: the ubatches already done stay in the cache
                    kept = llama_cpp.llama_memory_seq_pos_max(self._memory, 0) + 1
                    self._cached.extend(chunk[: max(0, kept - len(self._cached))])
                    return False
                if status != 0:
                    raise EngineError(f"llama.cpp could not evaluate the prompt (status {status}).")
                self._cached.extend(chunk)
            return True
        finally:
            # The callback runs per graph node: off during decoding, where it would cost speed.
            llama_cpp.llama_set_abort_callback(self._ctx, _ABORT_CALLBACK(), None)
            self._abort_flag = None

    def _sampler(self, settings: GenerationSettings, prompt: list[int]) -> Any:
        """llama.cpp's sampler chain: repeat penalty, then greedy, or top-k, top-p, min-p,
        temperature and a seeded draw, in the order of llama.cpp's own common sampler."""
        params = llama_cpp.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = llama_cpp.llama_sampler_chain_init(params)
        add = llama_cpp.llama_sampler_chain_add
        greedy = settings.temperature <= 0
        kept = 1 if greedy else settings.top_k  # the most candidates the chain keeps after the penalty
        if settings.repeat_penalty > 1 and kept > 0:
            # The penalty only lowers the scores of the window's (at most _PENALTY_WINDOW) tokens,
            # so the best `kept` after it are among the best `kept + window` before it: cutting to
            # those first picks the same tokens, and the penalty then scores ~100 candidates
            # instead of the whole vocabulary (49k for SmolLM2: 0.13 -> 0.035 ms per token).
            add(chain, llama_cpp.llama_sampler_init_top_k(kept + _PENALTY_WINDOW))
        if settings.repeat_penalty != 1:
            add(chain, llama_cpp.llama_sampler_init_penalties(
                llama_cpp.llama_vocab_n_tokens(self._vocab), _PENALTY_WINDOW, settings.repeat_penalty, 0.0, 0.0))
        if greedy:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if settings.top_k > 0:
                add(chain, llama_cpp.llama_sampler_init_top_k(settings.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(settings.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(settings.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(settings.temperature))
            seed = llama_cpp.LLAMA_DEFAULT_SEED if settings.seed is None else settings.seed & 0xFFFFFFFF
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        for token in prompt[-_PENALTY_WINDOW:]:  # the penalty also sees the prompt's last words
            llama_cpp.llama_sampler_accept(chain, token)
        return chain

    def _run(self, prompt: list[int], settings: GenerationSettings, cancel: threading.Event,
             stats: GenerationStats, session: str | None, tracker: ThinkingTracker | None = None,
             head: str = "") -> Iterator[str]:
        """The reply's pieces. A thinking model's reply first yields the thinking block its prompt
        opened (`head`); `tracker` counts its thinking tokens and, at the budget, the loop feeds
        the close marker to the model itself and yields it."""
        started = time.perf_counter()
        ctx, vocab = self._ctx, self._vocab
        sampler = self._sampler(settings, prompt)
        first_token_at = 0.0
        lookup: PromptLookup | None = None  # drafts for speculative decoding
        ahead: deque[int] = deque()  # tokens sampled after accepted drafts, not yet shown
        batch: Any = None  # llama_batch for verifying drafts, made at the first draft
        try:
            restored = self._switch_session(session, prompt)  # timed: a restore is part of the wait
            self._state_on_disk = False  # the cache changes from here on
            reused = self._reuse_prefix(prompt)
            llama_cpp.llama_perf_context_reset(ctx)
            self._prompt_batched = None
            complete = self._prefill(prompt[reused:], cancel)
            llama_cpp.llama_synchronize(ctx)
            self._prompt_batched = _raw_batched(llama_cpp.llama_perf_context(ctx).n_p_eval)
            stats.prompt_evaluated = self.counters().prompt_evaluated if len(self._cached) > reused else 0
            stats.prompt_reused = reused
            stats.prompt_restored = min(restored, reused)
            if not complete:
                return
            if head:
                yield head
            thought_before = tracker.tokens if tracker is not None else 0
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            one = (llama_cpp.llama_token * 1)()
            speculating = self.speculation and settings.speculative == "auto"
            token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
            while not cancel.is_set():
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    stats.finish_reason = FinishReason.DONE
                    break
                stats.completion_tokens += 1
                if stats.completion_tokens == 1:
                    first_token_at = time.perf_counter()
                    stats.time_to_first_token_s = first_token_at - started
                text = decoder.decode(self._token_piece(token))
                if text:
                    yield text
                if tracker is not None:
                    tracker.feed(text)
                    stats.thinking_tokens = tracker.tokens - thought_before
                if stats.completion_tokens >= settings.max_tokens:
                    stats.finish_reason = FinishReason.LENGTH
                    break
                if len(self._cached) - len(ahead) >= self.n_ctx:  # the cache as it would be without speculation
                    stats.finish_reason = FinishReason.CONTEXT_FULL
                    break
                if cancel.is_set():
                    break
                if speculating:
                    if lookup is None:  # built once the first piece is out: it is not on the way to it
                        lookup = PromptLookup(prompt)
                    lookup.append(token)
                if tracker is not None and tracker.over_budget:
                    closing = self._close_thinking(token, tracker, ahead, sampler, lookup)
                    if closing is None:
                        stats.finish_reason = FinishReason.CONTEXT_FULL
                        break
                    yield decoder.decode(b"", final=True) + closing.text
                    stats.completion_tokens += closing.tokens
                    token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
                    continue
                if ahead:  # `token` was a draft the model agreed with: it is in the cache already
                    token = ahead.popleft()
                    continue
                if lookup is not None:
                    room = min(settings.max_tokens - stats.completion_tokens, self.n_ctx - len(self._cached)) - 1
                    draft = lookup.draft(room)
                    if draft:
                        if batch is None:
                            batch = llama_cpp.llama_batch_init(lookup.max_draft + 1, 0, 1)
                        ahead.extend(self._verify(token, draft, sampler, batch))
                        lookup.record(len(draft), len(ahead) - 1)
                        stats.drafted_tokens += len(draft)
                        stats.accepted_tokens += len(ahead) - 1
                        token = ahead.popleft()
                        continue
                one[0] = token
                self._threads.update()
                status = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1))
                if status != 0:
                    raise EngineError(f"llama.cpp could not continue the reply (status {status}).")
                self._cached.append(token)
                token = llama_cpp.llama_sampler_sample(sampler, ctx, -1)
            # llama.cpp books a decode in its counters when it synchronizes: unbooked, a decode
            # left running by a Stop would count as prompt evaluation of the next reply.
            llama_cpp.llama_synchronize(ctx)
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
        except EngineError as error:
            stats.finish_reason, stats.error = FinishReason.ERROR, str(error)
            raise
        finally:
            if ahead:  # accepted drafts never shown (a stop, the end): the cache as without speculation
                self._forget_from(len(self._cached) - len(ahead))
            if batch is not None:
                llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_sampler_free(sampler)
            if stats.completion_tokens > 1:
                stats.decode_tokens_per_s = (stats.completion_tokens - 1) / max(
                    time.perf_counter() - first_token_at, 1e-9)

    def _close_thinking(self, token: int, tracker: ThinkingTracker, ahead: deque[int], sampler: Any,
                        lookup: PromptLookup | None) -> _Closing | None:
        """End the thinking block at the budget: decode `token` (the last thinking token), then
        the close marker's tokens in one batch, so the model reads them as if it had written them
        and answers next. Accepted drafts past `token` are dropped first. None when the context
        has no room for the marker."""
        self._forget_from(len(self._cached) - len(ahead))  # the cache as without speculation
        ahead.clear()
        text = tracker.close()
        closing = self.tokenize(text, add_special=False, parse_special=True)
        if len(self._cached) + 1 + len(closing) > self.n_ctx:
            return None
        for tokens in ([token], closing):
            array = (llama_cpp.llama_token * len(tokens))(*tokens)
            status = llama_cpp.llama_decode(self._ctx, llama_cpp.llama_batch_get_one(array, len(tokens)))
            if status != 0:
                raise EngineError(f"llama.cpp could not continue the reply (status {status}).")
            llama_cpp.llama_synchronize(self._ctx)  # booked apart: the token as a decode, the marker as a batch
            self._cached.extend(tokens)
        for forced in closing:
            llama_cpp.llama_sampler_accept(sampler, forced)  # the repeat penalty sees them too
            if lookup is not None:
                lookup.append(forced)
        return _Closing(text, len(closing))

    def _verify(self, token: int, draft: list[int], sampler: Any, batch: Any) -> list[int]:
        """Decode `token` and the drafted tokens after it in one batch, with logits at every
        position, and sample from them in order while the sample equals the draft: the tokens
        the sampler chain picks, exactly those it would pick one decode at a time (the same
        logits, the same chain, one draw per token). Returns them (the accepted drafts, then the
        first token of its own); the cache keeps `token` and the accepted drafts."""
        tokens = [token, *draft]
        base = len(self._cached)
        for i, value in enumerate(tokens):
            batch.token[i] = value
            batch.pos[i] = base + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = True
        batch.n_tokens = len(tokens)
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise EngineError(f"llama.cpp could not continue the reply (status {status}).")
        self._cached.extend(tokens)
        sampled: list[int] = []
        for i in range(len(tokens)):
            chosen = llama_cpp.llama_sampler_sample(sampler, self._ctx, i)
            sampled.append(chosen)
            if i == len(draft) or chosen != draft[i] or llama_cpp.llama_vocab_is_eog(self._vocab, chosen):
                break
        self._forget_from(base + len(sampled))  # the drafts after the last agreed one
        return sampled

    def _forget_from(self, position: int) -> None:
        """Drop the cache's entries from `position` on."""
        if position < len(self._cached):
            if not llama_cpp.llama_memory_seq_rm(self._memory, 0, position, -1):
                raise EngineError("llama.cpp could not take back the guessed tokens from its cache.")
            del self._cached[position:]


def _system_info() -> str:
    """llama.cpp's own line on its build: backends and the CPU features it uses (About page)."""
    raw = llama_cpp.llama_print_system_info()
    return (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()


def _raw_batched(reported: int) -> int:
    """llama.cpp's n_p_eval as counted: it reports at least 1, and never counts a single token
    (a one-token batch is a decode), so a reported 1 was 0."""
    return 0 if reported == 1 else reported


def _shared(cached: Sequence[int], wanted: Sequence[int]) -> int:
    """How many leading tokens two token lists have in common."""
    shared = 0
    for a, b in zip(cached, wanted):
        if a != b:
            break
        shared += 1
    return shared


def _role(message: ChatMessage) -> str:
    role = message.role
    return role.value if isinstance(role, Role) else str(role)
