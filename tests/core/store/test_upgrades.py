"""Upgrades lose nothing: real databases written by each earlier schema, opened with today's code,
hold every persona, conversation, message, setting and embedding that was put in them."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

from slmchat.core.generation import GenerationStats
from slmchat.core.store import backup
from slmchat.core.store.schema import migration_names
from slmchat.core.store.store import Store

DATABASES = Path(__file__).with_name("databases")


def _load_maker():
    spec = importlib.util.spec_from_file_location("make_old_databases", DATABASES / "make_old_databases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MAKER = _load_maker()
OLD_FILES = sorted(DATABASES.glob("schema-*.db"), key=lambda path: int(path.stem.split("-")[1]))


def columns_of(path: Path, table: str) -> set[str]:
    with sqlite3.connect(path) as conn:
        columns = {column[1] for column in conn.execute(f"PRAGMA table_info({table})")}
    conn.close()
    return columns


def put_in(old_file: Path, table: str) -> list[dict]:
    """The maker's rows of `table` as `old_file` could hold them (its schema's columns)."""
    return [MAKER.in_columns(row, columns_of(old_file, table)) for row in MAKER.TABLES[table]]


def rows_as_put_in(conn: sqlite3.Connection, table: str, key: str, rows: list[dict]) -> list[dict]:
    """The rows of `table` with the keys of `rows`, each limited to the columns given for it."""
    found = []
    for row in rows:
        columns = ", ".join(row)
        values = conn.execute(f"SELECT {columns} FROM {table} WHERE {key} = ?", [row[key]]).fetchone()
        found.append(None if values is None else dict(zip(row, values)))
    return found


def test_there_is_a_database_from_every_earlier_schema() -> None:
    """Adding a migration means running make_old_databases.py to keep the schema before it."""
    assert [path.name for path in OLD_FILES][: len(migration_names()) - 1] == [
        f"schema-{count}.db" for count in range(1, len(migration_names()))
    ]


@pytest.mark.parametrize("old_file", OLD_FILES, ids=lambda path: path.stem)
def test_an_old_database_upgrades_with_everything_that_was_put_in(tmp_path: Path, old_file: Path) -> None:
    schema_version = int(old_file.stem.split("-")[1])
    path = tmp_path / "slmchat.db"
    shutil.copyfile(old_file, path)

    with Store(path) as store:
        assert [row[0] for row in store.db.execute("SELECT name FROM _sqlite_migrations ORDER BY id")] == (
            migration_names())
        conn = store.db.conn
        for table, key in (("personas", "id"), ("conversations", "id"), ("messages", "id"), ("settings", "key")):
            expected = put_in(old_file, table)
            assert rows_as_put_in(conn, table, key, expected) == expected, table
        if schema_version >= migration_names().index("0003_embeddings") + 1:
            assert rows_as_put_in(conn, "embeddings", "message_id", MAKER.EMBEDDINGS) == MAKER.EMBEDDINGS
        # what the window shows, through the store's own readers
        assert [m.content for m in store.branch(1)] == [MAKER.MESSAGES[i]["content"] for i in (2, 3, 5)]
        assert [c.title for c in store.conversations(trashed=True)] == ["In the trash"]
        assert {p.name for p in store.personas()} == {"Poète 🌙", "Terse"}
        assert [hit.message_id for hit in store.search("zeppelin")] == [6]

    # The first backup is of the file as it was found: before the upgrade (or, with nothing to
    # upgrade, the day's first backup).
    with sqlite3.connect(backup.list_backups(path)[-1].path) as found:
        applied = [row[0] for row in found.execute("SELECT name FROM _sqlite_migrations ORDER BY id")]
        assert applied == migration_names()[:schema_version]
        expected = put_in(old_file, "messages")
        assert rows_as_put_in(found, "messages", "id", expected) == expected


def test_a_schema_4_database_upgrades_to_keep_thinking_and_sources_apart(tmp_path: Path) -> None:
    """Schema 5 adds a reply's thinking (searchable on its own), how long it lasted, and the
    documents it cites; replies from before have none, and new ones keep all three."""
    path = tmp_path / "slmchat.db"
    shutil.copyfile(DATABASES / "schema-4.db", path)
    assert "thinking" not in columns_of(path, "messages")

    with Store(path) as store:
        old = store.message(2)
        assert (old.content, old.thinking, old.thinking_seconds, old.sources) == (
            "Mostly termites and ants.", "", None, ())
        assert store.search("tongues") == []  # nothing was thinking before

        reply = store.start_reply(1, model="qwen3-0.6b")
        store.finish_reply(reply.id, "Ants, mostly.", GenerationStats(), thinking="Their tongues are long.",
                           thinking_seconds=2.0)
        store.set_sources(reply.id, [{"file": "Burrowers.pdf", "place": "page 3", "snippet": "ants"}])
        new = store.message(reply.id)
        assert (new.content, new.thinking, new.thinking_seconds) == ("Ants, mostly.", "Their tongues are long.", 2.0)
        assert new.sources == ({"file": "Burrowers.pdf", "place": "page 3", "snippet": "ants"},)
        assert [(hit.message_id, hit.in_thinking) for hit in store.search("tongues")] == [(reply.id, True)]


def test_a_schema_5_database_keeps_its_thinking_and_sources_through_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "slmchat.db"
    shutil.copyfile(DATABASES / "schema-5.db", path)
    with Store(path) as store:
        kept = store.message(2)
        assert kept.thinking == MAKER.MESSAGES[1]["thinking"]
        assert kept.thinking_seconds == 3.5
        assert [source["file"] for source in kept.sources] == ["Burrowers.pdf"]
        assert [(hit.message_id, hit.in_thinking) for hit in store.search("tongues reach")] == [(2, True)]
