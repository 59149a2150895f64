"""Bring the index up to date with the files on disk, one file per transaction.

`scan` compares the folders and files the user added with what the index holds: new files become
pending, a file whose size or date changed is hashed and becomes pending only when its sha256
differs, and files gone from disk are removed with everything made from them. `index_pending`
then reads and chunks each pending file and commits it whole (searchable by its words from then
on), and afterwards gives every chunk without one its MiniLM vector, a batch per transaction.
Embedding is the slow part, so the library is usable by words long before it is by meaning. A
process killed at any moment loses at most the file or batch in hand, which is redone next time.
It runs wherever it is called; `background.py` runs it in a process of its own.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from slmchat.core.documents.chunk import chunk
from slmchat.core.documents.extract import SUPPORTED, Status, extract
from slmchat.core.documents.index import DocumentIndex, FileRow

EMBED_BATCH = 32


class Embedder(Protocol):
    """What indexing needs of an embedding model (a TaskClient of kind EMBED, or the runner)."""

    model_name: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


# --- events: picklable, so they cross the background process's pipe ---------------------------
@dataclass(frozen=True)
class Scanned:
    pending: int  # files to index now
    removed: int  # files gone from disk, removed from the index


@dataclass(frozen=True)
class FileIndexed:
    path: str
    status: Status
    reason: str
    chunks: int
    done: int  # files finished in this run, this one included
    total: int  # files to do in this run


@dataclass(frozen=True)
class Embedded:
    done: int  # passages given their vector in this run
    total: int  # passages without one when embedding began


@dataclass(frozen=True)
class Paused:
    phase: str  # "files" or "passages" (embedding)
    done: int
    total: int


@dataclass(frozen=True)
class Resumed:
    phase: str
    done: int
    total: int


@dataclass(frozen=True)
class Finished:
    indexed: int  # files indexed with text
    skipped: int  # files with another status (each has its reason in the index)
    embedded: int  # passages given their vector
    stopped: bool  # True when told to stop before the end


@dataclass(frozen=True)
class Failed:
    message: str  # a sentence for the user


Event = Scanned | FileIndexed | Embedded | Paused | Resumed | Finished | Failed


class Control:
    """Pause, resume and stop, set from another thread (the pipe's reader in the background
    process); the indexer looks at it between files."""

    def __init__(self) -> None:
        self.running = threading.Event()
        self.running.set()
        self.stop = threading.Event()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.running.set()

    def halt(self) -> None:
        self.stop.set()
        self.running.set()

    def go_on(self, emit: Callable[[Event], None], phase: str, done: int, total: int) -> bool:
        """Between two steps: wait out a pause (saying so); False once told to stop."""
        if not self.running.is_set():
            emit(Paused(phase, done, total))
            self.running.wait()
            if not self.stop.is_set():
                emit(Resumed(phase, done, total))
        return not self.stop.is_set()


# --- scanning --------------------------------------------------------------------------------
def _walk(root: Path) -> Iterator[Path]:
    """The files under a root the user added: the root itself if a file (whatever its type, so an
    unsupported one is reported), else the supported files below it, hidden folders skipped."""
    if root.is_file():
        yield root
        return
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if not name.startswith(".") and path.suffix.lower() in SUPPORTED:
                yield path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def scan(index: DocumentIndex) -> Scanned:
    """Mark new and changed files pending, remove vanished ones; returns what is left to do."""
    known: dict[tuple[int, str], FileRow] = {(f.collection_id, f.path): f for f in index.files()}
    seen: set[tuple[int, str]] = set()
    for collection_id, root in index.roots():
        for path in _walk(root):
            key = (collection_id, str(path))
            seen.add(key)
            row = known.get(key)
            if row is None:
                index.add_pending(collection_id, path)
                continue
            if row.status is Status.PENDING:
                continue
            try:
                stat = path.stat()
                if (stat.st_size, stat.st_mtime_ns) == (row.size, row.mtime_ns):
                    continue
                if row.sha256 and sha256_of(path) == row.sha256:  # "": never hashed (too large)
                    index.touch(row.id, stat.st_size, stat.st_mtime_ns)
                    continue
            except OSError:
                pass  # unreadable now: indexing it again records why
            index.set_pending(row.id)
    gone = [row.id for key, row in known.items() if key not in seen]
    if gone:
        index.remove_files(gone)
    return Scanned(len(index.files(status=Status.PENDING)), len(gone))


# --- indexing --------------------------------------------------------------------------------
def index_file(index: DocumentIndex, row: FileRow) -> tuple[Status, str, int]:
    """Read and chunk one file and commit it; returns its status, reason and chunk count."""
    path = Path(row.path)
    try:
        stat = path.stat()
        extraction = extract(path)
        # A file refused for its size is not read at all, not even to hash it.
        digest = sha256_of(path) if extraction.status is not Status.TOO_LARGE else ""
    except OSError as error:
        reason = "The file disappeared while it was being indexed." if isinstance(error, FileNotFoundError) \
            else f"The file could not be read ({error.strerror or error})."
        index.record(row.id, size=0, mtime_ns=0, sha256="", status=Status.UNREADABLE, reason=reason)
        return Status.UNREADABLE, reason, 0
    pieces = chunk(extraction.blocks) if extraction.status is Status.INDEXED else []
    index.record(row.id, size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=digest,
                 status=extraction.status, reason=extraction.reason, text=extraction.text, chunks=pieces)
    return extraction.status, extraction.reason, len(pieces)


def embed_pending(index: DocumentIndex, embedder: Embedder, *, emit: Callable[[Event], None],
                  control: Control) -> int:
    """Give every chunk without a vector from `embedder` its vector; returns how many got one."""
    total = index.unembedded_count(embedder.model_name)
    done = 0
    while control.go_on(emit, "passages", done, total) and (batch := index.unembedded(embedder.model_name,
                                                                                         EMBED_BATCH)):
        vectors = embedder.embed([text for _, text in batch])
        index.add_vectors(embedder.model_name, [chunk_id for chunk_id, _ in batch], vectors)
        done += len(batch)
        emit(Embedded(done, total))
    return done


def index_pending(index: DocumentIndex, embedder: Embedder | None, *, emit: Callable[[Event], None],
                  control: Control | None = None) -> Finished:
    """Scan, index every pending file (reporting each), then embed what has no vector; pauses
    and stops between files and between batches. Without an embedder, words only."""
    control = control or Control()
    emit(scan(index))
    indexed = skipped = done = 0
    pending = index.files(status=Status.PENDING)
    for row in pending:
        if not control.go_on(emit, "files", done, len(pending)):
            return Finished(indexed, skipped, 0, stopped=True)
        status, reason, count = index_file(index, row)
        done += 1
        if status is Status.INDEXED:
            indexed += 1
        else:
            skipped += 1
        emit(FileIndexed(row.path, status, reason, count, done, len(pending)))
    embedded = embed_pending(index, embedder, emit=emit, control=control) if embedder is not None else 0
    return Finished(indexed, skipped, embedded, stopped=control.stop.is_set())
