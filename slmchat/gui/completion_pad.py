"""'Continue my text': what a model without a chat format offers instead of a chat box."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QTextCursor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QVBoxLayout, QWidget


class CompletionPad(QWidget):
    """A page the user writes on; the model appends its continuation where the text ends."""

    continue_requested = Signal(str)
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 8, 0, 0)
        layout.setSpacing(10)
        self.explanation = QLabel(
            "This model has no chat format: it was trained to continue text, not to answer. "
            "Write the beginning of something (a story, a letter, a list) and it carries on."
        )
        self.explanation.setWordWrap(True)
        self.explanation.setProperty("role", "muted")
        layout.addWidget(self.explanation)
        self.editor = QPlainTextEdit()
        self.editor.setAccessibleName("Text to continue")
        self.editor.setPlaceholderText("Once upon a time, in a village by the sea,")
        layout.addWidget(self.editor, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        self.continue_button = QPushButton("Continue my text")
        self.continue_button.setProperty("primary", True)
        self.continue_button.clicked.connect(self._continue)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop_requested)
        self.stop_button.hide()
        row.addWidget(self.continue_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)

    def set_busy(self, busy: bool) -> None:
        self.editor.setReadOnly(busy)
        self.continue_button.setVisible(not busy)
        self.stop_button.setVisible(busy)

    def append(self, text: str) -> None:
        cursor = self.editor.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        self.editor.setTextCursor(cursor)
        self.editor.ensureCursorVisible()

    def _continue(self) -> None:
        text = self.editor.toPlainText()
        if text.strip():
            self.continue_requested.emit(text)
