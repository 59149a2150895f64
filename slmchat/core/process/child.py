"""The model process's side: build one runner from its spec, then serve its methods over a pipe.

Runs in the `spawn`ed child that process/parent.py starts. llama.cpp's log goes to the child's log
file (its last lines explain a crash to the parent); ggml's aborts print on stderr, which is the
same file.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import importlib
import logging
import os
import queue
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psutil

from slmchat.core.errors import EngineError, SlmchatError
from slmchat.core.plaintext import plain_text

log = logging.getLogger(__name__)

_GGML_DEBUG, _GGML_WARN, _GGML_ERROR, _GGML_CONT = 1, 3, 4, 5  # enum ggml_log_level

# Attributes of a runner the parent gets once it is loaded (those it has).
_DESCRIBED = ("info", "dim", "labels", "n_ctx", "model_name")


@dataclass(frozen=True)
class RunnerSpec:
    """How the child builds its runner: `factory` is "module:Class", called with args/kwargs.

    Picklable, so it crosses to a spawned child; the runner must have `gguf` (its GGUFInfo)
    and `n_ctx`, which size the memory cap.
    """

    factory: str
    args: tuple = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    label: str = "model"  # for the log file's name
    load_timeout_s: float = 120.0

    def build(self) -> Any:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)(*self.args, **self.kwargs)


class _LlamaLog:
    """Receives llama.cpp's log (llama_log_set) into the engine log file; keeps recent warnings."""

    def __init__(self, fd: int) -> None:
        from slmchat.core.llama_api import llama_cpp

        self._fd = fd
        self.problems: collections.deque[tuple[int, str]] = collections.deque(maxlen=10)
        self._level = 0
        self._callback = llama_cpp.llama_log_callback(self._write)  # referenced: C holds it
        llama_cpp.llama_log_set(self._callback, ctypes.c_void_p(0))

    def _write(self, level: int, text: bytes | None, _user_data: Any) -> None:
        if not text:
            return
        if level != _GGML_CONT:  # a continuation keeps the previous message's level
            self._level = level
        if self._level == _GGML_DEBUG:
            return
        os.write(self._fd, text)
        if self._level in (_GGML_WARN, _GGML_ERROR) and text.strip():
            self.problems.append((self._level, text.decode("utf-8", "replace").strip()))


def child_main(conn: Connection, spec: RunnerSpec, log_path: str) -> None:
    """Entry point of the model process: build the runner, then serve requests until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the parent to handle
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)  # ggml's aborts print their reason on stderr, not through the log callback
    os.dup2(fd, 2)
    os.environ["GGML_NO_BACKTRACE"] = "1"  # no gdb attach on abort: die at once
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    llama_log = _LlamaLog(fd)
    from slmchat.core.engine import backend
    try:
        runner = spec.build()
    except SlmchatError as error:
        conn.send(("error", None, _with_llama_reason(error, llama_log.problems)))
        return
    except Exception:
        log.exception("model failed to load")
        conn.send(("error", None, EngineError("The model could not be loaded.", detail=traceback.format_exc())))
        return
    cap = backend.memory_cap(runner.gguf, runner.n_ctx, psutil.virtual_memory().total)
    described = {name: getattr(runner, name) for name in _DESCRIBED if hasattr(runner, name)}
    conn.send(("ready", None, (described, cap)))
    _Server(runner, conn).serve()


def _with_llama_reason(error: SlmchatError, problems: Sequence[tuple[int, str]]) -> SlmchatError:
    """The same error, its message ending with what llama.cpp itself logged as the reason.

    The first error line names the cause ("tensor 'x' not found"); the later ones only say
    that loading failed.
    """
    if not problems:
        return error
    errors = [text for level, text in problems if level == _GGML_ERROR]
    first = errors[0] if errors else problems[-1][1]
    reason = plain_text(first.split("error loading model: ", 1)[-1], 200)
    return type(error)(f"{error} llama.cpp says: {reason}",
                       detail="\n".join(text for _, text in problems))


class _Server:
    """The child's request loop; a reader thread receives Stop while a request is being served.

    Requests: ("stream", id, method, args, kwargs) answers "started", "piece"s and "end" (the
    method returns a Generation and takes `cancel`); ("call", id, method, args, kwargs,
    stoppable) answers one "result" (a stoppable method takes `should_stop`); ("notify", id,
    method, args, kwargs) answers nothing. Failures answer "failed" with a typed error.
    """

    def __init__(self, runner: Any, conn: Connection) -> None:
        self._runner = runner
        self._conn = conn
        self._requests: queue.Queue[tuple | None] = queue.Queue()
        self._current: tuple[int, threading.Event] | None = None
        # A Stop can arrive while its request still waits in the queue: remembered until served.
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, name="model-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):  # the parent is gone: stop
                message = ("close",)
            if message[0] == "cancel":
                with self._lock:
                    self._cancelled.add(message[1])
                current = self._current
                if current is not None and current[0] == message[1]:
                    current[1].set()
            elif message[0] == "close":
                current = self._current
                if current is not None:
                    current[1].set()
                self._requests.put(None)
                return
            else:
                self._requests.put(message)

    def serve(self) -> None:
        while (request := self._requests.get()) is not None:
            cancel = threading.Event()
            self._current = (request[1], cancel)
            with self._lock:
                if request[1] in self._cancelled:
                    cancel.set()
                self._cancelled = {i for i in self._cancelled if i > request[1]}  # ids only grow
            try:
                self._answer(request, cancel)
            finally:
                self._current = None
        self._runner.close()

    def _method(self, name: str) -> Any:
        if name.startswith("_"):
            raise EngineError(f"The model process has no method {name!r}.")
        return getattr(self._runner, name)

    def _answer(self, request: tuple, cancel: threading.Event) -> None:
        kind, request_id, method, args, kwargs = request[:5]
        send = self._conn.send
        try:
            if kind == "stream":
                generation = self._method(method)(*args, cancel=cancel, **kwargs)
                send(("started", request_id, generation.stats))
                for piece in generation:
                    send(("piece", request_id, piece))
                send(("end", request_id, generation.stats))
            elif kind == "call":
                if request[5]:
                    kwargs = {**kwargs, "should_stop": cancel.is_set}
                send(("result", request_id, self._method(method)(*args, **kwargs)))
            else:
                self._method(method)(*args, **kwargs)
        except SlmchatError as error:
            if kind != "notify":
                send(("failed", request_id, error))
            else:
                log.warning("%s failed: %s", method, error)
        except Exception:
            log.exception("%s failed in the model process", method)
            if kind != "notify":
                send(("failed", request_id, EngineError(
                    "Something went wrong in the model process.", detail=traceback.format_exc())))
