"""Rolling backups: made before an upgrade and once a day, a few kept, restorable (and the restore
undoable), and a full disk costs the backup, never the database."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
from disk_limits import files_may_not_grow_past

from slmchat.core.errors import BackupFailed
from slmchat.core.store import backup
from slmchat.core.store.connection import restore_backup
from slmchat.core.store.records import utc_now
from slmchat.core.store.store import Store


def titles(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute("SELECT title FROM conversations ORDER BY id")]


def test_opening_a_store_with_conversations_backs_it_up_once_a_day(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        assert backup.list_backups(path) == []  # nothing worth keeping yet
        store.add_user_message(store.new_conversation().id, "Remember the milk")
    with Store(path):
        pass
    made = backup.list_backups(path)
    assert [(b.path.parent, b.conversations) for b in made] == [(tmp_path / "backups", 1)]
    assert made[0].path.name.startswith("chats-") and titles(made[0].path) == ["Remember the milk"]
    with Store(path):
        pass
    assert backup.list_backups(path) == made  # not again the same day
    assert backup.backup_if_due(path, now=made[0].made + timedelta(hours=23)) is None
    later = backup.backup_if_due(path, now=made[0].made + timedelta(hours=25))
    assert later is not None and [b.path for b in backup.list_backups(path)] == [later.path, made[0].path]


def test_only_the_newest_five_backups_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        store.new_conversation(title="Kept")
    start = utc_now()
    made = [backup.make_backup(path, now=start + timedelta(days=day)) for day in range(7)]
    assert [b.path for b in backup.list_backups(path)] == [b.path for b in reversed(made[2:])]
    assert not made[0].path.exists() and not made[1].path.exists()
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith(".")]  # no partial left


def test_a_restore_brings_the_backup_back_into_an_open_store_and_can_be_undone(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        store.add_user_message(store.new_conversation().id, "Before the backup")
        saved = backup.make_backup(path)
        store.add_user_message(store.new_conversation().id, "After the backup")

        undo = restore_backup(path, saved.path)

        assert [c.title for c in store.conversations()] == ["Before the backup"]  # the open store sees it
        store.add_user_message(store.new_conversation().id, "Written after the restore")
        assert titles(undo.path) == ["Before the backup", "After the backup"]
        assert undo.path in [b.path for b in backup.list_backups(path)]

        restore_backup(path, undo.path)
        assert sorted(c.title for c in store.conversations()) == ["After the backup", "Before the backup"]


def test_a_damaged_backup_is_refused_and_the_database_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        store.add_user_message(store.new_conversation().id, "Precious")
    broken = backup.make_backup(path)
    broken.path.write_bytes(b"\x00not a database" * 500)
    with pytest.raises(BackupFailed, match="damaged and cannot be restored"):
        restore_backup(path, broken.path)
    assert titles(path) == ["Precious"]


def test_a_backup_that_hits_a_full_disk_fails_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        for number in range(40):
            store.add_user_message(store.new_conversation().id, f"message {number} " * 300)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    (tmp_path / "backups").mkdir(exist_ok=True)

    with files_may_not_grow_past(path.stat().st_size // 3), pytest.raises(BackupFailed, match="disk may be full"):
        backup.make_backup(path)

    assert list((tmp_path / "backups").iterdir()) == []  # the partial copy is gone
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    with Store(path) as store:
        assert len(store.conversations()) == 40


def test_delete_forever_removes_the_conversation_from_every_backup_at_the_purge(tmp_path: Path) -> None:
    """"Delete forever" means the backups too: after the purge no file in the data folder holds
    the words, and the conversations the user kept are still in the backups."""
    secret, kept = "my bank password is tulip-4471", "a recipe for lentil soup"
    path = tmp_path / "slmchat.db"
    with Store(path) as store:
        gone = store.new_conversation()
        store.add_user_message(gone.id, secret)
        stays = store.new_conversation()
        store.add_user_message(stays.id, kept)
        backup.make_backup(path)
        backup.make_backup(path)
        store.trash(gone.id)
        store.delete_forever(gone.id)
        assert any(secret.encode() in file.read_bytes() for file in tmp_path.rglob("*") if file.is_file())
        store.purge()

    files = [file for file in tmp_path.rglob("*") if file.is_file()]
    assert len([file for file in files if file.parent.name == "backups"]) == 2
    assert not [file for file in files if secret.encode() in file.read_bytes()]
    for made in backup.list_backups(path):
        with sqlite3.connect(made.path) as copy:
            assert copy.execute("SELECT content FROM messages").fetchall() == [(kept,)]


def test_a_conversation_deleted_for_good_does_not_come_back_when_a_damaged_database_is_salvaged(
        tmp_path: Path) -> None:
    path = tmp_path / "slmchat.db"
    with Store(path) as store:
        gone = store.new_conversation(title="deleted for good")
        store.add_user_message(gone.id, "forget me")
        backup.make_backup(path)  # made while the conversation still existed
        store.trash(gone.id)
        store.delete_forever(gone.id)
        stays = store.new_conversation(title="kept")
        store.add_user_message(stays.id, "keep me")
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\x00" * (4096 - 100)  # the schema page: nothing readable but the backup
    path.write_bytes(bytes(data))

    with Store(path) as recovered:
        assert recovered.recovery is not None
        assert "deleted for good" not in [c.title for c in recovered.conversations()]
