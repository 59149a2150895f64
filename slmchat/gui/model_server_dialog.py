""""Add a model server…": chat with bigger models that run on another computer.

The user types the server's address (and its key, if it wants one); the server is asked for its
models at once, off the GUI thread, so a wrong address or key is said here, in the dialog, and
nothing is added that does not answer. Added servers are listed with what they offer and a
Remove button. Addresses and the servers' own messages are shown as plain text.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.errors import SlmchatError
from slmchat.core.process.remote_client import ModelServer, RemoteModel, list_models
from slmchat.gui.model_choices import server_label
from slmchat.gui.model_servers import ModelServers
from slmchat.gui.notices import user_message
from slmchat.gui.plain_text import plain_label
from slmchat.gui.workers import run_task

INTRO = ("Chat with bigger models that run on another computer, through a server that speaks "
         "OpenAI's API: llama.cpp's llama-server, Ollama, LM Studio, vLLM, or slmchat on that computer. "
         "Only the servers listed here are ever contacted, and what you write in a chat with one of "
         "their models is sent to that server.")


def _listing_text(listing: list[RemoteModel] | str | None) -> str:
    if listing is None:
        return "Asking for its models…"
    if isinstance(listing, str):
        return listing
    return f"{len(listing)} model{'s' if len(listing) != 1 else ''}: {', '.join(m.name for m in listing)}"


class ModelServerDialog(QDialog):
    """Add a server (address, optional key), see the added ones, remove them."""

    def __init__(self, servers: ModelServers, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.servers = servers
        self.setWindowTitle("Model servers")
        self.setMinimumWidth(560)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 20, 24, 16)
        layout.setSpacing(12)
        title = plain_label("Models on another computer", role="title")
        layout.addWidget(title)
        layout.addWidget(plain_label(INTRO, role="muted", wrap=True))

        self.list_area = QVBoxLayout()
        self.list_area.setSpacing(6)
        layout.addLayout(self.list_area)

        form = QFormLayout()
        self.address = QLineEdit()
        self.address.setPlaceholderText("http://192.168.1.20:11434")
        self.address.setAccessibleName("Server address")
        self.key = QLineEdit()
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setPlaceholderText("only if the server asks for one")
        self.key.setAccessibleName("Server key")
        form.addRow("Address", self.address)
        form.addRow("Key", self.key)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.status = plain_label(wrap=True)
        self.status.setAccessibleName("What the server said")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.status, 1)
        self.add_button = QPushButton("Add server")
        self.add_button.setDefault(True)
        self.add_button.clicked.connect(self.add)
        row.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.remove_buttons: dict[str, QPushButton] = {}
        servers.changed.connect(self._show_servers)
        self._show_servers()

    def showEvent(self, event: QShowEvent) -> None:
        """Opened again: what was said last time is old news, unless a server is still being asked."""
        if self.add_button.isEnabled():
            self._say("")
        self.address.setFocus()
        super().showEvent(event)

    def add(self) -> None:
        """Ask the typed server for its models; it is added once it answers with them."""
        try:
            server = ModelServer.parse(self.address.text(), self.key.text())
        except SlmchatError as error:
            self._say(str(error), error=True)
            return
        self.add_button.setEnabled(False)
        self._say(f"Asking {server.where} for its models…")
        run_task(lambda: list_models(server), lambda models: self._answered(server, models),
                 lambda error: self._failed(user_message(error, None)))

    def _answered(self, server: ModelServer, models: list[RemoteModel]) -> None:
        self.add_button.setEnabled(True)
        if not models:
            self._say(f"The server at {server.where} answered but offers no models yet. Load or download "
                      "one there, then add it again.", error=True)
            return
        self.servers.add(server, models)
        self.address.clear()
        self.key.clear()
        count = f"{len(models)} model{'s' if len(models) != 1 else ''}"
        self._say(f"Added. The model list now has {count} from {server.host}.")

    def _failed(self, message: str) -> None:
        self.add_button.setEnabled(True)
        self._say(message, error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("fit", "nofit" if error else "")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
        QTimer.singleShot(0, self._fit)  # once new rows are shown (Qt shows them from the event loop)

    def _fit(self) -> None:
        """Wrapped text takes more lines as servers and messages come: the height follows it."""
        self.resize(self.width(), self.layout().totalHeightForWidth(self.width()))

    def _show_servers(self) -> None:
        while self.list_area.count():
            item = self.list_area.takeAt(0)
            if item.widget() is not None:
                item.widget().hide()  # gone from view now; deleted once back in the event loop
                item.widget().deleteLater()
        self.remove_buttons = {}
        if not self.servers.servers:
            self.list_area.addWidget(plain_label("No server added yet.", role="muted"))
        for server in self.servers.servers:
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(0, 0, 0, 0)
            listing = self.servers.listings.get(server.url)
            text = plain_label(f"{server_label(server, self.servers.servers)}  ({server.url})\n"
                               f"{_listing_text(listing)}", wrap=True)
            if isinstance(listing, str):
                text.setProperty("fit", "nofit")
            line.addWidget(text, 1)
            remove = QPushButton("Remove")
            remove.setAccessibleName(f"Remove the server {server.url}")
            remove.clicked.connect(lambda _checked=False, url=server.url: self.servers.remove(url))
            line.addWidget(remove, 0, Qt.AlignmentFlag.AlignTop)
            self.remove_buttons[server.url] = remove
            self.list_area.addWidget(row)
        QTimer.singleShot(0, self._fit)  # once new rows are shown (Qt shows them from the event loop)
