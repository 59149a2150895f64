"""The plain records that cross between the engine, its process, the store and the GUI.

Kept apart from engine/engine.py so that the store, the CLI and the GUI can use them without importing
llama.cpp; all are picklable, so they cross the engine process's pipe unchanged.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class Role(str, enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"


@dataclass(frozen=True)
class ChatMessage:
    role: Role | str
    content: str


class FinishReason(str, enum.Enum):
    """Why a reply ended. Stored with the message and shown under it when not DONE."""

    DONE = "done"  # the model ended its turn
    STOPPED = "stopped"  # the user pressed Stop
    LENGTH = "length"  # max tokens reached
    CONTEXT_FULL = "context_full"  # no room left in the context window
    INTERRUPTED = "interrupted"  # the engine process died or was killed mid-reply
    ERROR = "error"


class OverflowPolicy(str, enum.Enum):
    """What to do when a conversation no longer fits the context window."""

    TRIM = "trim"  # drop the oldest turns, never the system prompt
    REFUSE = "refuse"  # raise ContextFull


@dataclass(frozen=True)
class EngineConfig:
    """How to load one model. `None` means "decide from the hardware"."""

    model_path: Path
    n_ctx: int = 4096  # upper bound; the engine clamps to the trained context and to memory
    n_threads: int | None = None  # None: physical cores for prompts, one fewer for replies
    n_gpu_layers: int | None = None  # None: all layers when llama.cpp has GPU offload, else 0
    use_extra_bufts: bool | None = None  # None: off on CPUs with AMX (a llama.cpp bug: docs/ARCHITECTURE.md)
    overflow: OverflowPolicy = OverflowPolicy.TRIM
    load_timeout_s: float = 120.0
    # None: the backend decides (off on CPUs, where it decodes faster). Speculative decoding
    # needs it on: only then does llama.cpp's CPU attention give a batch the logits one token at
    # a time gives, bit for bit, so that the reply stays the same.
    flash_attn: bool | None = None


@dataclass(frozen=True)
class GenerationSettings:
    """Sampling parameters, persisted per conversation."""

    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    max_tokens: int = 512
    seed: int | None = None
    # "auto": guess tokens from n-grams of the prompt and reply and let the model verify them in
    # one batch (engine/lookup.py), pausing while guesses fail, where the engine can keep that exact
    # (EngineConfig.flash_attn); "off": one decode per token. The reply is the same either way.
    speculative: str = "auto"
    # "auto": a thinking model thinks when its chat template does by default; "on"/"off": the
    # template's own switch (e.g. `enable_thinking`) or its `/no_think` word. Other models ignore it.
    thinking: str = "auto"
    # The most tokens a reply may spend thinking; at the budget the engine closes the thinking
    # block itself and the answer follows. 0: no limit.
    thinking_budget: int = 0


@dataclass
class GenerationStats:
    """What a finished (or ended) generation reports. Counts come from llama.cpp itself."""

    finish_reason: FinishReason = FinishReason.DONE
    prompt_tokens: int = 0  # tokens in the prompt as sent
    prompt_evaluated: int = 0  # of those, evaluated now (llama.cpp's prompt-eval count)
    prompt_reused: int = 0  # of those, taken from the KV cache (kept from the last turn or restored from disk)
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    dropped_messages: int = 0  # turns trimmed from the front to fit the context
    error: str = ""
    prompt_restored: int = 0  # of prompt_reused, restored from the conversation's KV state on disk
    drafted_tokens: int = 0  # tokens guessed by speculative decoding and verified by the model
    accepted_tokens: int = 0  # of those, the ones the model agreed with (each spared a decode)
    thinking_tokens: int = 0  # of completion_tokens, those the model generated inside its thinking block


@dataclass(frozen=True)
class ThinkingMarkers:
    """How a thinking model's reply marks its reasoning, read from its chat template."""

    open: str  # e.g. "<think>"
    close: str  # e.g. "</think>"


@dataclass(frozen=True)
class SplitReply:
    """A reply's text cut into what the model thought and what it answered."""

    thinking: str
    answer: str
    thinking_open: bool  # the thinking block has begun and not yet closed: still thinking


