"""`slmchat-cli serve` as other programs meet it: the real command in its own process, the real
models (SmolLM2 chat, the Gemma 3 270M base model, MiniLM embeddings), and real clients — the
official `openai` package, `curl`, and raw sockets for what no polite client does (a 100 MB
body, a client that hangs up mid-stream, a slow reader).

Every bad request must get OpenAI's error shape or back-pressure, and the server must answer a
good request right after it.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import minilm_gguf
import numpy as np
import openai
import psutil
import pytest
from model_cache import MODEL_CACHE
from serve_process import Server, start_server, stop_server

from slmchat.core.generation import EngineConfig, GenerationSettings
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.task_client import TaskClient, TaskKind

pytestmark = pytest.mark.slow
MAX_QUEUE = 2
GREEDY = {"temperature": 0, "seed": 7}
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]


def openai_client(server: Server, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=server.key or "unused", max_retries=0, **options)


@pytest.fixture(scope="module")
def models(smollm2_path: Path, gemma_path: Path) -> dict[str, Path]:
    return {"chat": smollm2_path, "base": gemma_path, "embed": minilm_gguf.cached_gguf(MODEL_CACHE)}


@pytest.fixture(scope="module")
def server(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("serve-home"), "--max-queue", MAX_QUEUE,
                           *(arg for path in models.values() for arg in ("--model", path)))
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def names(server: Server, models: dict[str, Path]) -> dict[str, str]:
    """Which served name is which model, as /v1/models lists them."""
    listed = [model.id for model in openai_client(server).models.list()]
    found = {role: next(name for name in listed if name.lower().startswith(path.stem.lower()[:7]))
             for role, path in models.items()}
    assert len(set(found.values())) == 3, listed
    return found


def chat(server: Server, names: dict[str, str], max_tokens: int = 12, **options: object) -> str:
    reply = openai_client(server).chat.completions.create(model=names["chat"], messages=HELLO, max_tokens=max_tokens,
                                                           **GREEDY, **options)
    assert reply.choices[0].message.content
    return reply.choices[0].message.content


def raw_request(server: Server, path: str, body: bytes, *, declared: int | None = None,
                close: bool = False) -> socket.socket:
    """A POST written by hand on a socket (the body as given, its declared length as told);
    `close` asks the server to end the connection after its answer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    length = len(body) if declared is None else declared
    connection = "Connection: close\r\n" if close else ""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{connection}\r\n")
    sock.sendall(head.encode() + body)
    return sock


