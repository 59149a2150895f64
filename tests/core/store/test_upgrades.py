"""Upgrades lose nothing: real databases written by each earlier schema, opened with today's code,
hold every persona, conversation, message, setting and embedding that was put in them."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
from pathlib import Path

import pytest

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


def rows_as_put_in(conn: sqlite3.Connection, table: str, key: str) -> list[dict]:
    """The rows of `table`, each limited to the columns the maker wrote for it."""
    found = []
    for row in MAKER.TABLES[table]:
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
            assert rows_as_put_in(conn, table, key) == MAKER.TABLES[table], table
        if schema_version >= migration_names().index("0003_embeddings") + 1:
            assert rows_as_put_in(conn, "embeddings", "message_id") == MAKER.EMBEDDINGS
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
        assert rows_as_put_in(found, "messages", "id") == MAKER.MESSAGES
