"""Workers that run core's blocking calls off the GUI thread and report back through signals.

Two shapes, after gpt4all and superqt:
- `GenerationWorker` lives on its own `QThread` for the app's life and streams one reply at a
  time. Its event loop is busy while it generates, so Stop is a `threading.Event` the GUI thread
  sets directly, never a queued call. Text pieces are gathered and sent at most every ~50 ms, so
  the GUI thread handles ~20 small signals a second however fast the model is. Every request
  carries an id; the controller ignores signals from a request it has moved on from.
- `run_task` runs one blocking call (load a model, search, import a file) on the thread pool and
  calls back on the GUI thread with its result or its exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from PySide6.QtCore import QObject, QRunnable, QThread, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

# 20 updates a second still reads as a smooth stream, and each update's painting is CPU taken from
# the reply: on a 2-core machine llama.cpp decodes on both cores and every step waits for a thread
# the window preempted. benchmarks/decode_ratio.py prints the cost: the app ÷ the engine process
# without a window (at 30 ms it was about 0.84 on the 2-core development machine).
BATCH_INTERVAL_S = 0.05


class Generation(Protocol):
    """What core's `stream_chat` / `complete` return: text pieces, then `.stats`."""

    stats: Any

    def __iter__(self) -> Iterator[str]: ...


class GenerationWorker(QObject):
    """Iterates a generation on its own thread, batching pieces into queued signals."""

    pieces = Signal(int, str)  # request id, text gathered since the last batch
    finished = Signal(int, object)  # request id, GenerationStats (or None if the engine gave none)
    failed = Signal(int, object)  # request id, the exception (a SlmchatError or a bug)
    _start = Signal(int, object)

    def __init__(self, batch_interval_s: float = BATCH_INTERVAL_S) -> None:
        super().__init__()
        self._interval = batch_interval_s
        self._thread = QThread()
        self._thread.setObjectName("generation")
        self.moveToThread(self._thread)
        self._start.connect(self._run)

    def start(self, request_id: int, begin: Callable[[], Generation]) -> None:
        """Run `begin()` (e.g. `lambda: engine.stream_chat(...)`) on the worker thread."""
        if not self._thread.isRunning():  # started on first use: nothing to stop if never used
            self._thread.start()
        self._start.emit(request_id, begin)

    def shut_down(self) -> None:
        self._thread.quit()
        self._thread.wait()

    @Slot(int, object)
    def _run(self, request_id: int, begin: Callable[[], Generation]) -> None:
        try:
            generation = begin()
            buffer: list[str] = []
            last_sent = 0.0  # the first piece goes out at once: time to first word matters most
            for piece in generation:
                buffer.append(piece)
                now = time.monotonic()
                if now - last_sent >= self._interval:
                    self.pieces.emit(request_id, "".join(buffer))
                    buffer.clear()
                    last_sent = now
            if buffer:
                self.pieces.emit(request_id, "".join(buffer))
            self.finished.emit(request_id, getattr(generation, "stats", None))
        except Exception as error:  # reported to the GUI thread, which decides how to show it
            log.debug("generation %s failed", request_id, exc_info=True)
            self.failed.emit(request_id, error)


class _TaskSignals(QObject):
    done = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, call: Callable[[], Any], signals: _TaskSignals) -> None:
        super().__init__()
        self._call = call
        self._signals = signals

    def run(self) -> None:
        try:
            result = self._call()
        except Exception as error:
            log.debug("background task failed", exc_info=True)
            self._signals.failed.emit(error)
        else:
            self._signals.done.emit(result)


_pending: set[_TaskSignals] = set()  # keeps each task's signal object alive until it reports


def run_task(
    call: Callable[[], Any],
    on_done: Callable[[Any], None],
    on_error: Callable[[Exception], None],
    pool: QThreadPool | None = None,
) -> None:
    """Run `call()` on the thread pool; `on_done(result)` or `on_error(exc)` run on this thread.

    Must be called from a thread with an event loop (the GUI thread): the signal object is
    created here, so its queued signals are delivered here.
    """
    signals = _TaskSignals()
    _pending.add(signals)

    def finish(callback: Callable[[Any], None], value: Any) -> None:
        _pending.discard(signals)
        callback(value)

    signals.done.connect(lambda result: finish(on_done, result))
    signals.failed.connect(lambda error: finish(on_error, error))
    (pool or QThreadPool.globalInstance()).start(_Task(call, signals))
