"""The sidebar: New chat, search, and the conversation list grouped by when it was last used."""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import datetime, timedelta

from PySide6.QtCore import QPoint, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QCheckBox,
    QFrame,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slmchat.core.store.records import Conversation, SearchHit
from slmchat.gui.plain_text import as_rich_text

SEARCH_DELAY_MS = 250
HIGHLIGHT = ("\x02", "\x03")  # marks the store wraps matched words in; turned into <b> here
_CONVERSATION = Qt.ItemDataRole.UserRole + 1
_MESSAGE = Qt.ItemDataRole.UserRole + 2


def group_name(conversation: Conversation, now: datetime) -> str:
    """Pinned first, then Today / Previous 7 days / Older by last use, in local time."""
    if conversation.pinned:
        return "Pinned"
    local_day = conversation.updated.astimezone(now.tzinfo).date()
    if local_day >= now.date():
        return "Today"
    if local_day >= (now - timedelta(days=7)).date():
        return "Previous 7 days"
    return "Older"


def snippet_html(snippet: str) -> str:
    """A search snippet as safe rich text, matched words in bold."""
    start, end = HIGHLIGHT
    return html.escape(snippet).replace(start, "<b>").replace(end, "</b>").replace("\n", " ")


class Sidebar(QFrame):
    """Lists conversations, or search results while the search box has text."""

    new_chat = Signal()
    opened = Signal(int, object)  # conversation id, message id (a search hit) or None
    search_changed = Signal(str)
    rename_requested = Signal(int)
    pin_requested = Signal(int, bool)
    delete_requested = Signal(int)
    trash_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Sidebar")
        self.setMinimumWidth(220)
        self.setMaximumWidth(360)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 12, 10, 10)
        layout.setSpacing(8)

        self.new_button = QPushButton("+  New chat")
        self.new_button.setProperty("primary", True)
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_button.clicked.connect(self.new_chat)
        layout.addWidget(self.new_button)

        self.search_box = QLineEdit()
        self.search_box.setPlaceholderText("Search chats")
        self.search_box.setAccessibleName("Search conversations")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setToolTip("Search every conversation (Ctrl+F)")
        layout.addWidget(self.search_box)
        self._search_timer = QTimer(self, singleShot=True, interval=SEARCH_DELAY_MS)
        self._search_timer.timeout.connect(lambda: self.search_changed.emit(self.search_text()))
        self.search_box.textChanged.connect(lambda _text: self._search_timer.start())
        self.meaning_toggle = QCheckBox("By meaning")
        self.meaning_toggle.setAccessibleName("Search by meaning")
        self.meaning_toggle.setToolTip("Find messages about the same thing, even in other words")
        self.meaning_toggle.toggled.connect(lambda _on: self._search_timer.start())
        self.meaning_toggle.hide()
        layout.addWidget(self.meaning_toggle)

        self.list = QListWidget()
        self.list.setObjectName("ConversationList")
        self.list.setAccessibleName("Conversations")
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        self.list.itemActivated.connect(self._activate)
        self.list.itemClicked.connect(self._activate)
        self.empty_label = QLabel("No conversations yet.")
        self.empty_label.setProperty("role", "muted")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setContentsMargins(0, 16, 0, 0)
        layout.addWidget(self.empty_label)
        self.empty_label.hide()
        layout.addWidget(self.list, 1)

        self.trash_button = QPushButton("Trash")
        self.trash_button.setFlat(True)
        self.trash_button.setAccessibleName("Trash")
        self.trash_button.setToolTip("Deleted chats: restore them or delete them forever")
        self.trash_button.clicked.connect(self.trash_requested)
        layout.addWidget(self.trash_button, 0, Qt.AlignmentFlag.AlignLeft)
        self._pinned: dict[int, bool] = {}

    def search_text(self) -> str:
        return self.search_box.text().strip()

    def by_meaning(self) -> bool:
        return self.meaning_toggle.isChecked() and not self.meaning_toggle.isHidden()

    def set_meaning_available(self, available: bool) -> None:
        """Offer "By meaning" only when an embedding model is in the library; full-text stays
        the default."""
        self.meaning_toggle.setVisible(available)
        if not available:
            self.meaning_toggle.setChecked(False)

    # --- filling ---------------------------------------------------------------------------
    def _header(self, text: str) -> None:
        item = QListWidgetItem(text.upper())
        item.setFlags(Qt.ItemFlag.NoItemFlags)
        font = item.font()
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.8))
        font.setBold(True)
        item.setFont(font)
        item.setForeground(self.palette().placeholderText())
        item.setSizeHint(QSize(0, 30))
        self.list.addItem(item)

    def set_conversations(self, conversations: Sequence[Conversation], current_id: int | None,
                          now: datetime | None = None) -> None:
        """Show `conversations` (already newest first, pinned first) under their group names."""
        now = now or datetime.now().astimezone()
        self.list.clear()
        self._pinned = {c.id: c.pinned for c in conversations}
        group = None
        for conversation in conversations:
            name = group_name(conversation, now)
            if name != group:
                self._header(name)
                group = name
            item = QListWidgetItem(conversation.title or "New chat")
            item.setData(_CONVERSATION, conversation.id)
            item.setToolTip(as_rich_text(conversation.title))
            item.setSizeHint(QSize(0, 34))
            self.list.addItem(item)
            if conversation.id == current_id:
                self.list.setCurrentItem(item)
        self.empty_label.setText("No conversations yet.")
        self.empty_label.setVisible(not conversations)

    def set_search_results(self, hits: Sequence[SearchHit]) -> None:
        self.list.clear()
        for hit in hits:
            item = QListWidgetItem()
            item.setData(_CONVERSATION, hit.conversation_id)
            item.setData(_MESSAGE, hit.message_id)
            # Words found only in a reply's thinking say so: the answer itself may not hold them.
            where = "Thinking: " if hit.in_thinking else ""
            item.setData(Qt.ItemDataRole.AccessibleTextRole, f"{hit.conversation_title}: {where}{hit.snippet}")
            label = QLabel(
                f"<b>{html.escape(hit.conversation_title or 'New chat')}</b><br>"
                f"<span style='font-size:small'>{'<i>Thinking:</i> ' if where else ''}"
                f"{snippet_html(hit.snippet)}</span>"
            )
            label.setWordWrap(True)
            label.setTextFormat(Qt.TextFormat.RichText)
            label.setContentsMargins(10, 6, 10, 6)
            label.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
            item.setSizeHint(QSize(0, label.sizeHint().height() + 16))
            self.list.addItem(item)
            self.list.setItemWidget(item, label)
        self.empty_label.setText("Nothing found.")
        self.empty_label.setVisible(not hits)

    # --- user intent ------------------------------------------------------------------------
    def _activate(self, item: QListWidgetItem) -> None:
        conversation_id = item.data(_CONVERSATION)
        if conversation_id is not None:
            self.opened.emit(conversation_id, item.data(_MESSAGE))

    def _context_menu(self, pos: QPoint) -> None:
        item = self.list.itemAt(pos)
        if item is None or item.data(_CONVERSATION) is None:
            return
        conversation_id: int = item.data(_CONVERSATION)
        pinned = self._pinned.get(conversation_id, False)
        menu = QMenu(self)
        rename = QAction("Rename…", menu)
        rename.triggered.connect(lambda: self.rename_requested.emit(conversation_id))
        pin = QAction("Unpin" if pinned else "Pin to top", menu)
        pin.triggered.connect(lambda: self.pin_requested.emit(conversation_id, not pinned))
        delete = QAction("Delete", menu)
        delete.triggered.connect(lambda: self.delete_requested.emit(conversation_id))
        menu.addActions([rename, pin])
        menu.addSeparator()
        menu.addAction(delete)
        menu.popup(self.list.viewport().mapToGlobal(pos))
