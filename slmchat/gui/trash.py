"""The trash: restore a deleted chat, or delete it for good — leaving no trace on disk.

Deleting for good removes the rows (`Store.delete_forever` / `empty_trash`), the model's saved
memory of the chat (its KV state files) and then, a moment later, rewrites the database so the
words are gone from the file's bytes too (`Store.purge`: VACUUM and an emptied WAL). The rewrite
is coalesced on a short timer rather than run per click: several deletions cost one rewrite. It
runs on a thread of its own with a connection of its own (`purge_file`: ~100 ms per 10 MB would
freeze the window), except at exit, where it runs on the GUI thread and must finish first.

While the rewrite runs, a write on the GUI thread waits for it (up to the 5 s busy timeout) and
then fails, "database is locked"; so it never starts while a reply streams (its text is saved
every second) or the GUI is otherwise about to write: the timer waits again instead. A rewrite
that met a lock is tried again later too, not reported as a disk error.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QSize, Qt, QThreadPool, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.engine.kv_state import forget_everywhere
from slmchat.core.store.connection import is_busy
from slmchat.core.store.recording import session_key
from slmchat.core.store.records import Conversation
from slmchat.core.store.store import Store, purge_file
from slmchat.gui.model_session import ModelSession
from slmchat.gui.plain_text import as_rich_text
from slmchat.gui.workers import run_task

log = logging.getLogger(__name__)

PURGE_DELAY_MS = 1500  # after the last deletion; a busy reader (a search) or writer makes it try again
_CONVERSATION = Qt.ItemDataRole.UserRole + 1


class _Purge:
    """One rewrite of the database file on a worker thread; covers the deletions made before it."""

    def __init__(self, path: Path, covers: int) -> None:
        self.path = path
        self.covers = covers
        self.complete = False  # True when no reader kept the write-ahead log from being emptied
        self.locked = False  # another connection held the database: try again shortly
        self.failed = False
        self.ended = threading.Event()  # set on the worker: the exit purge waits on it

    def __call__(self) -> None:
        try:
            self.complete = purge_file(self.path)
        except Exception as error:
            if is_busy(error):
                self.locked = True
            else:  # a disk error: the next deletion or the exit tries again
                self.failed = True
                log.warning("rewriting the database after a deletion failed", exc_info=True)
        finally:
            self.ended.set()


class Trash(QObject):
    """What the trash does; the dialog only shows it."""

    changed = Signal()

    def __init__(self, store: Store, session: ModelSession, writing: Callable[[], bool],
                 parent: QObject | None = None) -> None:
        """`writing()` is True while the GUI thread writes to the store often or soon (a reply
        streaming): the background rewrite waits for it to be False."""
        super().__init__(parent)
        self.store = store
        self.session = session
        self._writing = writing
        # Its own thread: the exit purge waits for a rewrite under way, which must not be queued
        # on the shared pool behind a model load or a hub listing.
        self._pool = QThreadPool(self, maxThreadCount=1)
        self._deletions = 0  # counted, so a purge that began before a deletion is known not to cover it
        self._purged_through = 0
        self._running: _Purge | None = None
        self._purge_timer = QTimer(self, singleShot=True, interval=PURGE_DELAY_MS)
        self._purge_timer.timeout.connect(self._purge_in_background)

    @property
    def purge_pending(self) -> bool:
        """Deleted words may still be in the file's bytes (a rewrite is due or under way)."""
        return self._purged_through < self._deletions

    def conversations(self) -> list[Conversation]:
        return self.store.conversations(trashed=True)

    def restore(self, conversation_id: int) -> None:
        self.store.restore(conversation_id)
        self.changed.emit()

    def delete_forever(self, conversation_id: int) -> None:
        self.store.delete_forever(conversation_id)
        self._forget_saved_state(conversation_id)
        self._deleted()

    def empty(self) -> int:
        ids = [conversation.id for conversation in self.conversations()]
        count = self.store.empty_trash()
        for conversation_id in ids:
            self._forget_saved_state(conversation_id)
        self._deleted()
        return count

    def purge_now(self) -> None:
        """Rewrite the database on this thread, once a rewrite under way has ended: at exit, the
        deleted words must be gone from the file before the app is."""
        self._purge_timer.stop()
        if self._running is not None:
            self._running.ended.wait()
            self._ended(self._running, retry=False)
        if self.purge_pending:
            covers = self._deletions
            if self.store.purge():
                self._purged_through = covers

    def _purge_in_background(self) -> None:
        if self._running is not None:
            return  # one at a time: when it ends, it looks for deletions it did not cover
        if self._writing():
            self._purge_timer.start()
            return
        purge = self._running = _Purge(self.store.path, self._deletions)
        run_task(purge, lambda _none: self._ended(purge), lambda _error: self._ended(purge), self._pool)

    def _ended(self, purge: _Purge, retry: bool = True) -> None:
        if self._running is not purge:
            return  # the exit purge waited for it and has taken its result already
        self._running = None
        if purge.complete:
            self._purged_through = max(self._purged_through, purge.covers)
        elif purge.locked:
            log.info("another connection held the database; purging again shortly")
        elif not purge.failed:
            log.info("a reader kept the write-ahead log busy; purging again shortly")
        if retry and self.purge_pending and not purge.failed and not self._purge_timer.isActive():
            self._purge_timer.start()

    def _forget_saved_state(self, conversation_id: int) -> None:
        """The engine's saved memory of the chat goes too: through the loaded engine (so it
        never writes it back), else straight from the folder."""
        key = session_key(conversation_id)
        engine = self.session.engine
        if engine is not None:
            engine.forget_session(key)
        else:
            forget_everywhere(self.session.paths.kv_states, key)

    def _deleted(self) -> None:
        self._deletions += 1
        self._purge_timer.start()
        self.changed.emit()


