"""The engine in-process on the real SmolLM2 and Gemma 3 GGUFs: streaming, cancel, KV reuse, context.

One thread: on a shared 2-core machine two OpenMP threads can run 10x slower than one.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import pytest

from slmchat.core.engine.engine import Engine
from slmchat.core.engine.kv_state import KVStateStore, StateIdentity, model_identity
from slmchat.core.errors import (
    ContextFull,
    ModelFileDamaged,
    ModelFileMissing,
    NotAChatModel,
    NotAGGUF,
)
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    GenerationSettings,
    OverflowPolicy,
    Role,
)
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths

GREEDY = GenerationSettings(temperature=0, max_tokens=100)
SYSTEM = ChatMessage(Role.SYSTEM, "You are terse.")
ASSISTANT_ROLE = ChatMessage(Role.SYSTEM, "You are a helpful assistant.")


@pytest.fixture(scope="module")
def smollm2(smollm2_path: Path) -> Iterator[Engine]:
    with Engine(EngineConfig(smollm2_path, n_ctx=1024, n_threads=1)) as engine:
        yield engine


@pytest.fixture(scope="module")
def small_context(smollm2_path: Path) -> Iterator[Engine]:
    with Engine(EngineConfig(smollm2_path, n_ctx=256, n_threads=1)) as engine:
        yield engine


@pytest.fixture(scope="module")
def gemma(gemma_path: Path) -> Iterator[Engine]:
    with Engine(EngineConfig(gemma_path, n_ctx=512, n_threads=1)) as engine:
        yield engine


def user(text: str) -> ChatMessage:
    return ChatMessage(Role.USER, text)


def long_history(turns: int) -> list[ChatMessage]:
    history = [SYSTEM]
    for i in range(turns):
        history += [user(f"Tell me fact number {i} about the sea, in detail please."),
                    ChatMessage(Role.ASSISTANT, f"Fact {i}: the sea is large, salty and full of life.")]
    return history + [user("Thanks. Say bye.")]


# --- chatting -----------------------------------------------------------------------------------
def test_smollm2_chats_with_its_own_template(smollm2: Engine) -> None:
    assert smollm2.info.is_chat
    assert smollm2.info.template_source == "model"
    assert "<|im_start|>" in (smollm2.info.chat_template or "")
    reply = smollm2.stream_chat([ASSISTANT_ROLE, user("What is the capital of France?")], GREEDY).read()
    assert "Paris" in reply


def test_model_info_names_the_llama_cpp_build_for_the_about_page(smollm2: Engine) -> None:
    extra = smollm2.info.extra
    assert extra["llama_cpp_python"] == llama_cpp.__version__
    assert extra["llama_build"] == llama_cpp.llama_print_system_info().decode().strip()
    assert "CPU :" in extra["llama_build"]  # llama.cpp's own words for the backend it runs


def test_prompt_matches_llama_cpps_own_rendering_of_the_template(smollm2: Engine) -> None:
    chat = [SYSTEM, user("Hi"), ChatMessage(Role.ASSISTANT, "Hello!"), user("Bye")]
    # llama.cpp's built-in (non-Jinja) implementation of the same ChatML template, as reference.
    c_messages = (llama_cpp.llama_chat_message * len(chat))(
        *(llama_cpp.llama_chat_message(m.role.value.encode(), m.content.encode()) for m in chat))
    buffer = ctypes.create_string_buffer(4096)
    size = llama_cpp.llama_chat_apply_template(
        (smollm2.info.chat_template or "").encode(), c_messages, len(chat), True, buffer, len(buffer))
    reference = buffer.raw[:size].decode()
    assert smollm2.fit(chat).tokens == smollm2.tokenize(reference, add_special=False, parse_special=True)


def test_reply_streams_piece_by_piece_and_reports_why_it_ended(smollm2: Engine) -> None:
    generation = smollm2.stream_chat([user("Write a long poem about the sea.")],
                                     GenerationSettings(max_tokens=24, seed=7))
    pieces = list(generation)
    stats = generation.stats
    assert len(pieces) > 5 and "".join(pieces) == generation.text
    assert stats.finish_reason in (FinishReason.LENGTH, FinishReason.DONE)
    assert stats.completion_tokens <= 24
    assert stats.time_to_first_token_s > 0 and stats.decode_tokens_per_s > 0
    assert stats.prompt_evaluated + stats.prompt_reused == stats.prompt_tokens


def test_same_seed_gives_the_same_reply(smollm2: Engine) -> None:
    settings = GenerationSettings(max_tokens=16, seed=1234, temperature=1.0)
    ask = [user("Invent a name for a cat.")]
    assert smollm2.stream_chat(ask, settings).read() == smollm2.stream_chat(ask, settings).read()


def _plain_llama_cpp_chain(settings: GenerationSettings, n_vocab: int, history: list[int]) -> ctypes.c_void_p:
    """llama.cpp's common sampler order, with nothing skipped: the reference."""
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    parts = [llama_cpp.llama_sampler_init_penalties(n_vocab, 64, settings.repeat_penalty, 0.0, 0.0)]
    if settings.temperature <= 0:
        parts.append(llama_cpp.llama_sampler_init_greedy())
    else:
        parts += [llama_cpp.llama_sampler_init_top_k(settings.top_k),
                  llama_cpp.llama_sampler_init_top_p(settings.top_p, 1),
                  llama_cpp.llama_sampler_init_min_p(settings.min_p, 1),
                  llama_cpp.llama_sampler_init_temp(settings.temperature),
                  llama_cpp.llama_sampler_init_dist(settings.seed)]
    for part in parts:
        llama_cpp.llama_sampler_chain_add(chain, part)
    for token in history[-64:]:
        llama_cpp.llama_sampler_accept(chain, token)
    return chain


