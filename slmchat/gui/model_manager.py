"""The model manager: the catalog as cards, the user's own models, hub search, import and remove.

Names, descriptions, paths and errors here come from model files, the hub and the catalog: every
label is plain text (`plain_label`), tooltips and message boxes get them escaped (`as_rich_text`).
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.models import hardware
from slmchat.core.models.catalog import Catalog, CatalogEntry, ModelRole
from slmchat.core.models.hub import DownloadProgress, Hub, RemoteFile
from slmchat.core.models.library import LibraryModel, ModelLibrary, ModelSource
from slmchat.gui.downloads import DownloadKey, Downloads, describe_progress, format_size
from slmchat.gui.model_choices import FIT_PROPERTY, display_name, entry_fit, model_fit
from slmchat.gui.notices import user_message
from slmchat.gui.plain_text import as_rich_text, plain_label
from slmchat.gui.workers import run_task


@dataclass(frozen=True)
class ModelsContext:
    """What the model manager works on, handed in by whoever opens it (it never sees the window)."""

    library: ModelLibrary
    downloads: Downloads
    catalog: Catalog
    machine: Callable[[], hardware.Machine | None]  # as known now: None while start-up still looks
    context_size: int  # the context that fit labels are computed for
    log_file: Path  # named in error messages


ROLE_TEXT = {
    ModelRole.CHAT: "Chat",
    ModelRole.COMPLETION: "Continue my text",
    ModelRole.TRANSLATE_SUMMARIZE: "Translate & summarize",
    ModelRole.EMBED: "Search by meaning",
    ModelRole.CLASSIFY: "Sentiment",
}


def _fit_label(fit: hardware.Fit | None) -> QLabel:
    label = plain_label(fit.label.text if fit else "")
    if fit is not None:
        label.setProperty("fit", FIT_PROPERTY[fit.label.value])
        label.setToolTip(as_rich_text(fit.reason))
    return label


UNVERIFIED_TEXT = ("Not yet verified by slmchat: your first download of it is remembered, and later "
                   "downloads must be exactly the same file.")


def _link_label(text: str) -> QLabel:
    """A muted rich-text label whose links open in the browser: only for text we built and escaped."""
    label = QLabel(text)
    label.setProperty("role", "muted")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setOpenExternalLinks(True)
    return label


class CatalogCard(QFrame):
    """One catalog model: what it is good for, its size and needs, its licence, and Download."""

    use = Signal(str)  # library model id

    def __init__(self, entry: CatalogEntry, fit: hardware.Fit | None, library: ModelLibrary,
                 downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Card")
        self.entry, self.library, self.downloads = entry, library, downloads
        self.file = entry.default_file  # what Download fetches
        self.key = DownloadKey(self.file.repo, self.file.file) if self.file and self.file.repo else None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 14, 16, 14)
        layout.setSpacing(6)

        top = QHBoxLayout()
        top.addWidget(plain_label(entry.display_name, "heading"), 1)
        top.addWidget(_fit_label(fit))
        layout.addLayout(top)
        layout.addWidget(plain_label(f"Good for: {ROLE_TEXT.get(entry.role, entry.role.value)}", "muted"))
        layout.addWidget(plain_label(entry.description, wrap=True))
        facts = [f"{entry.parameters / 1e9:.1f}B parameters" if entry.parameters >= 1e9
                 else f"{entry.parameters / 1e6:.0f}M parameters"]
        if self.file and self.file.best_size:
            facts.append(f"{format_size(self.file.best_size)} download ({self.file.quant})")
        if fit is not None:
            facts.append(f"needs about {format_size(fit.estimate.total)} of memory")
        layout.addWidget(plain_label(" · ".join(facts), "muted", wrap=True))
        licence = html.escape(entry.license)
        if entry.license_url:
            licence = f'<a href="{html.escape(entry.license_url)}">{licence}</a>'
        if entry.license_note:
            licence += f" — {html.escape(entry.license_note)}"
        layout.addWidget(_link_label(f"Licence: {licence}"))
        self.terms: QLabel | None = None
        if entry.gated_terms_url:  # an open GGUF of a gated original: its publisher's terms still apply
            self.terms = _link_label(f'By using this model you accept <a href="{html.escape(entry.gated_terms_url)}">'
                                     "its publisher's terms</a>.")
            layout.addWidget(self.terms)
        self.unverified: QLabel | None = None  # shown until the model is on this computer
        if self.file is not None and self.file.repo and not self.file.verified:
            self.unverified = plain_label(UNVERIFIED_TEXT, "muted", wrap=True)
            self.unverified.setToolTip(as_rich_text(self.file.unverified_reason))  # the maintainer's detail
            layout.addWidget(self.unverified)
        self.token = QLineEdit()
        self.token.setEchoMode(QLineEdit.EchoMode.Password)
        self.token.setPlaceholderText("Hugging Face access token (this model is gated)")
        self.token.setAccessibleName(f"Access token for {entry.display_name}")
        self.token.setVisible(entry.gated)
        layout.addWidget(self.token)

        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setRange(0, 1000)
        self.progress.setAccessibleName(f"Download progress of {entry.display_name}")
        layout.addWidget(self.progress)
        bottom = QHBoxLayout()
        self.status = plain_label("", "muted", wrap=True)
        self.download_button = QPushButton("Download")
        self.download_button.setProperty("primary", True)
        self.download_button.setAccessibleName(f"Download {entry.display_name}")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.use_button = QPushButton("Use")
        self.use_button.setAccessibleName(f"Chat with {entry.display_name}")
        bottom.addWidget(self.status, 1)
        for button in (self.download_button, self.pause_button, self.cancel_button, self.use_button):
            bottom.addWidget(button)
        layout.addLayout(bottom)

        self.download_button.clicked.connect(self._download)
        self.pause_button.clicked.connect(lambda: self.downloads.pause(self.key))
        self.cancel_button.clicked.connect(lambda: self.downloads.cancel(self.key))
        self.use_button.clicked.connect(self._use)
        downloads.progress.connect(self._progress)
        downloads.finished.connect(self._finished)
        downloads.stopped.connect(self._stopped)
        self.refresh()

    def installed(self) -> LibraryModel | None:
        """The model on disk for this entry: the bundled file, or a finished download."""
        bundled = self.entry.bundled_file
        if bundled is not None:
            starter = next((m for m in self.library.list()
                            if m.source is ModelSource.STARTER and m.path.name == bundled.file), None)
            if starter is not None:
                return starter
        if self.file is None or self.file.repo is None:
            return None
        return self.library.find_download(self.file.repo, self.file.file)

    def refresh(self, stopped_text: str = "", paused: bool = False) -> None:
        """Show the entry's state: on disk, downloading, paused, failed (`stopped_text`), or not yet."""
        running = self.key is not None and self.downloads.running(self.key)
        installed = None if running else self.installed()
        self.progress.setVisible(running)
        self.pause_button.setVisible(running)
        self.cancel_button.setVisible(running)
        self.use_button.setVisible(installed is not None)
        self.download_button.setVisible(not running and installed is None)
        self.download_button.setEnabled(self.entry.supported and self.key is not None)
        if self.unverified is not None:
            self.unverified.setVisible(installed is None)
        if not self.entry.supported:
            self.status.setText(f"Can't run in slmchat: {self.entry.unsupported_reason}")
        elif self.key is None and installed is None:
            self.status.setText("Not offered as a download yet.")
        elif installed is not None:
            self.status.setText("On this computer")
        elif running:
            last = self.downloads.last_progress(self.key)
            self.status.setText(describe_progress(last) if last else "Starting…")
        else:
            self.status.setText(stopped_text)
        self.download_button.setText("Resume" if paused else "Download")

    def _download(self) -> None:
        if self.entry.gated and not self.token.text().strip():
            self.status.setText("This model needs a Hugging Face access token: paste it above.")
            return
        self.downloads.start(self.key, self.file.sha256, self.token.text().strip())
        self.refresh()

    def _use(self) -> None:
        model = self.installed()
        if model is not None:
            self.use.emit(model.id)

    def _progress(self, key: DownloadKey, progress: DownloadProgress) -> None:
        if key != self.key:
            return
        if not self.progress.isVisible():
            self.refresh()
        self.progress.setValue(int(progress.fraction * 1000))
        self.status.setText(describe_progress(progress))

    def _finished(self, key: DownloadKey, _model: LibraryModel) -> None:
        if key == self.key:
            self.refresh()

    def _stopped(self, key: DownloadKey, text: str, paused: bool) -> None:
        if key == self.key:
            self.refresh("Paused — Resume continues where it stopped." if paused else text, paused)


