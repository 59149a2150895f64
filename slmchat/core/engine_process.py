"""The engine in a child process: a crash, hang or memory blow-up in llama.cpp becomes a typed error.

`EngineClient` has the engine's interface (info, stream_chat, complete, cancel, close) and
runs one `Engine` per loaded model in a `spawn`ed child (works in a PyInstaller bundle when the
entry point calls `multiprocessing.freeze_support()`). Pieces cross the pipe as they come. The
parent never waits on the child without a deadline: a load over budget, a reply silent for too
long (outside prompt evaluation), a Stop that is not answered, or memory over the cap gets the
child killed, and the reply keeps its text as INTERRUPTED.
"""

from __future__ import annotations

import collections
import ctypes
import dataclasses
import itertools
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import psutil

from slmchat.core.errors import (
    EngineCrashed,
    EngineError,
    EngineHung,
    NotEnoughMemory,
    SlmchatError,
)
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    Generation,
    GenerationSettings,
    GenerationStats,
)
from slmchat.core.plaintext import plain_text
from slmchat.paths import Paths

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_POLL_S = 0.05
_MEMORY_CHECK_S = 0.25
_GGML_DEBUG, _GGML_WARN, _GGML_ERROR, _GGML_CONT = 1, 3, 4, 5  # enum ggml_log_level
_LOG_TAIL_LINES = 30
_LOGS_KEPT = 20
_counter = itertools.count()


@dataclass(frozen=True)
class ProcessLimits:
    """Time and memory budgets for the engine process."""

    start_timeout_s: float = 60.0  # rendering the chat template and tokenizing, before prefill
    prefill_timeout_s: float = 600.0  # evaluating the prompt (long prompts on slow CPUs)
    silence_timeout_s: float = 60.0  # longest gap between two pieces while decoding
    cancel_grace_s: float = 2.0  # a Stop not answered in this time kills the child
    memory_cap_bytes: int | None = None  # None: derived from the model by the child


# --- the child ------------------------------------------------------------------------------
class _LlamaLog:
    """Receives llama.cpp's log (llama_log_set) into the engine log file; keeps recent warnings."""

    def __init__(self, fd: int) -> None:
        import llama_cpp

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


