"""The trash: restore, and delete forever so that nothing of the chat is left on disk."""

from __future__ import annotations

import itertools
import logging
import random
import sqlite3
import string
import threading

import pytest
from gui_helpers import start_chatting, wait_until_idle
from PySide6.QtCore import QElapsedTimer, Qt, QThreadPool, QTimer
from PySide6.QtWidgets import QMessageBox

from slmchat.core.engine.kv_state import KVStateStore, StateIdentity
from slmchat.core.store import connection
from slmchat.core.store.recording import session_key
from slmchat.gui import trash
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
    states = KVStateStore(folder, StateIdentity(model=model, n_ctx=1024, llama_cpp="test", key_cache_type="q8_0"))
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


def test_closing_the_window_right_after_a_deletion_rewrites_the_file_before_the_app_ends(qtbot, make_window):
    window = make_window()
    store = window.controller.store
    secret = store.new_conversation(title="Secret")
    store.add_user_message(secret.id, f"My password is {SECRET}.")
    store.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    assert SECRET.encode() in _bytes_on_disk(window)
    window.controller.trash(secret.id)
    window.trash.delete_forever(secret.id)
    assert window.trash.purge_pending

    window.close()  # long before the rewrite's timer
    assert not window.trash.purge_pending
    assert SECRET.encode() not in _bytes_on_disk(window)


def _fill(store, megabytes: int) -> int:
    """A conversation holding `megabytes` of varied text (its search index makes the file ~3x that)."""
    rng = random.Random(7)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 9))) for _ in range(5000)]
    conversation = store.new_conversation(title="Big")
    with store.db.atomic():  # one commit: the store's own calls sync each message to disk
        for _ in range(megabytes * 50):
            store.db.execute(
                "INSERT INTO messages (conversation_id, role, content, status, created, updated) "
                "VALUES (?, 'user', ?, 'complete', '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')",
                [conversation.id, " ".join(rng.choices(words, k=3300))])  # ~20 kB each
    return conversation.id


@pytest.mark.slow
def test_the_window_keeps_responding_while_the_file_is_rewritten_after_a_deletion(qtbot, make_window):
    window = make_window()
    store = window.controller.store
    big = _fill(store, megabytes=12)
    window.controller.trash(big)
    window.trash.delete_forever(big)
    size_before = store.path.stat().st_size
    clock = QElapsedTimer()
    clock.start()
    beats: list[int] = []
    heartbeat = QTimer()
    heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
    heartbeat.timeout.connect(lambda: beats.append(clock.elapsed()))
    heartbeat.start(5)
    qtbot.waitUntil(lambda: not window.trash.purge_pending, timeout=60_000)
    qtbot.wait(50)
    heartbeat.stop()

    assert store.path.stat().st_size < size_before / 2  # rewritten without the deleted chat
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    print(f"\nheartbeat during the purge: {len(gaps)} gaps, max {max(gaps)} ms")
    assert max(gaps) < 250, f"the GUI thread stalled for {max(gaps)} ms while the file was rewritten"


@pytest.fixture
def purges(monkeypatch) -> list:
    """What each background rewrite returned or raised (the real `purge_file` runs); the
    rewrite's timer shortened to 50 ms."""
    monkeypatch.setattr(trash, "PURGE_DELAY_MS", 50)
    outcomes: list = []
    real = trash.purge_file

    def recorded(path):
        try:
            outcomes.append(real(path))
        except Exception as error:
            outcomes.append(error)
            raise
        return outcomes[-1]

    monkeypatch.setattr(trash, "purge_file", recorded)
    return outcomes


def _secret_chat_deleted_forever(window) -> None:
    store = window.controller.store
    secret = store.new_conversation(title="Secret")
    store.add_user_message(secret.id, f"My password is {SECRET}.")
    window.controller.trash(secret.id)
    window.trash.delete_forever(secret.id)


@pytest.mark.slow
def test_the_file_is_not_rewritten_while_a_reply_streams(qtbot, make_window, monkeypatch, purges):
    """The rewrite locks the database; the reply saves its text every second on the GUI thread."""
    window = make_window(max_tokens=64)
    start_chatting(qtbot, window)
    busy_when_started: list[bool] = []
    real = trash.purge_file
    monkeypatch.setattr(trash, "purge_file", lambda path: busy_when_started.append(window.controller.busy) or real(path))
    window.controller.send("Tell me a long story about a cat who sails around the world.")
    assert window.controller.busy
    _secret_chat_deleted_forever(window)

    wait_until_idle(qtbot, window)
    qtbot.waitUntil(lambda: not window.trash.purge_pending, timeout=10_000)
    assert busy_when_started and not any(busy_when_started)
    assert SECRET.encode() not in _bytes_on_disk(window)


def test_a_rewrite_that_finds_the_database_locked_is_tried_again_not_reported(qtbot, make_window, monkeypatch,
                                                                               purges, caplog):
    window = make_window()
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.05)  # the rewrite's own connection gives up soon
    _secret_chat_deleted_forever(window)
    other = sqlite3.connect(window.controller.store.path, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the database
        qtbot.waitUntil(lambda: bool(purges), timeout=10_000)
    finally:
        other.rollback()
        other.close()

    assert isinstance(purges[0], sqlite3.OperationalError) and "locked" in str(purges[0])
    qtbot.waitUntil(lambda: not window.trash.purge_pending, timeout=10_000)
    assert SECRET.encode() not in _bytes_on_disk(window)
    assert [r for r in caplog.records if r.name == trash.__name__ and r.levelno >= logging.WARNING] == []


def test_the_rewrite_does_not_queue_behind_other_background_work(qtbot, make_window, purges):
    """Closing the window waits for a rewrite under way: it must not sit behind model loads."""
    window = make_window()
    shared = QThreadPool.globalInstance()
    release = threading.Event()
    for _ in range(shared.maxThreadCount()):  # every shared thread busy, as with a slow hub listing
        shared.start(release.wait)
    try:
        _secret_chat_deleted_forever(window)
        qtbot.waitUntil(lambda: not window.trash.purge_pending, timeout=10_000)
    finally:
        release.set()
        shared.waitForDone()
    assert SECRET.encode() not in _bytes_on_disk(window)
