"""Opening the conversation database safely: integrity check, salvage, backups, upgrades.

The order matters. Nothing is written before the file has passed its integrity check and been
found to come from this version or an older one: a database from a newer slmchat is refused
untouched. A damaged one is salvaged into a new file (what can still be read, then what the
newest backup adds), and only when that new file is complete is the damaged one renamed (with
its -wal and -shm companions) and kept for the user, never deleted. An upgrade is preceded by a
backup, and a backup is made at most once a day besides (`backup.py`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from slmchat.core.errors import BackupFailed, DatabaseTooNew, StoreError
from slmchat.core.store import backup as backups
from slmchat.core.store.records import utc_now
from slmchat.core.store.salvage import Copied, copy_rows, repair_references
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


@dataclass(frozen=True)
class Recovery:
    """What came back when the database was found damaged; `describe()` says it to the user."""

    damaged_file: Path  # where the damaged database now lies, untouched
    conversations: int  # in the new database: salvaged plus taken from the backup
    messages: int
    backup: backups.Backup | None  # the backup merged in, if there was one
    conversations_from_backup: int
    messages_from_backup: int

    def describe(self) -> str:
        if not self.conversations:
            found = "nothing could be read back from it, so a new one was started"
        else:
            found = f"{_count(self.conversations, 'conversation')} ({_count(self.messages, 'message')}) " \
                    f"{'was' if self.conversations == 1 else 'were'} recovered"
            if self.backup is not None and self.messages_from_backup:
                when = self.backup.made.astimezone().strftime("%d %B %Y")
                found += f", {_count(self.messages_from_backup, 'message')} of them from the backup of {when}"
        return f"The conversation database was damaged: {found}. The damaged file was kept at {self.damaged_file}."


def open_recovering(path: Path) -> tuple[Database, Recovery | None]:
    """Open (creating, checking, salvaging, backing up, upgrading) the database at `path`.

    Returns the connection and, when the file was damaged, what was recovered from it.
    Raises DatabaseTooNew for a file written by a newer version, BackupFailed when an upgrade's
    backup or a salvage cannot be written (the file is then left as it was), StoreError when
    the file cannot be opened at all (locked by another program, no permission, disk full).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    recovery = None
    problem = check_existing(path) if path.exists() else None
    if problem is not None:
        log.warning("database %s is damaged (%s); salvaging it", path, problem)
        recovery = recover(path)
        log.warning("salvaged %s into a new file; the damaged one is kept as %s", path, recovery.damaged_file)
    try:
        db = connect(path)
    except sqlite3.Error as error:
        raise _unavailable(path, error) from error
    try:
        db.enable_wal()
        if MIGRATIONS.applied(db) and MIGRATIONS.pending(db):
            backups.make_backup(path)  # no upgrade without a copy to go back to
        MIGRATIONS.apply(db)
    except sqlite3.Error as error:
        db.close()
        raise _unavailable(path, error) from error
    except BaseException:
        db.close()
        raise
    _backup_if_due(path)
    return db, recovery


def recover(path: Path) -> Recovery:
    """Build a new database from what `path` still holds plus the newest backup, then put it in
    place of `path`, which is set aside.

    The new file is built under a temporary name: should that fail (a full disk), it is
    removed, the damaged file stays where it was, and the next start tries again.
    """
    fresh = path.with_name(f"{path.name}.recovering")
    _remove_with_companions(fresh)
    newest = backups.newest_backup(path)
    db: Database | None = None
    try:
        db = connect(fresh)
        db.enable_wal()
        MIGRATIONS.apply(db)
        copy_rows(path, db)
        merged = copy_rows(newest.path, db) if newest is not None else Copied()
        repair_references(db)
        conversations, messages = db.execute(
            "SELECT (SELECT count(*) FROM conversations), (SELECT count(*) FROM messages)"
        ).fetchone()
        db.close()
        db = None
        damaged = set_aside(path)
        os.replace(fresh, path)
    except (sqlite3.Error, OSError) as error:
        if db is not None:
            db.close()
        _remove_with_companions(fresh)
        raise BackupFailed(
            f"The conversation database {path} is damaged, and slmchat could not write the repaired "
            "copy: the disk may be full or the folder read-only. The damaged file was left as it "
            "was; free some space and start slmchat again.",
            detail=f"{type(error).__name__}: {error}",
        ) from error
    return Recovery(damaged, conversations, messages, newest, merged.conversations, merged.messages)


def restore_backup(path: Path, backup: Path) -> backups.Backup:
    """Replace the conversations in `path` with those in `backup`, upgraded to this version.

    The current contents are backed up first and that backup is returned, so a restore can be
    undone by restoring it. Works while a `Store` has `path` open: it sees the restored
    conversations on its next query (its window should be reloaded or the app restarted).
    """
    problem = check_existing(backup)
    if problem is not None:
        raise BackupFailed("This backup is damaged and cannot be restored. Choose another one.",
                           detail=f"{backup}: {problem}")
    undo = backups.make_backup(path, keep=None)  # pruning now could delete the very backup chosen
    try:
        backups.copy_into(backup, path)
        with contextlib.closing(connect(path)) as db:
            MIGRATIONS.apply(db)
    except sqlite3.Error as error:
        raise BackupFailed(
            f"The backup could not be restored into {path}: the disk may be full or another program "
            f"may be using the database. Your conversations are as they were (and saved in {undo.path}).",
            detail=f"{type(error).__name__}: {error}",
        ) from error
    backups.prune(path)
    return undo


def _backup_if_due(path: Path) -> None:
    """The daily backup: a failure is logged, not raised, so a full disk does not stop the app
    from opening the conversations the user has."""
    try:
        backups.backup_if_due(path)
    except (BackupFailed, sqlite3.Error) as error:
        log.warning("daily backup of %s failed: %s %s", path, error, getattr(error, "detail", ""))


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


def _remove_with_companions(path: Path) -> None:
    for suffix in ("", *COMPANION_SUFFIXES):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


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


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _unavailable(path: Path, error: sqlite3.Error) -> StoreError:
    return StoreError(
        f"The conversation database {path} cannot be opened: it may be in use by another "
        "program, on a read-only disk, or the disk may be full.",
        detail=f"{type(error).__name__}: {error}",
    )