def read_head(sock: socket.socket) -> tuple[int, bytes]:
    """The status and whatever of the body came with the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), rest


def read_answer(sock: socket.socket) -> tuple[int, dict]:
    """A whole JSON answer: its status and its body (by its Content-Length)."""
    status, rest = read_head(sock)
    sock.settimeout(30)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return status, json.loads(rest + data)


def events(sock: socket.socket, rest: bytes = b"") -> Iterator[str]:
    """The `data:` lines of a server-sent event stream (chunked framing ignored)."""
    buffer = rest
    while True:
        while b"\n\n" in buffer:
            block, _, buffer = buffer.partition(b"\n\n")
            for line in block.split(b"\r\n"):
                if line.startswith(b"data: "):
                    yield line[6:].decode()
        chunk = sock.recv(4096)
        if not chunk:
            return
        buffer += chunk


# --- real clients -------------------------------------------------------------------------------
def test_the_openai_client_lists_the_three_served_models(server, names) -> None:
    listed = openai_client(server).models.list()
    assert sorted(model.id for model in listed) == sorted(names.values())
    assert all(model.owned_by == "slmchat" for model in listed)
    assert openai_client(server).models.retrieve(names["base"]).id == names["base"]
    assert server.banner.startswith("Serving") and server.base_url in server.banner


def test_a_streamed_greedy_chat_joins_to_the_same_text_as_the_same_request_not_streamed(server, names) -> None:
    client = openai_client(server)
    whole = client.chat.completions.create(model=names["chat"], messages=HELLO, max_tokens=40, **GREEDY)
    pieces = [chunk.choices[0].delta.content or ""
              for chunk in client.chat.completions.create(model=names["chat"], messages=HELLO, max_tokens=40,
                                                          stream=True, **GREEDY)
              if chunk.choices]
    assert len([piece for piece in pieces if piece]) > 3  # really streamed, not one block
    assert "".join(pieces) == whole.choices[0].message.content
    assert whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage.prompt_tokens > 5 and whole.usage.completion_tokens <= 40


def test_a_streamed_chat_with_include_usage_ends_with_the_token_counts(server, names) -> None:
    chunks = list(openai_client(server).chat.completions.create(
        model=names["chat"], messages=HELLO, max_tokens=8, stream=True, stream_options={"include_usage": True},
        **GREEDY))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 8
    assert chunks[-2].choices[0].finish_reason == "length"


@pytest.mark.parametrize("stream", [False, True])
def test_a_stop_string_split_across_two_pieces_ends_the_reply_before_it_with_finish_reason_stop(
        server, names, stream) -> None:
    client = openai_client(server)
    pieces = [chunk.choices[0].delta.content for chunk in client.chat.completions.create(
        model=names["chat"], messages=HELLO, max_tokens=40, stream=True, **GREEDY)
        if chunk.choices and chunk.choices[0].delta.content]
    whole = "".join(pieces)
    k = next(k for k in range(3, len(pieces) - 1) if len(pieces[k].strip()) >= 2 and len(pieces[k + 1].strip()) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]  # only whole across the two pieces
    expected = whole[:whole.find(stop)]
    request = {"model": names["chat"], "messages": HELLO, "max_tokens": 40, "stop": ["never said", stop], **GREEDY}
    if stream:
        chunks = [chunk for chunk in client.chat.completions.create(stream=True, **request) if chunk.choices]
        text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        finish = chunks[-1].choices[0].finish_reason
    else:
        reply = client.chat.completions.create(**request)
        text, finish = reply.choices[0].message.content, reply.choices[0].finish_reason
        assert reply.usage.completion_tokens < 40  # the model stopped there, not only the text
    assert (text, finish) == (expected, "stop")
    assert stop not in text


def test_the_base_model_completes_text_as_the_engine_does_and_cannot_chat(server, names, models) -> None:
    prompt = "The three primary colours are"
    client = openai_client(server)
    served = client.completions.create(model=names["base"], prompt=prompt, max_tokens=16, **GREEDY)
    streamed = "".join(chunk.choices[0].text for chunk in client.completions.create(
        model=names["base"], prompt=prompt, max_tokens=16, stream=True, **GREEDY))
    with EngineClient(EngineConfig(model_path=models["base"], n_threads=1)) as engine:
        direct = engine.complete(prompt, GenerationSettings(temperature=0, seed=7, max_tokens=16)).read()
    assert served.choices[0].text == direct == streamed
    assert served.object == "text_completion" and served.usage.completion_tokens == 16
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=names["base"], messages=HELLO, max_tokens=4)
    assert refused.value.body["code"] == "model_not_supported" and "/v1/completions" in refused.value.body["message"]


def test_minilm_embeds_through_the_openai_client_as_its_own_process_does(server, names, models) -> None:
    texts = ["the house is small", "a tiny home", "stock markets fell sharply"]
    served = openai_client(server).embeddings.create(model=names["embed"], input=texts)  # base64 on the wire
    vectors = np.array([item.embedding for item in served.data], dtype=np.float32)
    with TaskClient(TaskKind.EMBED, models["embed"], n_threads=1) as direct:
        expected = direct.embed(texts)
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # near meanings are near
    assert served.usage.prompt_tokens >= len(" ".join(texts).split())


def test_curl_chats_streams_and_embeds_as_floats(server, names) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed on this machine")

    def curl(path: str, body: dict, *flags: str) -> str:
        done = subprocess.run(["curl", "-sS", *flags, "-H", "Content-Type: application/json", "-d", json.dumps(body),
                               f"{server.base_url}{path}"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    whole = json.loads(curl("/chat/completions", {"model": names["chat"], "messages": HELLO, "max_tokens": 12,
                                                  **GREEDY}))
    streamed = curl("/chat/completions", {"model": names["chat"], "messages": HELLO, "max_tokens": 12,
                                          "stream": True, **GREEDY}, "-N")
    datas = [line[6:] for line in streamed.splitlines() if line.startswith("data: ")]
    assert datas[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content", "") for d in datas[:-1])
    assert text == whole["choices"][0]["message"]["content"]
    vectors = json.loads(curl("/embeddings", {"model": names["embed"], "input": "hello"}))
    assert len(vectors["data"][0]["embedding"]) == 384
    assert abs(np.linalg.norm(vectors["data"][0]["embedding"]) - 1) < 1e-4


# --- bad input: an OpenAI error or back-pressure, and the server alive afterwards ----------------
def test_malformed_json_is_a_400_in_openais_shape(server, names) -> None:
    sock = raw_request(server, "/v1/chat/completions", b'{"model": "x", "messages": [', close=True)
    status, answer = read_answer(sock)
    sock.close()
    assert status == 400
    assert answer["error"] == {"message": "The request body is not valid JSON.",
                                         "type": "invalid_request_error", "param": None, "code": "invalid_json"}
    assert chat(server, names)


def test_a_100_mb_body_is_refused_by_its_size_before_it_is_read(server, names) -> None:
    rss_before = psutil.Process(server.process.pid).memory_info().rss
    sock = raw_request(server, "/v1/chat/completions", b'{"model": "' + b"x" * 65536, declared=100 * 1024 * 1024)
    started = time.monotonic()
    status, answer = read_answer(sock)
    answered_in = time.monotonic() - started
    sock.close()
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert answered_in < 5  # answered without waiting for the 100 MB
    assert psutil.Process(server.process.pid).memory_info().rss - rss_before < 20 * 1024 * 1024
    assert chat(server, names)


def test_an_unknown_model_is_a_404_naming_the_served_ones(server, names) -> None:
    with pytest.raises(openai.NotFoundError) as refused:
        openai_client(server).chat.completions.create(model="gpt-4o", messages=HELLO)
    assert refused.value.body["code"] == "model_not_found" and names["chat"] in refused.value.body["message"]
    assert chat(server, names)


@pytest.mark.parametrize(("options", "param"), [
    ({"temperature": -1}, "temperature"),
    ({"max_tokens": 10**9}, "max_tokens"),
    ({"n": 5}, "n"),
    ({"top_p": 1.5}, "top_p"),
])
def test_parameters_out_of_range_or_unsupported_are_a_400_naming_the_parameter(server, names, options,
                                                                               param) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        openai_client(server).chat.completions.create(model=names["chat"], messages=HELLO, **options)
    assert refused.value.status_code == 400 and refused.value.body["param"] == param
    assert chat(server, names)


def test_requests_past_the_queue_limit_get_429_while_the_others_are_answered(server, names) -> None:
    client = openai_client(server)

    def ask(_: int) -> str:
        try:
            client.chat.completions.create(model=names["chat"], messages=LONG, max_tokens=60, **GREEDY)
            return "answered"
        except openai.RateLimitError as error:
            assert error.body["code"] == "rate_limit_exceeded"
            assert error.response.headers["retry-after"] == "1"
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(ask, range(8)))
    assert outcomes.count("refused") >= 8 - (MAX_QUEUE + 1) - 1  # one may slip in as the first finishes
    assert outcomes.count("answered") >= MAX_QUEUE + 1
    assert chat(server, names)


def test_a_client_that_hangs_up_mid_stream_stops_its_generation(server, names) -> None:
    client = openai_client(server)
    started = time.monotonic()
    whole = client.chat.completions.create(model=names["chat"], messages=LONG, max_tokens=300, **GREEDY)
    whole_s = time.monotonic() - started
    assert whole.usage.completion_tokens >= 200  # long enough that an unstopped one would be noticed

    body = json.dumps({"model": names["chat"], "messages": LONG, "max_tokens": 300, "stream": True, **GREEDY})
    sock = raw_request(server, "/v1/chat/completions", body.encode())
    status, rest = read_head(sock)
    assert status == 200
    stream = events(sock, rest)
    for _ in range(4):
        next(stream)
    sock.close()  # hang up

    started = time.monotonic()
    assert chat(server, names, max_tokens=2)
    assert time.monotonic() - started < whole_s / 2, "the model went on writing for nobody"


def test_an_embedding_request_whose_client_hangs_up_stops_before_all_its_texts_are_embedded(server, names) -> None:
    texts = [f"Sentence number {number} is about a small house with a garden." for number in range(480)]
    started = time.monotonic()
    assert len(openai_client(server).embeddings.create(model=names["embed"], input=texts).data) == len(texts)
    whole_s = time.monotonic() - started

    sock = raw_request(server, "/v1/embeddings", json.dumps({"model": names["embed"], "input": texts}).encode())
    time.sleep(min(0.5, whole_s / 8))
    sock.close()  # hang up

    started = time.monotonic()
    assert openai_client(server).embeddings.create(model=names["embed"], input="hello").data
    assert time.monotonic() - started < whole_s / 2, f"the model went on embedding for nobody ({whole_s:.1f} s)"


def test_a_slow_reader_gets_the_whole_stream_without_holding_up_the_next_request(server, names) -> None:
    request = {"model": names["chat"], "messages": HELLO, "max_tokens": 40, **GREEDY}
    expected = chat(server, names, max_tokens=40)
    sock = raw_request(server, "/v1/chat/completions", json.dumps({**request, "stream": True}).encode())
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    time.sleep(1)  # reads nothing yet
    started = time.monotonic()
    assert chat(server, names, max_tokens=4)  # served while the slow reader has read nothing
    assert time.monotonic() - started < 10
    status, rest = read_head(sock)
    assert status == 200
    text = ""
    for data in events(sock, rest):
        time.sleep(0.02)
        if data == "[DONE]":
            break
        text += json.loads(data)["choices"][0]["delta"].get("content") or ""
    sock.close()
    assert text == expected


# --- who may connect --------------------------------------------------------------------------
def test_off_loopback_the_server_generates_a_key_and_refuses_requests_without_it(models, tmp_path) -> None:
    other = start_server(tmp_path / "home", "--host", "0.0.0.0", "--model", models["chat"])
    try:
        assert other.key and len(other.key) >= 24
        with pytest.raises(openai.AuthenticationError) as refused:
            openai.OpenAI(base_url=other.base_url, api_key="wrong", max_retries=0).models.list()
        assert refused.value.body["code"] == "invalid_api_key"
        assert [model.id for model in openai_client(other).models.list()]
    finally:
        stop_server(other)


def test_on_loopback_a_web_page_of_another_site_is_refused(server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: http://example.com\r\n"
                 "\r\n".encode())
    status, _ = read_head(sock)
    sock.close()
    assert status == 403
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: attacker.example\r\n\r\n")  # DNS rebinding
    status, _ = read_head(sock)
    sock.close()
    assert status == 403