@pytest.mark.parametrize("settings", [
    GenerationSettings(temperature=0, repeat_penalty=1.5),
    GenerationSettings(temperature=1.5, top_k=40, top_p=1.0, min_p=0.0, repeat_penalty=1.5, seed=7),
], ids=["greedy", "sampled"])
def test_the_engine_picks_the_tokens_llama_cpps_own_sampler_chain_picks(
    smollm2: Engine, settings: GenerationSettings
) -> None:
    """The engine cuts to the best candidates before the repeat penalty (a speed-up): on a text
    that repeats itself, so the penalty decides, both chains pick the same 60 tokens."""
    ctx, vocab = smollm2._ctx, smollm2._vocab
    prompt = smollm2.tokenize("one two one two one two one two one two", add_special=True, parse_special=False)
    llama_cpp.llama_memory_clear(smollm2._memory, True)
    smollm2._cached = []
    batch = (llama_cpp.llama_token * len(prompt))(*prompt)
    assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(batch, len(prompt))) == 0
    ours = smollm2._sampler(settings, prompt)
    reference = _plain_llama_cpp_chain(settings, llama_cpp.llama_vocab_n_tokens(vocab), prompt)
    penalised = 0  # greedy picks that are not the top raw score: the penalty decided them
    one = (llama_cpp.llama_token * 1)()
    try:
        for _ in range(60):
            expected = llama_cpp.llama_sampler_sample(reference, ctx, -1)
            assert llama_cpp.llama_sampler_sample(ours, ctx, -1) == expected
            unpenalised = llama_cpp.llama_get_logits_ith(ctx, -1)
            penalised += max(range(llama_cpp.llama_vocab_n_tokens(vocab)), key=lambda t: unpenalised[t]) != expected
            one[0] = expected
            assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) == 0
    finally:
        llama_cpp.llama_sampler_free(ours)
        llama_cpp.llama_sampler_free(reference)
        llama_cpp.llama_memory_clear(smollm2._memory, True)
    if settings.temperature <= 0:
        assert penalised > 0  # the test text really makes the penalty matter


