"""Schema migrations: older databases are upgraded with their data; newer ones are left alone."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from slmchat.core.errors import DatabaseTooNew
from slmchat.core.generation import Role
from slmchat.core.store.schema import MIGRATIONS, migration_names
from slmchat.core.store.store import Store

EXPECTED_TABLES = {
    "_sqlite_migrations": {"id": "INTEGER", "migration_set": "TEXT", "name": "TEXT", "applied_at": "TEXT"},
    "personas": {
        "id": "INTEGER",
        "name": "TEXT",
        "system_prompt": "TEXT",
        "settings": "TEXT",
        "created": "TEXT",
        "updated": "TEXT",
    },
    "conversations": {
        "id": "INTEGER",
        "title": "TEXT",
        "created": "TEXT",
        "updated": "TEXT",
        "model": "TEXT",
        "system_prompt": "TEXT",
        "persona_id": "INTEGER",
        "settings": "TEXT",
        "pinned": "INTEGER",
        "deleted_at": "TEXT",
        "current_leaf_id": "INTEGER",
    },
    "messages": {
        "id": "INTEGER",
        "conversation_id": "INTEGER",
        "parent_id": "INTEGER",
        "role": "TEXT",
        "content": "TEXT",
        "status": "TEXT",
        "reason": "TEXT",
        "error": "TEXT",
        "model": "TEXT",
        "prompt_tokens": "INTEGER",
        "completion_tokens": "INTEGER",
        "ttft": "REAL",
        "tokens_per_s": "REAL",
        "created": "TEXT",
        "updated": "TEXT",
        "writer": "TEXT",
        "thinking": "TEXT",
        "thinking_seconds": "REAL",
        "sources": "TEXT",
    },
    "settings": {"key": "TEXT", "value": "TEXT"},
    "messages_fts": {"content": "", "thinking": ""},
    "conversations_fts": {"title": ""},
    "embeddings": {
        "message_id": "INTEGER",
        "model": "TEXT",
        "dim": "INTEGER",
        "vector": "BLOB",
        "created": "TEXT",
    },
}
EXPECTED_TRIGGERS = {
    f"{table}_fts_{event}"
    for table in ("messages", "conversations")
    for event in ("insert", "update", "delete")
}
EXPECTED_INDEXES = {
    "idx__sqlite_migrations_migration_set_name",
    "messages_by_conversation",
    "messages_by_parent",
    "messages_streaming",
    "conversations_by_recency",
    "embeddings_by_model",
}
EXPECTED_FOREIGN_KEYS = {
    ("conversations", "persona_id", "personas", "SET NULL"),
    ("conversations", "current_leaf_id", "messages", "SET NULL"),
    ("messages", "conversation_id", "conversations", "CASCADE"),
    ("messages", "parent_id", "messages", "CASCADE"),
    ("embeddings", "message_id", "messages", "CASCADE"),
}


def schema_of(conn: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns and types (FTS5's own shadow tables left out), triggers,
    indexes and foreign keys with their delete actions."""

    def names(kind: str) -> list[str]:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = ?", [kind])]

    tables = [t for t in names("table") if not t.endswith(("_data", "_idx", "_docsize", "_config"))]
    return {
        "tables": {t: {c[1]: c[2] for c in conn.execute(f"PRAGMA table_info({t})")} for t in tables},
        "triggers": set(names("trigger")),
        "indexes": {i for i in names("index") if not i.startswith("sqlite_autoindex")},
        "foreign_keys": {
            (t, fk[3], fk[2], fk[6]) for t in tables for fk in conn.execute(f"PRAGMA foreign_key_list({t})")
        },
    }


EXPECTED_SCHEMA = {
    "tables": EXPECTED_TABLES,
    "triggers": EXPECTED_TRIGGERS,
    "indexes": EXPECTED_INDEXES,
    "foreign_keys": EXPECTED_FOREIGN_KEYS,
}


def test_a_new_database_has_the_expected_schema(tmp_path: Path) -> None:
    with Store(tmp_path / "new.db") as store:
        assert schema_of(store.db.conn) == EXPECTED_SCHEMA
        assert [m.name for m in MIGRATIONS.applied(store.db)] == migration_names()


def make_earlier_database(path: Path) -> None:
    """A database as the first release left it: only the first migration, rows written with
    plain SQL as that version's code would have, rollback journal (not yet WAL)."""
    db = Database(path)
    MIGRATIONS.apply(db, stop_before="0002_search")
    db.executescript(
        """
        INSERT INTO conversations (id, title, created, updated, current_leaf_id)
            VALUES (7, 'Aardvark facts', '2024-03-01T10:00:00.000000+00:00',
                    '2024-03-01T10:05:00.000000+00:00', 12);
        INSERT INTO messages (id, conversation_id, parent_id, role, content, status, created, updated)
            VALUES (11, 7, NULL, 'user', 'What do aardvarks eat?', 'complete',
                    '2024-03-01T10:00:00.000000+00:00', '2024-03-01T10:00:00.000000+00:00');
        INSERT INTO messages (id, conversation_id, parent_id, role, content, status, reason, created, updated)
            VALUES (12, 7, 11, 'assistant', 'Mostly termites and ants.', 'complete', 'done',
                    '2024-03-01T10:05:00.000000+00:00', '2024-03-01T10:05:00.000000+00:00');
        """
    )
    db.close()


def test_an_earlier_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_earlier_database(path)
    with sqlite3.connect(path) as old:
        assert "messages_fts" not in schema_of(old)["tables"]

    with Store(path) as store:
        assert [m.name for m in MIGRATIONS.applied(store.db)] == migration_names()
        assert store.db.journal_mode == "wal"
        assert [(m.role, m.content) for m in store.branch(7)] == [
            (Role.USER, "What do aardvarks eat?"),
            (Role.ASSISTANT, "Mostly termites and ants."),
        ]
        # the search index was built from what the old version had stored
        assert [(h.conversation_id, h.message_id) for h in store.search("termites")] == [(7, 12)]
        assert [h.message_id for h in store.search("aardvark")] == [None, 11]
        assert schema_of(store.db.conn) == EXPECTED_SCHEMA
        with Store(tmp_path / "fresh.db") as fresh:
            assert store.db.schema == fresh.db.schema  # upgraded == created new, to the letter


def test_a_database_from_a_newer_version_is_refused_and_left_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    with Store(path) as store:
        store.add_user_message(store.new_conversation().id, "written by the future")
    with sqlite3.connect(path) as future:
        future.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('slmchat', '0099_from_the_future', '2030-01-01')"
        )
    future.close()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    with pytest.raises(DatabaseTooNew, match="newer version of slmchat") as refused:
        Store(path)
    assert "0099_from_the_future" in refused.value.detail
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []
