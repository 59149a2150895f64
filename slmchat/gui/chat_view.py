"""The conversation: a virtualised list of messages, each drawn from one cached layout.

A `QListView` over `ChatModel` (a `QAbstractListModel`) with `MessageDelegate` painting each
message from a `QTextDocument` built once and kept until the message, the width or the theme
changes; a message not yet drawn gets an estimated height, so opening a long chat renders only
what is on screen. While a reply streams, only the growing message is rendered again, when its text
changes (the worker delivers text in ~50 ms batches), and of it only the blocks still growing
(`stream_blocks`); the list places its rows again only when that message's height changes, each
row answering from a height it remembers (a dict lookup by row), so a 500-message chat and a long
reply stream as smoothly as a short one. Buttons (Copy, Regenerate, ‹ 2/3 ›
…) are links inside the documents; the view turns clicks on them into `action` signals.

A thinking model's reply shows its thinking folded above the answer: "Thinking…" while it thinks,
"Thought for 12 s" once the answer has begun; a click unfolds it (the view does that itself, it is
only presentation) and the thinking is drawn muted beside a rail, streamed in settled blocks like
the answer.

A reply answered from the user's documents lists its sources under it ("[1] notes.txt — page 3");
a click unfolds the words it cites and a link that opens the file (the view does both itself:
the sources are the app's own record of the user's files, not the model's text).

Everything drawn is HTML we build: the message text goes through `markdown` (which escapes it),
the model's name and an error text are escaped here. A link in a message is passed on to be
opened only when it is http, https or mailto (`openable_link`); any other link does nothing.
"""

from __future__ import annotations

import enum
import html
from collections.abc import Sequence
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    QPointF,
    QRectF,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import (
    QAbstractTextDocumentLayout,
    QColor,
    QDesktopServices,
    QFont,
    QFontDatabase,
    QFontMetrics,
    QPainter,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QMenu,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QWidget,
)

from slmchat.gui import markdown, stream_blocks
from slmchat.gui.theme import Theme

COLUMN_MAX_WIDTH = 760
SIDE_MARGIN = 24
ROW_PADDING = 10
BUBBLE_PADDING = 12
FOOTER_GAP = 4
PART_GAP = 6  # between the separately drawn blocks of a streaming reply: the margins a whole one has


OPENABLE_SCHEMES = frozenset({"http", "https", "mailto"})


def openable_link(url: str) -> bool:
    """Whether a link in a message may be handed to the system to open: a web page or an e-mail
    address. A model's reply is untrusted, and `file:`, `smb:`, `javascript:` or a relative link
    opened by the desktop could run or reveal something; those are never passed on."""
    parsed = QUrl(url)  # parsed as QDesktopServices.openUrl(QUrl(url)) will be
    scheme = parsed.scheme().lower()
    if not parsed.isValid() or scheme not in OPENABLE_SCHEMES:
        return False
    return scheme == "mailto" or bool(parsed.host())


class Action(str, enum.Enum):
    """What a click on a message can ask for; carried by `ChatView.action`."""

    COPY = "copy"
    COPY_CODE = "copy-code"
    REGENERATE = "regenerate"
    CONTINUE = "continue"
    EDIT = "edit"
    PREVIOUS = "previous"
    NEXT = "next"
    LINK = "link"
    SENTIMENT = "sentiment"
    THINKING = "thinking"  # fold or unfold a reply's thinking: handled by the view itself
    SOURCE = "source"  # fold or unfold a source's words: handled by the view itself
    OPEN_SOURCE = "open-source"  # open a source's file: handled by the view itself


_ENDINGS = {
    "stopped": "Stopped by you",
    "length": "Reached the length limit",
    "context_full": "The conversation filled the model's memory",
    "interrupted": "Interrupted — the model stopped unexpectedly",
    "error": "Ended with an error",
}


@dataclass(frozen=True)
class SourceView:
    """One document a reply was answered from, as the store keeps it (`Store.set_sources`)."""

    n: int  # its number in the prompt: the model cites it as [n]
    file: str  # the file's path
    place: str  # where in it: "page 3", a heading, "whole document"
    snippet: str  # the words given to the model (the start of them)

    @classmethod
    def of(cls, number: int, stored: dict[str, Any]) -> SourceView:
        n = stored.get("n")
        return cls(n if isinstance(n, int) else number, stored["file"], stored["place"], stored["snippet"])


