"""Opening the conversation database safely: integrity check, corrupt files set aside, upgrades.

The order matters. Nothing is written before the file has passed its integrity check and been
found to come from this version or an older one: a database from a newer slmchat is refused
untouched, and a damaged one is renamed (with its -wal and -shm companions) and kept for the
user, never deleted.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

from slmchat.core.errors import DatabaseTooNew, StoreError
from slmchat.core.store.records import utc_now
from slmchat.core.store.schema import MIGRATIONS, migration_names
from slmchat.core.store.sqlite import Database

log = logging.getLogger(__name__)

COMPANION_SUFFIXES = ("-wal", "-shm")  # SQLite's write-ahead log and its shared-memory index
BUSY_TIMEOUT_S = 5.0
_CORRUPTION_CODES = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def connect(path: Path) -> Database:
    """The writer's connection: foreign keys enforced, every commit synced to disk.

    `synchronous=FULL` in WAL mode makes a commit survive power loss, not only a crash; our
    writes are small (a message, a checkpoint a second), so the extra fsync costs nothing felt.
    """
    db = Database(sqlite3.connect(path, timeout=BUSY_TIMEOUT_S))
    db.execute("PRAGMA foreign_keys = ON")
    db.execute("PRAGMA synchronous = FULL")
    return db


def connect_read_only(path: Path) -> Database:
    """A connection that cannot write, for a worker thread beside the writer (WAL allows it).

    Created here, used by exactly one thread (hence `check_same_thread=False`: the GUI thread
    may create it and hand it to the worker that uses it).
    """
    uri = path.resolve().as_uri() + "?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    try:
        db = Database(conn, recursive_triggers=False)
        db.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return db


def open_database(path: Path) -> tuple[Database, Path | None]:
    """Open (creating, checking, upgrading) the database at `path`.

    Returns the connection and, when the file was damaged and set aside, where it now lies.
    Raises DatabaseTooNew for a file written by a newer version, StoreError when the file
    cannot be opened at all (locked by another program, no permission, disk full).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    recovered_from = None
    problem = check_existing(path) if path.exists() else None
    if problem is not None:
        recovered_from = set_aside(path)
        log.warning("database %s is damaged (%s); moved to %s", path, problem, recovered_from)
    try:
        db = connect(path)
    except sqlite3.Error as error:
        raise _unavailable(path, error) from error
    try:
        db.enable_wal()
        MIGRATIONS.apply(db)
    except sqlite3.Error as error:
        db.close()
        raise _unavailable(path, error) from error
    except BaseException:
        db.close()
        raise
    return db, recovered_from


def check_existing(path: Path) -> str | None:
    """Check a file before anything may write to it; returns what is damaged, or None.

    The check runs on a read-only connection: a writing one, on closing, checkpoints or deletes
    the write-ahead log, which would alter the very evidence we mean to keep (and would write
    to a database from a newer version, which DatabaseTooNew promises not to do).
    """
    db: Database | None = None
    try:
        db = connect_read_only(path)
        problem = integrity_problem(db)
        if problem is None:
            refuse_if_newer(db, path)
        return problem
    except sqlite3.DatabaseError as error:
        if not _is_damage(error):
            raise _unavailable(path, error) from error
        return str(error)
    finally:
        if db is not None:
            db.close()


def integrity_problem(db: Database) -> str | None:
    """What `quick_check` finds wrong with the file (SQLite's own words), or None when sound.

    `quick_check` reads every page but skips the slow index-content cross-check; it catches
    torn pages, garbage and truncation. (Damage inside the text of a message looks like text:
    SQLite keeps no checksums, so no check can see it.)
    """
    rows = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
    return None if rows == ["ok"] else "; ".join(rows)


def is_busy(error: BaseException) -> bool:
    """SQLite gave up waiting for another connection (after its busy timeout): try again later."""
    return (isinstance(error, sqlite3.OperationalError)
            and error.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED))


def _is_damage(error: sqlite3.DatabaseError) -> bool:
    """Damage, as opposed to a lock, a permission or a full disk: moving a healthy file aside
    because another program holds it would be a disaster of its own."""
    return getattr(error, "sqlite_errorname", "").startswith(_CORRUPTION_CODES)


def set_aside(path: Path) -> Path:
    """Rename a damaged database and its companions with a timestamp; returns the new main path."""
    stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    counter = 1
    while any(Path(f"{target}{suffix}").exists() for suffix in ("", *COMPANION_SUFFIXES)):
        counter += 1
        target = path.with_name(f"{path.stem}.corrupt-{stamp}-{counter}{path.suffix}")
    for suffix in COMPANION_SUFFIXES:
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            companion.rename(f"{target}{suffix}")
    path.rename(target)
    return target


def refuse_if_newer(db: Database, path: Path) -> None:
    """Raise DatabaseTooNew when the file records migrations this version does not know."""
    known = set(migration_names())
    unknown = [m.name for m in MIGRATIONS.applied(db) if m.name not in known]
    if unknown:
        raise DatabaseTooNew(
            f"The conversation database {path} was saved by a newer version of slmchat. "
            "Update slmchat to open it; the file has been left unchanged.",
            detail=f"unknown migrations: {', '.join(unknown)}",
        )


def _unavailable(path: Path, error: sqlite3.Error) -> StoreError:
    return StoreError(
        f"The conversation database {path} cannot be opened: it may be in use by another "
        "program, on a read-only disk, or the disk may be full.",
        detail=f"{type(error).__name__}: {error}",
    )
