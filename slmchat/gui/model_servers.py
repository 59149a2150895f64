"""The model servers the user added and the models each offers, asked off the GUI thread.

Only the servers in this list are ever asked anything: at start-up, when one is added, and
when a chat with one of their models begins. A server that cannot be reached stays in the list
(it may be a computer that is off now) and shows in the switcher as one greyed entry saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PySide6.QtCore import QObject, Signal

from slmchat.core.errors import SlmchatError
from slmchat.core.process.remote_client import ModelServer, RemoteModel, list_models
from slmchat.gui.model_bar import ModelChoice
from slmchat.gui.model_choices import remote_choices, remote_name
from slmchat.gui.notices import user_message
from slmchat.gui.workers import run_task

log = logging.getLogger(__name__)


def servers_from_settings(stored: Sequence[dict[str, str]]) -> list[ModelServer]:
    """The settings' servers; one whose address no longer reads as one is left out (and logged)."""
    servers = []
    for entry in stored:
        try:
            servers.append(ModelServer.parse(entry["url"], entry.get("key", "")))
        except SlmchatError:
            log.warning("ignoring a stored model server with an unusable address: %r", entry["url"])
    return servers


class ModelServers(QObject):
    """The added servers, in the order added, and what each offers (`listings`, by URL: its
    models, the sentence that says why they could not be had, or None while asked)."""

    changed = Signal()  # a listing arrived, or the servers changed: the switcher needs redoing
    edited = Signal()  # the user added or removed a server: the settings need saving

    def __init__(self, servers: Sequence[ModelServer], parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.servers: list[ModelServer] = list(servers)
        self.listings: dict[str, list[RemoteModel] | str | None] = {}

    def refresh(self) -> None:
        """Ask every server for its models again."""
        for server in self.servers:
            self._ask(server)

    def add(self, server: ModelServer, models: list[RemoteModel]) -> None:
        """A server the user added, with the models it just listed."""
        self.servers = [known for known in self.servers if known.url != server.url] + [server]
        self.listings[server.url] = models
        self.edited.emit()
        self.changed.emit()

    def remove(self, url: str) -> None:
        self.servers = [server for server in self.servers if server.url != url]
        self.listings.pop(url, None)
        self.edited.emit()
        self.changed.emit()

    def choices(self) -> list[ModelChoice]:
        return remote_choices(self.servers, self.listings)

    def find(self, model_id: str) -> RemoteModel | None:
        """The model of an added server with this switcher id, if a server still offers it."""
        for server in self.servers:
            listing = self.listings.get(server.url)
            if isinstance(listing, list):
                found = next((model for model in listing if model.id == model_id), None)
                if found is not None:
                    return found
        return None

    def name(self, model: RemoteModel) -> str:
        return remote_name(model, self.servers)

    def for_settings(self) -> tuple[dict[str, str], ...]:
        return tuple({"url": server.url, "key": server.key} for server in self.servers)

    def _ask(self, server: ModelServer) -> None:
        self.listings[server.url] = None
        self.changed.emit()

        def answered(listing: list[RemoteModel] | str) -> None:
            if any(known == server for known in self.servers):  # not removed meanwhile
                self.listings[server.url] = listing
                self.changed.emit()

        run_task(lambda: list_models(server), answered, lambda error: answered(user_message(error, None)))
