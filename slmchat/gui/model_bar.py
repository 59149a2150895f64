"""The bar above the chat: which model answers, how it runs, and the way to other models.

Model names and details come from the models' own files (or a model server's list), so labels
and tooltips show them as text. The switcher ends with "Add a model server…", where models on
another computer join the list.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QWidget,
)

from slmchat.gui.plain_text import as_rich_text, plain_label


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the switcher."""

    id: str
    name: str
    fit: str = ""  # "Fits", "May be slow", "Won't fit", or "" when not known yet
    detail: str = ""  # tooltip: size, quantization, the reason behind the fit label
    usable: bool = True


ADD_SERVER = "Add a model server…"
_ADD_SERVER_DATA = "slmchat:add-model-server"  # the switcher's last row: not a model


class ModelBar(QFrame):
    """Model switcher (Ctrl+K), load progress, backend badge, Models… and Settings buttons."""

    model_chosen = Signal(str)
    add_server = Signal()  # the switcher's "Add a model server…"
    manage_models = Signal()
    open_settings = Signal()
    open_about = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ModelBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(16, 8, 12, 8)
        layout.setSpacing(10)

        self.switcher = QComboBox()
        self.switcher.setAccessibleName("Model")
        self.switcher.setToolTip("Choose the model that answers (Ctrl+K)")
        self.switcher.setMinimumWidth(260)
        self.switcher.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.switcher.activated.connect(self._chosen)
        layout.addWidget(self.switcher)

        self.progress = QProgressBar()
        self.progress.setRange(0, 0)
        self.progress.setFixedWidth(80)
        self.progress.setTextVisible(False)
        self.progress.setAccessibleName("Loading the model")
        self.progress.hide()
        layout.addWidget(self.progress, 0, Qt.AlignmentFlag.AlignVCenter)
        self.status = plain_label(role="muted")
        self.status.setAccessibleName("Model status")
        layout.addWidget(self.status)
        self.backend = plain_label(role="badge")
        self.backend.setAccessibleName("Where the model runs")
        self.backend.hide()
        layout.addWidget(self.backend)
        layout.addStretch(1)

        self.models_button = QPushButton("Models")
        self.models_button.setAccessibleName("Manage models")
        self.models_button.setToolTip("Download, import and remove models")
        self.models_button.clicked.connect(self.manage_models)
        self.settings_button = QPushButton("Settings")
        self.settings_button.setAccessibleName("Settings")
        self.settings_button.clicked.connect(self.open_settings)
        self.about_button = QPushButton("About")
        self.about_button.setProperty("flat", True)
        self.about_button.setAccessibleName("About slmchat")
        self.about_button.clicked.connect(self.open_about)
        for button in (self.models_button, self.settings_button, self.about_button):
            layout.addWidget(button)
        self._choices: list[ModelChoice] = []
        self._selected = 0  # the row of the model shown, to go back to after "Add a model server…"

    def set_models(self, choices: list[ModelChoice], current_id: str | None) -> None:
        self._choices = list(choices)
        self.switcher.blockSignals(True)
        self.switcher.clear()
        self._selected = 0
        for choice in choices:
            label = f"{choice.name}   ·   {choice.fit}" if choice.fit else choice.name
            self.switcher.addItem(label, choice.id)
            row = self.switcher.count() - 1
            self.switcher.setItemData(row, as_rich_text(choice.detail), Qt.ItemDataRole.ToolTipRole)
            if not choice.usable:
                self.switcher.model().item(row).setEnabled(False)
        if not choices:
            self.switcher.addItem("No model yet — open Models to get one", None)
        self.switcher.insertSeparator(self.switcher.count())
        self.switcher.addItem(ADD_SERVER, _ADD_SERVER_DATA)
        self.switcher.setItemData(self.switcher.count() - 1, "Chat with models that run on another computer",
                                  Qt.ItemDataRole.ToolTipRole)
        self.select(current_id)
        self.switcher.blockSignals(False)

    def select(self, model_id: str | None) -> None:
        row = self.switcher.findData(model_id)
        if row >= 0:
            self._selected = row
            self.switcher.setCurrentIndex(row)

    def current_id(self) -> str | None:
        data = self.switcher.currentData()
        return None if data == _ADD_SERVER_DATA else data

    def set_loading(self, name: str) -> None:
        self.progress.show()
        self.backend.hide()
        self.status.setText(f"Loading {name}…")

    def set_ready(self, backend: str, detail: str) -> None:
        """`backend` as the engine reports it (CPU, CUDA, Metal …); `detail` goes to the tooltip."""
        self.progress.hide()
        self.status.setText("Ready")
        self.backend.setText(f"Runs on {backend if backend != 'CPU' else 'the processor (CPU)'}")
        self.backend.setToolTip(as_rich_text(detail))
        self.backend.show()

    def set_unloaded(self, text: str = "") -> None:
        self.progress.hide()
        self.backend.hide()
        self.status.setText(text)

    def open_switcher(self) -> None:
        self.switcher.setFocus()
        self.switcher.showPopup()

    def _chosen(self, row: int) -> None:
        model_id = self.switcher.itemData(row)
        if model_id == _ADD_SERVER_DATA:
            self.switcher.setCurrentIndex(self._selected)  # the model that answers stays shown
            self.add_server.emit()
        elif model_id is not None:
            self._selected = row
            self.model_chosen.emit(model_id)