def test_cancel_from_another_thread_stops_within_one_token(smollm2: Engine) -> None:
    cancel = threading.Event()
    generation = smollm2.stream_chat([user("Count from one to five hundred in words.")],
                                     GenerationSettings(max_tokens=400, temperature=0), cancel)
    decoded_when_cancelled: list[int] = []

    def stop() -> None:
        decoded_when_cancelled.append(smollm2.counters().decoded)
        cancel.set()

    for count, _piece in enumerate(generation):
        if count == 5:
            stopper = threading.Thread(target=stop)
            stopper.start()
            stopper.join()
    assert generation.stats.finish_reason is FinishReason.STOPPED
    # llama.cpp's own decode counter: at most the decode already running when Stop came.
    assert smollm2.counters().decoded - decoded_when_cancelled[0] <= 1


def test_stop_during_a_long_prompt_does_not_wait_for_its_end(smollm2: Engine) -> None:
    long_prompt = [user("Summarise this: " + "the tide comes in and the tide goes out. " * 70)]
    cancel = threading.Event()
    generation = smollm2.stream_chat(long_prompt, GenerationSettings(max_tokens=8), cancel)
    threading.Timer(0.05, cancel.set).start()
    assert generation.read() == ""
    stats = generation.stats
    assert stats.finish_reason is FinishReason.STOPPED
    assert stats.prompt_tokens > 600
    assert stats.prompt_reused + stats.prompt_evaluated < stats.prompt_tokens  # llama.cpp stopped early
    resumed = smollm2.stream_chat(long_prompt, GenerationSettings(max_tokens=4, temperature=0))
    assert resumed.read()  # the cache is consistent after the abort
    assert resumed.stats.prompt_reused + resumed.stats.prompt_evaluated == resumed.stats.prompt_tokens


def test_closing_a_reply_early_marks_it_stopped(smollm2: Engine) -> None:
    generation = smollm2.stream_chat([user("Tell me a story.")], GenerationSettings(max_tokens=200))
    next(generation)
    generation.close()
    assert generation.stats.finish_reason is FinishReason.STOPPED
    assert generation.text


# --- continuing a stopped reply -----------------------------------------------------------------
def detokenize(engine: Engine, tokens: list[int]) -> str:
    """llama.cpp's own detokenizer (special tokens rendered): what the prompt says as text."""
    vocab = llama_cpp.llama_model_get_vocab(engine._model)
    array = (llama_cpp.llama_token * len(tokens))(*tokens)
    buffer = ctypes.create_string_buffer(16 * len(tokens) + 16)
    size = llama_cpp.llama_detokenize(vocab, array, len(tokens), buffer, len(buffer), False, True)
    return buffer.raw[:size].decode()


def test_a_stopped_reply_is_continued_from_its_text_not_started_anew(smollm2: Engine) -> None:
    ask = [SYSTEM, user("Count from one to twenty in words.")]
    partial = ChatMessage(Role.ASSISTANT, "One, two, three, four")
    prompt = smollm2.fit(ask + [partial]).tokens
    # The reply's opening as for a new answer, then its text as it stands: no end of turn.
    opening = detokenize(smollm2, smollm2.fit(ask).tokens)
    assert detokenize(smollm2, prompt) == opening + "One, two, three, four"
    continued = smollm2.stream_chat(ask + [partial], GenerationSettings(max_tokens=8, temperature=0))
    text = continued.read()
    assert text.startswith(", five"), text  # new text only: the partial reply is not repeated


