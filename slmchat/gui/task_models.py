"""The library's task models (T5, MiniLM, a sentiment classifier), each in its own process.

What the app offers depends on what the user has: `capable(capability)` finds the library model
for a role from its GGUF metadata (core's `tasks.capabilities`), so there is no Translate without
a T5, no "By meaning" without an embedding model, no Sentiment without a classifier. A task
model is started on first use and kept; every call runs on one worker thread of its own (a
model process serves one call at a time), and answers on the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QThreadPool

from slmchat.core.errors import ModelFileError
from slmchat.core.models.library import LibraryModel, ModelLibrary
from slmchat.core.tasks.capabilities import Capability, capabilities
from slmchat.gui.workers import run_task
from slmchat.paths import Paths

log = logging.getLogger(__name__)

_KIND = {  # which task runner hosts a role (task_client.TaskKind values)
    Capability.TRANSLATE: "seq2seq",
    Capability.SUMMARIZE: "seq2seq",
    Capability.EMBED: "embed",
    Capability.CLASSIFY: "classify",
}


def roles(model: LibraryModel) -> frozenset[Capability]:
    """What `model` can do; nothing for a file that cannot be used."""
    if model.info is None:
        return frozenset()
    try:
        return capabilities(model.info)
    except ModelFileError:
        return frozenset()


class TaskModels(QObject):
    """Starts task models on demand and runs their calls off the GUI thread, one at a time."""

    def __init__(self, library: ModelLibrary, paths: Paths, n_threads: int | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.paths = paths
        self.n_threads = n_threads
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._clients: dict[tuple[str, str], Any] = {}  # touched only on the pool's thread
        self._models: list[LibraryModel] = []
        self.refresh(library.list())

    def refresh(self, models: list[LibraryModel]) -> None:
        """Take the library's current models (after a download, import or removal)."""
        self._models = list(models)

    def capable(self, capability: Capability) -> LibraryModel | None:
        """The first usable library model that can play `capability`."""
        return next((m for m in self._models if capability in roles(m)), None)

    def call(self, capability: Capability, model: LibraryModel, use: Callable[[Any], Any],
             on_done: Callable[[Any], None], on_error: Callable[[Exception], None]) -> None:
        """Run `use(client)` with `model` loaded for `capability`, on the task thread."""
        kind = _KIND[capability]

        def work() -> Any:
            return use(self._client(kind, model))

        run_task(work, on_done, on_error, pool=self._pool)

    def _client(self, kind: str, model: LibraryModel) -> Any:
        # Imported on the task thread, at first use: the GUI process starts without it.
        from slmchat.core.process.task_client import TaskClient

        key = (kind, str(model.path))
        client = self._clients.get(key)
        if client is None or not client.alive:
            client = TaskClient(kind, model.path, n_threads=self.n_threads, paths=self.paths)
            self._clients[key] = client
        return client

    def close(self) -> None:
        """At exit: wait for the running call, then end every task process."""
        self._pool.waitForDone()
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # a dead task process must never bother the user at exit
                log.warning("closing a task model failed", exc_info=True)
        self._clients.clear()