@dataclass(frozen=True)
class MessageView:
    """What one row shows; built by the controller from the store's records."""

    id: Any
    role: str  # "user" or "assistant"
    text: str
    model: str = ""
    streaming: bool = False
    finish_reason: str = ""  # a FinishReason value; "" or "done" shows nothing
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    sibling_index: int = 0
    sibling_count: int = 1
    error: str = ""
    thinking: str = ""  # a thinking model's reasoning, shown folded above the answer (`text`)
    thinking_open: bool = False  # still thinking: no answer yet
    thinking_seconds: float | None = None  # how long it thought
    thinking_unfolded: bool = False  # the user opened the thinking to read it
    sources: tuple[SourceView, ...] = ()  # the documents the reply was answered from
    source_unfolded: int = 0  # the number of the source whose words are shown (0: none)

    @property
    def thought(self) -> bool:
        return bool(self.thinking) or self.thinking_open

    @property
    def is_user(self) -> bool:
        return self.role == "user"

    @property
    def can_continue(self) -> bool:
        return not self.is_user and not self.streaming and self.finish_reason in ("stopped", "length")


class ChatModel(QAbstractListModel):
    """The shown branch of a conversation, oldest first."""

    MessageRole = Qt.ItemDataRole.UserRole + 1

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[MessageView] = []

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        if role == self.MessageRole:
            return row
        if role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.AccessibleTextRole):
            return f"{'You' if row.is_user else row.model or 'Assistant'}: {row.text}"
        return None

    def messages(self) -> list[MessageView]:
        return list(self._rows)

    def message(self, row: int) -> MessageView:
        return self._rows[row]

    def set_messages(self, messages: list[MessageView]) -> None:
        """Show `messages`, touching only the rows that differ (the list keeps its layout)."""
        if not self._rows or not messages or self._rows[0].id != messages[0].id:
            self.beginResetModel()
            self._rows = list(messages)
            self.endResetModel()
            return
        common = 0
        while common < min(len(self._rows), len(messages)) and self._rows[common].id == messages[common].id:
            if self._rows[common] != messages[common]:
                self._rows[common] = messages[common]
                index = self.index(common)
                self.dataChanged.emit(index, index, [self.MessageRole])
            common += 1
        self.truncate(common)
        if common < len(messages):
            self.beginInsertRows(QModelIndex(), common, len(messages) - 1)
            self._rows.extend(messages[common:])
            self.endInsertRows()

    def append(self, message: MessageView) -> int:
        row = len(self._rows)
        self.beginInsertRows(QModelIndex(), row, row)
        self._rows.append(message)
        self.endInsertRows()
        return row

    def update(self, row: int, **changes: Any) -> None:
        """Change fields of one row; only that row's layout is rebuilt."""
        self._rows[row] = replace(self._rows[row], **changes)
        index = self.index(row)
        self.dataChanged.emit(index, index, [self.MessageRole])

    def append_text(self, row: int, text: str) -> None:
        self.update(row, text=self._rows[row].text + text)

    def truncate(self, row_count: int) -> None:
        """Drop rows from `row_count` on (the branch below an edited or regenerated message)."""
        if row_count < len(self._rows):
            self.beginRemoveRows(QModelIndex(), row_count, len(self._rows) - 1)
            del self._rows[row_count:]
            self.endRemoveRows()


MAX_CACHED_LAYOUTS = 3000


@dataclass
class _Layout:
    key: tuple
    height: int
    docs: list[tuple[QTextDocument, QPointF, int]]  # each with the number of code blocks before it
    bubble: QRectF | None
    code_blocks: list[str]
    rail: QRectF | None = None  # beside an unfolded thinking


@dataclass
class _Settled:
    """The settled blocks of a streaming reply (`stream_blocks`), each rendered once."""

    key: tuple  # (column width, theme, font): a change renders them again
    text: str  # what they show: the start of the reply
    parts: list[tuple[QTextDocument, list[str]]]  # a document and its code blocks, per block


THINKING_INDENT = 14  # the unfolded thinking, right of its rail


