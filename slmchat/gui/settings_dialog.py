"""Settings: this chat's persona and sampling, model memory and threads, appearance, data folder
and backups, and whether other apps may use slmchat's model (its OpenAI-compatible API)."""

from __future__ import annotations

import dataclasses
import secrets

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.errors import InvalidDataFolder, SlmchatError
from slmchat.core.generation import GenerationSettings, OverflowPolicy
from slmchat.core.store.backup import Backup, list_backups
from slmchat.core.store.connection import restore_backup
from slmchat.gui.controller import ChatController
from slmchat.gui.notices import user_message
from slmchat.gui.plain_text import plain_label
from slmchat.gui.theme import ThemeChoice
from slmchat.paths import Paths, check_data_folder, read_data_folder, write_data_folder
from slmchat.settings import Settings, save_settings

AUTOMATIC = "Automatic"


NUMBER_WIDTH = 120


def _spin(low: float, high: float, step: float, decimals: int = 2) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setMaximumWidth(NUMBER_WIDTH)
    box.setRange(low, high)
    box.setSingleStep(step)
    box.setDecimals(decimals)
    return box


def _int_spin(low: int, high: int, step: int = 1, automatic: bool = False) -> QSpinBox:
    """With `automatic`, the lowest value reads "Automatic" and means None."""
    box = QSpinBox()
    box.setMaximumWidth(NUMBER_WIDTH)
    box.setRange(low - 1 if automatic else low, high)
    box.setSingleStep(step)
    if automatic:
        box.setSpecialValueText(AUTOMATIC)
    return box


def _form(page: QWidget) -> QFormLayout:
    form = QFormLayout(page)
    form.setLabelAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    form.setVerticalSpacing(10)
    return form


def describe_backup(backup: Backup) -> str:
    """"14 Mar 2025, 09:30 — 12 conversations", in the user's own time zone."""
    when = backup.made.astimezone().strftime("%d %b %Y, %H:%M")
    if backup.conversations is None:
        return f"{when} — cannot be read"
    return f"{when} — {backup.conversations} conversation{'' if backup.conversations == 1 else 's'}"


def _note(text: str) -> QLabel:
    label = QLabel(text)
    label.setProperty("role", "muted")
    label.setWordWrap(True)
    return label


