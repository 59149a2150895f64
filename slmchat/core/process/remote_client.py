"""A model on another computer: `RemoteClient` has the engine client's interface over OpenAI's HTTP API.

For a user whose computer is too small for the model they want: any OpenAI-compatible server
(llama.cpp's llama-server, Ollama, LM Studio, vLLM, another computer's `slmchat-cli serve`) lists
its models at GET /v1/models and streams replies as server-sent events from
POST /v1/chat/completions. The window lends a `RemoteClient` to its generation worker exactly as
it lends an `EngineClient`, so a reply from afar streams, stops and is stored the same way.

Requests go to the server the user added and nowhere else: no proxy from the environment, no
redirect followed, no other address tried. Every failure a user can meet becomes an
`EngineError` whose sentence names the server and says what to do. The caller's thread never
blocks on the network for longer than a poll: the HTTP exchange runs on a thread of its own, so
Stop and the time limits act at once, and ending a stream shuts its socket, which tells the
server to stop generating.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from slmchat.core.engine.kv_state import forget_everywhere
from slmchat.core.errors import ContextFull, EngineError
from slmchat.core.generation import (
    ChatMessage,
    FinishReason,
    Generation,
    GenerationSettings,
    GenerationStats,
    ModelInfo,
)
from slmchat.paths import Paths

if TYPE_CHECKING:  # httpx2 is imported where it is used: the window lists these models without it
    import httpx2

__all__ = ["ModelServer", "RemoteClient", "RemoteLimits", "RemoteModel", "list_models"]

log = logging.getLogger(__name__)

_POLL_S = 0.05
_FINISH = {"stop": FinishReason.DONE, "length": FinishReason.LENGTH, "eos": FinishReason.DONE}
_MAX_ERROR_TEXT = 300  # of a server's own error message, quoted to the user
_MAX_ANSWER_BYTES = 4 * 1024 * 1024  # a model list or an error: read no more of a server's answer


@dataclass(frozen=True)
class RemoteLimits:
    """How long to wait for a server. A big model on a busy server can take minutes to read a
    long conversation before its first word, so the start is generous; once words flow, a long
    silence means the server or the network is gone."""

    connect_s: float = 10.0  # reaching the server
    list_s: float = 20.0  # its model list
    start_s: float = 600.0  # from sending a message to the first word of the reply
    silence_s: float = 60.0  # between two pieces of a reply


@dataclass(frozen=True)
class ModelServer:
    """An OpenAI-compatible server the user added: its API's base URL (ending in /v1 unless the
    user typed another path) and the key it wants, if any."""

    url: str
    key: str = ""

    @classmethod
    def parse(cls, text: str, key: str = "") -> ModelServer:
        """The server at an address as a person types it: "192.168.1.20:11434",
        "http://host:8080", "http://host:8080/v1/" all work."""
        text = text.strip()
        if "://" not in text:
            text = "http://" + text
        parts = urlsplit(text)
        try:
            parts.port  # noqa: B018 -- raises for a port that is not a number
        except ValueError:
            parts = parts._replace(netloc="")
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise EngineError("That is not a server address. Type it as the server shows it, for example "
                              "http://192.168.1.20:8080 (add /v1 only if the server's address has it).")
        path = parts.path.rstrip("/") or "/v1"
        return cls(f"{parts.scheme}://{parts.netloc}{path}", key.strip())

    @property
    def host(self) -> str:
        """The computer the server runs on, as the user knows it ("192.168.1.20")."""
        return urlsplit(self.url).hostname or self.url

    @property
    def where(self) -> str:
        """Host and port, for messages ("192.168.1.20:11434")."""
        return urlsplit(self.url).netloc

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"} if self.key else {}


@dataclass(frozen=True)
class RemoteModel:
    """One model a server lists."""

    server: ModelServer
    name: str  # the server's id for it ("llama3:70b")

    @property
    def id(self) -> str:
        """Unique across servers and never a library model's id."""
        return f"remote:{self.server.url}#{self.name}"


# --- talking to a server ------------------------------------------------------------------------
def _client(server: ModelServer, limits: RemoteLimits, read_s: float) -> httpx2.Client:
    """A client that goes only where it is told: no proxy or credentials from the environment,
    no redirects, no connection kept for another request."""
    import httpx2

    return httpx2.Client(
        headers=server.headers(), trust_env=False, follow_redirects=False,
        timeout=httpx2.Timeout(limits.connect_s, read=read_s),
        limits=httpx2.Limits(max_keepalive_connections=0),
    )


