"""Chat formats: a model's own Jinja chat template in a hardened sandbox, or a known built-in.

The template text comes from a downloaded file, so it is untrusted. Jinja's sandbox stops code
execution; what it does not stop is CPU and memory (`{{ 9**(9**9) }}` folds at *compile* time).
Here every arithmetic operator is intercepted (so nothing folds and `call_binop` can refuse
giant results), the optimizer is off, output expressions are never folded at compile time, and
the rendered text is capped. The GGUF check refuses the known bombs before we get here; the engine
process is the last safety net for anything that still hangs.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from slmchat.core.generation import ChatMessage, Role
from slmchat.core.gguf.template_check import GenerationTag

MAX_RENDERED_CHARS = 4_000_000
_MAX_OPERAND_RESULT = 1_000_000  # longest string/list an operator may build
_MAX_EXPONENT = 64

_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


class _NoFoldingCodeGenerator(CodeGenerator):
    """Compiles `{{ expr }}` for run time only: constant folding can run a bomb at compile time."""

    def _output_child_to_const(self, node: nodes.Expr, frame: Any, finalize: Any) -> str:
        if isinstance(node, (nodes.TemplateData, nodes.Const)):
            return super()._output_child_to_const(node, frame, finalize)
        raise nodes.Impossible()


class _GuardedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with every arithmetic operator checked at run time."""

    code_generator_class = _NoFoldingCodeGenerator
    intercepted_binops = frozenset(_BINOPS)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "**" and isinstance(right, (int, float)) and abs(right) > _MAX_EXPONENT:
            raise SecurityError("exponent too large in chat template")
        if operator_name == "*" and _repeats(left, right) > _MAX_OPERAND_RESULT:
            raise SecurityError("chat template builds a too-long value")
        result = _BINOPS[operator_name](left, right)
        if isinstance(result, (str, list, tuple)) and len(result) > _MAX_OPERAND_RESULT:
            raise SecurityError("chat template builds a too-long value")
        return result


def _repeats(left: Any, right: Any) -> int:
    """Length `left * right` would have when one side is a sequence and the other an int."""
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
            return len(seq) * count
    return 0


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    """Transformers' `tojson` (Jinja's own escapes HTML characters, which templates do not want)."""
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def build_environment() -> jinja2.Environment:
    """The hardened environment, with Transformers' helpers (`raise_exception`, `strftime_now`)."""
    env = _GuardedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        optimized=False,
        extensions=["jinja2.ext.loopcontrols", GenerationTag],
        undefined=jinja2.Undefined,
    )
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env


class TemplateFailed(Exception):
    """A chat template could not be compiled or rendered (the engine then falls back)."""


@dataclass(frozen=True)
class SpecialTokens:
    bos: str = ""
    eos: str = ""


