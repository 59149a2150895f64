"""Who is writing a streaming reply: a lease per writing `Store` that dies with its process.

Several processes write one database at once (the window, two `slmchat-cli chat`s, an indexer),
so "this reply is still streaming" cannot mean "its writer is alive". Each writing `Store` takes
a lease: an OS lock on a file of its own beside the database, held for the store's life. Every
streaming reply records its writer's lease name. A reply is marked interrupted only when its
writer's lock can be taken by someone else, which the operating system allows only once the
process holding it is gone (a crash or a kill included): never because another process opened
the database.
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

LEASES_SUFFIX = ".writers"  # slmchat.db -> slmchat.db.writers/
STALE_AFTER_S = 60.0  # a lease file nobody holds and no reply names is swept after this long


def _lock(path: Path) -> FileLock:
    # Never a "soft" lock (a file that merely exists): only a real OS lock dies with its process.
    return FileLock(path, timeout=0, thread_local=False, fallback_to_soft=False)


def _release_and_remove(lock: FileLock) -> None:
    """Remove the lease file while still holding it, so nobody can take a lock on a file being removed."""
    try:
        Path(lock.lock_file).unlink(missing_ok=True)
    except OSError:  # Windows cannot remove an open file; its lock removes the file on release
        pass
    lock.release()


class Lease:
    """This process's claim to the replies it streams, held until `release()` (or its death)."""

    def __init__(self, database: Path) -> None:
        self.folder = leases_folder(database)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = uuid.uuid4().hex
        self._lock = _lock(self.folder / f"{self.name}.lock")
        self._lock.acquire()

    def release(self) -> None:
        if self._lock.is_locked:
            _release_and_remove(self._lock)


def leases_folder(database: Path) -> Path:
    return database.with_name(database.name + LEASES_SUFFIX)


def writer_is_gone(database: Path, name: str) -> bool:
    """True when the lease `name` is held by no process: its writer closed, crashed or was killed."""
    lock = _lock(leases_folder(database) / f"{name}.lock")
    try:
        lock.acquire()
    except Timeout:
        return False
    _release_and_remove(lock)  # nobody will ever hold this lease again
    return True


def sweep(database: Path, named: set[str]) -> None:
    """Remove lease files nobody holds and no streaming reply names (leftovers of killed writers)."""
    folder = leases_folder(database)
    if not folder.is_dir():
        return
    now = time.time()
    for path in folder.glob("*.lock"):
        try:
            young = now - path.stat().st_mtime < STALE_AFTER_S  # a writer may be between create and lock
        except FileNotFoundError:
            continue
        if path.stem not in named and not young:
            writer_is_gone(database, path.stem)
