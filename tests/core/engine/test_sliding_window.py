"""KV reuse on a sliding-window model (the real Gemma 3 270M, window 512) gives a cold run's tokens.

Every reply here is greedy and compared with the reply of a fresh engine that evaluates the same
prompt from nothing; the prompts are longer than the window, and the cuts (a longer prompt, a
regenerate, an edit, a restored conversation) lie far enough back that a cache holding only the
window would lack what the next token attends to. llama.cpp's own counters (`prompt_evaluated`,
`prompt_reused`, `prompt_restored`) show that the cache was reused wherever it can be, so
evaluating everything again is not the silent answer. One thread: see test_engine.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import hostile_gguf
import pytest

from slmchat.core.engine.engine import Engine
from slmchat.core.engine.rollback import covers
from slmchat.core.generation import ChatMessage, EngineConfig, GenerationSettings, Role

WINDOW = 512  # gemma3.attention.sliding_window of the 270M model
GREEDY = GenerationSettings(temperature=0, repeat_penalty=1.0, max_tokens=24, speculative="off")
# Gemma's turn markers (tokens of its real vocabulary), as its instruct models' template uses them.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else 'user' }}\n{{ message['content'] }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def ledger(lines: int) -> str:
    """A plain text of ~18 Gemma tokens per line, varied enough that a cut changes the reply."""
    colours, things = ["red", "blue", "green", "old", "new"], ["house", "boat", "tree", "road"]
    return " ".join(f"Item {i}: the {colours[i % 5]} {things[i % 4]} near the river was counted on "
                    f"day {i * 7 % 31}." for i in range(lines))


LONG = ledger(70)  # ~1300 tokens: more than twice the window
EDITED = LONG[: len(LONG) * 45 // 100] + " Suddenly the counting stopped, and nobody knew why."


def config(path: Path) -> EngineConfig:
    """llama.cpp's repacked weights (extra buffer types) round a batch differently by its
    shape: evaluating 10 tokens after a kept prefix moves Gemma's logits by up to 0.8 against a
    cold run's batches. Without them a reused cache gives the cold logits bit for bit (measured
    here), so any difference in tokens is the cache's."""
    return EngineConfig(path, n_ctx=2048, n_threads=1, use_extra_bufts=False)


