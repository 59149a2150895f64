"""Streaming into a long chat: the list places its rows again only when the reply's height changes."""

from __future__ import annotations

import gc
import weakref

import pytest
import shiboken6
from markdown_it import MarkdownIt
from PySide6.QtCore import QPointF, QRectF
from PySide6.QtWidgets import QApplication

from slmchat.gui.chat_view import ChatModel, ChatView, MessageDelegate, MessageView
from slmchat.gui.stream_blocks import settled_end
from slmchat.gui.theme import load_theme

LONG_CHAT = 200


def _answer(n: int) -> str:
    return f"## Answer {n}\n\nSome **words** about it.\n\n1. one\n2. two\n\n```python\nx = {n}\n```\n"


def _long_chat(streaming_text: str) -> list[MessageView]:
    messages = [MessageView(id=n, role="user" if n % 2 else "assistant",
                            text=f"Question {n}?" if n % 2 else _answer(n), model="Test model")
                for n in range(1, LONG_CHAT)]
    return messages + [MessageView(id=LONG_CHAT, role="assistant", text=streaming_text, model="Test model",
                                   streaming=True)]


@pytest.fixture
def asked(monkeypatch) -> list[int]:
    """The rows the list asks the real delegate for a height (installed before a view is built)."""
    rows: list[int] = []
    real = MessageDelegate.sizeHint

    def counting(self, option, index):
        rows.append(index.row())
        return real(self, option, index)

    monkeypatch.setattr(MessageDelegate, "sizeHint", counting)
    return rows


@pytest.fixture
def long_chat(qtbot, asked):
    model = ChatModel()
    view = ChatView(model, load_theme("light"))
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    model.set_messages(_long_chat("The answer"))
    qtbot.waitExposed(view)
    qtbot.wait(50)  # estimates replaced by real heights, rows placed
    yield model, view
    shiboken6.delete(view)  # before `asked` gives the delegate class its own sizeHint back


def _settle(qtbot) -> None:
    """Let Qt run its delayed layout (a zero-time timer) and paint."""
    qtbot.wait(30)
    QApplication.processEvents()


def test_a_streamed_piece_that_adds_no_line_does_not_lay_out_the_other_rows(qtbot, long_chat, asked):
    model, view = long_chat
    streaming = model.rowCount() - 1
    height = view.visualRect(model.index(streaming)).height()
    asked.clear()
    for word in (" is", " short"):
        model.append_text(streaming, word)
        _settle(qtbot)
    assert view.visualRect(model.index(streaming)).height() == height  # still one line
    assert [row for row in asked if row != streaming] == []


def test_a_streamed_piece_that_adds_a_line_grows_the_row_and_the_view_follows_it(qtbot, long_chat, asked):
    model, view = long_chat
    streaming = model.rowCount() - 1
    height = view.visualRect(model.index(streaming)).height()
    bar = view.verticalScrollBar()
    assert bar.value() == bar.maximum()
    model.append_text(streaming, "\n\nA second paragraph.\n\nAnd a third one.")
    _settle(qtbot)
    grown = view.visualRect(model.index(streaming))
    assert grown.height() > height
    assert view.viewport().rect().contains(grown.bottomLeft())  # scrolled along with the new lines
    assert bar.value() == bar.maximum()


def test_rows_replaced_below_a_message_get_their_own_heights(qtbot, long_chat):
    """A regenerated reply takes the place of a long one: the list must not keep the old row's height."""
    model, view = long_chat
    delegate = view.itemDelegate()
    messages = model.messages()
    short = MessageView(id=LONG_CHAT + 1, role="assistant", text="Short.", model="Test model")
    model.set_messages(messages[:-2] + [short])
    _settle(qtbot)
    for row in (model.rowCount() - 2, model.rowCount() - 1):
        expected = delegate.height(model.message(row), view.font(), view.viewport().width())
        assert view.visualRect(model.index(row)).height() == expected, row


def test_a_row_removed_and_replaced_is_asked_for_its_height_again(qtbot, long_chat):
    """Heights are remembered by row: a replaced row must not answer with the old message's."""
    model, view = long_chat
    delegate = view.itemDelegate()
    last = model.rowCount() - 1
    assert delegate.hinted_height(last) is not None  # the list has asked for it and it is remembered
    model.truncate(last)
    model.append(MessageView(id=LONG_CHAT + 1, role="assistant", text="Short.", model="Test model"))
    assert delegate.hinted_height(last) is None


# --- a long reply is drawn as settled blocks plus the growing rest ------------------------------
def test_a_block_settles_once_a_blank_line_ends_it_and_the_next_begins_at_the_margin():
    assert settled_end("First paragraph.\n\nSecond") == 0  # the line after the blank is not complete yet
    text = "First paragraph.\n\nSecond paragraph.\nstill growing"
    assert text[:settled_end(text)] == "First paragraph.\n\n"