def split_reply(text: str, markers: ThinkingMarkers | None) -> SplitReply:
    """Cut a reply's raw text (as `Generation.text` holds it) into thinking and answer.

    Works on a reply still streaming: a thinking block without its close marker yet is all
    thinking, with `thinking_open` set, and a marker only partly streamed is held back (a reply
    that is so far only the start of the open marker is neither thinking nor answer yet; the
    start of the close marker at the end of the thinking is not shown as thinking). The engine
    keeps the raw text self-describing: when the chat template's prompt itself opens the
    thinking block (DeepSeek-R1 distills end the prompt with "<think>"), the engine yields the
    open marker as the reply's first piece. Text before the open marker, if any, belongs to the
    answer; only the first block counts as thinking.
    """
    if markers is None:
        return SplitReply("", text, False)
    start = text.find(markers.open)
    if start < 0 or text[:start].strip():
        if text.strip() and markers.open.startswith(text.lstrip()):
            return SplitReply("", "", False)  # the open marker, still arriving
        return SplitReply("", text, False)
    body = text[start + len(markers.open):]
    end = body.find(markers.close)
    if end < 0:
        return SplitReply(_without_partial(body, markers.close).strip(), "", True)
    return SplitReply(body[:end].strip(), body[end + len(markers.close):].lstrip(), False)


def join_reply(split: SplitReply, markers: ThinkingMarkers | None) -> str:
    """A reply's raw text rebuilt from its parts, as the model writes it ("<think>\\n...\\n</think>
    \\n\\n" then the answer): what to pass as the last, assistant, message to continue a stopped
    reply whose thinking and answer were stored apart. Without thinking, the answer alone."""
    if markers is None or not (split.thinking or split.thinking_open):
        return split.answer
    if split.thinking_open:
        return f"{markers.open}\n{split.thinking}"
    return f"{markers.open}\n{split.thinking}\n{markers.close}\n\n{split.answer}"


def _without_partial(text: str, marker: str) -> str:
    """`text` without a trailing start of `marker` (its first characters, streamed so far)."""
    for length in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:length]):
            return text[:-length]
    return text


@dataclass(frozen=True)
class ModelInfo:
    """What the app knows about a loaded model."""

    path: Path
    name: str
    architecture: str
    parameter_count: int
    context_length: int  # trained context
    n_ctx: int  # context actually used
    quantization: str
    chat_template: str | None
    template_source: str  # "model", "builtin:<name>", or "none" (completion only)
    is_chat: bool
    backend: str = "CPU"  # "CPU", "CUDA", "Metal", "Vulkan"
    n_threads: int = 0
    n_gpu_layers: int = 0
    extra: dict[str, str] = field(default_factory=dict)
    thinking: ThinkingMarkers | None = None  # set when the model's chat template thinks
    # The template switches thinking on and off (GenerationSettings.thinking); False for a
    # thinking model that always thinks (DeepSeek-R1 distills, Phi-4-mini-reasoning).
    thinking_switch: bool = False


class Generation(Iterator[str]):
    """A reply in progress: iterate for text pieces as they come; `.stats` says how it ended.

    The engine (in-process) and the engine client (across the process boundary) both return
    one, so callers cannot tell them apart. `stats` is filled in while the reply runs and is
    final once iteration stops; `text` is everything produced so far, kept when a reply is
    stopped or interrupted.
    """

    def __init__(self, pieces: Iterator[str], stats: GenerationStats) -> None:
        self._pieces = pieces
        self.stats = stats
        self.text = ""
        self.finished = False

    def __iter__(self) -> "Generation":
        return self

    def __next__(self) -> str:
        if self.finished:
            raise StopIteration
        try:
            piece = next(self._pieces)
        except BaseException:
            self.finished = True
            raise
        self.text += piece
        return piece

    def read(self) -> str:
        """Run to the end; the whole reply."""
        for _ in self:
            pass
        return self.text

    def close(self) -> None:
        """Stop early (a `break` out of the loop, a closed window): the reply ends STOPPED."""
        if not self.finished:
            self.finished = True
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()
