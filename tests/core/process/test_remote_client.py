"""A model on another computer, through `RemoteClient`: against the real `slmchat-cli serve` running
the real SmolLM2 in its own process, and against a stub server that misbehaves on purpose (cuts the
stream, starts too slowly, goes silent, wants a key, fails, is not a model server at all).

Every failure must reach the caller as a sentence naming the server, a reply cut short must keep
its text, and nothing may keep the caller waiting past the limits it was given.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from model_server_stub import MODEL, WORDS, Behaviour, StubServer, running_stub
from serve_process import Server, start_server, stop_server

from slmchat.core.errors import EngineError
from slmchat.core.generation import ChatMessage, EngineConfig, FinishReason, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.remote_client import (
    ModelServer,
    RemoteClient,
    RemoteLimits,
    RemoteModel,
    list_models,
)
from slmchat.paths import Paths

KEY = "test-key-for-the-remote"
HELLO = [ChatMessage(Role.USER, "What is the capital of France?")]
SHORT = GenerationSettings(max_tokens=16, temperature=0.0, seed=7)
QUICK = RemoteLimits(connect_s=2, list_s=5, start_s=1.5, silence_s=1.0)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with running_stub() as server:
        yield server


def stub_client(stub: StubServer, limits: RemoteLimits = QUICK, key: str = "") -> RemoteClient:
    return RemoteClient(RemoteModel(ModelServer.parse(stub.base_url, key), MODEL), limits=limits)


# --- addresses -------------------------------------------------------------------------------
@pytest.mark.parametrize("typed, url", [
    ("192.168.1.20:11434", "http://192.168.1.20:11434/v1"),
    ("  http://gpu-box:8080  ", "http://gpu-box:8080/v1"),
    ("http://gpu-box:8080/v1/", "http://gpu-box:8080/v1"),
    ("https://models.example.org/api/v1", "https://models.example.org/api/v1"),
    ("[::1]:1234", "http://[::1]:1234/v1"),
])
def test_a_server_address_is_understood_as_people_type_it(typed: str, url: str):
    server = ModelServer.parse(typed, " key ")
    assert (server.url, server.key) == (url, "key")


@pytest.mark.parametrize("typed", ["", "http://", "ftp://host/v1", "host:port", "http://host/v1?x=1"])
def test_something_that_is_not_a_server_address_is_refused_with_an_example(typed: str):
    with pytest.raises(EngineError, match="not a server address.*http://192.168.1.20:8080"):
        ModelServer.parse(typed)


# --- the real slmchat-cli serve as the remote ---------------------------------------------------
@pytest.fixture(scope="module")
def remote(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("remote-home"), "--model", smollm2_path, "--api-key", KEY)
    yield running
    stop_server(running)


@pytest.fixture
def remote_model(remote: Server) -> RemoteModel:
    (model,) = list_models(ModelServer.parse(remote.base_url, KEY))
    return model


@pytest.mark.slow
def test_the_remote_server_lists_its_model_and_refuses_anyone_without_its_key(remote: Server, smollm2_path: Path):
    (model,) = list_models(ModelServer.parse(remote.base_url, KEY))
    assert model.name.lower().startswith("smollm2")
    assert model.id.startswith("remote:http://127.0.0.1:")
    with pytest.raises(EngineError, match=f"server at 127.0.0.1:{remote.port} asked for a key"):
        list_models(ModelServer.parse(remote.base_url))
    with pytest.raises(EngineError, match="asked for a key"):
        RemoteClient(RemoteModel(ModelServer.parse(remote.base_url, "wrong"), model.name))


@pytest.mark.slow
def test_a_reply_from_the_remote_model_streams_in_pieces_and_reports_its_token_counts(remote_model: RemoteModel):
    client = RemoteClient(remote_model)
    assert (client.info.name, client.info.backend, client.info.is_chat) == (remote_model.name, "127.0.0.1", True)
    generation = client.stream_chat(HELLO, SHORT)
    pieces = list(generation)
    assert len(pieces) > 3 and "".join(pieces) == generation.text and generation.text.strip()
    stats = generation.stats
    assert stats.finish_reason in (FinishReason.DONE, FinishReason.LENGTH)
    assert stats.prompt_tokens > 5 and 0 < stats.completion_tokens <= SHORT.max_tokens
    assert stats.time_to_first_token_s > 0 and stats.decode_tokens_per_s > 0
    again = client.stream_chat(HELLO, SHORT).read()
    assert again == generation.text  # greedy with a seed: the server got the same settings
    client.close()


@pytest.mark.slow
def test_stop_ends_a_remote_reply_at_once_keeping_its_text_and_the_server_answers_the_next(
        remote_model: RemoteModel):
    client = RemoteClient(remote_model)
    cancel = threading.Event()
    generation = client.stream_chat([ChatMessage(Role.USER, "Tell a long story about a dragon.")],
                                    GenerationSettings(max_tokens=400, temperature=0.0), cancel)
    for count, _piece in enumerate(generation, 1):
        if count == 3:
            cancel.set()
            stopped_at = time.monotonic()
    assert time.monotonic() - stopped_at < 1.0
    assert generation.stats.finish_reason is FinishReason.STOPPED
    assert generation.text.strip() and generation.stats.completion_tokens < 10
    # the server saw the client go and stopped: the next reply does not wait behind 400 tokens
    following = client.stream_chat(HELLO, SHORT)
    assert following.read().strip()
    assert following.stats.time_to_first_token_s < 5  # 0.7 s here; 28 s when Stop did not hang up


# --- a server that misbehaves ---------------------------------------------------------------
def test_a_stream_cut_midway_ends_the_reply_as_interrupted_keeping_its_text(stub: StubServer):
    stub.behaviour = Behaviour(drop_after=4)
    generation = stub_client(stub).stream_chat(HELLO, SHORT)
    assert generation.read() == "word0 word1 word2 word3 "
    assert generation.stats.finish_reason is FinishReason.INTERRUPTED
    assert generation.stats.error == (f"The connection to the model server at 127.0.0.1:{stub.port} broke in "
                                      "the middle of the reply; the text so far is kept.")


def test_a_stream_cut_before_any_word_is_an_error_naming_the_server(stub: StubServer):
    stub.behaviour = Behaviour(drop_after=0)
    with pytest.raises(EngineError, match=f"server at 127.0.0.1:{stub.port} closed the connection before answering"):
        stub_client(stub).stream_chat(HELLO, SHORT).read()


def test_a_server_too_slow_to_start_is_given_up_on_after_the_start_limit(stub: StubServer):
    stub.behaviour = Behaviour(start_delay_s=10)
    started = time.monotonic()
    with pytest.raises(EngineError, match="did not start answering within 1.5 seconds"):
        stub_client(stub).stream_chat(HELLO, SHORT).read()
    assert time.monotonic() - started < QUICK.start_s + 1


def test_a_server_that_goes_silent_midway_ends_the_reply_after_the_silence_limit(stub: StubServer):
    stub.behaviour = Behaviour(stall_after=3, stall_s=10)
    generation = stub_client(stub).stream_chat(HELLO, SHORT)
    started = time.monotonic()
    assert generation.read() == "word0 word1 word2 "
    assert time.monotonic() - started < QUICK.silence_s + 1
    assert generation.stats.finish_reason is FinishReason.INTERRUPTED
    assert "stopped answering for 1 seconds" in generation.stats.error


def test_stop_while_the_server_is_still_reading_the_prompt_returns_at_once(stub: StubServer):
    stub.behaviour = Behaviour(start_delay_s=10)
    cancel = threading.Event()
    generation = stub_client(stub, RemoteLimits(start_s=60)).stream_chat(HELLO, SHORT, cancel)
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    assert generation.read() == ""
    assert time.monotonic() - started < 1.0
    assert generation.stats.finish_reason is FinishReason.STOPPED


def test_stop_hangs_up_so_the_server_stops_generating_even_while_it_is_silent(stub: StubServer):
    stub.behaviour = Behaviour(stall_after=2, stall_s=10)
    cancel = threading.Event()
    generation = stub_client(stub, RemoteLimits(silence_s=60)).stream_chat(HELLO, SHORT, cancel)
    assert next(generation) + next(generation) == "word0 word1 "
    cancel.set()
    stopped_at = time.monotonic()
    assert generation.read() == "word0 word1 "
    assert generation.stats.finish_reason is FinishReason.STOPPED
    deadline = stopped_at + 3
    while not stub.streams_ended and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stub.streams_ended and stub.streams_ended[0] - stopped_at < 2  # not after its 10 s pause


@pytest.mark.parametrize("status, said", [
    (401, "asked for a key, or did not accept the one given. Remove the server and add it again with the key"),
    (500, "ran into a problem \\(error 500\\). It said: “CUDA out of memory”. Try again"),
])
def test_a_refusal_or_a_failure_of_the_server_is_said_plainly(stub: StubServer, status: int, said: str):
    client = stub_client(stub)
    stub.behaviour = Behaviour(status=status)
    with pytest.raises(EngineError, match=f"The model server at 127.0.0.1:{stub.port} {said}"):
        client.stream_chat(HELLO, SHORT).read()
    with pytest.raises(EngineError, match=said):
        list_models(ModelServer.parse(stub.base_url))


def test_an_address_that_is_no_model_server_says_to_check_the_address(stub: StubServer):
    stub.behaviour = Behaviour(not_openai=True)
    with pytest.raises(EngineError, match="answered, but not like an OpenAI-compatible model server"):
        list_models(ModelServer.parse(stub.base_url))


def test_a_model_list_without_end_is_given_up_on_instead_of_filling_the_memory(stub: StubServer):
    stub.behaviour = Behaviour(endless=True)
    with pytest.raises(EngineError, match="answered, but not like an OpenAI-compatible model server"):
        list_models(ModelServer.parse(stub.base_url), QUICK)


def test_a_server_that_is_not_running_cannot_be_reached_and_says_so(stub: StubServer):
    with pytest.raises(EngineError, match="Could not reach the model server at 127.0.0.1:1\\. Check that it is running"):
        list_models(ModelServer.parse("127.0.0.1:1"))
    assert stub.requests == []  # nor any other server


def test_a_model_the_server_no_longer_lists_is_refused_when_chosen(stub: StubServer):
    with pytest.raises(EngineError, match="no longer offers “llama3:70b”"):
        RemoteClient(RemoteModel(ModelServer.parse(stub.base_url), "llama3:70b"))


def test_the_key_and_the_settings_go_to_the_server_and_only_its_api_is_asked(stub: StubServer):
    client = stub_client(stub, key="sesame")
    settings = GenerationSettings(max_tokens=77, temperature=0.3, top_p=0.8, seed=5)
    assert client.stream_chat(HELLO, settings).read().count("word") == WORDS
    assert [(seen.method, seen.path) for seen in stub.requests] == [
        ("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
    assert all(seen.headers["authorization"] == "Bearer sesame" for seen in stub.requests)
    body = stub.requests[1].body
    assert body["model"] == MODEL and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": HELLO[0].content}]
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (77, 0.3, 0.8, 5)


def test_a_proxy_set_in_the_environment_never_sees_the_conversation(stub: StubServer, monkeypatch):
    with running_stub() as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert stub_client(stub).stream_chat(HELLO, SHORT).read()
        assert len(stub.requests) == 2 and proxy.requests == []


@pytest.mark.slow
def test_deleting_a_chat_for_good_while_a_remote_model_answers_still_deletes_its_local_saved_states(
        stub: StubServer, smollm2_path: Path, slmchat_home: Path):
    """The trash asks the loaded client to forget a conversation; the local engine's saved
    memory of that chat (from before the switch to the remote model) must go all the same."""
    paths = Paths.default().ensure()
    key = "conversation-7"
    local = EngineClient(EngineConfig(model_path=smollm2_path, n_ctx=512, n_threads=1), paths=paths)
    local.stream_chat(HELLO, SHORT, session=key).read()
    local.close()  # saves the conversation's state on disk
    assert list(paths.kv_states.glob("*"))
    stub_client(stub).forget_session(key)
    assert list(paths.kv_states.glob("*")) == []
