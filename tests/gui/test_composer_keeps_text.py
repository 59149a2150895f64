"""What the user typed is never lost: the composer lets go of it only once the database holds it.

The real window, store and SmolLM2 engine process. The database is made busy by a second real
SQLite connection holding a write lock, and full by SQLite's own size limit (`max_page_count`
fails a write exactly as a full disk does).
"""

from __future__ import annotations

import sqlite3

import pytest
from gui_helpers import start_chatting, wait_until_idle
from PySide6.QtCore import Qt

from slmchat.core.generation import Role
from slmchat.core.store import connection
from slmchat.core.store.records import MessageStatus

pytestmark = pytest.mark.slow


def counts(store) -> tuple[int, int]:
    """(conversations, messages) in the file, as any other program would see them."""
    db = sqlite3.connect(store.path)
    try:
        return (db.execute("SELECT count(*) FROM conversations").fetchone()[0],
                db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


def type_and_send(qtbot, window, text: str) -> None:
    qtbot.keyClicks(window.composer.editor, text)
    qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)


def test_with_no_model_chosen_the_text_stays_in_the_composer_and_a_notice_says_what_to_do(qtbot, make_window):
    window = make_window()
    window.pages.setCurrentIndex(0)  # past the welcome, without choosing a model
    assert window.session.request is None

    type_and_send(qtbot, window, "Hello, is anyone there?")

    assert window.composer.editor.toPlainText() == "Hello, is anyone there?"
    assert window.notice.isVisible() and "Choose a model" in window.notice.label.text()
    assert counts(window.controller.store) == (0, 0)


def test_while_the_database_is_busy_the_text_stays_nothing_is_half_written_and_send_works_after(
        qtbot, make_window, monkeypatch):
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.3)  # the window's store waits this long
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    store = window.controller.store
    type_and_send(qtbot, window, "First message.")
    wait_until_idle(qtbot, window)
    assert window.composer.editor.toPlainText() == ""
    before = counts(store)

    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    try:
        type_and_send(qtbot, window, "Second message, typed while the file was busy.")
        assert window.composer.editor.toPlainText() == "Second message, typed while the file was busy."
        assert window.notice.isVisible()
        notice = window.notice.label.text()
        assert "Another program" in notice and "still in the box" in notice and "Traceback" not in notice
        assert not window.controller.busy and window.composer.send_button.isVisible()

        window.new_chat()  # a new conversation: not even its empty row may be left behind
        window.composer.editor.clear()  # (a draft survives New chat)
        type_and_send(qtbot, window, "A new chat, also while busy.")
        assert window.composer.editor.toPlainText() == "A new chat, also while busy."
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert counts(store) == before

    qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)  # the same text, again
    assert window.composer.editor.toPlainText() == ""
    wait_until_idle(qtbot, window)
    user, reply = store.branch(window.controller.conversation_id)
    assert (user.role, user.content) == (Role.USER, "A new chat, also while busy.")
    assert reply.status is MessageStatus.COMPLETE and reply.content


def test_when_the_disk_is_full_the_text_stays_and_no_empty_chat_is_left_behind(qtbot, make_window):
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    store = window.controller.store
    before = counts(store)
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages + 1}")  # room for a new chat's row, not for a long paste
    paste = "A long paste that does not fit on the disk. " * 3000

    window.composer.editor.setPlainText(paste)
    qtbot.mouseClick(window.composer.send_button, Qt.MouseButton.LeftButton)

    assert window.composer.editor.toPlainText() == paste
    assert window.notice.isVisible() and "still in the box" in window.notice.label.text()
    assert counts(store) == before, "the new conversation must not be stored without its message"
    assert window.controller.conversation_id is None and window.controller.chat_model.rowCount() == 0


def test_a_message_sent_while_the_model_still_loads_is_stored_at_once_and_answered_when_it_is_ready(
        qtbot, make_window):
    window = make_window(max_tokens=8)
    window.welcome.start_button.click()
    assert window.session.is_loading and window.session.engine is None

    type_and_send(qtbot, window, "Hello while you load.")

    assert window.composer.editor.toPlainText() == ""  # stored: the box may let it go
    user, reply = window.controller.store.branch(window.controller.conversation_id)
    assert user.content == "Hello while you load." and reply.status is MessageStatus.STREAMING
    wait_until_idle(qtbot, window)
    reply = window.controller.store.message(reply.id)
    assert reply.status is MessageStatus.COMPLETE and reply.content
