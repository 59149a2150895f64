"""The small badge that says another app is using the model (the API is answering it), so a
reply that waits, or a busy processor, has a visible reason."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QSizePolicy

from slmchat.gui.plain_text import plain_label

TEXT = "Another app is using the model"


def other_app_badge() -> QLabel:
    """Hidden until shown; connect `ApiServer.other_app_using` to its `setVisible`."""
    badge = plain_label(TEXT, role="badge")
    badge.setAccessibleName(TEXT)
    badge.setToolTip("A program on this computer is using slmchat's model through its API "
                     "(Settings, Other apps). Your messages wait for it, and its for yours.")
    badge.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Fixed)  # a badge, not a bar
    badge.hide()
    return badge
