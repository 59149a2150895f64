"""The model that answers right now: loading it in its own process, off the GUI thread.

Never two chat models in memory at once, and never a pipe closed under a reader: the engine a
reply is streaming from is *lent* to the generation worker, and a replaced engine is closed
only once it has been given back. Closes and loads run one at a time on the thread pool, in
the order asked (close the old, then open the new), so switching models while a reply streams
costs a stopped reply, never a crash or a second model's memory. The GUI thread only hears
`loading`, `loaded` and `failed`. A load that was overtaken by another (the user switched
again) is closed as soon as it finishes and never announced. A model on a server the user added
is "loaded" the same way: its `RemoteClient` asks the server for it, and is lent like an engine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from slmchat.core.generation import EngineConfig, ModelInfo
from slmchat.gui.workers import run_task
from slmchat.paths import Paths

if TYPE_CHECKING:
    from slmchat.core.process.remote_client import RemoteModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRequest:
    model_id: str
    name: str  # as the switcher shows it, and stored with each reply ("… — on 192.168.1.20")
    config: EngineConfig | RemoteModel  # a model file here, or a model on a server the user added


def _open_engine(config: EngineConfig | RemoteModel, paths: Paths) -> Any:
    # Imported here, on a worker thread: the GUI process never needs them to start.
    if not isinstance(config, EngineConfig):
        from slmchat.core.process.remote_client import RemoteClient

        return RemoteClient(config, paths=paths)
    from slmchat.core.process.engine_client import EngineClient
    from slmchat.core.serve.turns import TakingTurns

    # Other apps may use the same engine through the API (gui/api_server.py): replies take turns.
    return TakingTurns(EngineClient(config, paths=paths))


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
        self._fallback: LoadRequest | None = None  # what worked before `request`, if it fails
        self._generation = 0  # counts loads (and the final close): a finished open is kept only if current
        self._pending: tuple[int, LoadRequest] | None = None  # a load waiting for its turn
        self._opening = False
        self._retired: list[Any] = []  # replaced engines, closed in order once not lent
        self._lent: Any = None  # the engine a reply is streaming from, on the generation worker
        self._working = False  # a close or an open runs on the thread pool

    @property
    def is_loading(self) -> bool:
        return self._pending is not None or self._opening

    def load(self, request: LoadRequest) -> None:
        """Load `request`'s model, replacing the current one (closed first, in the background)."""
        self._generation += 1
        self._fallback = self.request if self.engine is not None else None
        self.request = request
        self._retire()
        self._pending = (self._generation, request)
        self.loading.emit(request.name)
        self._advance()

    def reload(self) -> None:
        """Start the same model again (after its process crashed or hung)."""
        if self.request is not None:
            self.load(self.request)

    def forget_engine(self, engine: Any) -> None:
        """`engine`'s process is gone (crashed, hung and ended): drop it if it is still the
        current one; the next send reloads."""
        if engine is not None and engine is self.engine:
            self._retire()
            self._advance()

    def lend(self) -> Any:
        """The current engine, for a reply about to stream on the generation worker; it is not
        closed (even when replaced) until `give_back`."""
        self._lent = self.engine
        return self.engine

    def give_back(self) -> None:
        """The generation worker is done with the lent engine's pipe: it may be closed now."""
        self._lent = None
        self._advance()

    def close(self) -> None:
        """At exit: end the engine processes now (blocking briefly is fine then); the
        generation worker has stopped, so nothing reads their pipes any more."""
        self._generation += 1
        self._pending = None
        self._retire()
        retired, self._retired, self._lent = self._retired, [], None
        for engine in retired:
            _close_quietly(engine)

    # --- one close or open at a time -----------------------------------------------------------
    def _retire(self) -> None:
        if self.engine is not None:
            self._retired.append(self.engine)
        self.engine, self.info, self.model_id = None, None, None

    def _advance(self) -> None:
        """Start the next step: close a replaced engine no reply reads from, or, once every
        replaced engine is closed, open the model asked for last."""
        if self._working:
            return
        closable = next((engine for engine in self._retired if engine is not self._lent), None)
        if closable is not None:
            self._retired.remove(closable)
            self._working = True
            run_task(lambda: _close_quietly(closable), self._step_done, self._step_done)
        elif not self._retired and self._pending is not None:
            (generation, request), self._pending = self._pending, None
            self._working = self._opening = True
            run_task(lambda: _open_engine(request.config, self.paths),
                     lambda engine: self._opened(generation, request, engine),
                     lambda error: self._open_failed(generation, request, error))

    def _step_done(self, _result: object) -> None:
        self._working = False
        self._advance()

    def _opened(self, generation: int, request: LoadRequest, engine: Any) -> None:
        self._working = self._opening = False
        if generation == self._generation:
            self.engine, self.info, self.model_id = engine, engine.info, request.model_id
            self.loaded.emit(engine.info)
        else:  # overtaken by another load (or the app is closing)
            self._retired.append(engine)
        self._advance()

    def _open_failed(self, generation: int, request: LoadRequest, error: Exception) -> None:
        self._working = self._opening = False
        if generation == self._generation:
            self.request = self._fallback  # the next message starts the model that worked
            self.failed.emit(request.model_id, error)
        self._advance()
