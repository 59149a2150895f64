"""Salvage: copy every row that can still be read from a damaged database into a sound one.

SQLite keeps each table as a b-tree ordered by rowid. A torn or overwritten page loses the rows
on it (or, for an inner page, the rows below it), but not the rows on the other pages, and a
read that starts *past* a bad page never touches it. So a table is read in rowid order; when a
read fails, probes jump further and further ahead until one succeeds, the ids jumped over are
tried one by one, and reading goes on from there. (SQLite's own `.recover` lives in its command-
line shell and an extension Python's `sqlite3` does not ship, so it cannot be relied on.)

Rows are copied with `INSERT OR IGNORE`, so the same function merges a backup in afterwards:
only what the salvage did not bring back is taken from it. `repair_references` then mends what
the losses broke (a message whose conversation is gone, a branch whose parent is gone).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from slmchat.core.store.sqlite import Database

MIN_ROWID, MAX_ROWID = -(2**63), 2**63 - 1
POINT_LOOKUPS = 1 << 16  # ids tried one by one after a damaged stretch, at most
RECOVERED_TITLE = "Recovered conversation"
_SKIPPED_TABLES = ("_sqlite_migrations",)


@dataclass(frozen=True)
class Copied:
    """How many conversations and messages one source added."""

    conversations: int = 0
    messages: int = 0


def copy_rows(source: Path, db: Database) -> Copied:
    """Copy into `db` the rows of `source` that can be read and whose key `db` does not hold yet.

    Foreign keys are off while copying (rows arrive in any order, some never), so call
    `repair_references` when every source has been copied. A source that cannot be opened at
    all copies nothing.
    """
    added: dict[str, int] = {}
    try:
        conn = _open(source)
    except sqlite3.Error:
        return Copied()
    with contextlib.closing(conn):
        try:
            tables = _tables(conn)
        except sqlite3.Error:
            return Copied()
        with _foreign_keys_off(db), db.atomic():
            for table in _tables(db.conn):
                if table in tables:
                    added[table] = _copy_table(conn, db, table)
    return Copied(added.get("conversations", 0), added.get("messages", 0))


def repair_references(db: Database) -> None:
    """Make what was copied whole again, so the app can show it and foreign keys hold.

    Messages whose conversation was lost get a conversation of their own (titled so the user
    knows why); a branch whose parent was lost starts a branch of its own; a conversation whose
    shown leaf was lost shows its newest message; a lost persona is forgotten.
    """
    with _foreign_keys_off(db), db.atomic():
        db.execute(
            "INSERT INTO conversations (id, title, created, updated) "
            "SELECT conversation_id, ?, min(created), max(updated) FROM messages "
            "WHERE conversation_id NOT IN (SELECT id FROM conversations) GROUP BY conversation_id",
            [RECOVERED_TITLE],
        )
        db.execute(
            "UPDATE messages SET parent_id = NULL "
            "WHERE parent_id IS NOT NULL AND parent_id NOT IN (SELECT id FROM messages)"
        )
        db.execute(
            "UPDATE conversations SET current_leaf_id = "
            "(SELECT max(id) FROM messages WHERE conversation_id = conversations.id) "
            "WHERE current_leaf_id IS NULL OR current_leaf_id NOT IN "
            "(SELECT id FROM messages WHERE conversation_id = conversations.id)"
        )
        db.execute(
            "UPDATE conversations SET persona_id = NULL "
            "WHERE persona_id IS NOT NULL AND persona_id NOT IN (SELECT id FROM personas)"
        )
        if "embeddings" in _tables(db.conn):
            db.execute("DELETE FROM embeddings WHERE message_id NOT IN (SELECT id FROM messages)")
    broken = db.execute("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise sqlite3.IntegrityError(f"references still broken after salvage: {broken[:5]}")


def readable_rows(conn: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple]:
    """Every row of `table` that can be read, in rowid order, skipping damaged pages."""
    select = f"SELECT rowid, {', '.join(_quote(c) for c in columns)} FROM {_quote(table)}"
    start: int | None = MIN_ROWID
    while start is not None:
        try:
            for row in conn.execute(f"{select} WHERE rowid >= ? ORDER BY rowid", [start]):
                if row[0] < start:  # a page that parses but is not where it claims to be
                    raise sqlite3.DatabaseError("rows out of order")
                yield row[1:]
                if row[0] == MAX_ROWID:
                    return
                start = row[0] + 1
            return
        except sqlite3.DatabaseError:  # damage, or text that is not UTF-8 any more
            start = yield from _past_damage(conn, table, select, start)


def _past_damage(conn: sqlite3.Connection, table: str, select: str, start: int) -> Iterator[tuple]:
    """Yield the rows that can still be read around the first unreadable one at or after `start`;
    returns the rowid to go on reading from (None: nothing more can be reached)."""
    first_key = f"SELECT rowid FROM {_quote(table)} WHERE rowid >= ? ORDER BY rowid LIMIT 1"
    with contextlib.suppress(sqlite3.DatabaseError):
        row = conn.execute(first_key, [start]).fetchone()
        # The keys are readable, so only that row's own text is not (a bad overflow page): skip it.
        return None if row is None or row[0] >= MAX_ROWID else max(row[0], start) + 1
    step, found = 1, None
    while start + step <= MAX_ROWID:
        try:
            found = conn.execute(first_key, [start + step]).fetchone()
            break
        except sqlite3.DatabaseError:
            step *= 2
    resume = start + step
    # The probes jumped over ids that may sit on sound pages: ask for each of them.
    for rowid in range(start, min(resume, start + POINT_LOOKUPS, MAX_ROWID)):
        with contextlib.suppress(sqlite3.DatabaseError):
            row = conn.execute(f"{select} WHERE rowid = ?", [rowid]).fetchone()
            if row is not None:
                yield row[1:]
    return resume if found is not None and resume <= MAX_ROWID else None


def _copy_table(source: sqlite3.Connection, db: Database, table: str) -> int:
    wanted = [c[1] for c in db.conn.execute(f"PRAGMA table_info({_quote(table)})")]
    columns = [c[1] for c in source.execute(f"PRAGMA table_info({_quote(table)})") if c[1] in wanted]
    insert = (f"INSERT OR IGNORE INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
              f"VALUES ({', '.join('?' for _ in columns)})")
    added = 0
    for row in readable_rows(source, table, columns):
        try:
            added += db.conn.execute(insert, row).rowcount
        except sqlite3.DatabaseError:  # a garbled row that breaks a constraint: leave it out
            continue
    return added


def _tables(conn: sqlite3.Connection) -> list[str]:
    """Ordinary tables holding data; search indexes are rebuilt by their triggers instead."""
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    virtual = [name for name, sql in rows if (sql or "").upper().startswith("CREATE VIRTUAL")]
    return [
        name for name, sql in rows
        if name not in virtual and name not in _SKIPPED_TABLES and not name.startswith("sqlite_")
        and not any(name.startswith(f"{v}_") for v in virtual)
    ]


def _open(path: Path) -> sqlite3.Connection:
    """Read-only, its write-ahead log included; a file whose log cannot be used is read without it."""
    uri = path.resolve().as_uri()
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError:
        conn.close()
    return sqlite3.connect(f"{uri}?immutable=1", uri=True)


@contextlib.contextmanager
def _foreign_keys_off(db: Database) -> Iterator[None]:
    (enforced,) = db.execute("PRAGMA foreign_keys").fetchone()
    db.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        db.execute(f"PRAGMA foreign_keys = {int(enforced)}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
