"""Chat templates: the model's own in a hardened sandbox, built-ins only when certain."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slmchat.core.engine.templates import (
    ChatFormat,
    SpecialTokens,
    TemplateFailed,
    build_environment,
    choose_format,
)
from slmchat.core.generation import ChatMessage, Role
from slmchat.core.gguf.check import read_gguf

TOKENS = SpecialTokens(bos="<s>", eos="</s>")
CHAT = [ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "Hi there")]
CHATML_MARKERS = {"<|im_start|>", "<|im_end|>"}


def render(template: str, messages: list[ChatMessage] = CHAT) -> str:
    return ChatFormat("model", template, TOKENS).render(messages)


def test_smollm2_template_renders_chatml(smollm2_path: Path) -> None:
    template = read_gguf(smollm2_path).chat_template
    assert template is not None
    assert render(template) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "bomb",
    [
        "{{ 9**(9**9) }}",  # folded at compile time by plain Jinja: hangs with the GIL held
        "{{ 'x' * 10**10 }}",
        "{{ 'ab' * 900000000 }}",
        "{% set s = namespace(v='xx') %}{% for i in range(64) %}{% set s.v = s.v + s.v %}{% endfor %}",
    ],
)
def test_arithmetic_bombs_are_refused_quickly(bomb: str) -> None:
    started = time.monotonic()
    chat_format = ChatFormat("model", bomb, TOKENS)  # compiling must not evaluate anything
    with pytest.raises(TemplateFailed):
        chat_format.render(CHAT)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('touch {marker}') }}",
        "{{ raise_exception.__globals__['__builtins__']['open']('{marker}', 'w') }}",
    ],
)
def test_sandbox_escapes_do_not_run_code(payload: str, tmp_path: Path) -> None:
    marker = tmp_path / "escaped"
    with pytest.raises(TemplateFailed):
        render(payload.replace("{marker}", str(marker)))
    assert not marker.exists()


def test_transformers_helpers_are_available() -> None:
    text = render("{{ strftime_now('%Y') }}|{{ messages[1] | tojson }}")
    assert text.startswith(time.strftime("%Y") + "|")
    assert '"content": "Hi there"' in text


def test_raise_exception_fails_the_render() -> None:
    with pytest.raises(TemplateFailed, match="no tools"):
        render("{{ raise_exception('no tools') }}")


def test_template_without_system_role_gets_the_system_prompt_in_the_first_user_turn() -> None:
    gemma_style = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<turn {{ m['role'] }}>{{ m['content'] }}</turn>{% endfor %}"
    )
    chat_format = ChatFormat("model", gemma_style, TOKENS)
    chat_format.probe()
    assert chat_format.render(CHAT) == "<turn user>Be brief.\n\nHi there</turn>"


def test_model_template_is_used_when_it_works() -> None:
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    chosen = choose_format(template, "llama", {}, lambda text: False, TOKENS)
    assert chosen is not None and chosen.source == "model"


def test_broken_template_falls_back_to_a_certain_builtin() -> None:
    metadata = {"general.name": "Qwen2.5 0.5B Instruct"}
    chosen = choose_format("{% for %}", "qwen2", metadata, CHATML_MARKERS.__contains__, TOKENS)
    assert chosen is not None and chosen.source == "builtin:chatml"
    assert chosen.render(CHAT).endswith("<|im_start|>assistant\n")


def test_template_that_drops_the_users_words_is_not_trusted() -> None:
    metadata = {"general.name": "Qwen2.5 0.5B Instruct"}
    chosen = choose_format("Hello!", "qwen2", metadata, CHATML_MARKERS.__contains__, TOKENS)
    assert chosen is not None and chosen.source == "builtin:chatml"


def test_base_model_without_template_is_completion_only() -> None:
    metadata = {"general.name": "Gemma 3 270m", "general.basename": "gemma-3"}
    has_gemma_markers = {"<start_of_turn>", "<end_of_turn>"}.__contains__
    assert choose_format(None, "gemma3", metadata, has_gemma_markers, TOKENS) is None


def test_instruct_model_without_its_markers_is_completion_only() -> None:
    metadata = {"general.name": "Some 1B Instruct"}
    assert choose_format(None, "qwen2", metadata, lambda text: False, TOKENS) is None


def test_gemma_instruct_without_template_gets_the_gemma_format() -> None:
    metadata = {"general.name": "Gemma 3 270m It", "general.finetune": "it"}
    has_gemma_markers = {"<start_of_turn>", "<end_of_turn>"}.__contains__
    chosen = choose_format(None, "gemma3", metadata, has_gemma_markers, TOKENS)
    assert chosen is not None and chosen.source == "builtin:gemma"
    assert chosen.render(CHAT) == (
        "<s><start_of_turn>user\nBe brief.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
    )


def test_environment_does_not_fold_constants_at_compile_time() -> None:
    started = time.monotonic()
    build_environment().from_string("{{ 9**(9**9) }}{{ 'a' * 99999999999 }}")
    assert time.monotonic() - started < 1
