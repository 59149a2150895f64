"""A write that cannot happen (the disk is full, another program holds the file) says so plainly
and changes nothing: what was stored stays intact, and the same write succeeds once there is room.

The full disk is SQLite's own size limit (`PRAGMA max_page_count`), which fails a write exactly
as a full disk does (SQLITE_FULL); the busy file is a second real connection holding a write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from slmchat.core.errors import DatabaseBusy, DatabaseFull
from slmchat.core.generation import GenerationStats
from slmchat.core.store import connection
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store

BIG = "a long paste that does not fit " * 4000  # about 120 KB


def _fill_to_the_limit(store: Store) -> None:
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    store.db.execute(f"PRAGMA max_page_count = {pages}")


def _unlimited(store: Store) -> None:
    store.db.execute("PRAGMA max_page_count = 1073741823")


def test_a_message_that_does_not_fit_is_refused_plainly_and_nothing_stored_is_harmed(tmp_path: Path):
    store = Store(tmp_path / "slmchat.db")
    conversation = store.new_conversation()
    first = store.add_user_message(conversation.id, "the words before the disk filled up")
    _fill_to_the_limit(store)

    with pytest.raises(DatabaseFull) as raised:
        store.add_user_message(conversation.id, BIG)

    assert "no room left on the disk" in str(raised.value)
    assert [m.content for m in store.branch(conversation.id)] == [first.content]
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    _unlimited(store)
    assert store.add_user_message(conversation.id, BIG).content == BIG
    store.close()


def test_a_reply_checkpoint_that_does_not_fit_keeps_the_last_saved_text(tmp_path: Path):
    store = Store(tmp_path / "slmchat.db")
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "write me a very long essay")
    reply = store.start_reply(conversation.id)
    store.checkpoint(reply.id, "The first paragraph.")
    _fill_to_the_limit(store)

    with pytest.raises(DatabaseFull):
        store.checkpoint(reply.id, "The first paragraph." + BIG)
    with pytest.raises(DatabaseFull):
        store.finish_reply(reply.id, "The first paragraph." + BIG, GenerationStats())

    saved = store.message(reply.id)
    assert saved.content == "The first paragraph." and saved.status is MessageStatus.STREAMING
    _unlimited(store)
    assert store.finish_reply(reply.id, "The first paragraph." + BIG, GenerationStats()).status \
        is MessageStatus.COMPLETE
    store.close()


def test_a_write_while_another_program_holds_the_file_says_so_and_works_later(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.1)
    db = tmp_path / "slmchat.db"
    store = Store(db)
    conversation = store.new_conversation()
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another program's write lock
    try:
        with pytest.raises(DatabaseBusy) as raised:
            store.add_user_message(conversation.id, "typed while the file was busy")
        assert "Try again in a moment" in str(raised.value)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [m.content for m in store.branch(conversation.id)] == []
    assert store.add_user_message(conversation.id, "typed again").content == "typed again"
    store.close()