def test_continuing_right_after_a_stop_evaluates_only_the_tokens_not_yet_cached(smollm2: Engine) -> None:
    ask = [SYSTEM, user("Write a short story about a lighthouse keeper.")]
    settings = GenerationSettings(max_tokens=40, temperature=0)
    whole = smollm2.stream_chat(ask, settings).read()  # the same reply, never stopped

    cancel = threading.Event()
    stopped = smollm2.stream_chat(ask, settings, cancel)
    for count, _piece in enumerate(stopped, start=1):
        if count == 12:
            cancel.set()
    assert stopped.stats.finish_reason is FinishReason.STOPPED
    # The last piece was sampled and shown but never decoded: the cache holds all the rest.
    cached = stopped.stats.prompt_tokens + stopped.stats.completion_tokens - 1

    rest = GenerationSettings(max_tokens=40 - stopped.stats.completion_tokens, temperature=0)
    continued = smollm2.stream_chat(ask + [ChatMessage(Role.ASSISTANT, stopped.text)], rest)
    continuation = continued.read()
    evaluated_by_llama = smollm2.counters().prompt_evaluated  # llama_perf_context n_p_eval
    assert evaluated_by_llama == continued.stats.prompt_tokens - cached == 1
    assert continued.stats.prompt_reused == cached
    assert stopped.text + continuation == whole  # greedy: as if it had never been stopped


@pytest.mark.slow
def test_a_stopped_reply_continues_through_the_engine_process(smollm2_path: Path, tmp_path: Path) -> None:
    ask = [user("Write a short story about a lighthouse keeper.")]
    settings = GenerationSettings(max_tokens=30, temperature=0)
    config = EngineConfig(smollm2_path, n_ctx=512, n_threads=1)
    with EngineClient(config, paths=Paths.at(tmp_path)) as client:
        whole = client.stream_chat(ask, settings).read()
        cancel = threading.Event()
        stopped = client.stream_chat(ask, settings, cancel)
        for count, _piece in enumerate(stopped, start=1):
            if count == 10:
                cancel.set()  # reaches the child a moment later: it may decode one more token
        rest = GenerationSettings(max_tokens=30 - stopped.stats.completion_tokens, temperature=0)
        continued = client.stream_chat(ask + [ChatMessage(Role.ASSISTANT, stopped.text)], rest)
        continuation = continued.read()
        # llama.cpp's own counter, read in the child: only the last token, for fresh logits.
        assert client.call("counters").prompt_evaluated == continued.stats.prompt_evaluated == 1
    assert stopped.text + continuation == whole


# --- KV cache reuse ---------------------------------------------------------------------------
def test_turn_two_evaluates_only_its_new_tokens(smollm2: Engine) -> None:
    history = [SYSTEM, user("What is the capital of France?")]
    first = smollm2.stream_chat(history, GREEDY)
    first.read()
    assert first.stats.finish_reason is FinishReason.DONE  # its end token is the next turn's first
    history += [ChatMessage(Role.ASSISTANT, first.text), user("And why?")]
    second = smollm2.stream_chat(history, GREEDY)
    second.read()
    # The text turn 2 adds after the reply, tokenized on its own.
    added = "<|im_end|>\n<|im_start|>user\nAnd why?<|im_end|>\n<|im_start|>assistant\n"
    new_tokens = len(smollm2.tokenize(added, add_special=False, parse_special=True))
    evaluated_by_llama = smollm2.counters().prompt_evaluated  # llama_perf_context n_p_eval
    assert evaluated_by_llama == new_tokens == second.stats.prompt_evaluated
    assert second.stats.prompt_reused == second.stats.prompt_tokens - new_tokens


def test_asking_again_reuses_the_whole_prompt(smollm2: Engine) -> None:
    ask = [user("Name a colour.")]
    smollm2.stream_chat(ask, GenerationSettings(max_tokens=4)).read()
    again = smollm2.stream_chat(ask, GenerationSettings(max_tokens=4))
    again.read()
    assert smollm2.counters().prompt_evaluated == 1  # only the last token, for fresh logits
    assert again.stats.prompt_reused == again.stats.prompt_tokens - 1