class ChatFormat:
    """Turns a list of messages into the prompt text a model was trained on."""

    def __init__(self, source: str, template: str, tokens: SpecialTokens) -> None:
        self.source = source  # "model" or "builtin:<name>"
        self.template_text = template
        self._tokens = tokens
        try:
            self._template = build_environment().from_string(template)
        except (jinja2.TemplateError, SecurityError, RecursionError, MemoryError) as error:
            raise TemplateFailed(f"chat template does not compile: {error}") from error
        self.merges_system = False  # learnt by `probe()`: the template rejects a system role

    def render(self, messages: Sequence[ChatMessage], add_generation_prompt: bool = True,
               thinking: bool | None = None) -> str:
        """The prompt for `messages`; a system prompt is folded into the first user turn when
        the template has no system role (Gemma-style templates raise on one). `thinking` sets
        the template's `enable_thinking` switch (Qwen3, SmolLM3); None leaves it undefined, so
        the template does what it does by default."""
        if self.merges_system:
            messages = _merge_system(messages)
        payload = [{"role": _role(m.role), "content": m.content} for m in messages]
        try:
            pieces: list[str] = []
            size = 0
            for chunk in self._template.generate(
                messages=payload,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._tokens.bos,
                eos_token=self._tokens.eos,
                tools=None,
                **({} if thinking is None else {"enable_thinking": thinking}),
            ):
                size += len(chunk)
                if size > MAX_RENDERED_CHARS:
                    raise SecurityError("chat template output is too long")
                pieces.append(chunk)
        except (jinja2.TemplateError, SecurityError, TypeError, ValueError, RecursionError,
                MemoryError, OverflowError) as error:
            raise TemplateFailed(f"chat template failed: {error}") from error
        return "".join(pieces)

    def probe(self) -> None:
        """Render a sample chat once, so a broken template is found at load, not mid-chat."""
        sample = [
            ChatMessage(Role.SYSTEM, "Be brief."),
            ChatMessage(Role.USER, "Hello"),
            ChatMessage(Role.ASSISTANT, "Hi"),
            ChatMessage(Role.USER, "Bye"),
        ]
        try:
            text = self.render(sample)
        except TemplateFailed:
            self.merges_system = True
            text = self.render(sample)
        if "Hello" not in text or "Bye" not in text:
            raise TemplateFailed("chat template drops the user's messages")


def _role(role: Role | str) -> str:
    return role.value if isinstance(role, Role) else str(role)


def _merge_system(messages: Sequence[ChatMessage]) -> list[ChatMessage]:
    if not messages or _role(messages[0].role) != Role.SYSTEM.value:
        return list(messages)
    system, rest = messages[0], list(messages[1:])
    if rest and _role(rest[0].role) == Role.USER.value:
        rest[0] = ChatMessage(Role.USER, f"{system.content}\n\n{rest[0].content}")
    else:
        rest.insert(0, ChatMessage(Role.USER, system.content))
    return rest


# Built-in formats, used only when a model has no usable template but we are certain of its
# format: the architecture is one of the family's, the vocabulary holds the format's markers,
# and the model calls itself an instruct/chat model (base models share vocabularies with their
# instruct siblings, and a base model does not follow turns).
_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GEMMA = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{% if role == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
    "<start_of_turn>{{ role }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


@dataclass(frozen=True)
class _Builtin:
    name: str
    architectures: frozenset[str]
    markers: tuple[str, ...]
    template: str


BUILTINS = (
    _Builtin("chatml", frozenset({"qwen2", "qwen3", "llama", "smollm3"}),
             ("<|im_start|>", "<|im_end|>"), _CHATML),
    _Builtin("gemma", frozenset({"gemma", "gemma2", "gemma3"}),
             ("<start_of_turn>", "<end_of_turn>"), _GEMMA),
)

_INSTRUCT = re.compile(r"(instruct|chat|\bit\b)", re.IGNORECASE)  # "it": Gemma's "-it" models


def declares_instruct(metadata: Mapping[str, Any]) -> bool:
    """True when the model's own name fields call it an instruct/chat model."""
    fields = ("general.name", "general.finetune", "general.basename", "general.tags")
    text = " ".join(str(metadata.get(key, "")) for key in fields)
    return bool(_INSTRUCT.search(text))


def choose_format(
    chat_template: str | None,
    architecture: str,
    metadata: Mapping[str, Any],
    has_token: Callable[[str], bool],
    tokens: SpecialTokens,
) -> ChatFormat | None:
    """The model's template if it works, else a built-in we are sure of, else None (completion)."""
    if chat_template:
        try:
            chosen = ChatFormat("model", chat_template, tokens)
            chosen.probe()
            return chosen
        except TemplateFailed:
            pass  # fall through to a built-in: the engine reports which one it used
    if not declares_instruct(metadata):
        return None
    for builtin in BUILTINS:
        if architecture in builtin.architectures and all(has_token(m) for m in builtin.markers):
            chosen = ChatFormat(f"builtin:{builtin.name}", builtin.template, tokens)
            chosen.probe()
            return chosen
    return None
