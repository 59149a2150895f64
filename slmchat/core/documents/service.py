"""The document library behind the window: a process of its own that holds the index and numpy.

The library's index and retrieval (core/documents) read vectors with numpy and embed questions
with MiniLM on llama.cpp; the window's process loads neither. So the window talks to one spawned
child, which opens the library's file, keeps the `Retriever` (its vector matrix stays warm
between questions), loads MiniLM for questions on first use, and owns the background
`IndexerProcess`, passing its events on. Everything that crosses back is plain data (dicts,
lists, `ChatMessage`s), so the window never unpickles a core/documents class, which would import
numpy. The window's `gui/documents.py` relays it to the widgets.

Requests are answered in turn on one pipe (`DocumentService.call`, from worker threads, never
from the GUI thread); indexer events come on a second pipe the GUI thread polls without waiting
(`events`). A child that dies is started again on the next call.
"""

from __future__ import annotations

import atexit
import dataclasses
import multiprocessing
import os
import threading
import time
import traceback
from enum import Enum
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from slmchat.core.errors import SlmchatError
from slmchat.core.generation import Generation, GenerationSettings
from slmchat.paths import Paths

_SPAWN = multiprocessing.get_context("spawn")
PROMPT_OVERHEAD = 200  # the system message, the numbering, the question
BACKGROUND_NICENESS = 10


def _plain(event: Any) -> dict[str, Any]:
    """An indexer event as a dict the window can read without importing core/documents."""
    fields = {key: value.value if isinstance(value, Enum) else value
              for key, value in dataclasses.asdict(event).items()}
    return {"kind": type(event).__name__, **fields}


class _Library:
    """The child's side: one index connection, the retriever, the query embedder, the indexer."""

    def __init__(self, paths: Paths, embedder_path: str | None, events: Connection) -> None:
        from slmchat.core.documents.background import IndexerProcess
        from slmchat.core.documents.index import DocumentIndex
        from slmchat.core.documents.retrieve import Retriever

        self.paths = paths
        self.embedder_path = embedder_path
        self.index = DocumentIndex(paths.documents_database)
        self._embedder: Any = None
        self.retriever = Retriever(self.index, None)
        # Every physical core: this process and the indexer it starts run niced (_child), so the
        # window comes first, and a reply's engine sees the indexer's load and decodes on the
        # cores it leaves (engine/threads.py), as it would with an indexer held to one core.
        self.indexer = IndexerProcess(paths, None if embedder_path is None else Path(embedder_path))
        self._events = events
        self._indexer_lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._rescan = False  # files or folders were added while the indexer ran past its scan
        threading.Thread(target=self._pump, name="indexer-events", daemon=True).start()

    # --- the indexer ----------------------------------------------------------------------
    def _pump(self) -> None:
        """Pass the indexer's events on to the window as they come; when a run ends and more was
        added meanwhile, start another (a run scans only at its start)."""
        while True:
            with self._indexer_lock:
                events = [_plain(event) for event in self.indexer.events(0.0)]
            for event in events:
                if not self._tell(event):
                    return
            if self._rescan and any(event["kind"] in ("Finished", "Failed") for event in events):
                self._rescan = False
                self.start_indexing()
            time.sleep(0.1)

    def _tell(self, event: dict[str, Any]) -> bool:
        with self._send_lock:
            try:
                self._events.send(event)
                return True
            except (OSError, ValueError):  # the window is gone
                return False

    def start_indexing(self) -> None:
        with self._indexer_lock:
            self.indexer.start()
        self._tell({"kind": "Started"})

    def pause(self) -> None:
        self.indexer.pause()

    def resume(self) -> None:
        self.indexer.resume()

    def pending(self) -> int:
        """Files not indexed yet, and passages without a vector (when there is an embedder)."""
        from slmchat.core.documents.extract import Status

        files = len(self.index.files(status=Status.PENDING))
        if self.embedder_path is None:
            return files
        return files + self.index.unembedded_count(Path(self.embedder_path).stem)

    # --- collections ----------------------------------------------------------------------
    def collections(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "name": c.name, "chunks": c.chunks,
                 "files": [{"path": f.path, "status": f.status.value, "reason": f.reason}
                           for f in self.index.files(c.id)]}
                for c in self.index.collections()]

    def add(self, name: str, paths: list[str]) -> int:
        """Remember the files and folders, then index them in the background."""
        collection_id = self.index.collection(name)
        self.index.add_roots(collection_id, [Path(p) for p in paths])
        with self._indexer_lock:  # the pump reads a run's last event under it: no end is missed
            self._rescan = self.indexer.alive
            self.indexer.start()
        self._tell({"kind": "Started"})
        return collection_id

    def remove(self, collection_id: int) -> None:
        """The collection and everything made from it; the indexer stops first (it may be writing
        one of its files) and carries on with the rest."""
        with self._indexer_lock:
            was_running = self.indexer.alive
            self.indexer.stop()
        self.index.delete_collection(collection_id)
        if was_running:
            self.start_indexing()

    # --- answering ------------------------------------------------------------------------
    def _query_embedder(self) -> Any:
        if self.embedder_path is not None and self._embedder is None:
            from slmchat.core.tasks.embeddings import Embedder

            self._embedder = Embedder(self.embedder_path, n_threads=1)  # one sentence: one thread is enough
            self.retriever.embedder = self._embedder
        return self._embedder

    def prepare(self, question: str, budget: int, collections: list[int]) -> dict[str, Any]:
        """What the chat model needs to answer `question`: the prompt with numbered sources (or,
        for a map-reduce, one prompt per part to condense first) and the sources to store."""
        from slmchat.core.documents import answer

        self._query_embedder()
        context = self.retriever.gather(question, budget, collections=collections)
        steps = [answer.prompt(question, part, answer.NOTES_INSTRUCTION) for part in context.parts]
        final = None if context.mode == "map_reduce" else answer.prompt(question, context.sources)
        return {"mode": context.mode, "steps": steps, "final": final, "sources": answer.reply_sources(context)}

    def final(self, question: str, sources: list[dict[str, Any]], notes: list[str]) -> list[Any]:
        """The answering prompt of a map-reduce, from the notes written on each part."""
        from slmchat.core.documents import answer
        from slmchat.core.documents.retrieve import Passage

        passages = [Passage(0, source["file"], f"notes on {source['place']}", text)
                    for source, text in zip(sources, notes)]
        return answer.prompt(question, passages)

    def close(self) -> None:
        with self._indexer_lock:
            self.indexer.stop()
        if self._embedder is not None:
            self._embedder.close()
        self.index.close()


