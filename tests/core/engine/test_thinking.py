"""Thinking models, on the real chat templates of Qwen3, SmolLM3, a DeepSeek-R1 distill and
Phi-4-mini-reasoning (tests/core/engine/templates/, each saying where it came from).

A tiny random model never writes `<think>` by itself, so the replies here come from tiny GGUFs
whose next token is scripted (tests/tiny_gguf.py: `write_scripted_chat`): after the generation
prompt they think "okay" (or "ok"), close the block and answer "A". What a reply does is then
exact, and llama.cpp's own counters say how many tokens were decoded one by one (the model's
thinking) and how many in a batch (the close marker the engine wrote at the budget).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import jinja2
import jinja2.ext
import pytest
import tiny_gguf
from tiny_gguf import NEWLINE, NEWLINES

from slmchat.core.engine.engine import Engine
from slmchat.core.engine.templates import ChatFormat, SpecialTokens
from slmchat.core.engine.thinking import THINK, detect
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    GenerationSettings,
    Role,
    SplitReply,
    join_reply,
    split_reply,
)
from slmchat.core.gguf.check import read_gguf
from slmchat.core.gguf.template_check import GenerationTag

TEMPLATES = Path(__file__).parent / "templates"
FAMILIES = ("qwen3", "smollm3", "deepseek_r1_distill_qwen", "phi4_mini_reasoning")
SWITCHABLE = {"qwen3": True, "smollm3": True, "deepseek_r1_distill_qwen": False, "phi4_mini_reasoning": False}
EOS = {"qwen3": "<|im_end|>", "smollm3": "<|im_end|>", "deepseek_r1_distill_qwen": "<｜end▁of▁sentence｜>",
       "phi4_mini_reasoning": "<|end|>"}
# What ends each family's generation prompt when it thinks: the scripted model opens the block
# there, except after DeepSeek-R1's prompt, which opened it already.
PROMPT_END = {"qwen3": NEWLINE, "smollm3": NEWLINE, "phi4_mini_reasoning": "<|assistant|>"}
THOUGHT = "okay"
ASK = [ChatMessage(Role.USER, "Hi")]
GREEDY = GenerationSettings(temperature=0, speculative="off")


def real_template(family: str) -> str:
    """The template as the model ships it (the fixture's first line says where it came from)."""
    return (TEMPLATES / f"{family}.jinja").read_text(encoding="utf-8").split("\n", 1)[1].removesuffix("\n")


def script(family: str) -> dict[str, str]:
    """Think THOUGHT letter by letter, close the block, answer "A", end the turn."""
    steps = {"<think>": THOUGHT[0], **{a: b for a, b in zip(THOUGHT, THOUGHT[1:])},
             THOUGHT[-1]: "</think>", "</think>": NEWLINES, NEWLINES: "A"}
    if family == "deepseek_r1_distill_qwen":
        return {NEWLINE: THOUGHT[0], **steps}  # its prompt ends "<think>\n": the model thinks on
    return {PROMPT_END[family]: "<think>", **steps}


def load(path: Path, tmp: Path, **config: object) -> Engine:
    return Engine(EngineConfig(path, n_ctx=4096, n_threads=1, **config), kv_states=tmp / "kv")


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("thinking-models")
    return {family: tiny_gguf.write_scripted_chat(folder / f"{family}.gguf", real_template(family),
                                                  eos=EOS[family], script=script(family))
            for family in FAMILIES}


@pytest.fixture(scope="module")
def engines(scripted: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Engine]:
    tmp = tmp_path_factory.mktemp("thinking-engines")
    loaded = {family: load(path, tmp) for family, path in scripted.items()}
    yield loaded
    for engine in loaded.values():
        engine.close()


def text_of(engine: Engine, tokens: list[int]) -> str:
    """Tokens back to text, control tokens spelled out (GPT-2's byte alphabet: "Ġ" is a space)."""
    return "".join(engine._token_text(t) for t in tokens).replace(NEWLINE, "\n").replace("\u0120", " ")


def reference_render(family: str, messages: list[ChatMessage], **switch: bool) -> str:
    """The template rendered the way Hugging Face Transformers renders it (a plain Jinja
    environment, not slmchat's hardened one): what the model was trained on."""
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True,
                             extensions=[GenerationTag, jinja2.ext.loopcontrols])
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(real_template(family)).render(
        messages=[{"role": m.role.value, "content": m.content} for m in messages],
        add_generation_prompt=True, bos_token="<｜begin▁of▁sentence｜>", eos_token=EOS[family], **switch)


