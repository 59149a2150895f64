"""The window's "Let other apps on this computer use slmchat": the API served from this process,
on the model the window has loaded.

This only relays. The server (core/serve: `HostedModels`, `BackgroundServer`) runs on threads of
its own and uses the window's engine through `TakingTurns`, so a request waits behind the
window's reply and never loads a second copy of the model. Here, on the GUI thread: the
settings start, restart or stop it; the model session says which engine to serve; what the
server's threads report comes back as queued signals, and the window only shows it
(`other_app_using`) or stores it (an API chat, when the user asked to keep them).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from slmchat.core.errors import SlmchatError
from slmchat.core.generation import GenerationStats
from slmchat.core.serve.record import record_api_chat
from slmchat.core.serve.turns import TakingTurns
from slmchat.core.serve.validate import GenerationRequest
from slmchat.core.store.store import Store
from slmchat.gui.model_session import ModelSession
from slmchat.gui.notices import user_message
from slmchat.settings import Settings

log = logging.getLogger(__name__)


class ApiServer(QObject):
    """Serves the session's loaded model to other apps while the setting is on."""

    other_app_using = Signal(bool)  # an API request is being answered by the model right now
    address_changed = Signal(str)  # where other apps reach it ("http://127.0.0.1:8080/v1"), "" when off
    failed = Signal(str)  # it could not start: a sentence for the user
    chat_stored = Signal(object)  # the Conversation an API chat was stored as
    # From the server's threads (queued to the GUI thread):
    _in_use = Signal(bool)
    _gone = Signal(object)
    _answered = Signal(object, str, object)

    def __init__(self, session: ModelSession, store: Store, log_file: Path | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.store = store
        self.log_file = log_file
        self.address = ""
        self._running: tuple[int, bool, str] | None = None  # port, on the network, key
        self._models: Any = None  # HostedModels while serving
        self._server: Any = None  # BackgroundServer while serving
        self._store_chats = False
        self._in_use.connect(self.other_app_using)
        self._gone.connect(self._engine_gone)
        self._answered.connect(self._store)
        session.loaded.connect(lambda _info: self._host())
        session.loading.connect(lambda _name: self._unhost())
        session.failed.connect(lambda _model, _error: self._unhost())

    @property
    def running(self) -> bool:
        return self._server is not None

    def apply(self, settings: Settings) -> None:
        """Take the saved settings into use: start, restart (port, network or key changed) or stop."""
        self._store_chats = settings.store_api_chats
        key = settings.api_key if settings.api_on_network else ""
        wanted = (settings.api_port, settings.api_on_network, key) if settings.api_server else None
        if wanted == self._running:
            return
        self.stop(wait=wanted is not None)  # switched off: the GUI thread need not wait for the port
        if wanted is not None:
            self._start(*wanted)

    def stop(self, wait: bool = True) -> None:
        """Stop answering and close the port (the request being answered is stopped); without
        `wait`, the port closes on a thread of its own within a moment."""
        if self._server is None:
            return
        models, server = self._models, self._server
        self._models = self._server = self._running = None

        def close() -> None:
            models.close()
            server.stop()

        if wait:
            close()
        else:
            threading.Thread(target=close, name="slmchat-api-stop", daemon=True).start()
        self._set_address("")
        self.other_app_using.emit(False)

    # --- serving --------------------------------------------------------------------------
    def _start(self, port: int, on_network: bool, key: str) -> None:
        # Imported when first switched on: the window starts without the web server.
        from slmchat.core.serve.app import build_app
        from slmchat.core.serve.hosted import HostedModels
        from slmchat.core.serve.running import ANY_ADDRESS, LOOPBACK, BackgroundServer, listening_socket

        if on_network and not key:
            self.failed.emit("Other computers need an API key to use slmchat: open Settings, Other apps, "
                             "and allow the network again to make one.")
            return
        try:
            sock = listening_socket(ANY_ADDRESS if on_network else LOOPBACK, port,
                                    "Choose another port in Settings, Other apps.")
        except SlmchatError as error:
            self.failed.emit(user_message(error, self.log_file))
            return
        models = HostedModels(in_use=self._in_use.emit, gone=self._gone.emit,
                              answered=lambda request, text, stats: self._answered.emit(request, text, stats))
        self._models, self._running = models, (port, on_network, key)
        self._server = BackgroundServer(build_app(models, api_key=key or None), sock)
        self._host()
        self._set_address(self._server.address)

    def _host(self) -> None:
        engine = self.session.engine
        if self._models is None or engine is None or self.session.model_id is None:
            return
        if not isinstance(engine, TakingTurns):  # a model on a server the user added: not ours to lend
            log.info("the window's model is not on this computer; other apps are not served it")
            self._models.unhost()
            return
        self._models.host(self.session.model_id, engine, engine.info)

    def _unhost(self) -> None:
        if self._models is not None:
            self._models.unhost()

    def _engine_gone(self, engine: TakingTurns) -> None:
        """An API request found the model's process dead: the session starts it again."""
        if engine is self.session.engine:
            self._unhost()
            self.session.forget_engine(engine)
            self.session.reload()

    def _store(self, request: GenerationRequest, text: str, stats: GenerationStats) -> None:
        if not (self._store_chats and request.messages):
            return
        try:
            self.chat_stored.emit(record_api_chat(self.store, request.model, request.messages, text, stats))
        except SlmchatError as error:  # the other app has its answer; the history misses one chat
            log.warning("could not store another app's chat: %s", error)

    def _set_address(self, address: str) -> None:
        self.address = address
        self.address_changed.emit(address)
