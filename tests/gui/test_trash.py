"""The trash: restore, and delete forever so that nothing of the chat is left on disk."""

from __future__ import annotations

import pytest
from gui_helpers import start_chatting, wait_until_idle
from PySide6.QtWidgets import QMessageBox

from slmchat.core.chat_session import session_key
from slmchat.core.kv_state import KVStateStore, StateIdentity
from slmchat.gui.trash import TrashDialog

SECRET = "Marmalade-Zeppelin-4417"


def _bytes_on_disk(window) -> bytes:
    database = window.controller.store.path
    wal = database.with_name(database.name + "-wal")
    return database.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def _titles(dialog: TrashDialog) -> list[str]:
    return [dialog.list.item(row).text() for row in range(dialog.list.count())]


def test_the_trash_lists_deleted_chats_and_restores_them(qtbot, make_window):
    window = make_window()
    store = window.controller.store
    kept = store.new_conversation(title="Recipes")
    window.controller.trash(kept.id)
    dialog = TrashDialog(window.trash, window)
    qtbot.addWidget(dialog)
    assert _titles(dialog) == ["Recipes"]

    dialog.restore_button.click()
    assert _titles(dialog) == [] and dialog.empty_label.isVisibleTo(dialog)
    assert store.conversation(kept.id).deleted_at is None
    assert window.sidebar.list.count() == 2  # "Today" and the restored chat


def test_empty_trash_asks_first_and_removes_every_deleted_chat(qtbot, make_window, monkeypatch):
    window = make_window()
    store = window.controller.store
    for title in ("One", "Two"):
        window.controller.trash(store.new_conversation(title=title).id)
    dialog = TrashDialog(window.trash, window)
    qtbot.addWidget(dialog)

    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.No)
    dialog.empty_button.click()
    assert len(store.conversations(trashed=True)) == 2
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    dialog.empty_button.click()
    assert store.conversations(trashed=True) == [] and _titles(dialog) == []


def _save_state(folder, conversation_id: int, model: str):
    states = KVStateStore(folder, StateIdentity(model=model, n_ctx=1024, llama_cpp="test"))
    return states.save(session_key(conversation_id), [1, 2, 3], 4, lambda buffer: len(buffer))


def test_without_a_loaded_model_emptying_the_trash_still_removes_the_saved_model_memory(qtbot, make_window):
    window = make_window()
    assert window.session.engine is None
    store, kv_states = window.controller.store, window.session.paths.kv_states
    gone, kept = store.new_conversation(title="Gone"), store.new_conversation(title="Kept")
    deleted_states = [_save_state(kv_states, gone.id, model) for model in ("smollm2", "qwen2")]
    kept_state = _save_state(kv_states, kept.id, "smollm2")

    window.controller.trash(gone.id)
    assert window.trash.empty() == 1
    assert not any(path.exists() for path in deleted_states)  # saved with any model
    assert kept_state.exists()
    assert [c.id for c in store.conversations()] == [kept.id]


@pytest.mark.slow
def test_a_chat_deleted_forever_leaves_no_trace_in_the_database_or_the_model_memory(qtbot, make_window, monkeypatch):
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    window.controller.send(f"My password is {SECRET}. Say hello.")
    wait_until_idle(qtbot, window)
    conversation_id = window.controller.conversation_id
    assert window.session.engine.save_session()  # as when the user moves to another chat
    kv_states = window.session.paths.kv_states
    saved = list(kv_states.iterdir())  # this chat is the only one: every state file is its own
    assert saved, "the engine should have saved this chat's KV state"
    window.controller.store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    assert SECRET.encode() in _bytes_on_disk(window)

    window.sidebar.delete_requested.emit(conversation_id)
    dialog = TrashDialog(window.trash, window)
    qtbot.addWidget(dialog)
    monkeypatch.setattr(QMessageBox, "question", lambda *args: QMessageBox.StandardButton.Yes)
    dialog.delete_button.click()

    assert not any(path.exists() for path in saved)
    assert window.trash.purge_pending  # the file is rewritten just after, not on the click
    qtbot.waitUntil(lambda: not window.trash.purge_pending, timeout=10_000)
    assert SECRET.encode() not in _bytes_on_disk(window)
    assert _titles(dialog) == []
    # the engine does not write the forgotten chat back when it moves on or closes
    window.session.engine.save_session()
    window.session.close()
    assert not list(kv_states.iterdir())
