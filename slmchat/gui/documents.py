"""The user's document library in the window: collections, their files and their indexing.

`DocumentLibrary` relays between the widgets and the library's process (`core/documents/service.py`):
each request runs on a thread of its own pool and answers on the GUI thread; the indexer's
events are polled every 100 ms once the process is up, which never waits. `DocumentsDialog` shows the
collections, adds files and folders (buttons, or dropped on it), shows each file's status with
its reason, pauses and resumes indexing and removes a collection with everything made from it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QThreadPool, QTimer, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.tasks.capabilities import Capability
from slmchat.core.documents.service import DocumentService
from slmchat.gui.task_models import TaskModels
from slmchat.gui.workers import run_task
from slmchat.paths import Paths


DEFAULT_COLLECTION = "My documents"
POLL_MS = 100
REFRESH_MS = 500
STATUS_WORDS = {  # extract.Status values, said for people
    "pending": "Waiting",
    "indexed": "Ready",
    "unsupported": "Not a supported kind of file",
    "binary": "Not text",
    "encrypted": "Locked with a password",
    "empty": "No text in it",
    "too_large": "Too large",
    "unreadable": "Could not be read",
    "damaged": "Damaged",
}


class DocumentLibrary(QObject):
    """The library as the window sees it: its collections, and indexing in the background."""

    collections_changed = Signal(list)  # [{"id", "name", "chunks", "files": [{"path", "status", "reason"}]}]
    progress = Signal(dict)  # one indexer event as a dict ("kind": "FileIndexed", "Finished", …)
    failed = Signal(str)  # a sentence for the user

    def __init__(self, paths: Paths, tasks: TaskModels, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.paths = paths
        self.tasks = tasks
        self.service = DocumentService(paths)
        self.collections: list[dict[str, Any]] = []
        self.indexing = False
        self.paused = False
        self._closed = False
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)  # requests are answered in turn anyway
        self._poll = QTimer(self, interval=POLL_MS)
        self._poll.timeout.connect(self._read_events)
        # While files are read, the lists follow at most twice a second (a refresh lists every file).
        self._refresh_soon = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self._refresh_soon.timeout.connect(self.refresh)

    def _embedder(self) -> Path | None:
        model = self.tasks.capable(Capability.EMBED)
        return None if model is None else model.path

    def _request(self, method: str, *args: Any, then: Callable[[Any], None] | None = None) -> None:
        """`method(*args)` in the library's process, off the GUI thread; `then(result)` here.
        Nothing once closed: a late answer's follow-up must not outlive the window."""
        if self._closed:
            return
        embedder = self._embedder()

        def work() -> Any:
            self.service.use_embedder(embedder)
            return self.service.call(method, *args)

        run_task(work, then or (lambda _result: None), lambda error: self.failed.emit(str(error)), pool=self._pool)
        self._poll.start()  # the process is (being) started: hear its indexer from now on

    # --- what the widgets ask for -----------------------------------------------------------
    def start(self) -> None:
        """At the window's start: carry on indexing what a closed window left pending."""
        self.refresh()
        if self.paths.documents_database.exists():
            self._request("pending", then=lambda count: self._index() if count else None)

    def refresh(self) -> None:
        if self.paths.documents_database.exists():
            self._request("collections", then=self._got_collections)

    def add(self, name: str, paths: list[Path]) -> None:
        """Add files and folders to collection `name` (made if new) and index them."""
        self.indexing = True
        self._request("add", name, [str(p) for p in paths], then=lambda _id: self.refresh())

    def remove(self, collection_id: int) -> None:
        """The collection goes, with its text, passages and vectors."""
        self._request("remove", collection_id, then=lambda _none: self.refresh())

    def pause(self) -> None:
        self.paused = True
        self._request("pause")

    def resume(self) -> None:
        self.paused = False
        self._request("resume")

    def close(self) -> None:
        """At exit: the process goes; indexing carries on at the next start."""
        self._closed = True
        self._poll.stop()
        self._pool.waitForDone()
        self.service.close()

    # --- internals ------------------------------------------------------------------------
    def _index(self) -> None:
        self.indexing = True
        self._request("start_indexing")

    def _got_collections(self, collections: list[dict[str, Any]]) -> None:
        self.collections = collections
        self.collections_changed.emit(collections)

    def _read_events(self) -> None:
        for event in self.service.events():
            if event["kind"] == "Started":
                self.indexing = True
            self.progress.emit(event)
            if event["kind"] in ("Finished", "Failed"):
                self.indexing = self.paused = False
                self.refresh()
                if event["kind"] == "Failed":
                    self.failed.emit(event["message"])
            elif event["kind"] in ("Scanned", "FileIndexed") and not self._refresh_soon.isActive():
                self._refresh_soon.start()