# --- what the template says ----------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_each_real_thinking_template_is_recognised_with_its_markers_and_whether_it_can_switch_off(
        family: str) -> None:
    style = detect(ChatFormat("model", real_template(family), SpecialTokens()))
    assert style is not None
    assert style.markers == THINK
    assert style.switch is SWITCHABLE[family]


def test_smollm2_is_no_thinking_model_and_its_replies_count_no_thinking_tokens(smollm2_path: Path,
                                                                               tmp_path: Path) -> None:
    template = read_gguf(smollm2_path).chat_template
    assert detect(ChatFormat("model", template, SpecialTokens())) is None
    with Engine(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), kv_states=tmp_path) as engine:
        assert engine.info.thinking is None and engine.info.thinking_switch is False
        reply = engine.stream_chat(ASK, GenerationSettings(temperature=0, max_tokens=4, thinking_budget=1))
        reply.read()
    assert reply.stats.completion_tokens > 0 and reply.stats.thinking_tokens == 0


def test_smollm3s_template_with_the_generation_tag_renders_in_the_sandbox_rather_than_falling_back() -> None:
    chat_format = ChatFormat("model", real_template("smollm3"), SpecialTokens())
    chat_format.probe()
    text = chat_format.render([*ASK, ChatMessage(Role.ASSISTANT, "Hello!"), ChatMessage(Role.USER, "Bye")])
    assert "<|im_start|>assistant\nHello!<|im_end|>\n" in text
    assert "Reasoning Mode: /think" in text


def test_each_model_tells_what_it_thinks_with_and_whether_it_can_stop(engines: dict[str, Engine]) -> None:
    for family, engine in engines.items():
        assert engine.info.thinking == THINK, family
        assert engine.info.thinking_switch is SWITCHABLE[family], family


# --- on and off --------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_on_off_and_auto_send_exactly_the_prompt_the_real_template_renders_with_its_switch(
        family: str, engines: dict[str, Engine]) -> None:
    engine = engines[family]
    chat = [ChatMessage(Role.SYSTEM, "Be brief."), *ASK]
    switch = {"auto": {}, "on": {"enable_thinking": True}, "off": {"enable_thinking": False}}
    for setting, kwargs in switch.items():
        sent = engine.fit(chat, GenerationSettings(thinking=setting)).tokens
        expected = reference_render(family, chat, **(kwargs if SWITCHABLE[family] else {}))
        assert sent == engine.tokenize(expected, add_special=False, parse_special=True), setting
    off = engine.fit(chat, GenerationSettings(thinking="off")).tokens
    auto = engine.fit(chat, GenerationSettings(thinking="auto")).tokens
    assert (off != auto) is SWITCHABLE[family]


def test_qwen3_off_ends_the_prompt_with_an_empty_closed_block_and_smollm3_off_says_no_think(
        engines: dict[str, Engine]) -> None:
    def sent(family: str, setting: str) -> str:
        return text_of(engines[family], engines[family].fit(ASK, GenerationSettings(thinking=setting)).tokens)

    assert sent("qwen3", "off").endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert sent("qwen3", "on").endswith("<|im_start|>assistant\n")
    assert "Reasoning Mode: /no_think" in sent("smollm3", "off")
    assert sent("smollm3", "off").endswith("<|im_start|>assistant\n<think>\n\n</think>\n")
    assert "Reasoning Mode: /think" in sent("smollm3", "on")