class _MyModels(QWidget):
    """The models on this computer: use, remove, import (button or drag and drop)."""

    use = Signal(str)
    changed = Signal()

    def __init__(self, context: ModelsContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 12, 0, 0)
        top = QHBoxLayout()
        hint = plain_label("Drop a .gguf file here, or", "muted")
        top.addWidget(hint, 1, Qt.AlignmentFlag.AlignRight)
        self.import_button = QPushButton("Import a GGUF file…")
        self.import_button.clicked.connect(self._choose_file)
        top.addWidget(self.import_button)
        layout.addLayout(top)
        self.list = QListWidget()
        self.list.setAccessibleName("Models on this computer")
        layout.addWidget(self.list, 1)
        self.refresh()

    def refresh(self) -> None:
        self.list.clear()
        for model in self.context.library.list():
            item = QListWidgetItem()
            row = QWidget()
            line = QHBoxLayout(row)
            line.setContentsMargins(10, 6, 10, 6)
            machine = self.context.machine()
            fit = model_fit(model, machine, self.context.context_size) if machine else None
            text = QVBoxLayout()
            text.addWidget(plain_label(display_name(model, self.context.catalog), "heading"))
            if model.usable:
                detail = f"{format_size(model.info.file_size)} · {model.source.value} · {model.path}"
            else:
                detail = model.problem or "This file can't be used."
            text.addWidget(plain_label(detail, "muted", wrap=True))
            line.addLayout(text, 1)
            line.addWidget(_fit_label(fit))
            use = QPushButton("Use")
            use.setEnabled(model.usable)
            use.clicked.connect(lambda _c=False, m=model.id: self.use.emit(m))
            line.addWidget(use)
            if model.source is not ModelSource.STARTER:
                remove = QPushButton("Remove")
                remove.clicked.connect(lambda _c=False, m=model: self._remove(m))
                line.addWidget(remove)
            item.setSizeHint(row.sizeHint())
            self.list.addItem(item)
            self.list.setItemWidget(item, row)

    def import_path(self, path: Path) -> None:
        answer = QMessageBox.question(
            self, "Import a model",
            as_rich_text(f"Copy {path.name} into slmchat's models folder?\n\n"
                         "Yes: a copy is kept by slmchat (uses disk space).\nNo: use the file where it is."),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Cancel:
            return
        copy = answer == QMessageBox.StandardButton.Yes
        self.import_button.setEnabled(False)
        self.import_button.setText("Checking the file…")

        def done(_model: LibraryModel) -> None:
            self._import_finished()
            self.changed.emit()

        def failed(error: Exception) -> None:
            self._import_finished()
            QMessageBox.warning(self, "This file can't be used",
                                as_rich_text(user_message(error, self.context.log_file)))

        library = self.context.library
        run_task(lambda: library.import_file(path, copy=copy), done, failed)

    def _import_finished(self) -> None:
        self.import_button.setEnabled(True)
        self.import_button.setText("Import a GGUF file…")
        self.refresh()

    def _choose_file(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Import a model", str(Path.home()), "GGUF models (*.gguf)")
        if name:
            self.import_path(Path(name))

    def _remove(self, model: LibraryModel) -> None:
        name = display_name(model, self.context.catalog)
        answer = QMessageBox.question(self, "Remove model", as_rich_text(f"Remove {name} from slmchat?"))
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.context.library.remove(model.id)
        except Exception as error:
            QMessageBox.warning(self, "Could not remove", as_rich_text(user_message(error, self.context.log_file)))
        self.refresh()
        self.changed.emit()


class _HubSearch(QWidget):
    """Search the Hugging Face hub for GGUF repos and download one of their files."""

    def __init__(self, context: ModelsContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 12, 0, 0)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search models on Hugging Face, e.g. qwen 0.5b")
        self.query.setAccessibleName("Search the hub")
        self.query.returnPressed.connect(self._search)
        search = QPushButton("Search")
        search.clicked.connect(self._search)
        row.addWidget(self.query, 1)
        row.addWidget(search)
        layout.addLayout(row)
        self.status = plain_label("", "muted", wrap=True)
        layout.addWidget(self.status)
        lists = QHBoxLayout()
        self.repos = QListWidget()
        self.repos.setAccessibleName("Repositories found")
        self.repos.currentItemChanged.connect(self._repo_chosen)
        self.files = QListWidget()
        self.files.setAccessibleName("Model files in the repository")
        lists.addWidget(self.repos, 1)
        lists.addWidget(self.files, 1)
        layout.addLayout(lists, 1)
        bottom = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.setRange(0, 1000)
        self.progress.hide()
        bottom.addWidget(self.progress, 1)
        self.download_button = QPushButton("Download the selected file")
        self.download_button.setProperty("primary", True)
        self.download_button.clicked.connect(self._download)
        bottom.addWidget(self.download_button)
        layout.addLayout(bottom)
        self.key: DownloadKey | None = None
        self._hub_client: Hub | None = None
        context.downloads.progress.connect(self._progress)
        context.downloads.finished.connect(self._finished)
        context.downloads.stopped.connect(self._stopped)

    def _hub(self) -> Hub:
        if self._hub_client is None:  # one per tab: it caches the model headers it has read
            self._hub_client = Hub(self.context.library)
        return self._hub_client

    def _search(self) -> None:
        query = self.query.text().strip()
        self.status.setText("Searching…")
        hub = self._hub()

        def done(results: list) -> None:
            self.repos.clear()
            for repo in results:
                item = QListWidgetItem(f"{repo.repo_id}   ·   {repo.downloads:,} downloads" +
                                       ("   ·   gated" if repo.gated else ""))
                item.setData(Qt.ItemDataRole.UserRole, repo.repo_id)
                self.repos.addItem(item)
            self.status.setText(f"{len(results)} found." if results else "Nothing found.")

        run_task(lambda: hub.search_gguf_repos(query), done,
                 lambda error: self.status.setText(user_message(error, self.context.log_file)))

    def _repo_chosen(self, item: QListWidgetItem | None) -> None:
        self.files.clear()
        if item is None:
            return
        repo_id = item.data(Qt.ItemDataRole.UserRole)
        hub = self._hub()

        def done(files: list[RemoteFile]) -> None:
            for remote in files:
                size = format_size(remote.size) if remote.size else "size unknown"
                entry = QListWidgetItem(f"{remote.filename}   ·   {size}   ·   {remote.fit_text}")
                entry.setToolTip(as_rich_text(remote.fit.reason if remote.fit else (remote.fit_problem or "")))
                entry.setData(Qt.ItemDataRole.UserRole, remote)
                self.files.addItem(entry)

        machine, n_ctx = self.context.machine(), self.context.context_size
        run_task(lambda: hub.list_gguf_files(repo_id, machine=machine, n_ctx=n_ctx), done,
                 lambda error: self.status.setText(user_message(error, self.context.log_file)))

    def _download(self) -> None:
        item = self.files.currentItem()
        if item is None:
            self.status.setText("Choose a file first.")
            return
        remote: RemoteFile = item.data(Qt.ItemDataRole.UserRole)
        self.key = DownloadKey(remote.repo_id, remote.filename)
        self.context.downloads.start(self.key, remote.sha256)
        self.status.setText(f"Downloading {remote.filename}…")
        self.progress.setValue(0)
        self.progress.show()

    def _progress(self, key: DownloadKey, progress: DownloadProgress) -> None:
        if key == self.key:
            self.progress.setValue(int(progress.fraction * 1000))
            self.status.setText(f"{key.filename}: {describe_progress(progress)}")

    def _finished(self, key: DownloadKey, _model: LibraryModel) -> None:
        if key == self.key:
            self.progress.hide()
            self.status.setText(f"{key.filename} is ready: find it under My models.")

    def _stopped(self, key: DownloadKey, text: str, paused: bool) -> None:
        if key == self.key:
            self.progress.hide()
            self.status.setText("Paused." if paused else text)


class ModelManager(QDialog):
    """Catalog, My models and Hub search, as tabs; a dropped .gguf file is imported.

    `use_model` asks for a model to be loaded (the dialog then closes); `models_changed` says the
    library changed (an import, a removal or a finished download).
    """

    use_model = Signal(str)  # model id
    models_changed = Signal()

    def __init__(self, context: ModelsContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Models")
        self.resize(960, 680)
        self.setAcceptDrops(True)
        self.context = context
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        title = plain_label("Models", "title")
        layout.addWidget(title)
        machine = context.machine()
        layout.addWidget(plain_label(
            f"This computer: {machine.describe()}" if machine else "Checking this computer…", "muted", wrap=True))
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs, 1)

        cards = QWidget()
        grid = QGridLayout(cards)
        grid.setContentsMargins(0, 12, 8, 0)
        grid.setSpacing(12)
        self.cards: list[CatalogCard] = []
        for number, entry in enumerate(context.catalog):
            card = CatalogCard(entry, entry_fit(entry, machine), context.library, context.downloads)
            card.use.connect(self._use)
            self.cards.append(card)
            grid.addWidget(card, number // 2, number % 2)
        grid.setRowStretch(grid.rowCount(), 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(cards)
        self.tabs.addTab(scroll, "Catalog")

        self.my_models = _MyModels(context)
        self.my_models.use.connect(self._use)
        self.my_models.changed.connect(self.models_changed)
        self.tabs.addTab(self.my_models, "My models")
        self.tabs.addTab(_HubSearch(context), "Search the hub")
        context.downloads.finished.connect(self._downloaded)

    def _use(self, model_id: str) -> None:
        self.use_model.emit(model_id)
        self.accept()

    def _downloaded(self, _key: DownloadKey, _model: LibraryModel) -> None:
        self.my_models.refresh()
        self.models_changed.emit()

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if any(url.toLocalFile().lower().endswith(".gguf") for url in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        for url in event.mimeData().urls():
            if url.toLocalFile().lower().endswith(".gguf"):
                self.tabs.setCurrentWidget(self.my_models)
                self.my_models.import_path(Path(url.toLocalFile()))
                break