def status_words(status: str, reason: str) -> str:
    said = STATUS_WORDS.get(status, status)
    return f"{said}: {reason}" if reason else said


class DocumentsDialog(QDialog):
    """Collections on the left, the chosen one's files and their status on the right."""

    def __init__(self, library: DocumentLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self.setWindowTitle("Documents")
        self.setAcceptDrops(True)
        self.resize(820, 480)
        layout = QVBoxLayout(self)
        hint = QLabel("Add files or folders, or drop them here. The model answers from the collections "
                      "you attach to a chat, and shows where each answer comes from.")
        hint.setWordWrap(True)
        hint.setProperty("role", "muted")
        layout.addWidget(hint)

        panes = QHBoxLayout()
        left = QVBoxLayout()
        self.collection_list = QListWidget()
        self.collection_list.setAccessibleName("Collections")
        self.collection_list.currentRowChanged.connect(lambda _row: self._show_files())
        left.addWidget(self.collection_list, 1)
        self.new_button = QPushButton("New collection…")
        self.new_button.clicked.connect(self._new_collection)
        self.remove_button = QPushButton("Remove collection")
        self.remove_button.clicked.connect(self._confirm_remove)
        left.addWidget(self.new_button)
        left.addWidget(self.remove_button)
        panes.addLayout(left, 1)

        right = QVBoxLayout()
        self.file_list = QTreeWidget()
        self.file_list.setAccessibleName("Files")
        self.file_list.setHeaderLabels(["File", "Status"])
        self.file_list.setRootIsDecorated(False)
        self.file_list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.file_list.header().setStretchLastSection(True)
        right.addWidget(self.file_list, 1)
        buttons = QHBoxLayout()
        self.add_files_button = QPushButton("Add files…")
        self.add_files_button.clicked.connect(self._choose_files)
        self.add_folder_button = QPushButton("Add folder…")
        self.add_folder_button.clicked.connect(self._choose_folder)
        buttons.addWidget(self.add_files_button)
        buttons.addWidget(self.add_folder_button)
        buttons.addStretch(1)
        right.addLayout(buttons)
        panes.addLayout(right, 3)
        layout.addLayout(panes, 1)

        status = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setAccessibleName("Indexing")
        self.progress_bar.setTextVisible(False)  # the words beside it say how far
        self.status_label = QLabel("")
        self.status_label.setProperty("role", "muted")
        self.pause_button = QPushButton("Pause")
        self.pause_button.clicked.connect(self._pause_or_resume)
        status.addWidget(self.status_label, 1)
        status.addWidget(self.progress_bar, 1)
        status.addWidget(self.pause_button)
        layout.addLayout(status)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        layout.addWidget(close)

        library.collections_changed.connect(self._show_collections)
        library.progress.connect(self._show_progress)
        library.failed.connect(self._show_failure)
        self._show_collections(library.collections)
        self._show_indexing(library.indexing)
        library.refresh()

    # --- collections ----------------------------------------------------------------------
    def current_collection(self) -> dict[str, Any] | None:
        item = self.collection_list.currentItem()
        return None if item is None else item.data(Qt.ItemDataRole.UserRole)

    def _show_collections(self, collections: list[dict[str, Any]]) -> None:
        chosen = self.current_collection()
        chosen_name = chosen["name"] if chosen else None
        self.collection_list.blockSignals(True)
        self.collection_list.clear()
        for collection in collections:
            files = len(collection["files"])
            item = QListWidgetItem(f"{collection['name']}  ({files} file{'s' if files != 1 else ''})")
            item.setData(Qt.ItemDataRole.UserRole, collection)
            self.collection_list.addItem(item)
            if collection["name"] == chosen_name:
                self.collection_list.setCurrentItem(item)
        if self.collection_list.currentRow() < 0 and collections:
            self.collection_list.setCurrentRow(0)
        self.collection_list.blockSignals(False)
        self.remove_button.setEnabled(bool(collections))
        self._show_files()

    def _show_files(self) -> None:
        self.file_list.clear()
        collection = self.current_collection()
        for file in collection["files"] if collection else []:
            item = QTreeWidgetItem([Path(file["path"]).name, status_words(file["status"], file["reason"])])
            item.setToolTip(0, file["path"])
            item.setToolTip(1, file["reason"])
            self.file_list.addTopLevelItem(item)

    def file_statuses(self) -> dict[str, str]:
        """File name → what the list says of it (tests read the dialog through this)."""
        return {self.file_list.topLevelItem(i).text(0): self.file_list.topLevelItem(i).text(1)
                for i in range(self.file_list.topLevelItemCount())}

    def _new_collection(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name:")
        if ok and name.strip():
            self._choose_folder(name.strip())

    def _target(self) -> str:
        collection = self.current_collection()
        return collection["name"] if collection else DEFAULT_COLLECTION

    def add_paths(self, paths: list[Path], collection: str | None = None) -> None:
        """Add to `collection` (default: the chosen one, else "My documents") and index."""
        if paths:
            self.library.add(collection or self._target(), paths)
            self._show_indexing(True)

    def _choose_files(self) -> None:
        names, _filter = QFileDialog.getOpenFileNames(self, "Add files")
        self.add_paths([Path(name) for name in names])

    def _choose_folder(self, collection: str | None = None) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder")
        if folder:
            self.add_paths([Path(folder)], collection or None)

    def _confirm_remove(self) -> None:
        collection = self.current_collection()
        if collection is None:
            return
        answer = QMessageBox.question(
            self, "Remove collection",
            f"Remove “{collection['name']}” from your documents? Your files stay where they are; only "
            "what slmchat read from them is deleted.")
        if answer == QMessageBox.StandardButton.Yes:
            self.library.remove(collection["id"])

    # --- drag and drop --------------------------------------------------------------------
    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(url.isLocalFile() for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        self.add_paths([Path(url.toLocalFile()) for url in event.mimeData().urls() if url.isLocalFile()])
        event.acceptProposedAction()

    # --- indexing -------------------------------------------------------------------------
    def _show_indexing(self, indexing: bool) -> None:
        self.pause_button.setVisible(indexing)
        self.progress_bar.setVisible(indexing)

    def _pause_or_resume(self) -> None:
        if self.library.paused:
            self.library.resume()
            self.pause_button.setText("Pause")
            self.status_label.setText("Going on…")
        else:
            self.library.pause()
            self.pause_button.setText("Resume")
            self.status_label.setText("Pausing after this file…")

    def _show_progress(self, event: dict[str, Any]) -> None:
        kind = event["kind"]
        self._show_indexing(kind not in ("Finished", "Failed"))
        if kind == "Started":
            self.status_label.setText("Looking for files…")
            self.progress_bar.setRange(0, 0)
        elif kind == "Scanned":
            self.status_label.setText(f"{event['pending']} file(s) to read")
            self.progress_bar.setRange(0, max(1, event["pending"]))
            self.progress_bar.setValue(0)
        elif kind == "FileIndexed":
            self.progress_bar.setRange(0, event["total"])
            self.progress_bar.setValue(event["done"])
            self.status_label.setText(f"Read {event['done']} of {event['total']}: {Path(event['path']).name}")
            self._show_file(event)
        elif kind == "Embedded":
            self.progress_bar.setRange(0, max(1, event["total"]))
            self.progress_bar.setValue(event["done"])
            self.status_label.setText(f"Learning what the passages mean: {event['done']} of {event['total']}")
        elif kind == "Paused":
            what = "files read" if event["phase"] == "files" else "passages learnt"
            self.status_label.setText(f"Paused: {event['done']} of {event['total']} {what}")
        elif kind == "Finished":
            self.pause_button.setText("Pause")
            self.status_label.setText(f"Done: {event['indexed']} ready, {event['skipped']} skipped"
                                      if not event["stopped"] else "Stopped: the rest is read next time")

    def _show_file(self, event: dict[str, Any]) -> None:
        """One listed file's outcome, as soon as it is known (new files come with the refresh)."""
        for i in range(self.file_list.topLevelItemCount()):
            item = self.file_list.topLevelItem(i)
            if item.toolTip(0) == event["path"]:
                item.setText(1, status_words(event["status"], event["reason"]))
                item.setToolTip(1, event["reason"])

    def _show_failure(self, text: str) -> None:
        self.status_label.setText(text)
        self._show_indexing(False)

