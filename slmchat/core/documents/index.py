"""The document library's own SQLite file: collections, files, their text, chunks, FTS5 and vectors.

Kept apart from the conversation database (`Paths.documents_database`) so a large library never
slows the chats down and can be deleted on its own. Every row derived from a file (its text,
chunks, full-text entries, vectors) hangs off the file by a cascading key, so removing a file or
a collection removes everything made from it. A file's new text and chunks are written in one
transaction with its status (a process killed mid-file leaves it pending, never half done); its
vectors follow in batches, each batch one transaction, so words are searchable at once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmchat.core.documents.chunk import Chunk
from slmchat.core.documents.extract import Status
from slmchat.core.errors import SlmchatError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS roots (
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL, PRIMARY KEY (collection_id, path));
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    path TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, sha256 TEXT,
    status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
    indexed_at REAL, UNIQUE (collection_id, path));
CREATE INDEX IF NOT EXISTS files_status ON files(status);
CREATE TABLE IF NOT EXISTS texts (
    file_id INTEGER PRIMARY KEY REFERENCES files(id) ON DELETE CASCADE, text TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, place TEXT NOT NULL, text TEXT NOT NULL, lead INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(file_id);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunks', content_rowid='id', tokenize='porter unicode61');
CREATE TRIGGER IF NOT EXISTS chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;
CREATE TRIGGER IF NOT EXISTS chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;
CREATE TABLE IF NOT EXISTS vectors (
    chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
    model TEXT NOT NULL, vector BLOB NOT NULL);
"""


@dataclass(frozen=True)
class Collection:
    id: int
    name: str
    files: int
    chunks: int


@dataclass(frozen=True)
class FileRow:
    id: int
    collection_id: int
    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    status: Status
    reason: str
    indexed_at: float | None


