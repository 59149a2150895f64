"""One app per data folder: a second start brings the running window forward instead.

Two windows writing one database would each hold a writer connection and their own idea of
what is shown; a local socket named after the data folder lets the second start find the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtNetwork import QLocalServer, QLocalSocket

CONNECT_TIMEOUT_MS = 500


def server_name(data_folder: Path) -> str:
    digest = hashlib.sha256(str(data_folder.resolve()).encode("utf-8")).hexdigest()[:16]
    return f"slmchat-{digest}"


def ask_running_app_to_show(data_folder: Path) -> bool:
    """True when another slmchat uses this data folder (it was asked to come forward)."""
    socket = QLocalSocket()
    socket.connectToServer(server_name(data_folder))
    if not socket.waitForConnected(CONNECT_TIMEOUT_MS):
        return False
    socket.write(b"show\n")
    socket.waitForBytesWritten(CONNECT_TIMEOUT_MS)
    socket.disconnectFromServer()
    return True


class InstanceServer(QObject):
    """Listens for later starts and calls `on_show` for each."""

    def __init__(self, data_folder: Path, on_show: Callable[[], None], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._on_show = on_show
        self._server = QLocalServer(self)
        name = server_name(data_folder)
        QLocalServer.removeServer(name)  # a socket file left by a crashed run
        self._server.listen(name)
        self._server.newConnection.connect(self._connected)

    def _connected(self) -> None:
        while self._server.hasPendingConnections():
            self._server.nextPendingConnection().deleteLater()
            self._on_show()