def _child(requests: Connection, events: Connection, paths: Paths, embedder_path: str | None) -> None:
    """The service: answer each request in turn until the window goes away."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C in a terminal is the window's
    if hasattr(os, "nice"):  # background work yields the CPU to the window (the indexer inherits it)
        os.nice(BACKGROUND_NICENESS)
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = os.open(paths.logs / "documents.log", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(log, 1)  # llama.cpp writes to stdout and stderr
    os.dup2(log, 2)
    try:
        library = _Library(paths, embedder_path, events)
    except SlmchatError as error:
        library, opening_error = None, str(error)
    while True:
        try:
            method, args = requests.recv()
        except (EOFError, OSError):
            break
        try:
            if library is None:
                raise SlmchatError(opening_error)
            reply: tuple[str, Any] = ("ok", getattr(library, method)(*args))
        except SlmchatError as error:
            reply = ("error", str(error))
        except Exception:  # a bug: its traceback goes to the log
            traceback.print_exc()
            reply = ("error", "The document library stopped because of an unexpected error; details are "
                              f"in {paths.logs / 'documents.log'}.")
        try:
            requests.send(reply)
        except (OSError, ValueError):
            break
    if library is not None:
        library.close()


class DocumentService:
    """The window's handle on the library process; `call` blocks, so call it off the GUI thread."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.embedder_path: Path | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._requests: Connection | None = None
        self._events: Connection | None = None
        self._lock = threading.Lock()
        self._closed = False  # for good: a late request must not start the process again

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def use_embedder(self, path: Path | None) -> None:
        """The embedding model of the library (None: words only); a change restarts the process."""
        if path != self.embedder_path:
            with self._lock:
                self._stop()
                self.embedder_path = path

    def call(self, method: str, *args: Any) -> Any:
        """Run `method(*args)` of the library in its process and return the result; the sentence
        of a SlmchatError when it failed."""
        with self._lock:
            if self._closed:
                raise SlmchatError("The document library is closed.")
            if not self.alive:
                self._start()
            assert self._requests is not None
            try:
                self._requests.send((method, args))
                status, value = self._requests.recv()
            except (EOFError, OSError):
                self._stop()
                raise SlmchatError("The document library stopped unexpectedly; try again, and it starts "
                                   "afresh.") from None
        if status == "error":
            raise SlmchatError(value)
        return value

    def events(self) -> list[dict[str, Any]]:
        """The indexer's events that have arrived, without waiting (safe on the GUI thread)."""
        conn, found = self._events, []
        try:
            while conn is not None and conn.poll(0):
                found.append(conn.recv())
        except (EOFError, OSError):
            pass
        return found

    def _start(self) -> None:
        requests, child_requests = _SPAWN.Pipe()
        events, child_events = _SPAWN.Pipe(duplex=False)
        self._process = _SPAWN.Process(
            target=_child, name="slmchat-documents", daemon=False,  # it starts the indexer's process
            args=(child_requests, child_events, self.paths,
                  None if self.embedder_path is None else str(self.embedder_path)))
        self._process.start()
        atexit.register(self.close)  # before multiprocessing waits for its children at exit
        child_requests.close()
        child_events.close()
        self._requests, self._events = requests, events

    def _stop(self) -> None:
        """End the process: closing its pipe ends its loop, which stops the indexer after the
        file in hand (the next start carries on)."""
        if self._requests is not None:
            self._requests.close()
        process = self._process
        if process is not None:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)
        self._process = self._requests = None
        atexit.unregister(self.close)

    def close(self) -> None:
        """End the process for good (the window is closing)."""
        with self._lock:
            self._closed = True
            self._stop()


def answer_from_documents(service: DocumentService, engine: Any, question: str, collections: list[int],
                          settings: GenerationSettings, cancel: threading.Event,
                          found: dict[str, Any]) -> Generation | None:
    """The chat model's streaming answer to `question` from the attached collections, or None
    when they hold nothing indexed (the chat then answers as usual). Runs on the generation
    worker: retrieval waits for the library's process. The sources to store with the reply are
    put in `found["sources"]` before the answer starts; a map-reduce (a question about the whole
    of documents too long for the context) first condenses each part into notes."""
    budget = max(256, engine.info.n_ctx - settings.max_tokens - PROMPT_OVERHEAD)
    plan = service.call("prepare", question, budget, collections)
    if plan["mode"] == "empty":
        return None
    found["sources"] = plan["sources"]
    final = plan["final"]
    if final is None:
        notes = [engine.stream_chat(step, settings, cancel).read() for step in plan["steps"]
                 if not cancel.is_set()]
        final = service.call("final", question, plan["sources"], notes)
    return engine.stream_chat(final, settings, cancel)