def test_blocks_do_not_settle_inside_a_code_fence_or_a_list():
    fenced = "Code:\n\n```python\nx = 1\n\ny = 2\n```\n"
    assert fenced[:settled_end(fenced + "more")] == "Code:\n\n"  # the blank line inside the fence splits nothing
    assert settled_end(fenced + "\nAfter.\n") == len(fenced) + 1  # after the fence closes, it does
    listed = "1. one\n\n2. two\n\n   more about two\n"
    assert settled_end(listed) == 0  # a loose list and a continuation stay with their list


FENCED_BLOCKS = {
    "a longer fence holds shorter ones": "````markdown\n```python\nx = 1\n\nText inside.\n```\n\n````\n",
    "an info string does not close a fence": "```\n```python\n\nprint(1)\n```\n",
    "text after the markers does not close a fence": "```\ncode\n``` and more\n\nstill code\n```\n",
    "tildes do not close backticks": "```\n~~~\n\nstill code\n```\n",
    "backticks do not close tildes": "~~~\n```\n\nstill code\n~~~\n",
    "fewer tildes do not close": "~~~~\n~~~\n\nstill code\n~~~~ \n",
    "indented up to three spaces": "   ```\ncode\n\n  more\n  ```\n",
    "backticks in the info string make inline code": "```ls``` lists the files.\n",
}


@pytest.mark.parametrize("block", FENCED_BLOCKS.values(), ids=FENCED_BLOCKS.keys())
def test_a_code_fence_closes_only_as_commonmark_closes_it(block: str):
    intro = "Intro.\n\n"
    text = intro + block + "\nAfter.\nmore"
    # markdown-it, which renders the reply, sees three blocks: the intro, this one, "After."
    after_line = intro.count("\n") + block.count("\n") + 1
    starts = sorted({token.map[0] for token in MarkdownIt("commonmark").parse(text) if token.level == 0 and token.map})
    assert starts == [0, intro.count("\n"), after_line]

    assert text[:settled_end(text)] == intro + block + "\n"
    for cut in range(len(intro), len(intro) + len(block)):  # nothing inside the block settles
        assert settled_end(text[:cut]) in (0, len(intro)), repr(text[:cut])


def test_settling_from_an_earlier_result_finds_what_settling_from_the_start_finds():
    text = "\n".join(_answer(n) for n in range(4))
    for cut in range(0, len(text), 5):
        earlier = settled_end(text[:cut])
        assert settled_end(text, earlier) == settled_end(text)


def _streamed(model: ChatModel, row: int, text: str, piece: int = 9) -> None:
    for start in range(0, len(text), piece):
        model.append_text(row, text[start:start + piece])


def test_a_streaming_reply_renders_only_its_growing_rest_and_copies_each_code_block(qtbot, long_chat):
    model, view = long_chat
    streaming = model.rowCount() - 1
    _streamed(model, streaming, "\n\n" + _answer(1) + "\n" + _answer(2) + "\nThe end")
    delegate = view.itemDelegate()
    message = model.message(streaming)
    first_parts = [doc for doc, _pos, _before in delegate._layouts[message.id].docs[:-2]]
    model.append_text(streaming, " is near")
    after = [doc for doc, _pos, _before in delegate._layouts[model.message(streaming).id].docs[:-2]]
    assert len(first_parts) > 2 and after == first_parts  # the settled blocks were not rendered again

    _settle(qtbot)
    view.scrollToBottom()
    _settle(qtbot)
    copied = []
    view.action.connect(lambda _row, _action, code: copied.append(code))
    for wanted in ("copy-code:0", "copy-code:1"):  # numbered across the separately drawn blocks
        assert wanted in _anchors(view, streaming)
        view.trigger(streaming, wanted)
    assert copied == ["x = 1\n", "x = 2\n"]


def _anchors(view: ChatView, row: int) -> set[str]:
    """Every link drawn in the visible part of `row`, found by pointing at it."""
    rect = view.visualRect(view.model().index(row))
    message = view.model().message(row)
    return {view.itemDelegate().anchor_at(message, view.font(), QRectF(rect), QPointF(x, y))
            for y in range(max(0, rect.top()), min(rect.bottom(), view.viewport().height()), 3)
            for x in range(rect.left(), rect.right(), 4)}


@pytest.mark.parametrize("leave", ["open another chat", "drop the reply"])
def test_a_streaming_reply_that_leaves_the_list_frees_its_settled_blocks(qtbot, long_chat, leave):
    model, view = long_chat
    streaming = model.rowCount() - 1
    _streamed(model, streaming, "\n\n" + _answer(1) + "\n" + _answer(2) + "\nThe end")
    delegate = view.itemDelegate()
    reply = model.message(streaming).id
    settled = [weakref.ref(doc) for doc, _blocks in delegate._settled[reply].parts]
    assert settled

    if leave == "open another chat":  # mid-reply: the reply never lays out again as finished
        model.set_messages([MessageView(id=LONG_CHAT + 10, role="user", text="Another chat")])
    else:
        model.truncate(streaming)
    _settle(qtbot)
    gc.collect()
    assert reply not in delegate._settled
    assert [ref for ref in settled if ref() is not None] == []  # the documents are gone, not cached