class MessageDelegate(QStyledItemDelegate):
    """Lays out and paints messages, one cached `_Layout` per message id."""

    def __init__(self, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._theme = theme
        self._layouts: dict[Any, _Layout] = {}
        # What sizeHint last answered for each row, with the width it was for: the list asks every
        # row again on each layout, and most rows have not changed since.
        self._hints: dict[int, tuple[int, QSize]] = {}
        self._estimates: dict[Any, tuple[tuple, int]] = {}  # heights of messages not drawn yet
        self._settled: dict[Any, _Settled] = {}  # per streaming reply: its answer
        self._settled_thinking: dict[Any, _Settled] = {}  # and its thinking
        self._mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont).family()
        self._fix_heights = QTimer(self, singleShot=True, interval=0)
        self._fix_heights.timeout.connect(lambda: self.sizeHintChanged.emit(QModelIndex()))

    def set_theme(self, theme: Theme) -> None:
        self._theme = theme
        self.forget()

    def forget(self) -> None:
        """Drop every cached layout and height (after a font or theme change)."""
        self._layouts.clear()
        self._estimates.clear()
        self._settled.clear()
        self._settled_thinking.clear()
        self._hints.clear()

    def forget_rows(self, first: int = 0) -> None:
        """Drop the heights remembered for rows `first` and below (rows were inserted or removed there)."""
        for row in [row for row in self._hints if row >= first]:
            del self._hints[row]

    def forget_gone(self, shown: set[Any]) -> None:
        """Drop the settled blocks of streaming replies no longer in the list, and the layout
        that draws them: after a switch to another chat mid-reply (or a regenerate), nothing
        else would free their documents until the cache fills. A reply shown again is
        rendered afresh."""
        for settled in (self._settled, self._settled_thinking):
            for message_id in [message_id for message_id in settled if message_id not in shown]:
                del settled[message_id]
                self._layouts.pop(message_id, None)

    def forget_height(self, row: int) -> None:
        """The list must ask `row` again: its message changed height."""
        self._hints.pop(row, None)

    def hinted_height(self, row: int) -> int | None:
        """The height the list was last given for `row`, or None if it has not asked since a change."""
        hint = self._hints.get(row)
        return hint[1].height() if hint is not None else None

    # --- layout ---------------------------------------------------------------------------
    def _document(self, html: str, font: QFont, width: float) -> QTextDocument:
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(font)
        doc.setDefaultStyleSheet(markdown.document_css(self._theme, self._mono))
        doc.setHtml(html)
        doc.setTextWidth(width)
        return doc

    def _footer_html(self, message: MessageView) -> str:
        muted, danger = self._theme["muted"], self._theme["danger"]
        link = f'style="color:{muted}; text-decoration:none;"'
        if message.streaming:  # while it thinks, the thinking header says so already
            return "" if message.thinking_open else f'<span style="color:{muted};">Writing…</span>'
        actions: list[str] = [f'<a href="act:{Action.COPY.value}" {link}>Copy</a>']
        if message.is_user:
            actions.append(f'<a href="act:{Action.EDIT.value}" {link}>Edit</a>')
        else:
            if message.can_continue:
                actions.append(f'<a href="act:{Action.CONTINUE.value}" {link}>Continue</a>')
            actions.append(f'<a href="act:{Action.REGENERATE.value}" {link}>Regenerate</a>')
        if message.sibling_count > 1:
            actions.append(
                f'<a href="act:{Action.PREVIOUS.value}" {link}>&nbsp;&#8249;&nbsp;</a>'
                f"{message.sibling_index + 1}/{message.sibling_count}"
                f'<a href="act:{Action.NEXT.value}" {link}>&nbsp;&#8250;&nbsp;</a>'
            )
        buttons = "&nbsp;&nbsp;&nbsp;".join(actions)
        if message.is_user:
            return f'<p align="right" style="margin:0;">{buttons}</p>'
        facts = [html.escape(message.model)] if message.model else []
        if message.ttft_s is not None:
            facts.append(f"{message.ttft_s:.2f} s to first word")
        if message.tokens_per_s:
            facts.append(f"{message.tokens_per_s:.0f} tokens/s")
        ending = _ENDINGS.get(message.finish_reason, "")
        meta = f'<span style="color:{muted};">{" · ".join(facts)}</span>'
        if ending:
            meta += f'<span style="color:{self._theme["warn"]};">{" · " if facts else ""}{ending}</span>'
        if message.error:
            error = html.escape(message.error).replace("\n", "<br>")
            meta += f'<br><span style="color:{danger};">{error}</span>'
        return (
            f'<table width="100%" cellspacing="0" cellpadding="0"><tr><td>{meta}</td>'
            f'<td align="right">{buttons}</td></tr></table>'
        )

    def _layout(self, message: MessageView, font: QFont, width: int) -> _Layout:
        key = (message, width, self._theme.name, font.key())  # the whole message: any change re-lays out
        cached = self._layouts.get(message.id)
        if cached is not None and cached.key == key:
            return cached
        column = min(COLUMN_MAX_WIDTH, max(200, width - 2 * SIDE_MARGIN))
        left = (width - column) / 2
        small = QFont(font)
        small.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        rail = None
        if message.is_user:
            rendered = markdown.plain(message.text)
            inner_max = column * 0.8 - 2 * BUBBLE_PADDING
            body = self._document(rendered.html, font, inner_max)
            inner = min(inner_max, body.idealWidth())
            body.setTextWidth(inner)
            bubble = QRectF(left + column - inner - 2 * BUBBLE_PADDING, ROW_PADDING,
                            inner + 2 * BUBBLE_PADDING, body.size().height() + 2 * BUBBLE_PADDING)
            body_pos = QPointF(bubble.left() + BUBBLE_PADDING, bubble.top() + BUBBLE_PADDING)
            footer_top = bubble.bottom() + FOOTER_GAP
            docs = [(body, body_pos, 0)]
            code_blocks: list[str] = []
        else:
            bubble = None
            docs, code_blocks = [], []
            footer_top = ROW_PADDING
            if message.thought:
                header = self._document(self._thinking_header_html(message), small, column)
                docs.append((header, QPointF(left, footer_top), 0))
                footer_top += header.size().height() + PART_GAP
            if message.thought and message.thinking_unfolded and message.thinking:
                top = footer_top
                for body, blocks in self._streamed_parts(message, "thinking", font, column - THINKING_INDENT):
                    docs.append((body, QPointF(left + THINKING_INDENT, footer_top), len(code_blocks)))
                    code_blocks += blocks
                    footer_top += body.size().height() + PART_GAP
                rail = QRectF(left + 3, top, 2, footer_top - PART_GAP - top)
                footer_top += PART_GAP
            for body, blocks in self._body_parts(message, font, column):
                docs.append((body, QPointF(left, footer_top), len(code_blocks)))
                code_blocks += blocks
                footer_top += body.size().height() + PART_GAP
            if message.sources and not message.streaming:
                sources = self._document(self._sources_html(message), small, column)
                docs.append((sources, QPointF(left, footer_top), len(code_blocks)))
                footer_top += sources.size().height() + PART_GAP
            footer_top += FOOTER_GAP - PART_GAP
        footer = self._document(self._footer_html(message), small, column)
        docs.append((footer, QPointF(left, footer_top), len(code_blocks)))
        height = int(footer_top + footer.size().height() + ROW_PADDING)
        layout = _Layout(key=key, height=height, docs=docs, bubble=bubble, code_blocks=code_blocks, rail=rail)
        if len(self._layouts) >= MAX_CACHED_LAYOUTS:
            self._layouts.clear()  # the heights already given stay right: only the drawings go
            self._estimates.clear()
            self._settled.clear()
            self._settled_thinking.clear()
        self._layouts[message.id] = layout
        return layout

    def _body_parts(self, message: MessageView, font: QFont, column: int) -> list[tuple[QTextDocument, list[str]]]:
        """An assistant message's answer; while nothing has come yet, a word that it is coming
        (none under a thinking header, which says so itself)."""
        if not message.text:
            if message.thought:
                return []
            html = f'<p style="color:{self._theme["muted"]};">Thinking…</p>'
            return [(self._document(html, font, column), [])]
        return self._streamed_parts(message, "answer", font, column)

    def _streamed_parts(self, message: MessageView, part: str, font: QFont,
                        column: int) -> list[tuple[QTextDocument, list[str]]]:
        """One part of a reply ("answer" or "thinking", drawn muted) as one document, or for a
        streaming reply its settled blocks (rendered once, kept) and the growing rest (rendered
        on each update)."""
        muted = part == "thinking"
        text, kept = (message.thinking, self._settled_thinking) if muted else (message.text, self._settled)
        if not message.streaming:
            kept.pop(message.id, None)
            return [self._part(text, font, column, muted)]
        key = (column, self._theme.name, font.key())
        settled = kept.get(message.id)
        if settled is None or settled.key != key or not text.startswith(settled.text):
            settled = kept[message.id] = _Settled(key=key, text="", parts=[])
        end = stream_blocks.settled_end(text, len(settled.text))
        if end > len(settled.text):
            settled.parts.append(self._part(text[len(settled.text):end], font, column, muted))
            settled.text = text[:end]
        rest = text[end:]
        return settled.parts + ([self._part(rest, font, column, muted)] if rest else [])

    def _thinking_header_html(self, message: MessageView) -> str:
        """"Thinking…" while the model thinks, then how long it thought; a click folds or unfolds."""
        muted = self._theme["muted"]
        if message.thinking_open and message.streaming:
            said = "Thinking…"
        elif message.thinking_seconds is None:
            said = "Thought"
        else:
            said = f"Thought for {max(1, round(message.thinking_seconds))} s"
        arrow = "&#9662;" if message.thinking_unfolded else "&#9656;"  # ▾ unfolded, ▸ folded
        return (f'<a href="act:{Action.THINKING.value}" style="color:{muted}; text-decoration:none;">'
                f"{arrow}&nbsp;{said}</a>")

    def _sources_html(self, message: MessageView) -> str:
        """"Sources", then one link per source; the unfolded one shows its words and a link to
        open its file."""
        muted, accent = self._theme["muted"], self._theme["accent"]
        link = f'style="color:{accent}; text-decoration:none;"'
        lines = [f'<p style="margin:0; color:{muted};">Sources</p>']
        for source in message.sources:
            where = f" — {html.escape(source.place)}" if source.place else ""
            lines.append(f'<p style="margin:0;"><a href="act:{Action.SOURCE.value}:{source.n}" {link}>'
                         f"[{source.n}] {html.escape(Path(source.file).name)}{where}</a></p>")
            if source.n == message.source_unfolded:
                lines.append(f'<p style="margin:2px 0 4px 14px; color:{muted};">“{html.escape(source.snippet)}”'
                             f'&nbsp;&nbsp;<a href="act:{Action.OPEN_SOURCE.value}:{source.n}" {link}>'
                             "Open the file</a></p>")
        return "".join(lines)

    def _part(self, text: str, font: QFont, column: int, muted: bool = False) -> tuple[QTextDocument, list[str]]:
        rendered = markdown.render(text, self._theme)
        html = f'<div style="color:{self._theme["muted"]};">{rendered.html}</div>' if muted else rendered.html
        return self._document(html, font, column), rendered.code_blocks

    # --- Qt's delegate interface ----------------------------------------------------------
    def _estimate(self, message: MessageView, font: QFont, width: int) -> int:
        """A height without rendering: counted lines of text, for messages not yet on screen."""
        column = min(COLUMN_MAX_WIDTH, max(200, width - 2 * SIDE_MARGIN))
        metrics = QFontMetrics(font)
        per_line = max(10, int(column * (0.8 if message.is_user else 1.0) / max(1, metrics.averageCharWidth())))
        lines = sum(max(1, -(-len(line) // per_line)) for line in message.text.split("\n"))
        return lines * metrics.lineSpacing() + 2 * ROW_PADDING + FOOTER_GAP + 2 * metrics.lineSpacing()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        """The exact height once a message has been drawn, an estimate before.

        Opening a 500-message chat must not render 500 messages: the view asks every row for
        its height, but only the rows it paints get (and keep) a real layout. And each layout of
        the list asks all 500 rows again, so a row whose height was given before and has not
        changed since (see `forget_rows`, `ChatView.dataChanged`) answers from a dict.
        """
        width = option.widget.viewport().width() if option.widget else option.rect.width()
        hint = self._hints.get(index.row())
        if hint is not None and hint[0] == width:
            return hint[1]
        message: MessageView = index.data(ChatModel.MessageRole)
        cached = self._layouts.get(message.id)
        if cached is not None and cached.key == (message, width, self._theme.name, option.font.key()):
            height = cached.height
        elif cached is not None and cached.key[0] == message:
            height = cached.height  # only the width or theme changed: close enough until painted
        else:
            key = (message, width, option.font.key())
            estimate = self._estimates.get(message.id)
            if estimate is None or estimate[0] != key:
                estimate = (key, self._estimate(message, option.font, width))
                self._estimates[message.id] = estimate
            height = estimate[1]
        size = QSize(width, height)
        self._hints[index.row()] = (width, size)
        return size

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        message: MessageView = index.data(ChatModel.MessageRole)
        layout = self._layout(message, option.font, option.rect.width())
        if self.hinted_height(index.row()) not in (None, layout.height):
            del self._hints[index.row()]
            self._fix_heights.start()  # the estimate was off: place the rows again, once
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.translate(option.rect.topLeft())
        if layout.bubble is not None:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(self._theme["bubble"]))
            painter.drawRoundedRect(layout.bubble, 14, 14)
        if layout.rail is not None:
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(QColor(self._theme["border"]))
            painter.drawRoundedRect(layout.rail, 1, 1)
        context = QAbstractTextDocumentLayout.PaintContext()
        palette = QPalette(context.palette)
        palette.setColor(QPalette.ColorRole.Text, QColor(self._theme["text"]))
        context.palette = palette  # PySide returns a copy: set it back
        for doc, pos, _code_before in layout.docs:
            painter.save()
            painter.translate(pos)
            doc.documentLayout().draw(painter, context)
            painter.restore()
        painter.restore()

    def height(self, message: MessageView, font: QFont, width: int) -> int:
        return self._layout(message, font, width).height

    def anchor_at(self, message: MessageView, font: QFont, rect: QRectF, point: QPointF) -> str:
        """The link under `point` (view coordinates) in the row drawn at `rect`, or ""."""
        layout = self._layout(message, font, int(rect.width()))
        local = point - rect.topLeft()
        for doc, pos, code_before in layout.docs:
            anchor = doc.documentLayout().anchorAt(local - pos)
            if anchor.startswith(markdown.COPY_CODE):  # numbered within its document
                return f"{markdown.COPY_CODE}{code_before + int(anchor[len(markdown.COPY_CODE):])}"
            if anchor:
                return anchor
        return ""

    def code_block(self, message: MessageView, index: int) -> str:
        layout = self._layouts.get(message.id)
        return layout.code_blocks[index] if layout and index < len(layout.code_blocks) else ""


class ChatView(QListView):
    """Shows a `ChatModel`; follows the bottom while a reply streams unless the user scrolled up."""

    action = Signal(int, str, str)  # row, Action value, argument (code text, link url)

    def __init__(self, model: ChatModel, theme: Theme, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatView")
        self.setAccessibleName("Conversation")
        self.setModel(model)
        self._delegate = MessageDelegate(theme, self)
        self.setItemDelegate(self._delegate)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.verticalScrollBar().setSingleStep(24)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        # Always there, so the width never jumps (and every message is not laid out again) the
        # moment a chat grows taller than the window.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setUniformItemSizes(False)
        self.setMouseTracking(True)
        self._follow = True
        self.sentiment_available = False  # a classifier model is in the library
        self.open_url: Callable[[QUrl], object] = QDesktopServices.openUrl  # how a source's file is opened
        self.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.customContextMenuRequested.connect(self._context_menu)
        self.verticalScrollBar().rangeChanged.connect(self._keep_following)
        self.verticalScrollBar().valueChanged.connect(self._user_scrolled)
        model.modelReset.connect(self.follow_bottom)
        model.modelReset.connect(self._delegate.forget_rows)
        model.rowsInserted.connect(lambda _parent, first, _last: self._delegate.forget_rows(first))
        model.rowsRemoved.connect(lambda _parent, first, _last: self._delegate.forget_rows(first))
        model.modelReset.connect(self._forget_gone)
        model.rowsRemoved.connect(lambda *_rows: self._forget_gone())

    def set_theme(self, theme: Theme) -> None:
        self._delegate.set_theme(theme)
        self.scheduleDelayedItemsLayout()
        self.viewport().update()

    def refresh_layouts(self) -> None:
        """Re-lay out every message (after a font size change)."""
        self._delegate.forget()
        self.scheduleDelayedItemsLayout()

    def follow_bottom(self) -> None:
        self._follow = True
        self.scrollToBottom()

    def dataChanged(self, top_left: QModelIndex | QPersistentModelIndex,
                    bottom_right: QModelIndex | QPersistentModelIndex, roles: Sequence[int] = ()) -> None:
        """Lay out the changed messages now; place the list's rows again only if a height changed.

        Measured in a 200-message chat, one streamed piece that adds no line: passed on to
        QListView's dataChanged, the delegate's sizeHint was asked ~200 times for the other rows;
        going straight to QAbstractItemView's (which repaints the row and tells accessibility
        tools), not once. A streaming reply changes every ~50 ms and grows a line far less often,
        so the rows are placed again (sizeHintChanged) only when its height changed.
        """
        model = cast(ChatModel, self.model())
        for row in range(top_left.row(), bottom_right.row() + 1):
            height = self._delegate.height(model.message(row), self.font(), self.viewport().width())
            if self._delegate.hinted_height(row) != height:
                self._delegate.forget_height(row)
                self._delegate.sizeHintChanged.emit(model.index(row))
        QAbstractItemView.dataChanged(self, top_left, bottom_right, list(roles))

    def _forget_gone(self) -> None:
        self._delegate.forget_gone({message.id for message in cast(ChatModel, self.model()).messages()})

    def _keep_following(self, _minimum: int, maximum: int) -> None:
        if self._follow:
            self.verticalScrollBar().setValue(maximum)

    def _user_scrolled(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 8

    def _anchor(self, pos: QPointF) -> tuple[int, str]:
        index = self.indexAt(pos.toPoint())
        if not index.isValid():
            return -1, ""
        message = index.data(ChatModel.MessageRole)
        rect = QRectF(self.visualRect(index))
        return index.row(), self._delegate.anchor_at(message, self.font(), rect, pos)

    def mouseMoveEvent(self, event: Any) -> None:
        _row, anchor = self._anchor(event.position())
        self.viewport().setCursor(Qt.CursorShape.PointingHandCursor if anchor else Qt.CursorShape.ArrowCursor)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: Any) -> None:
        row, anchor = self._anchor(event.position())
        if anchor and event.button() == Qt.MouseButton.LeftButton:
            self.trigger(row, anchor)
        super().mouseReleaseEvent(event)

    def message_menu(self, row: int) -> QMenu:
        """The right-click menu of a message: Copy, and Sentiment when a classifier is there."""
        menu = QMenu(self)
        entries = [("Copy", Action.COPY)]
        if self.sentiment_available:
            entries.append(("Sentiment", Action.SENTIMENT))
        for label, action in entries:
            menu.addAction(label).triggered.connect(
                lambda _checked=False, value=action.value: self.action.emit(row, value, ""))
        return menu

    def _context_menu(self, pos: QPoint) -> None:
        index = self.indexAt(pos)
        if index.isValid():
            self.message_menu(index.row()).popup(self.viewport().mapToGlobal(pos))

    def trigger(self, row: int, anchor: str) -> None:
        """Act on a link of row `row` as if clicked (also what tests call)."""
        message = self.model().message(row)
        if anchor == f"act:{Action.THINKING.value}":
            self.model().update(row, thinking_unfolded=not message.thinking_unfolded)
        elif anchor.startswith(f"act:{Action.SOURCE.value}:"):
            number = int(anchor.rsplit(":", 1)[1])
            self.model().update(row, source_unfolded=0 if message.source_unfolded == number else number)
        elif anchor.startswith(f"act:{Action.OPEN_SOURCE.value}:"):
            number = int(anchor.rsplit(":", 1)[1])
            source = next((s for s in message.sources if s.n == number), None)
            if source is not None:
                self.open_url(QUrl.fromLocalFile(source.file))
        elif anchor.startswith("act:"):
            self.action.emit(row, anchor[4:], "")
        elif anchor.startswith(markdown.COPY_CODE):
            code = self._delegate.code_block(message, int(anchor[len(markdown.COPY_CODE):]))
            self.action.emit(row, Action.COPY_CODE.value, code)
        elif openable_link(anchor):
            self.action.emit(row, Action.LINK.value, anchor)
