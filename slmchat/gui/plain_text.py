"""Text from model files, the network, errors and the database, shown as text and never as markup.

Qt guesses: a QLabel, a QMessageBox or a tooltip whose text looks like HTML (`<b>`, `<img …>`,
`<a href=…>`) is drawn as rich text. A GGUF's `general.name`, a hub file's header, an error
naming a file, a conversation title from an imported export are all written by someone else, so
every widget that shows them either is a plain-text label (`plain_label`, `make_plain`) or, where
Qt only offers the guess (tooltips, the static QMessageBox functions), gets the text escaped
inside markup of our own (`as_rich_text`), which Qt then draws character for character.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel


def make_plain(label: QLabel) -> QLabel:
    """Make `label` show whatever it is given as plain text, now and after every setText."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def plain_label(text: str = "", role: str = "", wrap: bool = False) -> QLabel:
    """A QLabel for text that may come from outside: shown as typed, never as rich text.

    `role` is the style sheet's `role` property (muted, heading, title, badge …).
    """
    label = make_plain(QLabel(text))
    if role:
        label.setProperty("role", role)
    label.setWordWrap(wrap)
    return label


def as_rich_text(text: str) -> str:
    """`text` for a place where Qt guesses rich text (a tooltip, QMessageBox.question/warning):
    escaped, and wrapped so that it is always taken as rich text and so drawn literally, line
    breaks kept. Empty stays empty (no tooltip)."""
    if not text:
        return ""
    return "<qt>" + html.escape(text).replace("\n", "<br>") + "</qt>"