def _child_main(conn: Connection, config: EngineConfig, log_path: str) -> None:
    """Entry point of the engine process: load, then serve requests until told to close."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is for the parent to handle
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)  # ggml's aborts print their reason on stderr, not through the log callback
    os.dup2(fd, 2)
    os.environ["GGML_NO_BACKTRACE"] = "1"  # no gdb attach on abort: die at once
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    llama_log = _LlamaLog(fd)
    from slmchat.core import backend
    from slmchat.core.engine import Engine

    try:
        engine = Engine(config)
    except SlmchatError as error:
        conn.send(("error", None, _with_llama_reason(error, llama_log.problems)))
        return
    except Exception:
        log.exception("engine failed to load")
        conn.send(("error", None, EngineError("The model could not be loaded.", detail=traceback.format_exc())))
        return
    cap = backend.memory_cap(engine.facts, engine.resolved, psutil.virtual_memory().total)
    conn.send(("ready", None, (engine.info, cap)))
    _Server(engine, conn).serve()


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
    """The child's request loop; a reader thread receives Stop while a reply is being produced."""

    def __init__(self, engine: Any, conn: Connection) -> None:
        self._engine = engine
        self._conn = conn
        self._requests: queue.Queue[tuple | None] = queue.Queue()
        self._current: tuple[int, threading.Event] | None = None
        threading.Thread(target=self._read, name="engine-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):  # the parent is gone: stop
                message = ("close",)
            if message[0] == "cancel":
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
            kind, request_id, payload, settings = request
            cancel = threading.Event()
            self._current = (request_id, cancel)
            try:
                self._answer(kind, request_id, payload, settings, cancel)
            finally:
                self._current = None
        self._engine.close()

    def _answer(self, kind: str, request_id: int, payload: Any, settings: GenerationSettings,
                cancel: threading.Event) -> None:
        send = self._conn.send
        try:
            if kind == "chat":
                generation = self._engine.stream_chat(payload, settings, cancel)
            else:
                generation = self._engine.complete(payload, settings, cancel)
            send(("started", request_id, generation.stats))
            for piece in generation:
                send(("piece", request_id, piece))
            send(("end", request_id, generation.stats))
        except SlmchatError as error:
            send(("failed", request_id, error))
        except Exception:
            log.exception("engine failed while generating")
            send(("failed", request_id, EngineError(
                "Something went wrong in the model process.", detail=traceback.format_exc())))


# --- the parent ------------------------------------------------------------------------------
_PROBLEM_MARKERS = ("error", "abort", "assert", "failed", "terminate", "exception", "invalid")


def _reason(log_lines: Sequence[str]) -> str:
    """The last line of llama.cpp's log that names a problem, for the user's message."""
    for line in reversed(log_lines):
        if any(marker in line.lower() for marker in _PROBLEM_MARKERS):
            return f"llama.cpp reported: {line.strip()}"
    return "llama.cpp logged no error before it stopped."


class _ChildGone(Exception):
    """The child died or was killed; `error` says why, for the user."""

    def __init__(self, error: SlmchatError, by_signal: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.by_signal = by_signal


class EngineClient:
    """A model loaded in its own process, with the interface of `Engine`.

    Blocks until the model is loaded (or fails with the engine's typed error, EngineHung when
    the load exceeds `config.load_timeout_s`, EngineCrashed when llama.cpp kills the process).
    """

    def __init__(self, config: EngineConfig, *, paths: Paths | None = None,
                 limits: ProcessLimits | None = None) -> None:
        self.config = config
        self._paths = paths or Paths.default()
        self._limits = limits or ProcessLimits()
        self._cancel: threading.Event | None = None
        self._active: tuple[int, Generation] | None = None
        self._closing = False
        self._process: Any = None
        self._conn: Connection | None = None
        self._start(config)

    # --- process life ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The engine process's id (None once it has ended)."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def _start(self, config: EngineConfig) -> None:
        self.log_path = self._new_log_path(config)
        parent_end, child_end = _SPAWN.Pipe()
        process = _SPAWN.Process(target=_child_main, args=(child_end, config, str(self.log_path)),
                                 name="slmchat-engine", daemon=True)
        process.start()
        child_end.close()
        self._process, self._conn, self._started_config = process, parent_end, config
        self._watched = psutil.Process(process.pid)
        self._next_memory_check = 0.0
        self._memory_cap = self._limits.memory_cap_bytes or int(psutil.virtual_memory().total * 0.9)
        self._served = False  # no piece yet from this process: a crash now may be the AMX bug
        deadline = time.monotonic() + config.load_timeout_s
        try:
            while (message := self._receive(deadline, "load")) is None:
                pass
        except _ChildGone as gone:
            raise gone.error from None
        except BaseException:  # Ctrl+C while loading: leave no process behind
            self._kill()
            raise
        kind, _, body = message
        if kind == "error":
            self._kill()
            raise body
        self.info, cap = body
        self._memory_cap = self._limits.memory_cap_bytes or cap
        log.info("engine process %s loaded %s (%s, %d threads, extra bufts %s)", process.pid,
                 self.info.name, self.info.backend, self.info.n_threads,
                 self.info.extra.get("use_extra_bufts"))

    def _new_log_path(self, config: EngineConfig) -> Path:
        folder = self._paths.logs / "engine"
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - _LOGS_KEPT + 1)]:
            stale.unlink(missing_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return folder / f"{stamp}-{os.getpid()}-{next(_counter)}-{Path(config.model_path).stem[:40]}.log"

    def _tell(self, message: tuple) -> None:
        """Send a control message; a child that is already gone needs none."""
        conn = self._conn
        if conn is not None and self.alive:
            try:
                conn.send(message)
            except (OSError, ValueError):
                pass

    def _kill(self) -> None:
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join(5)

    def _log_tail(self) -> list[str]:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(max(0, handle.seek(0, os.SEEK_END) - 16384))
                lines = handle.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return []
        return [line for line in lines if line.strip()][-_LOG_TAIL_LINES:]

    def _death(self, phase: str) -> _ChildGone:
        """Why the child is gone, as a user-facing error carrying llama.cpp's last log lines."""
        process = self._process
        process.join(2)
        code = process.exitcode
        tail = self._log_tail()
        by_signal = code is not None and code < 0
        if by_signal:
            try:
                how = signal.Signals(-code).name
            except ValueError:
                how = f"signal {-code}"
        else:
            how = f"exit code {code}"
        last = plain_text(_reason(tail), 200)
        where = "while loading the model" if phase == "load" else "while answering"
        error = EngineCrashed(
            f"The model stopped unexpectedly {where} ({how}). Your messages are kept; load the "
            f"model again to continue. {last}",
            detail="\n".join(tail),
        )
        return _ChildGone(error, by_signal)

    def _check_memory(self) -> None:
        try:
            rss = self._watched.memory_info().rss
        except psutil.Error:  # gone: the caller finds out from the pipe
            return
        if rss > self._memory_cap:
            self._kill()
            gib = self._memory_cap / 1024**3
            raise _ChildGone(NotEnoughMemory(
                f"The model needed more memory than its limit of {gib:.1f} GB and was stopped "
                "before the computer ran out. Choose a smaller model or a shorter context."),
                by_signal=False)

    def _receive(self, deadline: float, phase: str) -> tuple | None:
        """One message, or None after a short wait; raises _ChildGone when the child is gone."""
        conn = self._conn
        if conn is None:
            raise _ChildGone(EngineCrashed("The model is not loaded; load it again."), False)
        now = time.monotonic()
        if now >= self._next_memory_check:  # by the clock: a fast stream must not skip it
            self._next_memory_check = now + _MEMORY_CHECK_S
            self._check_memory()
        try:
            if conn.poll(_POLL_S):
                return conn.recv()
        except (EOFError, OSError):
            raise self._death(phase) from None
        if not self._process.is_alive():
            raise self._death(phase)
        if time.monotonic() > deadline:
            self._kill()
            what = {"load": "loading the model", "start": "preparing the prompt",
                    "prefill": "reading the conversation", "decode": "writing the reply"}[phase]
            raise _ChildGone(EngineHung(
                f"The model stopped responding while {what} and was stopped. Your messages are "
                "kept; load the model again to continue.", detail="\n".join(self._log_tail())),
                by_signal=False)
        return None

    # --- generations --------------------------------------------------------------------------
    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None) -> Generation:
        """As `Engine.stream_chat`, across the process boundary."""
        return self._request("chat", [ChatMessage(m.role, m.content) for m in messages], settings, cancel)

    def complete(self, text: str, settings: GenerationSettings | None = None,
                 cancel: threading.Event | None = None) -> Generation:
        """As `Engine.complete`, across the process boundary."""
        return self._request("complete", text, settings, cancel)

    def cancel(self) -> None:
        """Stop the current reply (from any thread); the child is killed if it does not obey."""
        event = self._cancel
        if event is not None:
            event.set()

    def _request(self, kind: str, payload: Any, settings: GenerationSettings | None,
                 cancel: threading.Event | None) -> Generation:
        if self._active is not None and not self._active[1].finished:
            self._tell(("cancel", self._active[0]))  # abandoned: its late pieces are dropped
        request = (kind, next(_counter), payload, settings or GenerationSettings())
        cancel = cancel or threading.Event()
        self._cancel = cancel
        stats = self._send_and_start(request)
        generation = Generation(self._pieces(request, cancel, stats), stats)
        self._active = (request[1], generation)
        return generation

    def _send_and_start(self, request: tuple) -> GenerationStats:
        """Send a request and wait until the child has rendered the prompt (or refused it)."""
        conn = self._conn
        if conn is None or not self.alive:
            raise EngineCrashed("The model is not loaded; load it again.")
        conn.send(request)
        deadline = time.monotonic() + self._limits.start_timeout_s
        try:
            while True:
                message = self._receive(deadline, "start")
                if message is None or message[1] != request[1]:
                    continue
                if message[0] == "failed":
                    raise message[2]
                return message[2]
        except _ChildGone as gone:
            raise gone.error from None

    def _pieces(self, request: tuple, cancel: threading.Event, stats: GenerationStats) -> Iterator[str]:
        request_id = request[1]
        deadline = time.monotonic() + self._limits.prefill_timeout_s
        phase = "prefill"
        asked_to_stop_at: float | None = None
        try:
            while not self._closing:
                if cancel.is_set() and asked_to_stop_at is None:
                    asked_to_stop_at = time.monotonic()
                    self._tell(("cancel", request_id))
                    deadline = min(deadline, asked_to_stop_at + self._limits.cancel_grace_s)
                try:
                    message = self._receive(deadline, phase)
                except _ChildGone as gone:
                    if asked_to_stop_at is None and self._retry_without_extra_bufts(gone, request):
                        deadline = time.monotonic() + self._limits.prefill_timeout_s
                        continue
                    stats.finish_reason = FinishReason.INTERRUPTED
                    stats.error = str(gone.error)
                    if asked_to_stop_at is not None or self._closing:
                        return  # the user stopped it, or the app is closing: nothing to report
                    raise gone.error from None
                if message is None or message[1] != request_id:
                    continue  # nothing yet, or a late message of an earlier reply
                kind, _, body = message
                if kind == "piece":
                    self._served = True
                    phase = "decode"
                    if asked_to_stop_at is None:
                        deadline = time.monotonic() + self._limits.silence_timeout_s
                    yield body
                elif kind == "end":
                    for field in dataclasses.fields(GenerationStats):
                        setattr(stats, field.name, getattr(body, field.name))
                    return
                elif kind == "failed":
                    stats.finish_reason, stats.error = FinishReason.ERROR, str(body)
                    raise body
            stats.finish_reason = FinishReason.INTERRUPTED  # closed while replying
        except GeneratorExit:  # the caller stopped iterating: stop the child's reply too
            cancel.set()
            self._drain(request_id)
            stats.finish_reason = FinishReason.STOPPED
            raise
        finally:
            if self._cancel is cancel:
                self._cancel = None

    def _drain(self, request_id: int) -> None:
        """After a Stop, wait (briefly) for the child to finish the reply, else kill it."""
        if not self.alive:
            return
        self._tell(("cancel", request_id))
        deadline = time.monotonic() + self._limits.cancel_grace_s
        try:
            while True:
                message = self._receive(deadline, "decode")
                if message is not None and message[1] == request_id and message[0] in ("end", "failed"):
                    return
        except _ChildGone:
            return

    def _retry_without_extra_bufts(self, gone: _ChildGone, request: tuple) -> bool:
        """llama.cpp issue 20824: on AMX-like crashes in the first decode, reload once without
        extra buffer types and replay the request. Only when the setting is automatic."""
        config = self._started_config
        if (not gone.by_signal or self._served or config.use_extra_bufts is not None
                or self.info.extra.get("use_extra_bufts") != "on"):
            return False
        log.warning("engine crashed in its first reply with extra buffer types on; retrying without")
        try:
            self._start(dataclasses.replace(config, use_extra_bufts=False))
            self._send_and_start(request)
        except SlmchatError:
            log.exception("retry without extra buffer types failed")
            return False
        return True

    def reload(self) -> None:
        """Start a fresh engine process after a crash (same settings)."""
        self.close()
        self._closing = False
        self._start(self.config)

    def close(self) -> None:
        """End the engine process: politely, then by force after a short grace."""
        self._closing = True
        cancel = self._cancel
        if cancel is not None:
            cancel.set()
        process, conn = self._process, self._conn
        if process is None:
            return
        self._tell(("close",))
        process.join(self._limits.cancel_grace_s)
        self._kill()
        if conn is not None:
            conn.close()
        self._conn = None

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
