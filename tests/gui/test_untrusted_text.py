"""Text written by others is shown as text: a model's name, an error, a title, a link in a reply.

A GGUF's `general.name`, a file's name in an error, a conversation title and a model's reply
are chosen by whoever made the file or the export. Qt draws a QLabel, a tooltip or a message
box as rich text when the text merely looks like HTML, so a model named `<h1>BIG</h1>` would
shout and one carrying `<a href="file:…">` would offer a link. Each test puts such text through
the real window or the real widget and checks what the user sees: the characters `<h1>` as typed.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import hostile_gguf
import pytest
from gui_helpers import wait_for_model
from PySide6 import QtGui
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QTextDocument
from PySide6.QtWidgets import QLabel, QMessageBox

from slmchat.core.models.catalog import load_catalog
from slmchat.gui.chat_view import Action, ChatModel, ChatView, MessageView
from slmchat.gui.model_manager import ModelManager
from slmchat.gui.theme import load_theme

HOSTILE = '<img src=x><a href="file:///etc/passwd">click</a><h1>BIG</h1>'


def as_seen(text: str, text_format: Qt.TextFormat = Qt.TextFormat.AutoText) -> str:
    """What Qt draws for `text` in a widget of `text_format` (AutoText: Qt's own guess, as for
    tooltips and the static QMessageBox functions)."""
    rich = text_format == Qt.TextFormat.RichText or (
        text_format == Qt.TextFormat.AutoText and QtGui.Qt.mightBeRichText(text))
    if not rich:
        return text
    document = QTextDocument()
    document.setHtml(text)
    return document.toPlainText()


def label_shows(label: QLabel) -> str:
    return as_seen(label.text(), label.textFormat())


def labels_showing(widget, needle: str) -> list[QLabel]:
    return [label for label in widget.findChildren(QLabel) if needle in label.text()]


@pytest.fixture
def hostile_model(tmp_path: Path, smollm2_path: Path) -> Path:
    """The real SmolLM2 with only its `general.name` replaced: a model that loads and chats."""
    return hostile_gguf.rewrite(smollm2_path, tmp_path / "hostile-name.gguf",
                                set_kv={"general.name": hostile_gguf.value(hostile_gguf.STRING, HOSTILE)})


# --- a model's name, from its own file ------------------------------------------------------------
def test_a_model_named_in_html_is_shown_as_those_characters_in_the_bar_and_in_my_models(
    qtbot, make_window, hostile_model, monkeypatch
):
    window = make_window()
    model = window.library.import_file(hostile_model, copy=False)
    window.refresh_models()
    bar = window.model_bar
    assert HOSTILE in bar.switcher.itemText(bar.switcher.findData(model.id))

    window.switch_model(model.id)
    assert bar.status.textFormat() == Qt.TextFormat.PlainText
    assert label_shows(bar.status).startswith(f"Loading {HOSTILE}")
    wait_for_model(qtbot, window)
    assert HOSTILE in as_seen(bar.backend.toolTip())  # the loaded model's facts, from the engine

    manager: ModelManager = window.model_manager(load_catalog())
    qtbot.addWidget(manager)
    manager.show()
    manager.tabs.setCurrentWidget(manager.my_models)
    (heading,) = labels_showing(manager.my_models, HOSTILE)
    assert heading.textFormat() == Qt.TextFormat.PlainText and HOSTILE in label_shows(heading)

    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _parent, _title, text, *a: asked.append(text)
                        or QMessageBox.StandardButton.No)
    manager.my_models._remove(window.library.get(model.id))
    assert as_seen(asked[0]).startswith(f"Remove {HOSTILE}") and as_seen(asked[0]).endswith(" from slmchat?")


def test_a_file_name_in_an_error_notice_and_in_the_import_question_is_shown_as_text(
    qtbot, make_window, smollm2_path, tmp_path, monkeypatch
):
    window = make_window()
    odd = tmp_path / "<h1>BIG<h1><img src=x>.gguf"  # a legal file name on Linux
    shutil.copy(smollm2_path, odd)
    model = window.library.import_file(odd, copy=False)
    odd.unlink()  # moved away: the library now says which file is missing, naming it
    window.refresh_models()
    window.switch_model(model.id)
    notice = window.notice.label
    assert not window.notice.isHidden() and notice.textFormat() == Qt.TextFormat.PlainText
    assert str(odd) in label_shows(notice)

    not_a_model = tmp_path / "<b>notes<b>.gguf"
    not_a_model.write_text("my shopping list")
    asked: list[str] = []
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _parent, _title, text, *a: asked.append(text)
                        or QMessageBox.StandardButton.No)
    monkeypatch.setattr(QMessageBox, "warning", lambda _parent, _title, text: warnings.append(text))
    manager = window.model_manager(load_catalog())
    qtbot.addWidget(manager)
    manager.my_models.import_path(not_a_model)
    assert as_seen(asked[0]).startswith(f"Copy {not_a_model.name} into slmchat's models folder?\n\nYes:")
    qtbot.waitUntil(lambda: bool(warnings), timeout=30_000)
    assert as_seen(warnings[0]).startswith("This is not a GGUF model file.")


def test_notice_and_toast_show_markup_as_characters(qtbot, make_window):
    window = make_window()
    conversation = window.controller.store.new_conversation(title=HOSTILE)
    window.refresh_conversations()
    window.sidebar.delete_requested.emit(conversation.id)
    toast = window.toast.label
    assert toast.textFormat() == Qt.TextFormat.PlainText
    assert label_shows(toast) == f"Deleted “{HOSTILE[:40]}”"
    window.notice.show_message(f"Could not read {HOSTILE}.", error=True)
    assert label_shows(window.notice.label) == f"Could not read {HOSTILE}."


# --- conversation titles and search snippets in the sidebar ----------------------------------------
def test_titles_and_snippets_in_the_sidebar_keep_their_markup_as_text(qtbot, make_window):
    window = make_window()
    store = window.controller.store
    conversation = store.new_conversation(title=HOSTILE)
    store.add_user_message(conversation.id, "findme <h2>loud</h2> <a href='file:///etc'>x</a>")
    window.refresh_conversations()
    sidebar = window.sidebar
    item = next(sidebar.list.item(r) for r in range(sidebar.list.count()) if sidebar.list.item(r).text() == HOSTILE)
    assert as_seen(item.toolTip()) == HOSTILE

    sidebar.search_box.setText("findme")
    qtbot.waitUntil(lambda: bool(labels_showing(sidebar.list, "findme")), timeout=10_000)
    (hit,) = labels_showing(sidebar.list, "findme")
    assert hit.textFormat() == Qt.TextFormat.RichText  # the match is ours to make bold
    seen = label_shows(hit)
    assert "<h2>loud</h2>" in seen and "<a href='file:///etc'>x</a>" in seen
    document = QTextDocument()
    document.setHtml(hit.text())
    assert not any(fragment.charFormat().isAnchor() for fragment in _fragments(document))
    bold = [f.text() for f in _fragments(document) if f.charFormat().fontWeight() > 500]
    assert "findme" in bold and HOSTILE in "".join(bold)  # the title and the matched word


def _fragments(document: QTextDocument):
    block = document.begin()
    while block.isValid():
        iterator = block.begin()
        while not iterator.atEnd():
            yield iterator.fragment()
            iterator += 1
        block = block.next()


# --- the chat view: the reply's footer, and which links are ever opened -------------------------------
@pytest.fixture
def chat(qtbot):
    model = ChatModel()
    view = ChatView(model, load_theme("light"))
    qtbot.addWidget(view)
    view.resize(800, 600)
    view.show()
    return model, view


def _anchors(view: ChatView, row: int) -> set[str]:
    rect = view.visualRect(view.model().index(row))
    message = view.model().message(row)
    return {view.itemDelegate().anchor_at(message, view.font(), QRectF(rect), QPointF(x, y))
            for y in range(rect.top(), rect.bottom(), 3) for x in range(rect.left(), rect.right(), 3)} - {""}


def test_an_error_and_a_model_name_in_a_replys_footer_are_text_not_links(qtbot, chat):
    model, view = chat
    model.set_messages([MessageView(id=1, role="assistant", text="Partial answer", model="<b>Loud</b> model",
                                    finish_reason="error", error=f"The model said {HOSTILE}")])
    qtbot.waitExposed(view)
    layout = view.itemDelegate()._layout(model.message(0), view.font(), view.viewport().width())
    footer = layout.docs[-1][0].toPlainText()
    assert f"The model said {HOSTILE}" in footer and "<b>Loud</b> model" in footer
    assert all(anchor.startswith("act:") for anchor in _anchors(view, 0))  # only our own buttons


@pytest.mark.parametrize("url", ["https://example.org/page?q=1", "http://example.org", "mailto:someone@example.org",
                                 "HTTPS://EXAMPLE.ORG/"])
def test_web_and_mail_links_in_a_reply_are_passed_on_to_be_opened(qtbot, chat, url):
    model, view = chat
    model.set_messages([MessageView(id=1, role="assistant", text=f"See [the page]({url}).")])
    qtbot.waitExposed(view)
    (link,) = _anchors(view, 0) - {a for a in _anchors(view, 0) if a.startswith("act:")}
    with qtbot.waitSignal(view.action) as clicked:
        view.trigger(0, link)
    assert clicked.args == [0, Action.LINK.value, link]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "smb://server/share", "relative/page.html",
                                 "//evil.example/x", "http:/etc/passwd", "ftp://example.org/file", "data:text/html,hi"])
def test_any_other_link_in_a_reply_does_nothing(qtbot, chat, url):
    model, view = chat
    model.set_messages([MessageView(id=1, role="assistant", text=f"See [the page]({url}) and <a href='{url}'>this</a>.")])
    qtbot.waitExposed(view)
    assert all(anchor.startswith("act:") for anchor in _anchors(view, 0))  # not even drawn as a link
    actions: list[tuple] = []
    view.action.connect(lambda *args: actions.append(args))
    view.trigger(0, url)  # as if the renderer ever let one through
    qtbot.wait(10)
    assert actions == []