def test_a_reply_with_thinking_off_is_all_answer(engines: dict[str, Engine]) -> None:
    reply = engines["qwen3"].stream_chat(ASK, GenerationSettings(temperature=0, thinking="off"))
    assert reply.read() == "A"  # after "</think>\n\n" the scripted model answers at once
    assert reply.stats.thinking_tokens == 0


# --- streaming and splitting ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_thinking_streams_as_pieces_and_splits_into_its_own_part(family: str, engines: dict[str, Engine]) -> None:
    reply = engines[family].stream_chat(ASK, GREEDY)
    pieces = list(reply)
    if family == "deepseek_r1_distill_qwen":
        assert pieces[0] == "<think>\n"  # the prompt opened the block: the engine says so first
    else:
        assert pieces[0] == "<think>"
    assert split_reply(reply.text, engines[family].info.thinking) == SplitReply(THOUGHT, "A", False)
    # streaming: after each piece the split says where the reply stands
    partial = split_reply("".join(pieces[:2]), engines[family].info.thinking)
    assert partial.thinking_open and partial.thinking == THOUGHT[0] and partial.answer == ""
    assert reply.stats.thinking_tokens == len(THOUGHT) + 1  # "o", "k", "a", "y", "</think>"


# --- the budget ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("budget", [1, 2, 3])
def test_at_the_budget_the_engine_closes_the_block_itself_and_the_model_answers_after_it(
        family: str, budget: int, engines: dict[str, Engine]) -> None:
    engine = engines[family]
    close = engine.tokenize("\n</think>\n\n", add_special=False, parse_special=True)
    reply = engine.stream_chat([ChatMessage(Role.USER, f"Question {budget}")],  # a new prompt each time
                               GenerationSettings(temperature=0, speculative="off", thinking_budget=budget))
    pieces = list(reply)
    assert "\n</think>\n\n" in pieces  # yielded as a piece of its own
    assert split_reply(reply.text, engine.info.thinking) == SplitReply(THOUGHT[:budget], "A", False)
    assert reply.stats.thinking_tokens == budget
    counted = engine.counters()
    opened = 0 if family == "deepseek_r1_distill_qwen" else 1  # "<think>" is the model's own token there
    assert counted.decoded == opened + budget + 1  # one by one: its thinking, then "A"
    assert counted.verified == len(close) == 3  # in one batch: "\n", "</think>", "\n\n"
    assert reply.stats.completion_tokens == opened + budget + len(close) + 1


def test_a_budget_larger_than_the_thinking_changes_nothing(engines: dict[str, Engine]) -> None:
    reply = engines["qwen3"].stream_chat(ASK, GenerationSettings(temperature=0, thinking_budget=len(THOUGHT) + 1))
    assert reply.read() == f"<think>{THOUGHT}</think>\n\nA"
    assert engines["qwen3"].counters().verified == 0


def test_the_budget_holds_when_speculative_decoding_guessed_past_it(scripted: dict[str, Path], tmp_path: Path) -> None:
    # Flash attention on the CPU lets the engine speculate; the user's "okay" gives its n-gram
    # lookup a draft of the whole thought, which the model accepts beyond the budget.
    with load(scripted["qwen3"], tmp_path, flash_attn=True) as engine:
        assert engine.speculation
        reply = engine.stream_chat([ChatMessage(Role.USER, f"<think>{THOUGHT}</think>")],
                                   GenerationSettings(temperature=0, thinking_budget=2))
        text = reply.read()
    assert reply.stats.accepted_tokens > 0
    assert text == f"<think>{THOUGHT[:2]}\n</think>\n\nA"
    assert reply.stats.thinking_tokens == 2


# --- later prompts ----------------------------------------------------------------------------------------------
RAW_REPLY = f"<think>\n{THOUGHT}\n</think>\n\nA"


def test_qwen3s_own_template_already_leaves_an_earlier_replys_thinking_out() -> None:
    qwen3 = ChatFormat("model", real_template("qwen3"), SpecialTokens())
    raw = qwen3.render([*ASK, ChatMessage(Role.ASSISTANT, RAW_REPLY), ChatMessage(Role.USER, "Bye")])
    answer = qwen3.render([*ASK, ChatMessage(Role.ASSISTANT, "A"), ChatMessage(Role.USER, "Bye")])
    assert raw == answer and THOUGHT not in raw


