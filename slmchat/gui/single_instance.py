"""One app per data folder: a second start brings the running window forward instead.

Two windows writing one database would each hold a writer connection and their own idea of
what is shown. Deciding which start is *the* app must be atomic, or two starts racing could both
find nobody listening and both open a window. So the app holds an OS lock on a file in the data
folder for its whole life (the operating system gives it to one process only, and frees it when
that process ends, a crash included). A start that cannot take it asks the holder, through a
local socket named after the data folder, to come forward (and to open the model file it was
started with, when it was: that is how opening a .gguf file reaches a running slmchat), and exits.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout
from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from slmchat.core.errors import AppNotAnswering

LOCK_FILE = "slmchat.instance.lock"
CONNECT_TIMEOUT_MS = 500
WAIT_FOR_HOLDER_S = 30.0  # the holder listens once its window is built: seconds on a slow machine
RETRY_S = 0.1


def server_name(data_folder: Path) -> str:
    digest = hashlib.sha256(str(data_folder.resolve()).encode("utf-8")).hexdigest()[:16]
    return f"slmchat-{digest}"


def claim(data_folder: Path, wait_s: float = WAIT_FOR_HOLDER_S, open_file: Path | None = None) -> FileLock | None:
    """Become the one app for `data_folder`, or hand over to the one that is.

    Returns the held lock (keep it, and release it when the app ends) when this process is the
    app; None when another slmchat holds the folder and was asked to come forward (and to open
    `open_file`, when given). While the
    holder is still starting (not yet listening), or is just ending, this keeps trying both for
    up to `wait_s`; then AppNotAnswering.
    """
    lock = FileLock(data_folder / LOCK_FILE, timeout=0, thread_local=False, fallback_to_soft=False)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            lock.acquire()
            return lock
        except Timeout:
            pass
        if ask_running_app_to_show(data_folder, open_file):
            return None
        if time.monotonic() >= deadline:
            raise AppNotAnswering(
                "slmchat is already open with this data folder but does not respond. Close it (or "
                "end it in your task manager), then start slmchat again.")
        time.sleep(RETRY_S)


def ask_running_app_to_show(data_folder: Path, open_file: Path | None = None) -> bool:
    """True when another slmchat uses this data folder (it was asked to come forward, and to open
    `open_file` when given)."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_folder))
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(b"show\n" if open_file is None else b"open " + str(open_file.resolve()).encode("utf-8") + b"\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class InstanceServer(QObject):
    """Listens for later starts and calls `on_show` for each, with the model file that start was
    given, or None (run it only while holding `claim`)."""

    def __init__(self, data_folder: Path, on_show: Callable[[Path | None], None],
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_show = on_show
        self._server = QLocalServer(self)
        name = server_name(data_folder)
        QLocalServer.removeServer(name)  # a socket file left by a crashed run (the lock says it is gone)
        self._server.listen(name)
        self._server.newConnection.connect(self._connected)

    def _connected(self) -> None:
        while self._server.hasPendingConnections():
            socket = self._server.nextPendingConnection()
            socket.disconnected.connect(lambda s=socket: self._answer(s))
            if socket.state() == QLocalSocket.LocalSocketState.UnconnectedState:  # said it and left already
                self._answer(socket)

    def _answer(self, socket: QLocalSocket) -> None:
        if socket.property("answered"):
            return
        socket.setProperty("answered", True)
        request = bytes(socket.readAll()).decode("utf-8", "replace").strip()
        socket.deleteLater()
        self._on_show(Path(request[5:]) if request.startswith("open ") else None)
