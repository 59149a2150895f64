"""A loopback OpenAI-compatible model server that misbehaves on purpose, and records every request.

It lists one model and streams a reply of numbered words as server-sent events, like llama.cpp's
server; `Behaviour` makes it cut the connection midway, take too long to start or to go on,
refuse without a key (401), fail (500) or answer something that is not OpenAI's API. Every
request is recorded, so a test can show that nothing else reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

MODEL = "stub-model:7b"
WORDS = 12  # a full reply: "word0 word1 … word11"


@dataclass
class Behaviour:
    """How the next replies go. `drop_after` / `stall_after` count pieces sent before it happens."""

    status: int = 200  # 401 or 500: every request is refused with OpenAI's error body
    drop_after: int | None = None  # cut the connection after this many pieces
    stall_after: int | None = None  # stop sending (connection open) after this many pieces ...
    stall_s: float = 20.0  # ... for this long at most
    start_delay_s: float = 0.0  # wait this long before answering a chat request at all
    not_openai: bool = False  # answer with a web page, as a wrong address would
    endless: bool = False  # answer the model list with bytes that never end
    piece_delay_s: float = 0.05  # between two pieces


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: dict | None


@dataclass
class StubServer:
    port: int
    behaviour: Behaviour = field(default_factory=Behaviour)
    requests: list[Seen] = field(default_factory=list)
    streams_ended: list[float] = field(default_factory=list)  # when each reply stream ended, sent or not

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "stub", "object": "chat.completion.chunk", "model": MODEL,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(body)}\n\n".encode()


def _app(stub: StubServer) -> Starlette:
    async def record(request: Request) -> Response | None:
        body = json.loads(await request.body() or b"null")
        stub.requests.append(Seen(request.method, request.url.path, dict(request.headers), body))
        behaviour = stub.behaviour
        if behaviour.not_openai:
            return PlainTextResponse("<html>Router login</html>", media_type="text/html")
        if behaviour.status != 200:
            message = "Invalid API key" if behaviour.status == 401 else "CUDA out of memory"
            return JSONResponse({"error": {"message": message, "type": "error", "code": None}},
                                status_code=behaviour.status)
        return None

    async def models(request: Request) -> Response:
        if stub.behaviour.endless:
            async def without_end() -> AsyncIterator[bytes]:
                yield b'{"object": "list", "data": ['
                while True:
                    yield b'{"id": "again"},' * 4096
                    await asyncio.sleep(0)

            return await record(request) or StreamingResponse(without_end(), media_type="application/json")
        return await record(request) or JSONResponse({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: Request) -> Response:
        refused = await record(request)
        if refused is not None:
            return refused
        behaviour = stub.behaviour
        await asyncio.sleep(behaviour.start_delay_s)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield _chunk({"role": "assistant", "content": ""})
                for n in range(WORDS):
                    if n == behaviour.drop_after:
                        raise ConnectionAbortedError("the stub drops the stream on purpose")
                    if n == behaviour.stall_after:
                        await asyncio.sleep(behaviour.stall_s)
                    yield _chunk({"content": f"word{n} "})
                    await asyncio.sleep(behaviour.piece_delay_s)
                yield _chunk({}, "stop")
                yield b"data: [DONE]\n\n"
            finally:  # also when the client went away (Starlette cancels the stream)
                stub.streams_ended.append(time.monotonic())

        return StreamingResponse(events(), media_type="text/event-stream")

    return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])


@contextlib.contextmanager
def running_stub() -> Iterator[StubServer]:
    """A misbehaving loopback model server (see `Behaviour`), stopped on leaving the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    stub = StubServer(sock.getsockname()[1])
    config = uvicorn.Config(_app(stub), log_config=None, log_level="critical", access_log=False,
                            timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "the stub model server did not start"
        yield stub
    finally:
        server.should_exit = True
        thread.join(10)