def _refused(server: ModelServer, status: int, body: bytes) -> EngineError:
    """The error for an HTTP answer that is not a success, from its status and OpenAI error body."""
    said, code = "", ""
    try:
        error = json.loads(body).get("error")
        if isinstance(error, dict):
            said, code = str(error.get("message") or ""), str(error.get("code") or "")
        elif isinstance(error, str):
            said = error
    except (ValueError, AttributeError):
        pass
    said = said[:_MAX_ERROR_TEXT]
    quoted = f" It said: “{said}”." if said else ""
    if status in (401, 403):
        return EngineError(f"The model server at {server.where} asked for a key, or did not accept the one "
                           "given. Remove the server and add it again with the key its owner gave you.",
                           detail=said)
    if status == 404:
        return EngineError(f"The model server at {server.where} does not have that model any more, or its "
                           f"address is not quite right.{quoted} Choose another model, or add the server "
                           "again with the address it shows.", detail=said)
    if code == "context_length_exceeded":
        return ContextFull(f"The conversation is longer than the model on {server.where} can read.{quoted} "
                           "Start a new chat, or shorten the conversation.", detail=said)
    if status == 429:
        return EngineError(f"The model server at {server.where} is busy with other requests.{quoted} "
                           "Try again in a moment.", detail=said)
    if status >= 500:
        return EngineError(f"The model server at {server.where} ran into a problem (error {status}).{quoted} "
                           "Try again; if it keeps happening, its owner can look at the server's log.",
                           detail=said)
    return EngineError(f"The model server at {server.where} refused the request (error {status}).{quoted}",
                       detail=said)


def _unreachable(server: ModelServer, error: httpx2.HTTPError, limits: RemoteLimits) -> EngineError:
    import httpx2

    if isinstance(error, httpx2.ConnectTimeout):
        return EngineError(f"The model server at {server.where} did not answer within "
                           f"{limits.connect_s:g} seconds. Check that the computer is on and on this "
                           "network, and that the address is right.", detail=repr(error))
    if isinstance(error, httpx2.TimeoutException):
        return EngineError(f"The model server at {server.where} stopped answering. It may be busy; try "
                           "again in a moment.", detail=repr(error))
    return EngineError(f"Could not reach the model server at {server.where}. Check that it is running, "
                       "that the address is right and that this computer is on the same network.",
                       detail=repr(error))


def _not_openai(server: ModelServer, detail: str) -> EngineError:
    return EngineError(f"The address {server.url} answered, but not like an OpenAI-compatible model "
                       "server. Check the address: for most servers it ends in /v1.", detail=detail)


def _read_capped(server: ModelServer, response: httpx2.Response, deadline: float) -> bytes:
    """A whole answer that is not a stream, but never more than `_MAX_ANSWER_BYTES` or past
    `deadline`: a server that sends without end or a byte at a time is given up on."""
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > _MAX_ANSWER_BYTES:
            raise _not_openai(server, f"an answer of more than {_MAX_ANSWER_BYTES} bytes")
        if time.monotonic() > deadline:
            raise EngineError(f"The model server at {server.where} answers too slowly. It may be busy; "
                              "try again in a moment.")
    return bytes(body)


def list_models(server: ModelServer, limits: RemoteLimits | None = None) -> list[RemoteModel]:
    """The models `server` offers (GET /v1/models), in its order. Blocks up to the list limit."""
    import httpx2

    limits = limits or RemoteLimits()
    deadline = time.monotonic() + limits.connect_s + limits.list_s
    try:
        with _client(server, limits, limits.list_s) as client, \
                client.stream("GET", f"{server.url}/models") as response:
            body = _read_capped(server, response, deadline)
    except httpx2.HTTPError as error:
        raise _unreachable(server, error, limits) from None
    if not response.is_success:
        raise _refused(server, response.status_code, body)
    try:
        entries = json.loads(body)["data"]
        names = [str(entry["id"]) for entry in entries]
    except (ValueError, KeyError, TypeError) as error:
        raise _not_openai(server, repr(error)) from None
    return [RemoteModel(server, name) for name in dict.fromkeys(names)]


