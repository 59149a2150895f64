"""The indexer in a process of its own: the window and the CLI start it, steer it and hear from it.

`IndexerProcess` spawns a child that opens the library's file, loads the embedding model
(llama.cpp's output goes to logs/indexer.log; a crash in it ends only this process, and the
parent reports it) and runs `indexer.index_pending`. Events (indexer.py's dataclasses) come back over a pipe; pause,
resume and stop go the other way. Killing the child at any moment is safe: every file is
committed whole, and the next start carries on with the files still pending. One indexer runs
at a time per library: an OS lock beside the file (released by the OS when its process dies,
however it dies) turns a second one away with a sentence.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

import psutil
from filelock import FileLock, Timeout

from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import (
    Control,
    Event,
    Failed,
    Finished,
    index_pending,
)
from slmchat.core.errors import SlmchatError
from slmchat.paths import Paths

_SPAWN = multiprocessing.get_context("spawn")


def _child(conn: Connection, paths: Paths, embedder_path: str | None, cores: int | None) -> None:
    """The background process: index until done or told to stop; the parent's exit stops it."""
    import signal

    from slmchat.core.tasks.embeddings import Embedder

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is the parent's
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = os.open(paths.logs / "indexer.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)  # llama.cpp writes to stdout and stderr: keep it off the user's terminal
    os.dup2(log, 2)
    control = Control()
    lock = threading.Lock()

    def emit(event: Event) -> None:
        with lock:
            try:
                conn.send(event)
            except (OSError, ValueError):
                control.halt()

    def listen() -> None:
        while True:
            try:
                command = conn.recv()
            except (EOFError, OSError):
                command = "stop"
            if command == "pause":
                control.pause()
            elif command == "resume":
                control.resume()
            else:
                control.halt()
                return

    threading.Thread(target=listen, name="indexer-control", daemon=True).start()
    embedder = None
    paths.documents_database.parent.mkdir(parents=True, exist_ok=True)
    one_indexer = FileLock(f"{paths.documents_database}.indexer-lock", timeout=0, thread_local=False,
                           fallback_to_soft=False)
    try:
        one_indexer.acquire()
    except Timeout:
        emit(Failed("Your documents are already being indexed by another window or command; "
                    "wait for it to finish, or stop it, and try again."))
        return
    try:
        with DocumentIndex(paths.documents_database) as index:
            if embedder_path is not None:
                # One single-thread context per core: see embeddings.py for why not one context
                # with a thread per core.
                workers = cores or psutil.cpu_count(logical=False) or os.cpu_count() or 1
                embedder = Embedder(embedder_path, n_threads=1, workers=workers)
            emit(index_pending(index, embedder, emit=emit, control=control))
    except SlmchatError as error:
        emit(Failed(str(error)))
    except Exception:  # a bug: its traceback goes to the indexer's log
        traceback.print_exc()
        emit(Failed(f"The document indexer stopped because of an unexpected error; details are in "
                    f"{paths.logs / 'indexer.log'}."))
    finally:
        if embedder is not None:
            embedder.close()
        one_indexer.release()


class IndexerProcess:
    """Indexes the library in the background: `start()`, then read `events()` until `Finished`
    or `Failed`; `pause()`, `resume()`, `stop()` from any thread.

    `embedder_path` is an embedding GGUF (MiniLM); without one only full-text search works.
    `n_threads` is how many cores embedding may use (None: every physical core; pause the
    indexer, or give it one, while a chat needs the machine).
    """

    def __init__(self, paths: Paths, embedder_path: Path | None, *, n_threads: int | None = None) -> None:
        self.paths = paths
        self.embedder_path = embedder_path
        self.n_threads = n_threads
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def start(self) -> None:
        """Start the process (returns at once); it scans, then indexes what is pending."""
        if self.alive:
            return
        parent_end, child_end = _SPAWN.Pipe()
        self._process = _SPAWN.Process(
            target=_child, name="slmchat-indexer", daemon=True,
            args=(child_end, self.paths, None if self.embedder_path is None else str(self.embedder_path),
                  self.n_threads))
        self._process.start()
        child_end.close()
        self._conn = parent_end

    def _tell(self, command: str) -> None:
        conn = self._conn
        if conn is not None and self.alive:
            try:
                with self._send_lock:
                    conn.send(command)
            except (OSError, ValueError):
                pass

    def pause(self) -> None:
        """Stop after the file in hand (a `Paused` event says so) until `resume()`."""
        self._tell("pause")

    def resume(self) -> None:
        self._tell("resume")

    def events(self, timeout: float = 0.0) -> Iterator[Event]:
        """The events that arrived, waiting up to `timeout` seconds for the first; a process that
        died without a last word (killed, crashed) yields `Failed`."""
        conn = self._conn
        if conn is None:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                if not conn.poll(max(0.0, deadline - time.monotonic())):
                    if self._process is not None and not self._process.is_alive() and not conn.poll(0):
                        self._conn = None
                        yield Failed("The document indexer stopped unexpectedly; start it again to "
                                     "carry on where it stopped.")
                    return
                event = conn.recv()
            except (EOFError, OSError):
                self._conn = None
                if self._process is not None:
                    self._process.join(2)
                yield Failed("The document indexer stopped unexpectedly; start it again to carry on "
                             "where it stopped.")
                return
            yield event
            if isinstance(event, (Finished, Failed)):
                self._conn = None
                if self._process is not None:
                    self._process.join(10)
                return
            deadline = time.monotonic()  # the first came: take the rest that are already here

    def run(self, timeout: float = 3600.0) -> Iterator[Event]:
        """Start (if needed) and yield every event until the last one (CLI and tests)."""
        self.start()
        deadline = time.monotonic() + timeout
        while self._conn is not None and time.monotonic() < deadline:
            yield from self.events(0.2)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop after the file in hand; killed if it does not end within `grace_s`."""
        self._tell("stop")
        process = self._process
        if process is not None:
            process.join(grace_s)
            if process.is_alive():
                process.kill()
                process.join(5)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
