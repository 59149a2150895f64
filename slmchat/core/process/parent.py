"""Models in a child process: a crash, hang or memory blow-up in llama.cpp becomes a typed error.

One mechanism for every model: `ModelProcess` starts a `spawn`ed child (works in a PyInstaller
bundle when the entry point calls `multiprocessing.freeze_support()`) that builds one runner
from a picklable `RunnerSpec` — the chat `Engine` (process/engine_client.py), or a task runner
(process/task_client.py) — and serves its methods over a pipe (process/child.py): streamed, pieces as
they come, or as one call. The parent never waits on the child without a deadline: a load over
budget, a request silent for too long, a Stop that is not answered, or memory over the cap gets
the child killed, and the caller gets EngineCrashed / EngineHung / NotEnoughMemory.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import re
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Self

import psutil

from slmchat.core.errors import EngineCrashed, EngineHung, NotEnoughMemory, SlmchatError
from slmchat.core.plaintext import plain_text
from slmchat.core.process.child import RunnerSpec, child_main
from slmchat.paths import Paths

log = logging.getLogger(__name__)

_SPAWN = multiprocessing.get_context("spawn")
_POLL_S = 0.05
_MEMORY_CHECK_S = 0.25
_LOG_TAIL_LINES = 30
_LOGS_KEPT = 20
request_ids = itertools.count()  # one sequence per app process: the child drops stale ids
# llama.cpp's CPU threads meet at an OpenMP barrier after every step of a token. libgomp's default
# has a waiting thread spin 300,000 times before it sleeps: when another program takes a core,
# the waiting threads burn theirs spinning for a partner that is not running. Measured with
# llama-bench, 2 threads on the shared 2-core development machine under heavy load: 1-2 tokens/s
# at the default, 2.5-4 at 10,000 spins, 16 at 1,000, 19 passive (benchmarks/decode_under_load.py
# measures the app). 1,000 spins (microseconds) still cover a partner that is only a step
# behind. libgomp reads these once, when it loads in the model process, so they go into the
# environment the child starts with; a value the user set wins.
OPENMP_ENVIRONMENT = {"GOMP_SPINCOUNT": "1000"}
_environment_lock = threading.Lock()


def _with_openmp_environment() -> None:
    """Put OPENMP_ENVIRONMENT into this process's environment, which spawned children inherit.

    Set once and kept (never removed again), so no thread sees the environment change twice;
    the window's process never loads libgomp, so only the model processes feel it."""
    with _environment_lock:
        for name, value in OPENMP_ENVIRONMENT.items():
            os.environ.setdefault(name, value)


@dataclass(frozen=True)
class ProcessLimits:
    """Time and memory budgets for the engine process."""

    start_timeout_s: float = 60.0  # rendering the chat template and tokenizing, before prefill
    prefill_timeout_s: float = 600.0  # evaluating the prompt (long prompts on slow CPUs)
    silence_timeout_s: float = 60.0  # longest gap between two pieces while decoding
    cancel_grace_s: float = 2.0  # a Stop not answered in this time kills the child
    memory_cap_bytes: int | None = None  # None: derived from the model by the child
    call_timeout_s: float = 600.0  # one call (embed many texts, translate, save a KV state)
    save_timeout_s: float = 30.0  # writing the conversation's KV state when closing


# --- the parent ------------------------------------------------------------------------------
_PROBLEM_MARKERS = ("error", "abort", "assert", "failed", "terminate", "exception", "invalid",
                    "unsupported", "fatal")
# ggml_abort's format: "<source file>:<line>: <message>"; the build path means nothing to users.
_SOURCE_PREFIX = re.compile(r"^\S+\.(?:c|cc|cpp|h|hpp):\d+: ")


def _reason(log_lines: Sequence[str]) -> str:
    """The last line of llama.cpp's log that names a problem, for the user's message."""
    for line in reversed(log_lines):
        if any(marker in line.lower() for marker in _PROBLEM_MARKERS):
            return f"llama.cpp reported: {_SOURCE_PREFIX.sub('', line.strip())}"
    return "llama.cpp logged no error before it stopped."


class ChildGone(Exception):
    """The child died or was killed; `error` says why, for the user."""

    def __init__(self, error: SlmchatError, by_signal: bool) -> None:
        super().__init__(str(error))
        self.error = error
        self.by_signal = by_signal


