"""The first-run screen: chat at once with the starter model, and one click to a better one.

A new user often just starts typing. Every printable key (Space included: it must not press a
button mid-sentence) is handed on through `typed`, for the window to open the chat and put it in
the composer; Enter presses the focused button, or starts chatting.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QIcon, QKeyEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slmchat.gui.plain_text import make_plain


@dataclass(frozen=True)
class Recommendation:
    """The best catalog model that fits this machine, as the welcome shows it."""

    name: str
    good_for: str
    size: str  # e.g. "1.1 GB download"
    fit: str  # "Fits" / "May be slow"
    fit_key: str  # the FitLabel value, for the colour
    reason: str
    sha256: str = ""  # what the catalog expects the file to hash to


class Welcome(QWidget):
    """Shown until the user starts a first chat."""

    start_chat = Signal()
    download = Signal()  # the recommended model
    typed = Signal(str)  # text typed here: it belongs in the composer

    def __init__(self, icon: QIcon, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Welcome")
        outer = QVBoxLayout(self)
        outer.addStretch(2)
        column = QVBoxLayout()
        column.setSpacing(14)
        logo = QLabel()
        logo.setPixmap(icon.pixmap(72, 72))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column.addWidget(logo)
        title = QLabel("Welcome to slmchat")
        title.setProperty("role", "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        column.addWidget(title)
        intro = QLabel(
            "Chat with small AI models in private. They run on this computer: "
            "nothing you write leaves it, and no internet is needed to chat."
        )
        intro.setWordWrap(True)
        intro.setAlignment(Qt.AlignmentFlag.AlignCenter)
        intro.setProperty("role", "muted")
        column.addWidget(intro)

        self.start_button = QPushButton("Start chatting")
        self.start_button.setProperty("primary", True)
        self.start_button.setAccessibleName("Start chatting with the starter model")
        self.start_button.setMinimumHeight(40)
        self.start_button.clicked.connect(self.start_chat)
        self.starter_note = make_plain(QLabel())  # model names and error texts come from outside
        self.starter_note.setProperty("role", "muted")
        self.starter_note.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.starter_note.setWordWrap(True)
        column.addWidget(self.start_button, 0, Qt.AlignmentFlag.AlignHCenter)
        column.addWidget(self.starter_note)

        self.card = QFrame()
        self.card.setObjectName("Card")
        card = QVBoxLayout(self.card)
        card.setContentsMargins(18, 14, 18, 14)
        card.setSpacing(6)
        heading = QLabel("Recommended for this computer")
        heading.setProperty("role", "muted")
        card.addWidget(heading)
        top = QHBoxLayout()
        self.rec_name = make_plain(QLabel())  # model names and error texts come from outside
        self.rec_name.setProperty("role", "heading")
        top.addWidget(self.rec_name, 1)
        self.rec_fit = QLabel()
        top.addWidget(self.rec_fit)
        card.addLayout(top)
        self.rec_text = make_plain(QLabel())  # model names and error texts come from outside
        self.rec_text.setWordWrap(True)
        card.addWidget(self.rec_text)
        bottom = QHBoxLayout()
        self.rec_progress = QProgressBar()
        self.rec_progress.setTextVisible(False)
        self.rec_progress.hide()
        self.rec_status = make_plain(QLabel())  # model names and error texts come from outside
        self.rec_status.setProperty("role", "muted")
        self.rec_button = QPushButton("Download")
        self.rec_button.setAccessibleName("Download the recommended model")
        self.rec_button.clicked.connect(self.download)
        bottom.addWidget(self.rec_status, 1)
        bottom.addWidget(self.rec_progress, 1)
        bottom.addWidget(self.rec_button)
        card.addLayout(bottom)
        self.card.hide()
        column.addSpacing(10)
        column.addWidget(self.card)

        holder = QHBoxLayout()
        holder.addStretch(1)
        body = QWidget()
        body.setLayout(column)
        body.setMaximumWidth(560)
        holder.addWidget(body, 3)
        holder.addStretch(1)
        outer.addLayout(holder)
        outer.addStretch(3)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        for watched in (self, self.start_button, self.rec_button):
            watched.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Keys reach the focused button first; typing must not be taken as pressing it."""
        if event.type() == QEvent.Type.KeyPress and isinstance(event, QKeyEvent):
            if _is_typing(event):
                self.typed.emit(event.text())
                return True
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
                button = watched if watched in (self.start_button, self.rec_button) else self.start_button
                if button.isEnabled():
                    button.click()
                return True
        return super().eventFilter(watched, event)

    def set_starter(self, name: str | None) -> None:
        """With no starter model, chat waits for the recommended download."""
        self.start_button.setEnabled(name is not None)
        if name:
            self.starter_note.setText(f"Starts right away with {name}, a tiny model that comes with the app.")
        else:
            self.starter_note.setText("First, download a model below. The chat opens when it is ready.")

    def set_recommendation(self, rec: Recommendation | None) -> None:
        self.card.setVisible(rec is not None)
        if rec is None:
            return
        self.rec_name.setText(rec.name)
        self.rec_fit.setText(rec.fit)
        self.rec_fit.setProperty("fit", {"fits": "fits", "may_be_slow": "slow"}.get(rec.fit_key, "nofit"))
        self.rec_fit.setToolTip(rec.reason)
        self.rec_fit.style().polish(self.rec_fit)
        self.rec_text.setText(rec.good_for)
        self.rec_status.setText(rec.size)
        self.rec_button.setText("Download")
        self.rec_button.setEnabled(True)

    def set_download_progress(self, fraction: float | None, text: str) -> None:
        """`fraction` None hides the bar (finished or failed); `text` says where it is."""
        self.rec_progress.setVisible(fraction is not None)
        self.rec_button.setEnabled(fraction is None)
        if fraction is not None:
            self.rec_progress.setValue(int(fraction * 100))
        self.rec_status.setText(text)


def _is_typing(event: QKeyEvent) -> bool:
    """A key that writes text (not a shortcut such as Ctrl+N, not Tab or Enter)."""
    shortcut = event.modifiers() & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
                                    | Qt.KeyboardModifier.MetaModifier)
    text = event.text()
    return bool(text) and text.isprintable() and not shortcut
