"""One engine process shared by the window's own chat and other apps' requests.

A model process serves one caller at a time (process/parent.py: a new request abandons an
unfinished one), so when the window also serves the API, the window's replies and the API's
take turns: a generation waits until the one before it has ended, in the order asked, and
then holds the engine until its last piece. Waiting never blocks a thread that must stay free
(the window waits on its generation worker, the API on its lane), and a Stop or a client that
went away ends the wait at once. Closing (the window switched models) stops the running
generation and waits for it, so the process is never closed under a reader.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from slmchat.core.errors import EngineCrashed
from slmchat.core.generation import FinishReason, Generation, GenerationStats

_POLL_S = 0.05  # how often a waiting generation looks at its Stop


class TakingTurns:
    """An engine client (`EngineClient`'s interface) whose generations take turns.

    `stream_chat` and `complete` wait for their turn; everything else is the engine's own.
    """

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._condition = threading.Condition()
        self._queue: list[threading.Event] = []  # the cancel events of the waiting, in order
        self._holder: threading.Event | None = None  # the cancel event of the running generation
        self._closed = False

    def __getattr__(self, name: str) -> Any:  # info, alive, forget_session, ...: the engine's own
        return getattr(self.engine, name)

    def stream_chat(self, messages: Any, settings: Any = None, cancel: threading.Event | None = None,
                    **options: Any) -> Generation:
        cancel = cancel or threading.Event()
        return self._in_turn(cancel, lambda: self.engine.stream_chat(messages, settings, cancel, **options))

    def complete(self, text: str, settings: Any = None, cancel: threading.Event | None = None) -> Generation:
        cancel = cancel or threading.Event()
        return self._in_turn(cancel, lambda: self.engine.complete(text, settings, cancel))

    def close(self) -> None:
        """Stop the running generation, let it end, then end the process."""
        with self._condition:
            self._closed = True
            if self._holder is not None:
                self._holder.set()
            self._condition.wait_for(lambda: self._holder is None, timeout=30)
            self._condition.notify_all()
        self.engine.close()

    # --- turns ----------------------------------------------------------------------------
    def _in_turn(self, cancel: threading.Event, start: Callable[[], Generation]) -> Generation:
        if not self._take_turn(cancel):
            return Generation(iter(()), GenerationStats(finish_reason=FinishReason.STOPPED))
        try:
            generation = start()
        except BaseException:
            self._end_turn()
            raise
        return Generation(self._until_done(generation), generation.stats)

    def _take_turn(self, cancel: threading.Event) -> bool:
        """Wait until this generation is first in line and the engine is free; False when it was
        stopped while it waited. Raises EngineCrashed once the engine is closed."""
        with self._condition:
            self._queue.append(cancel)
            try:
                while not (self._closed or cancel.is_set()
                           or (self._holder is None and self._queue[0] is cancel)):
                    self._condition.wait(_POLL_S)
                if self._closed:
                    raise EngineCrashed("The model was closed before it could answer (another model was "
                                        "chosen in slmchat's window). Send the request again.")
                if cancel.is_set():
                    return False
                self._holder = cancel
                return True
            finally:
                self._queue.remove(cancel)
                self._condition.notify_all()

    def _end_turn(self) -> None:
        with self._condition:
            self._holder = None
            self._condition.notify_all()

    def _until_done(self, generation: Generation) -> Iterator[str]:
        """The generation's pieces; its turn ends with its last piece (or when it is dropped)."""
        try:
            yield from generation
        finally:
            generation.close()
            self._end_turn()