def test_a_conversation_left_and_resumed_is_restored_from_disk_not_evaluated_again(
        smollm2_path: Path, tmp_path: Path) -> None:
    with Engine(EngineConfig(smollm2_path, n_ctx=1024, n_threads=1), kv_states=tmp_path) as engine:
        france = [SYSTEM, user("What is the capital of France?")]
        first = engine.stream_chat(france, GREEDY, session="france")
        first.read()
        assert first.stats.finish_reason is FinishReason.DONE
        other = [SYSTEM, user("Write a haiku about snow, please.")]
        engine.stream_chat(other, GenerationSettings(max_tokens=8, temperature=0), session="snow").read()
        assert len(list(tmp_path.glob("*.kv"))) == 1  # leaving "france" saved it
        france += [ChatMessage(Role.ASSISTANT, first.text), user("And why?")]
        second = engine.stream_chat(france, GREEDY, session="france")
        second.read()
        added = "<|im_end|>\n<|im_start|>user\nAnd why?<|im_end|>\n<|im_start|>assistant\n"
        new_tokens = len(engine.tokenize(added, add_special=False, parse_special=True))
        # llama_perf_context's n_p_eval: the snow conversation's cache was replaced by the saved one.
        assert engine.counters().prompt_evaluated == new_tokens == second.stats.prompt_evaluated
        assert second.stats.prompt_reused == second.stats.prompt_tokens - new_tokens
        assert second.stats.prompt_restored == second.stats.prompt_reused  # all of it from disk
        assert len(list(tmp_path.glob("*.kv"))) == 2  # leaving "snow" saved it too
        third = engine.stream_chat(france + [ChatMessage(Role.ASSISTANT, second.text), user("Bye.")],
                                   GenerationSettings(max_tokens=4, temperature=0), session="france")
        third.read()
        assert third.stats.prompt_reused > 0 and third.stats.prompt_restored == 0  # kept in memory


def test_a_state_saved_with_another_context_size_is_removed_not_restored(
        smollm2_path: Path, tmp_path: Path) -> None:
    chat = [user("Hello there, how are you?")]
    with Engine(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), kv_states=tmp_path) as small:
        small.stream_chat(chat, GenerationSettings(max_tokens=4), session="c").read()
    assert len(list(tmp_path.glob("*.kv"))) == 1
    with Engine(EngineConfig(smollm2_path, n_ctx=1024, n_threads=1), kv_states=tmp_path) as large:
        again = large.stream_chat(chat, GenerationSettings(max_tokens=4), session="c")
        again.read()
        assert large.counters().prompt_evaluated == again.stats.prompt_tokens  # all evaluated
    assert again.stats.prompt_reused == 0
    # The stale file went at once; closing saved the conversation again, for the new size.
    assert len(list(tmp_path.glob("*.kv"))) == 1
    now = StateIdentity(model_identity(smollm2_path), 1024, llama_cpp.__version__, large.resolved.key_cache_type)
    assert KVStateStore(tmp_path, now).load("c") is not None


def test_a_forgotten_conversation_is_never_written_back(smollm2_path: Path, tmp_path: Path) -> None:
    with Engine(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), kv_states=tmp_path) as engine:
        engine.stream_chat([user("Hello there.")], GenerationSettings(max_tokens=4), session="gone").read()
        assert engine.save_session() and list(tmp_path.glob("*.kv"))
        engine.stream_chat([user("Hello there."), ChatMessage(Role.ASSISTANT, "Hi."), user("Bye.")],
                           GenerationSettings(max_tokens=4), session="gone").read()
        engine.forget_session("gone")
        assert engine.session is None and not list(tmp_path.glob("*.kv"))
    assert not list(tmp_path.glob("*.kv"))  # closing did not save it again


