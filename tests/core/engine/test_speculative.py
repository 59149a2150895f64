"""Speculative decoding from prompt lookup, in-process on the real SmolLM2: the reply is the one
decoding token by token gives, token for token, and drafts really spare decodes (llama.cpp's counts).
It needs flash attention (EngineConfig.flash_attn), the one CPU attention whose batches give the
logits of single tokens bit for bit; without it the engine does not speculate.

One thread: on a shared 2-core machine two OpenMP threads can run 10x slower than one.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.core.engine.engine import Engine
from slmchat.core.generation import ChatMessage, EngineConfig, FinishReason, GenerationSettings, Role

TEXT = ("The old lighthouse stood at the edge of the cliff for two hundred years. Every night its "
        "keeper climbed the narrow stairs, lit the great lamp and watched the ships pass safely "
        "into the harbour. When the storm came in the winter of the last year, the keeper stayed "
        "at his post until morning, and not a single ship was lost.")
CODE = ("def average(values):\n    total = 0\n    for value in values:\n        total = total + value\n"
        "    return total / len(values)\n")
PROMPTS = {
    "rewrite": "Repeat this text exactly, word for word:\n\n" + TEXT,
    "code_edit": "Rename the variable total to running_sum in this Python code and show the whole code:\n\n"
                 "```python\n" + CODE + "```",
    "prose": "Write a short story about a dragon who learns to paint.",
}
GREEDY = GenerationSettings(temperature=0, max_tokens=120)
OFF = dataclasses.replace(GREEDY, speculative="off")


@pytest.fixture(scope="module")
def engine(smollm2_path: Path) -> Iterator[Engine]:
    with Engine(EngineConfig(smollm2_path, n_ctx=2048, n_threads=1, flash_attn=True)) as engine:
        assert engine.speculation
        yield engine


def user(text: str) -> ChatMessage:
    return ChatMessage(Role.USER, text)


def reply(engine: Engine, messages: list[ChatMessage], settings: GenerationSettings,
          cancel: threading.Event | None = None, stop_after: int = 0) -> tuple[str, list[int], object]:
    """The reply's text, the tokens llama.cpp's cache holds after it (prompt and reply but its last
    token, which is sampled, never decoded) and its stats; Stop after `stop_after` pieces if given."""
    generation = engine.stream_chat(messages, settings, cancel)
    for count, _piece in enumerate(generation, start=1):
        if count == stop_after and cancel is not None:
            cancel.set()
    return generation.text, list(engine._cached), generation.stats


@pytest.mark.parametrize("kind", PROMPTS)
def test_greedy_replies_are_the_same_token_for_token_with_speculation_on_and_off(engine: Engine, kind: str) -> None:
    ask = [user(PROMPTS[kind])]
    off_text, off_tokens, off_stats = reply(engine, ask, OFF)
    on_text, on_tokens, on_stats = reply(engine, ask, GREEDY)
    assert on_text == off_text and on_tokens == off_tokens
    assert (on_stats.completion_tokens, on_stats.finish_reason) == (off_stats.completion_tokens,
                                                                    off_stats.finish_reason)
    assert off_stats.drafted_tokens == 0
    if kind != "prose":
        assert on_stats.accepted_tokens > 0, on_text


def test_a_sampled_reply_with_a_seed_is_the_same_with_speculation_on_and_off(engine: Engine) -> None:
    """The same chain samples the same logits in the same order: one random draw per token."""
    sampled = GenerationSettings(temperature=0.8, seed=42, max_tokens=100)
    ask = [user(PROMPTS["rewrite"])]
    off_text, off_tokens, _ = reply(engine, ask, dataclasses.replace(sampled, speculative="off"))
    on_text, on_tokens, on_stats = reply(engine, ask, sampled)
    assert on_text == off_text and on_tokens == off_tokens
    assert on_stats.accepted_tokens > 0


def test_the_second_turn_reuses_a_cache_left_by_speculation_and_replies_the_same(engine: Engine) -> None:
    def conversation(settings: GenerationSettings) -> tuple[list[str], list[int], int]:
        history = [user(PROMPTS["code_edit"])]
        first, _, _ = reply(engine, history, settings)
        history += [ChatMessage(Role.ASSISTANT, first), user("Now rename values to numbers as well.")]
        second, tokens, stats = reply(engine, history, settings)
        prompt_one = len(engine.fit(history[:1]).tokens)
        assert stats.prompt_reused > prompt_one  # turn 1's reply came from the cache
        return [first, second], tokens, stats.prompt_evaluated

    assert conversation(GREEDY) == conversation(OFF)


def test_a_stopped_reply_continued_is_the_reply_never_stopped(engine: Engine) -> None:
    ask = [user(PROMPTS["rewrite"])]
    whole, _, _ = reply(engine, ask, OFF)
    cancel = threading.Event()
    stopped, cached, stats = reply(engine, ask, GREEDY, cancel, stop_after=15)
    assert stats.finish_reason is FinishReason.STOPPED and stats.accepted_tokens > 0
    # As without speculation: the cache holds prompt and reply but the last token shown.
    assert len(cached) == stats.prompt_tokens + stats.completion_tokens - 1
    rest = dataclasses.replace(GREEDY, max_tokens=GREEDY.max_tokens - stats.completion_tokens)
    continued, _, continued_stats = reply(engine, ask + [ChatMessage(Role.ASSISTANT, stopped)], rest)
    assert engine.counters().prompt_evaluated == continued_stats.prompt_evaluated == 1
    assert stopped + continued == whole


def test_drafts_the_model_accepts_spare_decodes_by_llama_cpps_own_counts(engine: Engine) -> None:
    ask = [user(PROMPTS["rewrite"])]
    _, _, off_stats = reply(engine, ask, OFF)
    off = engine.counters()
    # Without speculation every token but the first (from the prompt's logits) costs a decode.
    assert off.verified == 0 and off.decoded >= off_stats.completion_tokens - 1
    _, _, stats = reply(engine, ask, GREEDY)
    on = engine.counters()
    # llama.cpp counts single-token decodes (n_eval) and tokens in batches (n_p_eval, past the
    # prompt: the verify batches). A verify batch holds at least two tokens, so there were at most
    # decoded + verified / 2 decode calls; without accepted drafts each call yields one token.
    calls_at_most = on.decoded + on.verified / 2
    assert on.verified > 0 and stats.completion_tokens > calls_at_most + 1
    assert stats.completion_tokens == off_stats.completion_tokens


def test_without_flash_attention_the_engine_decodes_one_token_at_a_time(smollm2_path: Path) -> None:
    """The CPU's default attention rounds a batch unlike a single token: speculating there would
    change greedy replies, so "auto" leaves it off."""
    with Engine(EngineConfig(smollm2_path, n_ctx=1024, n_threads=1)) as engine:
        assert engine.resolved.flash_attn is False and not engine.speculation
        _, _, stats = reply(engine, [user(PROMPTS["rewrite"])], GREEDY)
        assert stats.drafted_tokens == 0 and engine.counters().verified == 0  # llama.cpp: no batch after the prompt
        assert engine.counters().decoded >= stats.completion_tokens - 1