@pytest.fixture(scope="module")
def gemma_chat_path(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Gemma 3 270M weights with a Gemma chat template added, so conversations (and
    their saved states) can be driven through `stream_chat`."""
    target = tmp_path_factory.mktemp("gemma-chat") / "gemma-3-270m-chat.gguf"
    return hostile_gguf.rewrite(gemma_path, target, set_kv={
        hostile_gguf.DEFAULT: hostile_gguf.value(hostile_gguf.STRING, GEMMA_TEMPLATE)})


def cold_completion(path: Path, text: str) -> str:
    with Engine(config(path)) as engine:
        reply = engine.complete(text, GREEDY)
        out = reply.read()
        assert reply.stats.prompt_reused == 0
        return out


def cold_chat(path: Path, messages: list[ChatMessage], folder: Path) -> str:
    with Engine(config(path), kv_states=folder) as engine:
        reply = engine.stream_chat(messages, GREEDY)
        out = reply.read()
        assert reply.stats.prompt_reused == 0
        return out


@pytest.fixture
def gemma(gemma_path: Path, tmp_path: Path) -> Iterator[Engine]:
    with Engine(config(gemma_path), kv_states=tmp_path / "states") as engine:
        yield engine


def test_the_prompts_are_longer_than_the_window_and_the_edit_lies_deeper_than_it(gemma: Engine) -> None:
    long = gemma.tokenize(LONG, add_special=True, parse_special=False)
    edited = gemma.tokenize(EDITED, add_special=True, parse_special=False)
    diverges = next(i for i, (a, b) in enumerate(zip(long, edited)) if a != b)
    assert len(long) > 2 * WINDOW
    assert WINDOW < diverges < len(long) - WINDOW  # out of a window-sized cache's reach


def test_a_longer_prompt_sharing_a_prefix_longer_than_the_window_answers_as_a_cold_run(
    gemma: Engine, gemma_path: Path
) -> None:
    gemma.complete(LONG, GREEDY).read()
    longer = LONG + " After that, the keeper wrote one more line:"
    reply = gemma.complete(longer, GREEDY)
    assert reply.read() == cold_completion(gemma_path, longer)
    long_tokens = len(gemma.tokenize(LONG, add_special=True, parse_special=False))
    assert reply.stats.prompt_reused >= long_tokens - 1
    assert reply.stats.prompt_evaluated == reply.stats.prompt_tokens - reply.stats.prompt_reused


def test_regenerating_a_long_prompt_gives_the_cold_tokens_and_evaluates_only_its_last_token(
    gemma: Engine, gemma_path: Path
) -> None:
    first = gemma.complete(LONG, GREEDY).read()
    again = gemma.complete(LONG, GREEDY)
    assert again.read() == first == cold_completion(gemma_path, LONG)
    assert again.stats.prompt_evaluated == 1
    assert again.stats.prompt_reused == again.stats.prompt_tokens - 1


def test_an_edit_diverging_deeper_than_the_window_gives_the_cold_tokens_and_reuses_what_precedes_it(
    gemma: Engine, gemma_path: Path
) -> None:
    gemma.complete(LONG, GREEDY).read()
    edit = gemma.complete(EDITED, GREEDY)
    assert edit.read() == cold_completion(gemma_path, EDITED)
    assert edit.stats.prompt_reused > WINDOW  # the full-size cache keeps the prefix usable
    assert edit.stats.prompt_evaluated == edit.stats.prompt_tokens - edit.stats.prompt_reused


def test_regenerating_in_a_restored_conversation_gives_the_cold_tokens(
    gemma_chat_path: Path, tmp_path: Path
) -> None:
    """A saved state carries only the window's positions of the sliding layers (llama.cpp writes
    no more, even from a full-size cache): cut back to the prompt, it lacks the positions the
    reply covered, which the prompt's last token attends to. A regenerate right after the
    restore must not answer from it (on this repetitive text the tokens may still agree: the
    counters show which cache answered), and evaluates the conversation again."""
    asked = [ChatMessage(Role.USER, LONG)]
    with Engine(config(gemma_chat_path), kv_states=tmp_path / "states") as engine:
        first = engine.stream_chat(asked, GREEDY, session="a").read()
        engine.stream_chat([ChatMessage(Role.USER, "Hello.")], GREEDY, session="b").read()  # saves "a"
        again = engine.stream_chat(asked, GREEDY, session="a")
        assert again.read() == first == cold_chat(gemma_chat_path, asked, tmp_path / "cold")
        assert again.stats.prompt_restored == 0
        assert again.stats.prompt_evaluated == again.stats.prompt_tokens


def test_an_edit_in_a_restored_conversation_gives_the_cold_tokens(gemma_chat_path: Path, tmp_path: Path) -> None:
    with Engine(config(gemma_chat_path), kv_states=tmp_path / "states") as engine:
        engine.stream_chat([ChatMessage(Role.USER, LONG)], GREEDY, session="a").read()
        engine.save_session()
    edited = [ChatMessage(Role.USER, EDITED)]
    with Engine(config(gemma_chat_path), kv_states=tmp_path / "states") as engine:  # as after a restart
        edit = engine.stream_chat(edited, GREEDY, session="a")
        assert edit.read() == cold_chat(gemma_chat_path, edited, tmp_path / "cold")


def test_a_restored_conversation_goes_on_from_the_saved_state_with_the_cold_tokens(
    gemma_chat_path: Path, tmp_path: Path
) -> None:
    """The common case, going on with a new turn, still restores: only the new turn is evaluated."""
    asked = [ChatMessage(Role.USER, LONG)]
    with Engine(config(gemma_chat_path), kv_states=tmp_path / "states") as engine:
        answer = engine.stream_chat(asked, GREEDY, session="a").read()
    going_on = [*asked, ChatMessage(Role.ASSISTANT, answer), ChatMessage(Role.USER, "Which item came last?")]
    with Engine(config(gemma_chat_path), kv_states=tmp_path / "states") as engine:
        reply = engine.stream_chat(going_on, GREEDY, session="a")
        assert reply.read() == cold_chat(gemma_chat_path, going_on, tmp_path / "cold")
        assert reply.stats.prompt_restored > 2 * WINDOW
        assert reply.stats.prompt_evaluated == reply.stats.prompt_tokens - reply.stats.prompt_reused < 40


# --- the rule itself ------------------------------------------------------------------------------
@pytest.mark.parametrize(("pos_min", "pos_max", "keep", "n_swa", "recurrent", "usable"), [
    (0, 699, 700, 0, False, True),  # plain attention keeps everything
    (189, 699, 700, 512, False, False),  # a window's cache lost position 188, which 700 attends to
    (188, 699, 700, 512, False, True),
    (0, 99, 100, 512, False, True),  # shorter than the window: nothing was ever dropped
    (-1, -1, 700, 0, True, False),  # a recurrent state emptied by a cut at its last position
    (699, 699, 700, 0, True, True),  # a recurrent state that ends where the prompt goes on
    (-1, -1, 0, 512, False, True),  # cut to nothing: the prompt is evaluated in full anyway
])
def test_a_cut_cache_is_usable_only_when_it_holds_what_the_next_token_attends_to(
    pos_min: int, pos_max: int, keep: int, n_swa: int, recurrent: bool, usable: bool
) -> None:
    assert covers(pos_min, pos_max, keep, n_swa=n_swa, recurrent=recurrent) is usable