class SettingsDialog(QDialog):
    """Edits copies of the settings; `save()` stores them and emits `saved` with what is now in force.

    It is handed what it edits (the settings, the data folder's paths, and the chat controller,
    which owns the store and this chat's persona), so it needs no window to exist.
    """

    saved = Signal(object)  # Settings
    restored = Signal(object)  # Backup: where the conversations from before the restore were saved

    def __init__(self, settings: Settings, paths: Paths, controller: ChatController,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.paths = paths
        self.controller = controller
        self.setWindowTitle("Settings")
        self.resize(620, 560)
        store = controller.store
        conversation_id = controller.conversation_id
        self.conversation = store.conversation(conversation_id) if conversation_id is not None else None
        layout = QVBoxLayout(self)
        layout.setContentsMargins(20, 16, 20, 16)
        tabs = self.tabs = QTabWidget()
        layout.addWidget(tabs, 1)
        tabs.addTab(self._chat_tab(), "This chat" if self.conversation else "New chats")
        tabs.addTab(self._model_tab(), "Model and memory")
        tabs.addTab(self._appearance_tab(), "Appearance")
        self.other_apps_page = self._other_apps_tab()
        tabs.addTab(self.other_apps_page, "Other apps")
        self.data_page = self._data_tab()
        tabs.addTab(self.data_page, "Data")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    # --- tabs ----------------------------------------------------------------------------
    def _chat_tab(self) -> QWidget:
        page = QWidget()
        form = _form(page)
        settings = self.settings
        if self.conversation is not None:
            form.addRow(_note("These apply to the open chat. New chats use the defaults below them."))
        self.persona = QComboBox()
        self.persona.addItem("None", None)
        for persona in self.controller.store.personas():
            self.persona.addItem(persona.name, persona.id)
        self.persona.setCurrentIndex(max(0, self.persona.findData(
            self.conversation.persona_id if self.conversation else settings.default_persona_id)))
        self.persona.activated.connect(self._persona_chosen)
        save_persona = QPushButton("Save as persona…")
        save_persona.clicked.connect(self._save_persona)
        row = QHBoxLayout()
        row.addWidget(self.persona, 1)
        row.addWidget(save_persona)
        form.addRow("Persona", row)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("How the model should behave, e.g. “Answer briefly and kindly.”")
        self.system_prompt.setPlainText(self.conversation.system_prompt if self.conversation
                                        else self.controller.default_system_prompt)
        self.system_prompt.setMaximumHeight(110)
        form.addRow("System prompt", self.system_prompt)
        sampling = (self.conversation.settings if self.conversation and self.conversation.settings
                    else settings.generation)
        self.temperature = _spin(0.0, 2.0, 0.05)
        self.top_p = _spin(0.0, 1.0, 0.01)
        self.top_k = _int_spin(0, 1000)
        self.min_p = _spin(0.0, 1.0, 0.01)
        self.repeat_penalty = _spin(1.0, 2.0, 0.01)
        self.max_tokens = _int_spin(16, 32768, 64)
        self._show_sampling(sampling)
        form.addRow("Creativity (temperature)", self.temperature)
        form.addRow("Top P", self.top_p)
        form.addRow("Top K", self.top_k)
        form.addRow("Min P", self.min_p)
        form.addRow("Repeat penalty", self.repeat_penalty)
        form.addRow("Longest reply (tokens)", self.max_tokens)
        return page

    def _model_tab(self) -> QWidget:
        page = QWidget()
        form = _form(page)
        chosen = self.settings
        self.context_size = _int_spin(512, 131072, 512)
        self.context_size.setValue(chosen.context_size)
        form.addRow("Conversation memory (tokens)", self.context_size)
        form.addRow(_note("More memory lets the model see longer chats, and needs more RAM. "
                          "The model's own limit and your RAM cap it."))
        self.overflow = QComboBox()
        self.overflow.addItem("Leave out the oldest messages", OverflowPolicy.TRIM)
        self.overflow.addItem("Stop and tell me", OverflowPolicy.REFUSE)
        self.overflow.setCurrentIndex(self.overflow.findData(chosen.overflow))
        form.addRow("When a chat gets too long", self.overflow)
        self.gpu_layers = _int_spin(0, 999, automatic=True)
        self.gpu_layers.setValue(self.gpu_layers.minimum() if chosen.gpu_layers is None else chosen.gpu_layers)
        form.addRow("Layers on the graphics card", self.gpu_layers)
        self.threads = _int_spin(1, 256, automatic=True)
        n_threads = self.settings.n_threads
        self.threads.setValue(self.threads.minimum() if n_threads is None else n_threads)
        form.addRow("Processor threads", self.threads)
        form.addRow(_note("Changes here load the model again."))
        return page

    def _appearance_tab(self) -> QWidget:
        page = QWidget()
        form = _form(page)
        self.theme = QComboBox()
        for label, choice in (("Follow the system", ThemeChoice.SYSTEM), ("Light", ThemeChoice.LIGHT),
                              ("Dark", ThemeChoice.DARK)):
            self.theme.addItem(label, choice.value)
        self.theme.setCurrentIndex(max(0, self.theme.findData(self.settings.theme)))
        form.addRow("Theme", self.theme)
        self.font_size = _spin(8.0, 24.0, 0.5, decimals=1)
        self.font_size.setValue(self.settings.font_size)
        form.addRow("Text size (points)", self.font_size)
        return page

    def _other_apps_tab(self) -> QWidget:
        """The API switch: off by default; the network only with a key the app made."""
        page = QWidget()
        form = _form(page)
        chosen = self.settings
        self.api_server = QCheckBox("Let other apps on this computer use slmchat")
        self.api_server.setChecked(chosen.api_server)
        form.addRow(self.api_server)
        form.addRow(_note("Programs that speak OpenAI's API (editors, scripts, note apps) can then chat "
                          "with the model loaded here. Nothing leaves this computer unless you also "
                          "allow the network below."))
        self.api_port = QSpinBox()
        self.api_port.setMaximumWidth(NUMBER_WIDTH)
        self.api_port.setRange(1024, 65535)
        self.api_port.setValue(chosen.api_port)
        form.addRow("Port", self.api_port)
        self.api_address = plain_label(role="muted")
        self.api_address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("Address for other apps", self.api_address)
        self.api_on_network = QCheckBox("Also allow other computers on my network")
        self.api_on_network.setChecked(chosen.api_on_network)
        form.addRow(self.api_on_network)
        self.api_key = QLineEdit(chosen.api_key)
        self.api_key.setReadOnly(True)
        self.api_key.setAccessibleName("API key")
        self.copy_key = QPushButton("Copy")
        self.copy_key.setToolTip("Copy the API key")
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.api_key.text()))
        key_row = QHBoxLayout()
        key_row.addWidget(self.api_key, 1)
        key_row.addWidget(self.copy_key)
        self.api_key_label = QLabel("API key")
        form.addRow(self.api_key_label, key_row)
        self.api_key_note = _note("Other computers must send this key (“Authorization: Bearer <key>”). "
                                  "Anyone who has it can use your model.")
        form.addRow(self.api_key_note)
        self.store_api_chats = QCheckBox("Keep other apps' chats in my history")
        self.store_api_chats.setChecked(chosen.store_api_chats)
        form.addRow(self.store_api_chats)
        form.addRow(_note("Kept chats appear in the list with titles starting “From another app”. "
                          "Left off, nothing other apps ask or get is stored."))
        for box in (self.api_server, self.api_on_network):
            box.toggled.connect(self._show_api)
        self.api_port.valueChanged.connect(self._show_api)
        self._show_api()
        return page

    def _data_tab(self) -> QWidget:
        page = QWidget()
        form = _form(page)
        paths = self.paths
        self.data_folder = QLineEdit(str(read_data_folder(paths) or paths.data))
        browse = QPushButton("Choose…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.data_folder, 1)
        row.addWidget(browse)
        form.addRow("Data folder", row)
        self.data_folder_error = plain_label(wrap=True)
        self.data_folder_error.setAccessibleName("Data folder problem")
        self.data_folder_error.hide()
        form.addRow(self.data_folder_error)
        form.addRow(_note("Chats and models live here. A new folder is used from the next start; "
                          "move the files yourself to take them along."))
        self.backups = QListWidget()
        self.backups.setAccessibleName("Backups")
        self.backups.setMaximumHeight(140)
        self.restore_button = QPushButton("Restore…")
        self.restore_button.setEnabled(False)
        self.backups.currentItemChanged.connect(lambda item: self.restore_button.setEnabled(item is not None))
        self.restore_button.clicked.connect(self._restore)
        column = QVBoxLayout()
        column.addWidget(self.backups)
        column.addWidget(self.restore_button, 0, Qt.AlignmentFlag.AlignRight)
        form.addRow("Backups", column)
        form.addRow(_note("A copy of your chats is kept each day and before every upgrade; the newest "
                          "five are kept, in the data folder's “backups” folder."))
        self._show_backups()
        return page

    # --- actions -------------------------------------------------------------------------
    def _show_api(self) -> None:
        """Options follow the switch; allowing the network makes a key if there is none yet."""
        on = self.api_server.isChecked()
        network = on and self.api_on_network.isChecked()
        for widget in (self.api_port, self.api_on_network, self.store_api_chats):
            widget.setEnabled(on)
        if network and not self.api_key.text():
            self.api_key.setText(secrets.token_urlsafe(24))
        for widget in (self.api_key_label, self.api_key, self.copy_key, self.api_key_note):
            widget.setVisible(network)
        address = f"http://127.0.0.1:{self.api_port.value()}/v1"
        if network:
            address += "\nOther computers: this computer's network address instead of 127.0.0.1"
        self.api_address.setText(address if on else "Off")

    def _persona_chosen(self) -> None:
        persona_id = self.persona.currentData()
        if persona_id is None:
            return
        persona = self.controller.store.persona(persona_id)
        self.system_prompt.setPlainText(persona.system_prompt)
        if persona.settings is not None:
            self._show_sampling(persona.settings)

    def _show_sampling(self, sampling: GenerationSettings) -> None:
        self.temperature.setValue(sampling.temperature)
        self.top_p.setValue(sampling.top_p)
        self.top_k.setValue(sampling.top_k)
        self.min_p.setValue(sampling.min_p)
        self.repeat_penalty.setValue(sampling.repeat_penalty)
        self.max_tokens.setValue(sampling.max_tokens)

    def _save_persona(self) -> None:
        name, ok = QInputDialog.getText(self, "Save as persona", "Name:")
        if ok and name.strip():
            persona = self.controller.store.add_persona(
                name.strip(), self.system_prompt.toPlainText().strip(), self.sampling())
            self.persona.addItem(persona.name, persona.id)
            self.persona.setCurrentIndex(self.persona.count() - 1)

    def _show_backups(self) -> None:
        self.backups.clear()
        for backup in list_backups(self.controller.store.path):
            item = QListWidgetItem(describe_backup(backup))
            item.setData(Qt.ItemDataRole.UserRole, backup)
            self.backups.addItem(item)

    def _restore(self) -> None:
        """After a confirmation: the chosen backup replaces the conversations, the current ones
        having been backed up first (so this list can undo it)."""
        item = self.backups.currentItem()
        if item is None:
            return
        backup: Backup = item.data(Qt.ItemDataRole.UserRole)
        answer = QMessageBox.question(
            self, "Restore a backup",
            f"Replace your conversations with the backup from {describe_backup(backup)}?\n\n"
            "Your conversations as they are now are backed up first, so you can come back to them "
            "from this list.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.controller.new_chat()  # no reply may stream into the conversations being replaced
        try:
            undo = restore_backup(self.controller.store.path, backup.path)
        except SlmchatError as error:
            QMessageBox.warning(self, "Could not restore", user_message(error, self.paths.log_file))
            return
        self._show_backups()
        QMessageBox.information(
            self, "Backup restored",
            "The backup is restored: its conversations are in the list.")
        self.restored.emit(undo)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Data folder", self.data_folder.text())
        if folder:
            self.data_folder.setText(folder)

    def accept(self) -> None:
        """Close only with a data folder the app can use; otherwise say why, beside the field."""
        try:
            check_data_folder(self.data_folder.text())
        except InvalidDataFolder as error:
            self.data_folder_error.setText(str(error))
            self.data_folder_error.show()
            self.tabs.setCurrentWidget(self.data_page)
            self.data_folder.setFocus()
            return
        self.data_folder_error.hide()
        super().accept()

    # --- results -------------------------------------------------------------------------
    def sampling(self) -> GenerationSettings:
        """The sampling shown, over what this chat (or, for new chats, the app) already had: the
        settings this dialog does not show (thinking, its budget, speculative) stay as they were."""
        kept = (self.conversation.settings if self.conversation and self.conversation.settings
                else self.settings.generation)
        return dataclasses.replace(
            kept,
            temperature=self.temperature.value(), top_p=self.top_p.value(), top_k=self.top_k.value(),
            min_p=self.min_p.value(), repeat_penalty=self.repeat_penalty.value(),
            max_tokens=self.max_tokens.value(),
        )

    def new_settings(self) -> Settings:
        threads = None if self.threads.value() == self.threads.minimum() else self.threads.value()
        gpu = None if self.gpu_layers.value() == self.gpu_layers.minimum() else self.gpu_layers.value()
        changes: dict = {
            "theme": self.theme.currentData(), "n_threads": threads, "font_size": self.font_size.value(),
            "context_size": self.context_size.value(), "overflow": OverflowPolicy(self.overflow.currentData()),
            "gpu_layers": gpu,
            "api_server": self.api_server.isChecked(), "api_port": self.api_port.value(),
            "api_on_network": self.api_on_network.isChecked(), "api_key": self.api_key.text(),
            "store_api_chats": self.store_api_chats.isChecked(),
        }
        if self.conversation is None:
            changes["generation"] = self.sampling()
            changes["default_persona_id"] = self.persona.currentData()
        return dataclasses.replace(self.settings, **changes)

    def save(self) -> None:
        """Store everything, then tell whoever listens which settings are now in force."""
        folder = check_data_folder(self.data_folder.text())  # before anything is stored
        store = self.controller.store
        settings = self.new_settings()
        save_settings(store, settings)
        system_prompt = self.system_prompt.toPlainText().strip()
        if self.conversation is not None:
            self.controller.update_conversation_settings(system_prompt, self.sampling())
        else:
            self.controller.default_system_prompt = system_prompt
            self.controller.default_settings = settings.generation
        if folder != self.paths.data:
            write_data_folder(self.paths, folder)
        self.saved.emit(settings)