class ModelProcess:
    """One runner in its own process: start, watch (memory, deadlines, death), call, close.

    Blocks until the runner is built (or fails with its typed error, EngineHung when the load
    exceeds `spec.load_timeout_s`, EngineCrashed when llama.cpp kills the process). One caller
    at a time: a new request abandons an unfinished streamed one.
    """

    def __init__(self, spec: RunnerSpec, *, paths: Paths | None = None,
                 limits: ProcessLimits | None = None) -> None:
        self._paths = paths or Paths.default()
        self._limits = limits or ProcessLimits()
        self._cancel: threading.Event | None = None
        self._closing = False
        self._process: Any = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()  # a Stop or a notice may come from another thread
        self._launch(spec)

    # --- process life ---------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The model process's id (None once it has ended)."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    @property
    def alive(self) -> bool:
        return self.pid is not None

    @property
    def paths(self) -> Paths:
        """The app's folders this process writes to (its log, the conversations' KV states)."""
        return self._paths

    def _launch(self, spec: RunnerSpec) -> None:
        self.log_path = self._new_log_path(spec.label)
        parent_end, child_end = _SPAWN.Pipe()
        _with_openmp_environment()
        process = _SPAWN.Process(target=child_main, args=(child_end, spec, str(self.log_path)),
                                 name="slmchat-model", daemon=True)
        process.start()
        child_end.close()
        self._process, self._conn, self._spec = process, parent_end, spec
        self._watched = psutil.Process(process.pid)
        self._next_memory_check = 0.0
        self._memory_cap = self._limits.memory_cap_bytes or int(psutil.virtual_memory().total * 0.9)
        deadline = time.monotonic() + spec.load_timeout_s
        try:
            while (message := self._receive(deadline, "load")) is None:
                pass
        except ChildGone as gone:
            raise gone.error from None
        except BaseException:  # Ctrl+C while loading: leave no process behind
            self._kill()
            raise
        kind, _, body = message
        if kind == "error":
            self._kill()
            raise body
        self.described, cap = body
        self._memory_cap = self._limits.memory_cap_bytes or cap

    def _new_log_path(self, label: str) -> Path:
        folder = self._paths.logs / "engine"
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("*.log"), key=lambda p: p.stat().st_mtime)
        for stale in old[: max(0, len(old) - _LOGS_KEPT + 1)]:
            stale.unlink(missing_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return folder / f"{stamp}-{os.getpid()}-{next(request_ids)}-{label[:40]}.log"

    def _tell(self, message: tuple) -> None:
        """Send a control message; a child that is already gone needs none."""
        conn = self._conn
        if conn is not None and self.alive:
            try:
                with self._send_lock:
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

    def _death(self, phase: str) -> ChildGone:
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
        return ChildGone(error, by_signal)

    def _check_memory(self) -> None:
        try:
            rss = self._watched.memory_info().rss
        except psutil.Error:  # gone: the caller finds out from the pipe
            return
        if rss > self._memory_cap:
            self._kill()
            gib = self._memory_cap / 1024**3
            raise ChildGone(NotEnoughMemory(
                f"The model needed more memory than its limit of {gib:.1f} GB and was stopped "
                "before the computer ran out. Choose a smaller model or a shorter context."),
                by_signal=False)

    def _receive(self, deadline: float, phase: str) -> tuple | None:
        """One message, or None after a short wait; raises ChildGone when the child is gone."""
        conn = self._conn
        if conn is None:
            raise ChildGone(EngineCrashed("The model is not loaded; load it again."), False)
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
                    "prefill": "reading the conversation", "decode": "writing the reply",
                    "call": "working"}[phase]
            raise ChildGone(EngineHung(
                f"The model stopped responding while {what} and was stopped. Your messages are "
                "kept; load the model again to continue.", detail="\n".join(self._log_tail())),
                by_signal=False)
        return None

    # --- requests -----------------------------------------------------------------------------
    def _send(self, request: tuple) -> None:
        conn = self._conn
        if conn is None or not self.alive:
            raise EngineCrashed("The model is not loaded; load it again.")
        with self._send_lock:
            conn.send(request)

    def call(self, method: str, *args: Any, cancel: threading.Event | None = None,
             stoppable: bool = False, timeout_s: float | None = None, **kwargs: Any) -> Any:
        """Run `runner.method(*args, **kwargs)` in the child and return its result.

        `cancel` (set from any thread, or by `cancel()`) makes a `stoppable` method's
        `should_stop` true; a child that has not answered `cancel_grace_s` later (any call that
        is not stoppable) is killed, and EngineHung says so: `reload()` before the next call.
        """
        self._abandon_stream()
        request_id = next(request_ids)
        cancel = cancel or threading.Event()
        self._cancel = cancel
        asked_to_stop = cancel.is_set()
        if asked_to_stop:  # stopped before it began: the child learns it before the request
            self._tell(("cancel", request_id))
        self._send(("call", request_id, method, args, kwargs, stoppable))
        deadline = time.monotonic() + (timeout_s or self._limits.call_timeout_s)
        try:
            return self._await_answer(request_id, deadline, "call", cancel, asked_to_stop)
        finally:
            if self._cancel is cancel:
                self._cancel = None

    def _await_answer(self, request_id: int, deadline: float, phase: str,
                      cancel: threading.Event | None = None, asked_to_stop: bool = False) -> Any:
        """The child's one answer to `request_id` (skipping late messages of earlier requests);
        its typed error is raised here. A set `cancel` is passed on, and then the child has
        `cancel_grace_s` left to answer before it is killed."""
        if asked_to_stop:
            deadline = min(deadline, time.monotonic() + self._limits.cancel_grace_s)
        try:
            while True:
                if cancel is not None and cancel.is_set() and not asked_to_stop:
                    asked_to_stop = True
                    self._tell(("cancel", request_id))
                    deadline = min(deadline, time.monotonic() + self._limits.cancel_grace_s)
                message = self._receive(deadline, phase)
                if message is None or message[1] != request_id:
                    continue
                if message[0] == "failed":
                    raise message[2]
                return message[2]
        except ChildGone as gone:
            raise gone.error from None

    def notify(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Queue `runner.method(*args, **kwargs)` in the child without waiting for it; the child
        runs it after the request it is serving (failures go to the child's log)."""
        self._tell(("notify", next(request_ids), method, args, kwargs))

    def _abandon_stream(self) -> None:
        """Hook: a client with streamed replies stops an unfinished one before a new request."""

    def cancel(self) -> None:
        """Stop the current request (from any thread); the child is killed if it does not obey."""
        event = self._cancel
        if event is not None:
            event.set()

    def reload(self) -> None:
        """Start a fresh process after a crash (same spec)."""
        self.close()
        self._closing = False
        self._launch(self._spec)

    def close(self) -> None:
        """End the process: politely (the runner closes itself), then by force after a grace."""
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
