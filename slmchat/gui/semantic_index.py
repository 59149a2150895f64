"""Search by meaning in the window: vectors back-filled in the background, ranked by cosine.

Core does the work (`semantic.index_pending`, `save_embeddings`, `search`); this keeps the
threads right. The embedding model reads with its own read-only connection on the task thread;
the vectors are written here, on the GUI thread that owns the store, a batch at a time, so a
long back-fill never holds the GUI. Without an embedding model nothing happens and search stays
full-text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject

from slmchat.core.store.store import Store
from slmchat.core.tasks.capabilities import Capability
from slmchat.gui.task_models import TaskModels

if TYPE_CHECKING:
    from slmchat.core.tasks import semantic
log = logging.getLogger(__name__)


def _semantic() -> ModuleType:
    """`slmchat.core.tasks.semantic`, imported when first needed: it brings numpy, which the window
    loads only once there is an embedding model."""
    from slmchat.core.tasks import semantic
    return semantic


class SemanticIndex(QObject):
    """Keeps every finished message's vector up to date and answers searches by meaning."""

    def __init__(self, store: Store, tasks: TaskModels, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.tasks = tasks
        self._indexing = False

    @property
    def available(self) -> bool:
        return self.tasks.capable(Capability.EMBED) is not None

    @property
    def indexing(self) -> bool:
        return self._indexing

    def update(self) -> None:
        """Embed the messages that have no vector yet (call after new ones land)."""
        if not self._indexing:
            self._batch(after_id=0)

    def search(self, text: str, limit: int, on_hits: Callable[[list], None],
               on_error: Callable[[Exception], None]) -> None:
        """The `limit` messages closest in meaning to `text`, best first (`SemanticHit`s)."""
        model = self.tasks.capable(Capability.EMBED)
        if model is None:
            on_hits([])
            return
        vectors = _semantic()
        reader = self.store.reader()

        def ranked(client: Any) -> list:
            try:
                return vectors.search(reader, client, text, k=limit)
            finally:
                reader.close()

        self.tasks.call(Capability.EMBED, model, ranked, on_hits, on_error)

    def _batch(self, after_id: int) -> None:
        model = self.tasks.capable(Capability.EMBED)
        if model is None:
            self._indexing = False
            return
        self._indexing = True
        vectors = _semantic()
        reader = self.store.reader()

        def embed(client: Any) -> list[semantic.EmbeddingRow]:
            try:
                return vectors.index_pending(reader, client, after_id=after_id)
            finally:
                reader.close()

        def save(rows: list[semantic.EmbeddingRow]) -> None:
            if not rows:
                self._indexing = False
                return
            vectors.save_embeddings(self.store, rows)
            self._batch(after_id=rows[-1].message_id)

        def failed(error: Exception) -> None:  # search by meaning misses these until the next try
            self._indexing = False
            log.warning("embedding messages for search by meaning failed", exc_info=error)

        self.tasks.call(Capability.EMBED, model, embed, save, failed)
