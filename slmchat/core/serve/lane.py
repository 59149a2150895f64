"""One model's requests, one at a time, on a thread of its own, with a bounded queue in front.

A model process serves one caller at a time (process/parent.py), so each model gets a lane: a
thread that runs its requests in order while the server's event loop stays free. A request past
the queue's limit is refused at once (429) rather than left waiting without end. Each request
carries a cancel event: set when its client goes away, it stops the generation between two
tokens, or skips the request if it is still waiting. Pieces go to the event loop as they come
and are kept there, so a slow reader never holds the model up for the requests behind it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from slmchat.core.serve.api_error import ApiError

log = logging.getLogger(__name__)

# work(cancel, emit) runs on the lane's thread: it emits text pieces and returns its result.
Work = Callable[[threading.Event, Callable[[str], None]], Any]

_PIECE, _DONE, _FAILED = "piece", "done", "failed"


class Ticket:
    """A request in a lane, seen from the event loop: its pieces, then its result or its error."""

    def __init__(self, work: Work, loop: asyncio.AbstractEventLoop) -> None:
        self.work = work
        self.cancel = threading.Event()
        self._loop = loop
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.outcome: Any = None

    def post(self, kind: str, value: Any) -> None:
        """From the lane's thread: hand an event to the loop (dropped once the loop is gone)."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, (kind, value))
        except RuntimeError:  # the server has shut down
            pass

    async def pieces(self) -> AsyncIterator[str]:
        """The text pieces as they come; then `outcome` holds the work's result. Raises the
        work's error."""
        while True:
            kind, value = await self._events.get()
            if kind == _FAILED:
                raise value
            if kind == _DONE:
                self.outcome = value
                return
            yield value

    async def result(self) -> tuple[str, Any]:
        """Wait for the end: all the text and the work's result."""
        text = [piece async for piece in self.pieces()]
        return "".join(text), self.outcome


class Lane:
    """A thread running one model's requests in order; `max_waiting` may wait behind the running one."""

    def __init__(self, name: str, max_waiting: int) -> None:
        self.name = name
        self.max_waiting = max_waiting
        self._jobs: queue.SimpleQueue[Ticket | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._taken = 0  # running and waiting
        self._current: Ticket | None = None
        self._closing = False
        self._thread = threading.Thread(target=self._serve, name=f"slmchat-serve-{name}", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> Ticket:
        """Queue `work`; a 429 when the queue is full. Call from the event loop."""
        with self._lock:
            if self._taken > self.max_waiting:
                raise ApiError(429, f"The model {self.name} is busy: {self._taken} requests are already "
                               "running or waiting for it. Try again in a moment.",
                               type="requests", code="rate_limit_exceeded", headers={"Retry-After": "1"})
            self._taken += 1
        ticket = Ticket(work, asyncio.get_running_loop())
        self._jobs.put(ticket)
        return ticket

    def _serve(self) -> None:
        while (ticket := self._jobs.get()) is not None:
            try:
                if not (ticket.cancel.is_set() or self._closing):  # its client left while it waited
                    self._current = ticket
                    result = ticket.work(ticket.cancel, lambda piece: ticket.post(_PIECE, piece))
                    ticket.post(_DONE, result)
            except Exception as error:  # handed to the request, which answers with it
                if not isinstance(error, ApiError):
                    log.info("request to %s failed: %s", self.name, error, exc_info=True)
                ticket.post(_FAILED, error)
            finally:
                self._current = None
                with self._lock:
                    self._taken -= 1

    def close(self) -> None:
        """Stop the running request, let the waiting ones be skipped, and end the thread."""
        self._closing = True
        current = self._current
        if current is not None:
            current.cancel.set()
        self._jobs.put(None)
        self._thread.join(10)