def test_smollm3s_template_would_send_an_earlier_replys_thinking_back() -> None:
    smollm3 = ChatFormat("model", real_template("smollm3"), SpecialTokens())
    assert THOUGHT in smollm3.render([*ASK, ChatMessage(Role.ASSISTANT, RAW_REPLY), ChatMessage(Role.USER, "Bye")])


@pytest.mark.parametrize("family", FAMILIES)
def test_an_earlier_reply_goes_back_as_its_answer_only_whatever_the_template_does(
        family: str, engines: dict[str, Engine]) -> None:
    engine = engines[family]
    with_thinking = engine.fit([*ASK, ChatMessage(Role.ASSISTANT, RAW_REPLY), ChatMessage(Role.USER, "Bye")]).tokens
    answer_only = engine.fit([*ASK, ChatMessage(Role.ASSISTANT, "A"), ChatMessage(Role.USER, "Bye")]).tokens
    assert with_thinking == answer_only
    assert THOUGHT not in text_of(engine, with_thinking)


# --- continuing a stopped reply --------------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_a_stopped_thinking_reply_continues_from_its_text_reusing_every_token_it_wrote(
        family: str, engines: dict[str, Engine]) -> None:
    engine = engines[family]
    question = [ChatMessage(Role.USER, "Continue me")]
    full = engine.stream_chat(question, GREEDY)
    pieces = list(full)
    for stop in range(1, len(pieces)):
        written = "".join(pieces[:stop])
        rest = engine.stream_chat([*question, ChatMessage(Role.ASSISTANT, written)], GREEDY)
        assert written + rest.read() == full.text, written
        assert rest.stats.prompt_evaluated == 1  # the markers went back as the tokens the model wrote


@pytest.mark.parametrize("family", ["qwen3", "deepseek_r1_distill_qwen"])
def test_a_stopped_reply_stored_as_thinking_and_answer_apart_continues_once_joined_back(
        family: str, engines: dict[str, Engine]) -> None:
    engine = engines[family]
    for stopped in (f"<think>\nok", f"<think>\n{THOUGHT}</think>\n\n"):  # while thinking, once answering
        stored = split_reply(stopped, engine.info.thinking)
        joined = join_reply(stored, engine.info.thinking)
        rest = engine.stream_chat([*ASK, ChatMessage(Role.ASSISTANT, joined)], GREEDY).read()
        assert split_reply(joined + rest, engine.info.thinking) == SplitReply(THOUGHT, "A", False), stopped


def test_a_continued_reply_counts_the_thinking_it_had_done_against_the_budget(engines: dict[str, Engine]) -> None:
    engine = engines["deepseek_r1_distill_qwen"]
    rest = engine.stream_chat([*ASK, ChatMessage(Role.ASSISTANT, "<think>\no")],
                              GenerationSettings(temperature=0, thinking_budget=2))
    assert rest.read() == "k\n</think>\n\nA"
    assert rest.stats.thinking_tokens == 1


def test_markers_that_are_control_tokens_still_show_in_the_reply_and_go_back_as_those_tokens(
        tmp_path: Path) -> None:
    # Some conversions mark "<think>" as a control token: llama.cpp then shows no text for it
    # and, in plain text, spells it out letter by letter instead of matching it.
    path = tiny_gguf.write_scripted_chat(tmp_path / "control.gguf", real_template("qwen3"), eos=EOS["qwen3"],
                                         script=script("qwen3"), control_markers=True)
    with load(path, tmp_path) as engine:
        full = engine.stream_chat(ASK, GREEDY)
        assert full.read() == f"<think>{THOUGHT}</think>\n\nA"
        rest = engine.stream_chat([*ASK, ChatMessage(Role.ASSISTANT, f"<think>{THOUGHT}</think>")], GREEDY)
        assert rest.read() == "\n\nA"
    assert rest.stats.prompt_evaluated == 1
