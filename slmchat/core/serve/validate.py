"""A request's JSON, checked and turned into slmchat's records, or a 400 naming the parameter.

Sampling follows slmchat's own defaults (GenerationSettings) for what a request leaves out;
llama.cpp's server extensions (top_k, min_p, repeat_penalty) are understood too. What slmchat
cannot do (several choices, log-probabilities, tools) is refused rather than silently ignored,
so a client never takes a different answer for the one it asked for. Stop sequences are
checked here and applied while the reply streams (stops.py).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from slmchat.core.generation import ChatMessage, GenerationSettings, Role
from slmchat.core.serve.api_error import invalid
from slmchat.core.serve.stops import MAX_STOPS

# OpenAI's roles, as the engine's chat template knows them ("developer" is the new "system").
_ROLES = {"system": Role.SYSTEM, "developer": Role.SYSTEM, "user": Role.USER, "assistant": Role.ASSISTANT}
# Parameters slmchat cannot honour, with the value that means "not asked for".
_UNSUPPORTED = {
    "n": 1, "best_of": 1, "logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": False,
    "suffix": None, "tools": (None, []), "functions": (None, []),
    "tool_choice": (None, "none"), "function_call": (None, "none"), "logit_bias": (None, {}),
    "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
    "response_format": (None, {"type": "text"}),
}


@dataclass(frozen=True)
class GenerationRequest:
    """What a chat or text completion asks for; `messages` for a chat, `prompt` for a completion."""

    model: str
    settings: GenerationSettings
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the token counts
    messages: tuple[ChatMessage, ...] = ()
    prompt: str = ""
    stop: tuple[str, ...] = ()  # the reply ends before the first of these it writes


@dataclass(frozen=True)
class EmbeddingRequest:
    model: str
    texts: tuple[str, ...]
    base64: bool  # encoding_format "base64": little-endian float32, as OpenAI's client asks by default


def model_name(body: dict[str, Any]) -> str:
    """The model a request names (checked first: the limits of the rest depend on it)."""
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise invalid("Say which model to use: the request has no \"model\" (GET /v1/models lists them).",
                      param="model")
    return name


def chat_request(body: dict[str, Any], context: int) -> GenerationRequest:
    """A chat completion; `context` (the model's context in tokens) bounds max_tokens."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("\"messages\" must be a non-empty list of messages.", param="messages")
    chat = tuple(_message(message, index) for index, message in enumerate(messages))
    return GenerationRequest(model_name(body), _settings(body, context), *_streaming(body), messages=chat,
                             stop=_stops(body))


def completion_request(body: dict[str, Any], context: int) -> GenerationRequest:
    """A text completion: `prompt` is one string (or a list holding one)."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise invalid("\"prompt\" must be one non-empty string.", param="prompt")
    return GenerationRequest(model_name(body), _settings(body, context), *_streaming(body), prompt=prompt,
                             stop=_stops(body))


def embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    """Texts to embed: `input` is a string or a list of strings (token arrays are not accepted)."""
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if (not isinstance(texts, list) or not texts or len(texts) > 2048
            or not all(isinstance(text, str) and text for text in texts)):
        raise invalid("\"input\" must be a non-empty string or a list of up to 2048 non-empty strings.",
                      param="input")
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid("\"encoding_format\" must be \"float\" or \"base64\".", param="encoding_format")
    if body.get("dimensions") is not None:
        raise invalid("\"dimensions\" is not supported: the model's vectors keep their own size.",
                      param="dimensions")
    return EmbeddingRequest(model_name(body), tuple(texts), encoding == "base64")


def _message(message: Any, index: int) -> ChatMessage:
    param = f"messages[{index}]"
    if not isinstance(message, dict) or message.get("role") not in _ROLES:
        raise invalid(f"{param} must be an object whose \"role\" is one of {', '.join(_ROLES)}.", param=param)
    content = message.get("content")
    if isinstance(content, list):  # content parts: only text ones
        if not all(isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
                   for part in content):
            raise invalid(f"{param}.content may hold text parts only: these models read no images or audio.",
                          param=f"{param}.content")
        content = "".join(part["text"] for part in content)
    if not isinstance(content, str):
        raise invalid(f"{param}.content must be a string.", param=f"{param}.content")
    return ChatMessage(_ROLES[message["role"]], content)


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    """`stop`: one string or a list of up to four; empty strings mean nothing and are dropped."""
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) for s in stops):
        raise invalid(f"\"stop\" must be a string or a list of up to {MAX_STOPS} strings.", param="stop")
    return tuple(dict.fromkeys(s for s in stops if s))


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if not isinstance(stream, bool | None):
        raise invalid("\"stream\" must be true or false.", param="stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise invalid("\"stream_options\" must be an object.", param="stream_options")
    return bool(stream), bool(stream) and options.get("include_usage") is True


def _settings(body: dict[str, Any], context: int) -> GenerationSettings:
    for name, absent in _UNSUPPORTED.items():
        value = body.get(name)
        allowed = absent if isinstance(absent, tuple) else (None, absent)
        if value not in allowed:
            raise invalid(f"\"{name}\" is not supported by this server; leave it out.",
                          param=name, code="unsupported_parameter")
    given: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        param = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        given["max_tokens"] = _number(max_tokens, param, 1, context, integer=True)
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0), ("min_p", 0.0, 1.0),
                            ("repeat_penalty", 0.0, 5.0)):
        if body.get(name) is not None:
            given[name] = _number(body[name], name, low, high)
    if given.get("top_p") == 0.0 or given.get("repeat_penalty") == 0.0:
        name = "top_p" if given.get("top_p") == 0.0 else "repeat_penalty"
        raise invalid(f"\"{name}\" must be more than 0.", param=name)
    if body.get("top_k") is not None:
        given["top_k"] = _number(body["top_k"], "top_k", 0, 100_000, integer=True)
    if body.get("seed") is not None:
        given["seed"] = _number(body["seed"], "seed", -2**63, 2**64 - 1, integer=True)
    return dataclasses.replace(GenerationSettings(), **given)


def _number(value: Any, param: str, low: float, high: float, *, integer: bool = False) -> Any:
    """`value` when it is a number (an integer if asked) from `low` to `high`, else a 400."""
    kind = "an integer" if integer else "a number"
    ok = (isinstance(value, int) if integer else isinstance(value, int | float)) and not isinstance(value, bool)
    if not ok or (isinstance(value, float) and not math.isfinite(value)) or not low <= value <= high:
        raise invalid(f"\"{param}\" must be {kind} from {low:g} to {high:g}, not {value!r}.", param=param,
                      code="invalid_value")
    return value