class DocumentIndex:
    """One connection to the library's file; one per thread or process (SQLite's WAL lets the
    indexer process write while the window and the CLI read)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            raise SlmchatError(f"The document library at {self.path} cannot be opened ({error}). "
                               "Delete that file to start the library afresh.") from None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> DocumentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- collections --------------------------------------------------------------------------
    def collection(self, name: str) -> int:
        """The id of the collection called `name`, made if it does not exist."""
        self.conn.execute("INSERT OR IGNORE INTO collections (name, created) VALUES (?, ?)", (name, time.time()))
        return self.conn.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()[0]

    def collections(self) -> list[Collection]:
        rows = self.conn.execute(
            "SELECT c.id, c.name, (SELECT count(*) FROM files f WHERE f.collection_id = c.id) AS files, "
            "(SELECT count(*) FROM chunks k JOIN files f ON f.id = k.file_id WHERE f.collection_id = c.id) AS chunks "
            "FROM collections c ORDER BY c.id")
        return [Collection(r["id"], r["name"], r["files"], r["chunks"]) for r in rows]

    def find_collection(self, given: str) -> int:
        """A collection by id or name; SlmchatError naming the choices when there is none."""
        row = self.conn.execute("SELECT id FROM collections WHERE name = ? OR CAST(id AS TEXT) = ?",
                                (given, given)).fetchone()
        if row is None:
            names = ", ".join(f"{c.id} ({c.name})" for c in self.collections()) or "none yet"
            raise SlmchatError(f'There is no document collection "{given}". Collections: {names}.')
        return row[0]

    def add_roots(self, collection_id: int, paths: Iterable[Path]) -> None:
        """Remember folders and files the user added; the indexer scans them."""
        self.conn.executemany("INSERT OR IGNORE INTO roots (collection_id, path) VALUES (?, ?)",
                              [(collection_id, str(Path(p).resolve())) for p in paths])

    def roots(self, collection_id: int | None = None) -> list[tuple[int, Path]]:
        rows = self.conn.execute("SELECT collection_id, path FROM roots WHERE ? IS NULL OR collection_id = ?",
                                 (collection_id, collection_id))
        return [(r[0], Path(r[1])) for r in rows]

    def delete_collection(self, collection_id: int) -> None:
        """Everything of the collection goes (text, chunks, vectors), and the file shrinks (VACUUM)."""
        with self.transaction():
            self.conn.execute("DELETE FROM chunks WHERE file_id IN (SELECT id FROM files WHERE collection_id = ?)",
                              (collection_id,))
            self.conn.execute("DELETE FROM collections WHERE id = ?", (collection_id,))
            self._bump()
        self.conn.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
        self.conn.execute("VACUUM")

    # --- files --------------------------------------------------------------------------------
    def files(self, collection_id: int | None = None, status: Status | None = None) -> list[FileRow]:
        rows = self.conn.execute(
            "SELECT * FROM files WHERE (? IS NULL OR collection_id = ?) AND (? IS NULL OR status = ?) ORDER BY id",
            (collection_id, collection_id, status and status.value, status and status.value))
        return [FileRow(r["id"], r["collection_id"], r["path"], r["size"], r["mtime_ns"], r["sha256"],
                        Status(r["status"]), r["reason"], r["indexed_at"]) for r in rows]

    def add_pending(self, collection_id: int, path: Path) -> None:
        self.conn.execute("INSERT OR IGNORE INTO files (collection_id, path, status) VALUES (?, ?, ?)",
                          (collection_id, str(path), Status.PENDING.value))

    def set_pending(self, file_id: int) -> None:
        self.conn.execute("UPDATE files SET status = ?, reason = '' WHERE id = ?", (Status.PENDING.value, file_id))

    def touch(self, file_id: int, size: int, mtime_ns: int) -> None:
        """The file's date changed but not its content (same sha256): nothing to redo."""
        self.conn.execute("UPDATE files SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, file_id))

    def remove_files(self, file_ids: Sequence[int]) -> None:
        """Files gone from disk, with everything derived from them."""
        with self.transaction():
            self.conn.executemany("DELETE FROM chunks WHERE file_id = ?", [(i,) for i in file_ids])
            self.conn.executemany("DELETE FROM files WHERE id = ?", [(i,) for i in file_ids])
            self._bump()

    def record(self, file_id: int, *, size: int, mtime_ns: int, sha256: str, status: Status, reason: str,
               text: str = "", chunks: Sequence[Chunk] = ()) -> None:
        """A file's outcome, in one transaction: old chunks (and their vectors) out, new text and
        chunks in."""
        with self.transaction():
            self.conn.execute("DELETE FROM chunks WHERE file_id = ?", (file_id,))
            self.conn.execute("DELETE FROM texts WHERE file_id = ?", (file_id,))
            if text:
                self.conn.execute("INSERT INTO texts (file_id, text) VALUES (?, ?)", (file_id, text))
            self.conn.executemany("INSERT INTO chunks (file_id, ordinal, place, text, lead) VALUES (?, ?, ?, ?, ?)",
                                  [(file_id, ordinal, p.place, p.text, p.lead) for ordinal, p in enumerate(chunks)])
            self.conn.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, sha256 = ?, status = ?, reason = ?, indexed_at = ? "
                "WHERE id = ?", (size, mtime_ns, sha256, status.value, reason, time.time(), file_id))
            self._bump()

    # --- vectors ------------------------------------------------------------------------------
    _UNEMBEDDED = ("FROM chunks c LEFT JOIN vectors v ON v.chunk_id = c.id AND v.model = ? "
                   "WHERE v.chunk_id IS NULL")

    def unembedded(self, model: str, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` chunks (id, text) without a vector from `model`, oldest first."""
        return [(r[0], r[1]) for r in self.conn.execute(
            f"SELECT c.id, c.text {self._UNEMBEDDED} ORDER BY c.id LIMIT ?", (model, limit))]

    def unembedded_count(self, model: str) -> int:
        return self.conn.execute(f"SELECT count(*) {self._UNEMBEDDED}", (model,)).fetchone()[0]

    def add_vectors(self, model: str, chunk_ids: Sequence[int], vectors: np.ndarray) -> None:
        """One batch of vectors in one transaction (a chunk deleted meanwhile is skipped)."""
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO vectors (chunk_id, model, vector) "
                "SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
                [(i, model, v.astype("<f4").tobytes(), i) for i, v in zip(chunk_ids, vectors)])
            self._bump()

    # --- reading ------------------------------------------------------------------------------
    def generation(self) -> int:
        """A number that changes with every write of chunks: readers refresh their caches on it."""
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
        return int(row[0]) if row else 0

    def _bump(self) -> None:
        self.conn.execute("INSERT INTO meta (key, value) VALUES ('generation', 1) "
                          "ON CONFLICT(key) DO UPDATE SET value = value + 1")

    def text(self, file_id: int) -> str:
        row = self.conn.execute("SELECT text FROM texts WHERE file_id = ?", (file_id,)).fetchone()
        return row[0] if row else ""

    def counts(self) -> dict[str, int]:
        """Rows per table (tests and the library's summary)."""
        return {table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("collections", "files", "texts", "chunks", "vectors")}

    def transaction(self) -> _Transaction:
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any error (the connection is in autocommit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