class TrashDialog(QDialog):
    """Lists deleted chats with Restore, Delete forever and Empty trash."""

    def __init__(self, trash: Trash, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.trash = trash
        self.setWindowTitle("Trash")
        self.setMinimumSize(440, 360)
        layout = QVBoxLayout(self)
        intro = QLabel("Deleted chats stay here until you delete them forever.")
        intro.setWordWrap(True)
        intro.setProperty("role", "muted")
        layout.addWidget(intro)
        self.list = QListWidget()
        self.list.setObjectName("ConversationList")  # looks like the sidebar's list of chats
        self.list.setAccessibleName("Deleted chats")
        layout.addWidget(self.list, 1)
        self.empty_label = QLabel("The trash is empty.")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setProperty("role", "muted")
        layout.addWidget(self.empty_label)

        buttons = QHBoxLayout()
        self.restore_button = QPushButton("Restore")
        self.delete_button = QPushButton("Delete forever")
        self.empty_button = QPushButton("Empty trash")
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        for button in (self.restore_button, self.delete_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.empty_button)
        buttons.addWidget(close)
        layout.addLayout(buttons)

        self.restore_button.clicked.connect(self._restore)
        self.delete_button.clicked.connect(self._delete)
        self.empty_button.clicked.connect(self._empty)
        self.list.currentItemChanged.connect(lambda *_: self._enable())
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for conversation in self.trash.conversations():
            item = QListWidgetItem(conversation.title or "New chat")
            item.setData(_CONVERSATION, conversation.id)
            item.setSizeHint(QSize(0, 34))
            if conversation.deleted_at is not None:
                deleted = conversation.deleted_at.astimezone().strftime("%d %B %Y, %H:%M")
                item.setToolTip(f"Deleted {deleted}")
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)
        self.empty_label.setVisible(self.list.count() == 0)
        self.empty_button.setEnabled(self.list.count() > 0)
        self._enable()

    def _selected(self) -> int | None:
        item = self.list.currentItem()
        return item.data(_CONVERSATION) if item is not None else None

    def _enable(self) -> None:
        chosen = self._selected() is not None
        self.restore_button.setEnabled(chosen)
        self.delete_button.setEnabled(chosen)

    def _confirm(self, question: str) -> bool:
        answer = QMessageBox.question(self, "Delete forever", as_rich_text(question + " This can't be undone."))
        return answer == QMessageBox.StandardButton.Yes

    def _restore(self) -> None:
        conversation_id = self._selected()
        if conversation_id is not None:
            self.trash.restore(conversation_id)
            self.refresh()

    def _delete(self) -> None:
        conversation_id = self._selected()
        if conversation_id is not None and self._confirm(f"Delete “{self.list.currentItem().text()}” forever?"):
            self.trash.delete_forever(conversation_id)
            self.refresh()

    def _empty(self) -> None:
        if self._confirm(f"Delete all {self.list.count()} chats in the trash forever?"):
            self.trash.empty()
            self.refresh()
