"""Requests to the API become slmchat's records, or a 400 that names the parameter at fault."""

from __future__ import annotations

import pytest

from slmchat.core.generation import ChatMessage, GenerationSettings, Role
from slmchat.core.serve.api_error import ApiError
from slmchat.core.serve.validate import chat_request, completion_request, embedding_request

CONTEXT = 2048
BASE = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refused(parse, body: dict) -> ApiError:
    with pytest.raises(ApiError) as error:
        parse(body, CONTEXT) if parse is not embedding_request else parse(body)
    assert error.value.status == 400
    return error.value


def test_a_chat_keeps_slmchats_defaults_for_what_it_leaves_out_and_takes_what_it_gives() -> None:
    wanted = chat_request({**BASE, "temperature": 0, "max_tokens": 30, "seed": 3, "top_k": 5}, CONTEXT)
    assert wanted.settings == GenerationSettings(temperature=0, max_tokens=30, seed=3, top_k=5)
    assert chat_request(BASE, CONTEXT).settings == GenerationSettings()
    assert wanted.messages == (ChatMessage(Role.USER, "hi"),) and not wanted.stream


def test_developer_messages_are_system_messages_and_text_parts_are_joined() -> None:
    wanted = chat_request({"model": "m", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}, CONTEXT)
    assert wanted.messages == (ChatMessage(Role.SYSTEM, "Be brief."), ChatMessage(Role.USER, "ab"))


@pytest.mark.parametrize(("change", "param"), [
    ({"temperature": -1}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": True}, "temperature"), ({"max_tokens": 10**9}, "max_tokens"),
    ({"max_tokens": CONTEXT + 1}, "max_tokens"), ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"n": 5}, "n"), ({"top_p": 0}, "top_p"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": [1]}, "stop"), ({"stop": {"x": 1}}, "stop"), ({"logprobs": True}, "logprobs"),
    ({"tools": [{"type": "function"}]}, "tools"), ({"stream": "yes"}, "stream"), ({"messages": []}, "messages"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0]"), ({"model": ""}, "model"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
])
def test_out_of_range_unsupported_or_malformed_chat_parameters_are_refused_by_name(change, param) -> None:
    assert refused(chat_request, {**BASE, **change}).param == param


def test_stop_is_one_string_or_up_to_four_kept_in_order_without_empty_ones_or_repeats() -> None:
    assert chat_request({**BASE, "stop": "\n"}, CONTEXT).stop == ("\n",)
    assert chat_request({**BASE, "stop": ["User:", "", "END", "User:"]}, CONTEXT).stop == ("User:", "END")
    assert chat_request({**BASE, "stop": None}, CONTEXT).stop == ()
    assert completion_request({"model": "m", "prompt": "x", "stop": ["."]}, CONTEXT).stop == (".",)


def test_the_largest_max_tokens_is_the_models_context() -> None:
    assert chat_request({**BASE, "max_tokens": CONTEXT}, CONTEXT).settings.max_tokens == CONTEXT


def test_a_completion_takes_one_prompt_and_stream_options_only_when_streamed() -> None:
    wanted = completion_request({"model": "m", "prompt": ["Once"], "stream": True,
                                 "stream_options": {"include_usage": True}}, CONTEXT)
    assert (wanted.prompt, wanted.stream, wanted.include_usage) == ("Once", True, True)
    assert not completion_request({"model": "m", "prompt": "x", "stream_options": {"include_usage": True}},
                                  CONTEXT).include_usage
    assert refused(completion_request, {"model": "m", "prompt": ["a", "b"]}).param == "prompt"
    assert refused(completion_request, {"model": "m", "prompt": "a", "echo": True}).param == "echo"


def test_embeddings_take_strings_and_say_how_to_encode_them() -> None:
    assert embedding_request({"model": "m", "input": "a"}).texts == ("a",)
    assert embedding_request({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}).base64
    assert refused(embedding_request, {"model": "m", "input": [1, 2]}).param == "input"
    assert refused(embedding_request, {"model": "m", "input": "a", "dimensions": 8}).param == "dimensions"
