"""The model that answers right now: loading it in its own process, off the GUI thread.

One `EngineClient` (the engine in a child process) at a time. Loading takes seconds and
closing a process can take a moment, so both run on the thread pool; the GUI thread only hears
`loading`, `loaded` and `failed`. A load that was overtaken by another (the user switched again)
is closed as soon as it finishes and never announced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal

from slmchat.core.generation import EngineConfig, ModelInfo
from slmchat.gui.workers import run_task
from slmchat.paths import Paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRequest:
    model_id: str
    name: str
    config: EngineConfig


def _open_engine(config: EngineConfig, paths: Paths) -> Any:
    # Imported here, on a worker thread: the GUI process never needs it to start.
    from slmchat.core.process.engine_client import EngineClient

    return EngineClient(config, paths=paths)


def _close_quietly(engine: Any) -> None:
    try:
        engine.close()
    except Exception:  # closing a dead engine process must never bother the user
        log.warning("closing the engine failed", exc_info=True)


class ModelSession(QObject):
    """Owns the loaded engine client; `engine` is None while nothing usable is loaded."""

    loading = Signal(str)  # the model's display name
    loaded = Signal(object)  # ModelInfo
    failed = Signal(str, object)  # model id, the exception

    def __init__(self, paths: Paths, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.engine: Any = None
        self.info: ModelInfo | None = None
        self.model_id: str | None = None
        self.request: LoadRequest | None = None  # the latest load asked for
        self._generation = 0
        self._loading = False

    @property
    def is_loading(self) -> bool:
        return self._loading

    def load(self, request: LoadRequest) -> None:
        """Load `request`'s model, replacing the current one (closed in the background)."""
        self._generation += 1
        generation = self._generation
        previous = self.request if self.engine is not None else None
        self.request = request
        self._loading = True
        old, self.engine, self.info, self.model_id = self.engine, None, None, None
        if old is not None:
            run_task(lambda: _close_quietly(old), lambda _r: None, lambda _e: None)
        self.loading.emit(request.name)

        def done(engine: Any) -> None:
            if generation != self._generation:
                run_task(lambda: _close_quietly(engine), lambda _r: None, lambda _e: None)
                return
            self._loading = False
            self.engine, self.info, self.model_id = engine, engine.info, request.model_id
            self.loaded.emit(engine.info)

        def failed(error: Exception) -> None:
            if generation == self._generation:
                self._loading = False
                self.request = previous  # the next message starts the model that worked
                self.failed.emit(request.model_id, error)

        run_task(lambda: _open_engine(request.config, self.paths), done, failed)

    def reload(self) -> None:
        """Start the same model again (after its process crashed or hung)."""
        if self.request is not None:
            self.load(self.request)

    def forget_engine(self) -> None:
        """The engine process is gone (crashed, hung and ended): drop it; the next send reloads."""
        engine, self.engine, self.info = self.engine, None, None
        if engine is not None:
            run_task(lambda: _close_quietly(engine), lambda _r: None, lambda _e: None)

    def close(self) -> None:
        """At exit: end the engine process now (blocking briefly is fine then)."""
        self._generation += 1
        self._loading = False
        if self.engine is not None:
            _close_quietly(self.engine)
            self.engine = None
