"""Calm messages for the user: a notice bar above the chat, and a toast with Undo.

Errors from core arrive as `SlmchatError`s whose text is already written for people; anything
else is a bug, logged with its traceback and shown as "something went wrong" with the log's
place. Never a traceback on screen. Both show their text as plain text: an error can quote a
file's name or a model's metadata, a toast a conversation's title.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QWidget

from slmchat.core.errors import SlmchatError
from slmchat.gui.plain_text import plain_label

log = logging.getLogger(__name__)

TOAST_MS = 8000


def user_message(error: BaseException, log_file: Path | None) -> str:
    """What to tell the user about `error`; bugs are logged here with their traceback."""
    if isinstance(error, SlmchatError):
        if error.detail:
            log.info("%s (%s)", error, error.detail)
        return str(error)
    log.error("unexpected error", exc_info=(type(error), error, error.__traceback__))
    where = f" Details are in {log_file}." if log_file else ""
    return f"Something went wrong.{where}"


class NoticeBar(QFrame):
    """One line of news above the chat, with an optional action and a close button."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Notice")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = plain_label(wrap=True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setAccessibleName("Notice")
        layout.addWidget(self.label, 1)
        self.action_button = QPushButton()
        self.action_button.hide()
        layout.addWidget(self.action_button)
        close = QPushButton("Dismiss")
        close.setProperty("flat", True)
        close.setAccessibleName("Dismiss the notice")
        close.clicked.connect(self.hide)
        layout.addWidget(close)
        self._action: Callable[[], None] | None = None
        self.action_button.clicked.connect(self._run_action)
        self.hide()

    def show_message(self, text: str, *, error: bool = False, action: str = "",
                     on_action: Callable[[], None] | None = None) -> None:
        self.setObjectName("ErrorNotice" if error else "Notice")
        self.style().unpolish(self)
        self.style().polish(self)
        self.label.setText(text)
        self._action = on_action
        self.action_button.setText(action)
        self.action_button.setVisible(bool(action and on_action))
        self.show()

    def _run_action(self) -> None:
        self.hide()
        if self._action is not None:
            self._action()


class Toast(QFrame):
    """A short-lived message at the bottom of the window, e.g. "Chat deleted · Undo"."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("Toast")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 6, 6, 6)
        self.label = plain_label()
        layout.addWidget(self.label)
        self.undo_button = QPushButton("Undo")
        self.undo_button.setAccessibleName("Undo")
        layout.addWidget(self.undo_button)
        self._timer = QTimer(self, singleShot=True, interval=TOAST_MS)
        self._timer.timeout.connect(self.hide)
        self._undo: Callable[[], None] | None = None
        self.undo_button.clicked.connect(self._run_undo)
        self.hide()

    def show_message(self, text: str, on_undo: Callable[[], None] | None = None) -> None:
        self.label.setText(text)
        self._undo = on_undo
        self.undo_button.setVisible(on_undo is not None)
        self.adjustSize()
        parent = self.parentWidget()
        self.move((parent.width() - self.width()) // 2, parent.height() - self.height() - 90)
        self.raise_()
        self.show()
        self._timer.start()

    def _run_undo(self) -> None:
        self.hide()
        if self._undo is not None:
            self._undo()
