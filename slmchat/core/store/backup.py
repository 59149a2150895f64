"""Rolling backups of the conversation database: make, list, prune and restore them.

A backup is a whole, consistent copy made with SQLite's online backup API, so it can be taken
while the app writes. Copies live beside the database, in `backups/`, named by the UTC time they
were made (`slmchat-YYYYMMDD-HHMMSS.db`); each is written under a temporary name and renamed once
complete and synced, so a crash or a full disk never leaves a half backup that looks whole.
Only the newest few are kept. Which moments call for one (before an upgrade, once a day, before
a restore) is decided by `connection.py`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from slmchat.core.errors import BackupFailed
from slmchat.core.store.records import utc_now

log = logging.getLogger(__name__)

FOLDER = "backups"
KEEP = 5
DAILY = timedelta(hours=24)
_STAMP = "%Y%m%d-%H%M%S"
_PARTIAL = ".partial"
_STALE_PARTIAL_S = 3600.0  # older than this, a temporary file is a crash's leftover, not a copy under way


@dataclass(frozen=True)
class Backup:
    """One backup file: when it was made (UTC) and how many conversations it holds (None when
    the file cannot be read)."""

    path: Path
    made: datetime
    conversations: int | None


def folder_for(database: Path) -> Path:
    """Backups stay inside the data folder, so moving that folder takes them along."""
    return database.parent / FOLDER


def list_backups(database: Path) -> list[Backup]:
    """The backups of `database`, newest first."""
    pattern = re.compile(rf"{re.escape(database.stem)}-(\d{{8}}-\d{{6}})(?:-(\d+))?\.db")
    found: list[tuple[datetime, int, Path]] = []
    folder = folder_for(database)
    for path in folder.iterdir() if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if match:
            made = datetime.strptime(match[1], _STAMP).replace(tzinfo=timezone.utc)
            found.append((made, int(match[2] or 1), path))
    found.sort(reverse=True)
    return [Backup(path, made, conversation_count(path)) for made, _, path in found]


def newest_backup(database: Path) -> Backup | None:
    backups = list_backups(database)
    return backups[0] if backups else None


def conversation_count(path: Path) -> int | None:
    """Conversations outside the trash in a backup, or None when it cannot be read."""
    try:
        with contextlib.closing(_read_only(path)) as conn:
            return int(conn.execute("SELECT count(*) FROM conversations WHERE deleted_at IS NULL").fetchone()[0])
    except sqlite3.Error:
        return None


def make_backup(database: Path, *, now: datetime | None = None, keep: int | None = KEEP) -> Backup:
    """Copy `database` into its backups folder, then keep only the newest `keep` copies (all
    of them with None).

    Raises BackupFailed (the database untouched, no partial file left) when the copy cannot be
    written: a full disk, a read-only folder.
    """
    made = (now or utc_now()).astimezone(timezone.utc).replace(microsecond=0)
    folder = folder_for(database)
    target = _free_name(folder, database.stem, made)
    temporary: Path | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(folder)
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=_PARTIAL, dir=folder)
        os.close(handle)
        temporary = Path(name)
        with contextlib.closing(_read_only(database)) as source:
            _copy(source, temporary)
        os.replace(temporary, target)
        _sync_folder(folder)
    except (sqlite3.Error, OSError) as error:
        if temporary is not None:
            _remove(temporary)
        raise BackupFailed(
            f"slmchat could not save a backup copy of your conversations in {folder}: the disk may "
            "be full or the folder read-only. Your conversations themselves are unchanged; free some "
            "space and try again.",
            detail=f"{type(error).__name__}: {error}",
        ) from error
    log.info("backed up %s to %s", database, target)
    if keep is not None:
        prune(database, keep)
    return Backup(target, made, conversation_count(target))


def backup_if_due(database: Path, *, now: datetime | None = None, keep: int = KEEP) -> Backup | None:
    """A backup when the newest is older than a day (or there is none) and there is something
    to keep; None when none was due."""
    now = now or utc_now()
    newest = newest_backup(database)
    if newest is not None and now - newest.made < DAILY:
        return None
    with contextlib.closing(_read_only(database)) as conn:
        has_data = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM conversations) OR EXISTS (SELECT 1 FROM personas)"
        ).fetchone()[0]
    return make_backup(database, now=now, keep=keep) if has_data else None


def prune(database: Path, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest `keep` backups; returns what was deleted."""
    removed = [backup.path for backup in list_backups(database)[keep:]]
    for path in removed:
        _remove(path)
    return removed


def forget(database: Path, conversation_ids: list[int]) -> None:
    """Delete these conversations (messages, index rows and vectors with them) from every backup:
    "delete forever" means the backups too, so neither a restore nor a salvage brings them back.

    Quick (no rewrite); the words stay in the files' free pages until `compact()`. A backup that
    cannot be changed is logged and left: the deletion in the live database must not fail for it.
    """
    marks = ", ".join("?" * len(conversation_ids))
    for backup in list_backups(database):
        try:
            with contextlib.closing(sqlite3.connect(backup.path, timeout=5.0)) as copy, copy:
                copy.execute("PRAGMA foreign_keys = ON")
                copy.execute(f"DELETE FROM conversations WHERE id IN ({marks})", conversation_ids)
        except sqlite3.Error:
            log.warning("could not delete conversations %s from the backup %s", conversation_ids, backup.path,
                        exc_info=True)


def compact(database: Path) -> None:
    """Rewrite every backup that has free pages (left by `forget`), so deleted words leave its bytes."""
    for backup in list_backups(database):
        with contextlib.closing(sqlite3.connect(backup.path, timeout=5.0)) as copy:
            if copy.execute("PRAGMA freelist_count").fetchone()[0]:
                copy.execute("VACUUM")


def copy_into(backup: Path, database: Path) -> None:
    """Replace the contents of `database` with those of `backup`, in one transaction.

    The copy goes through SQLite (online backup API, into a writing connection on the live
    file), not the file system, so a `Store` that has the file open sees the restored
    conversations on its next query, and a failure part-way leaves the database as it was.
    Checking the backup first and upgrading it after are the caller's part.
    """
    with contextlib.closing(_read_only(backup)) as source, \
            contextlib.closing(sqlite3.connect(database, timeout=5.0)) as live:
        source.backup(live)


def _copy(source: sqlite3.Connection, target: Path) -> None:
    """The pages of `source` into a new file, as a single self-contained file (no -wal beside it)."""
    with contextlib.closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
        copy.execute("PRAGMA journal_mode = DELETE")
    with open(target, "rb+") as written:
        os.fsync(written.fileno())


def _read_only(path: Path) -> sqlite3.Connection:
    if not path.is_file():
        raise sqlite3.OperationalError(f"no database at {path}")
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=5.0)


def _free_name(folder: Path, stem: str, made: datetime) -> Path:
    """`stem-YYYYMMDD-HHMMSS.db`, with `-2`, `-3`... when a backup was made the same second."""
    base = f"{stem}-{made.strftime(_STAMP)}"
    target, counter = folder / f"{base}.db", 1
    while target.exists():
        counter += 1
        target = folder / f"{base}-{counter}.db"
    return target


def _remove_stale_partials(folder: Path) -> None:
    for path in folder.glob(f".*{_PARTIAL}"):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > _STALE_PARTIAL_S:
                path.unlink()


def _remove(path: Path) -> None:
    for leftover in (path, Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX); Windows has no directory handles to sync."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