# --- one reply's exchange, on a thread of its own -------------------------------------------------
class _Exchange:
    """POSTs one request and reads its server-sent events into a queue, on its own thread.

    The queue holds ("event", dict) for each event, then ("end", whether the server said [DONE]),
    ("dropped", the transport's error) or ("failed", an EngineError, or a bug's exception). `abort()`
    from any thread shuts the socket: a read blocked on it returns at once, and the server sees
    the client go (a close() alone would wait for that read).
    """

    def __init__(self, server: ModelServer, limits: RemoteLimits, body: dict[str, Any]) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._server, self._limits, self._body = server, limits, body
        self._socket: socket.socket | None = None
        self._aborted = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="slmchat-remote", daemon=True).start()

    def abort(self) -> None:
        with self._lock:
            self._aborted.set()
            self._shut()

    def _trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: keep the socket once connected, so `abort` can shut it."""
        if event == "connection.connect_tcp.complete":
            with self._lock:
                self._socket = info["return_value"].get_extra_info("socket")
                if self._aborted.is_set():
                    self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed

    def _run(self) -> None:
        import httpx2

        server, limits = self._server, self._limits
        try:
            with _client(server, limits, max(limits.start_s, limits.silence_s)) as client, \
                    client.stream("POST", f"{server.url}/chat/completions", json=self._body,
                                  headers={"Accept": "text/event-stream"},
                                  extensions={"trace": self._trace}) as response:
                if not response.is_success:
                    deadline = time.monotonic() + limits.silence_s
                    raise _refused(server, response.status_code, _read_capped(server, response, deadline))
                said_done = False
                for event in httpx2.EventSource(response):
                    if event.data.strip() == "[DONE]":
                        said_done = True
                        break
                    self.events.put(("event", json.loads(event.data)))
            self.events.put(("end", said_done))
        except httpx2.SSEError as error:
            self.events.put(("failed", _not_openai(server, repr(error))))
        except ValueError as error:  # an event that is not JSON
            self.events.put(("failed", _not_openai(server, repr(error))))
        except (httpx2.RemoteProtocolError, httpx2.ReadError) as error:
            self.events.put(("dropped", error))
        except httpx2.HTTPError as error:
            self.events.put(("failed", _unreachable(server, error, limits)))
        except EngineError as error:
            self.events.put(("failed", error))
        except Exception as error:  # a bug: the reply fails with it rather than waiting for a deadline
            log.exception("reading a model server's reply failed")
            self.events.put(("failed", error))


class RemoteClient:
    """A model on an OpenAI-compatible server, with the interface the window uses of `EngineClient`.

    Construction asks the server for its model list, so a server that is down, wants a key or no
    longer has the model is reported when the model is chosen, not at the first message. The
    server keeps nothing between requests: every reply sends the whole conversation.
    """

    def __init__(self, model: RemoteModel, *, paths: Paths | None = None,
                 limits: RemoteLimits | None = None) -> None:
        self.model = model
        self.server = model.server
        self._limits = limits or RemoteLimits()
        self._paths = paths or Paths.default()
        self._active: _Exchange | None = None
        if model.name not in {listed.name for listed in list_models(self.server, self._limits)}:
            raise EngineError(f"The model server at {self.server.where} no longer offers “{model.name}”. "
                              "Choose another of its models.")
        self.info = ModelInfo(
            path=Path(model.name), name=model.name, architecture="", parameter_count=0, context_length=0,
            n_ctx=0, quantization="", chat_template=None, template_source="server", is_chat=True,
            backend=self.server.host, extra={"server": self.server.url},
        )

    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None, *, session: str | None = None) -> Generation:
        """As `EngineClient.stream_chat`; `session` is not needed (the server is sent the whole chat).

        Returns at once; connecting and waiting for the first word happen while the caller
        iterates, and `cancel` (Stop) ends the reply within a poll, as STOPPED with its text.
        """
        settings = settings or GenerationSettings()
        body: dict[str, Any] = {
            "model": self.model.name, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": getattr(m.role, "value", m.role), "content": m.content} for m in messages],
            "temperature": settings.temperature, "top_p": settings.top_p, "max_tokens": settings.max_tokens,
        }
        if settings.seed is not None:
            body["seed"] = settings.seed
        if self._active is not None:
            self._active.abort()  # a new request abandons an unfinished one, as the engine client does
        exchange = self._active = _Exchange(self.server, self._limits, body)
        stats = GenerationStats()
        return Generation(self._pieces(exchange, cancel or threading.Event(), stats), stats)

    def _pieces(self, exchange: _Exchange, cancel: threading.Event, stats: GenerationStats) -> Iterator[str]:
        limits, where = self._limits, self.server.where
        started = time.monotonic()
        first_at: float | None = None
        deadline = started + limits.start_s
        pieces = 0
        ended = False  # the server gave a finish reason
        try:
            while True:
                if cancel.is_set():
                    stats.finish_reason = FinishReason.STOPPED
                    return
                if time.monotonic() > deadline:
                    if first_at is None:
                        raise EngineError(f"The model server at {where} did not start answering within "
                                          f"{limits.start_s:g} seconds. It may be busy or the model slow "
                                          "to load; try again later.")
                    self._cut_short(stats, f"The model server at {where} stopped answering for "
                                           f"{limits.silence_s:g} seconds, so the reply ends here.")
                    return
                try:
                    kind, body = exchange.events.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                if kind == "end":
                    if first_at is not None and not body and not ended:  # closed early, yet politely
                        self._cut_short(stats, f"The model server at {where} ended the reply before it "
                                               "was finished; the text so far is kept.")
                    return
                if kind == "failed":
                    if first_at is None:
                        raise body
                    self._cut_short(stats, str(body), FinishReason.ERROR)
                    return
                if kind == "dropped":
                    if first_at is None:
                        raise EngineError(f"The model server at {where} closed the connection before "
                                          "answering. Try again; if it keeps happening, its owner can look "
                                          "at the server's log.", detail=repr(body))
                    self._cut_short(stats, f"The connection to the model server at {where} broke in the "
                                           "middle of the reply; the text so far is kept.")
                    return
                failure = self._take(body, stats)
                if failure:
                    if first_at is None:
                        raise EngineError(f"The model server at {where} could not answer. It said: “{failure}”")
                    self._cut_short(stats, f"The model server at {where} stopped with an error: “{failure}”",
                                    FinishReason.ERROR)
                    return
                ended = ended or any(choice.get("finish_reason") for choice in body.get("choices") or ())
                text = _delta(body)
                if text:
                    now = time.monotonic()
                    if first_at is None:
                        first_at = now
                        stats.time_to_first_token_s = now - started
                    pieces += 1
                    deadline = now + limits.silence_s
                    yield text
                elif first_at is not None:
                    deadline = time.monotonic() + limits.silence_s
        except GeneratorExit:  # the caller stopped reading (a closed window): stop the server too
            stats.finish_reason = FinishReason.STOPPED
            raise
        finally:
            exchange.abort()
            if self._active is exchange:
                self._active = None
            stats.completion_tokens = stats.completion_tokens or pieces
            if first_at is not None and stats.completion_tokens > 1:
                elapsed = time.monotonic() - first_at
                stats.decode_tokens_per_s = (stats.completion_tokens - 1) / elapsed if elapsed > 0 else 0.0

    @staticmethod
    def _cut_short(stats: GenerationStats, why: str, reason: FinishReason = FinishReason.INTERRUPTED) -> None:
        """End a reply that has text: it is kept, marked as cut short, with why."""
        stats.finish_reason, stats.error = reason, why

    @staticmethod
    def _take(event: dict[str, Any], stats: GenerationStats) -> str:
        """Note an event's finish reason and token counts in `stats`; its error text, if it is one."""
        if not isinstance(event, dict):
            return "an answer that is not a chat completion"
        error = event.get("error")
        if error:
            return str(error.get("message") if isinstance(error, dict) else error)[:_MAX_ERROR_TEXT]
        usage = event.get("usage")
        if isinstance(usage, dict):
            stats.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            stats.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in event.get("choices") or ():
            reason = choice.get("finish_reason")
            if reason:
                stats.finish_reason = _FINISH.get(reason, FinishReason.DONE)
        return ""

    def forget_session(self, key: str) -> None:
        """A conversation was deleted for good: the server keeps nothing of it, but this computer
        may still hold the saved states of its earlier replies from a local model."""
        forget_everywhere(self._paths.kv_states, key)

    def close(self) -> None:
        """End a reply still streaming; there is no process to stop."""
        if self._active is not None:
            self._active.abort()


def _delta(event: dict[str, Any]) -> str:
    """The text an event adds to the reply ("" for the role chunk, the usage chunk and the end)."""
    for choice in event.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if isinstance(content, str):
            return content
    return ""