# --- context policy ---------------------------------------------------------------------------
def test_over_long_history_is_trimmed_from_the_front_and_reported(small_context: Engine) -> None:
    history = long_history(turns=12)
    settings = GenerationSettings(max_tokens=32, temperature=0)
    fitted = small_context.fit(history, settings)
    assert fitted.dropped > 0 and fitted.dropped % 2 == 0  # whole turns
    assert fitted.messages[0] == SYSTEM  # never the system prompt
    assert fitted.messages[1].role is Role.USER
    assert fitted.messages[-1] == history[-1]
    assert fitted.messages[1:] == history[1 + fitted.dropped:]
    assert len(fitted.tokens) <= small_context.n_ctx - 32
    generation = small_context.stream_chat(history, settings)
    generation.read()
    assert generation.stats.dropped_messages == fitted.dropped
    assert generation.stats.finish_reason in (FinishReason.DONE, FinishReason.LENGTH)


def test_refuse_policy_raises_context_full(smollm2_path: Path) -> None:
    config = EngineConfig(smollm2_path, n_ctx=256, n_threads=1, overflow=OverflowPolicy.REFUSE)
    with Engine(config) as engine, pytest.raises(ContextFull):
        engine.stream_chat(long_history(turns=12), GenerationSettings(max_tokens=32))


def test_a_single_message_longer_than_the_context_is_refused(small_context: Engine) -> None:
    with pytest.raises(ContextFull):
        small_context.stream_chat([user("sea " * 400)])


def test_generation_stops_cleanly_when_the_context_fills(small_context: Engine) -> None:
    counting = " ".join(str(i) for i in range(75))  # ~210 tokens: the model keeps counting
    generation = small_context.complete(counting, GenerationSettings(max_tokens=10_000, temperature=0))
    generation.read()
    stats = generation.stats
    assert stats.prompt_tokens > 150
    assert stats.finish_reason is FinishReason.CONTEXT_FULL
    assert stats.prompt_tokens + stats.completion_tokens == small_context.n_ctx + 1  # last one sampled, not stored


# --- base models --------------------------------------------------------------------------------
def test_gemma_base_model_is_completion_only(gemma: Engine) -> None:
    assert gemma.info.is_chat is False
    assert gemma.info.template_source == "none"
    with pytest.raises(NotAChatModel, match="base model"):
        gemma.stream_chat([user("Hello")])


def test_gemma_completes_text(gemma: Engine) -> None:
    generation = gemma.complete("The capital of France is", GenerationSettings(max_tokens=12, temperature=0))
    assert generation.read().strip()
    assert generation.stats.completion_tokens > 0


def test_characters_split_across_tokens_come_out_whole(smollm2: Engine) -> None:
    generation = smollm2.complete("日本の首都は東京です。大阪は", GenerationSettings(max_tokens=24, temperature=0))
    text = generation.read()
    # Characters this byte-level vocabulary spells with several tokens, each a part of its UTF-8.
    split = [c for c in set(text) if len(smollm2.tokenize(c, add_special=False, parse_special=False)) > 1]
    assert split, text


# --- bad files ----------------------------------------------------------------------------------
def bad_copy(source: Path, target: Path, *, keep: int | None = None, flip_at: int | None = None) -> Path:
    data = bytearray(source.read_bytes()[:keep] if keep else source.read_bytes())
    if flip_at is not None:
        data[flip_at] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing):
        Engine(EngineConfig(tmp_path / "nowhere.gguf"))


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "random.gguf"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(NotAGGUF):
        Engine(EngineConfig(path))


def test_truncated_file(smollm2_path: Path, tmp_path: Path) -> None:
    path = bad_copy(smollm2_path, tmp_path / "truncated.gguf", keep=smollm2_path.stat().st_size // 2)
    with pytest.raises(ModelFileDamaged):
        Engine(EngineConfig(path, n_threads=1))


def test_byte_flipped_header(smollm2_path: Path, tmp_path: Path) -> None:
    # Offset 31: the high byte of the first metadata key's length (after magic, version, counts).
    path = bad_copy(smollm2_path, tmp_path / "flipped.gguf", flip_at=31)
    with pytest.raises(ModelFileDamaged):
        Engine(EngineConfig(path, n_threads=1))
