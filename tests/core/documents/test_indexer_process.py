"""The indexer in its own process: it reports every file, pauses and resumes on request, and after
`kill -9` the next start redoes nothing that was committed — proven by the index's own rows (the
files' `indexed_at` and their chunk ids stay exactly as they were)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from slmchat.core.documents.background import IndexerProcess
from slmchat.core.documents.extract import Status
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import Event, Failed, FileIndexed, Finished, Paused, Resumed, Scanned
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
FILES = 12


@pytest.fixture
def many_files(tmp_path: Path) -> Path:
    """Enough files, each of several passages, that indexing takes a few seconds."""
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(FILES):
        paragraphs = [f"Report {n}, part {p}: the river town of Ashford{n} counted {n * 7 + p} boats, and "
                      "the ferrymen spoke of the weather, the tides and the price of grain at the market. " * 3
                      for p in range(4)]
        (folder / f"report_{n:02}.txt").write_text("\n\n".join(paragraphs))
    return folder


def _collect(indexer: IndexerProcess, until: type, timeout: float = 300) -> list[Event]:
    events: list[Event] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in indexer.events(0.2):
            events.append(event)
            if isinstance(event, (until, Failed, Finished)):
                return events
    raise AssertionError(f"no {until.__name__} within {timeout} s: {events}")


def test_after_kill_9_the_next_start_keeps_every_committed_file_and_does_the_rest(
        tmp_path: Path, many_files: Path, minilm_path: Path):
    paths = Paths.at(tmp_path / "home").ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("reports"), [many_files])

    first = IndexerProcess(paths, minilm_path, n_threads=1)
    first.start()
    seen = 0
    events: list[Event] = []
    while seen < 3:
        batch = _collect(first, FileIndexed)
        events += batch
        assert not any(isinstance(e, (Failed, Finished)) for e in batch), batch
        seen += isinstance(batch[-1], FileIndexed)
    os.kill(first.pid, signal.SIGKILL)
    assert any(isinstance(e, Failed) for e in _collect(first, Failed, 30))

    with DocumentIndex(paths.documents_database) as index:
        done = {f.path: (f.indexed_at, _chunks(index, f.id)) for f in index.files(status=Status.INDEXED)}
        pending = index.files(status=Status.PENDING)
        assert len(done) >= 3 and len(done) + len(pending) == FILES
        assert all(not _chunks(index, f.id) for f in pending)  # no file is left half-written

    second = IndexerProcess(paths, minilm_path, n_threads=1)
    events = list(second.run(timeout=600))
    scanned = next(e for e in events if isinstance(e, Scanned))
    assert scanned.pending == FILES - len(done)
    redone = {e.path for e in events if isinstance(e, FileIndexed)}
    assert redone.isdisjoint(done) and len(redone) == FILES - len(done)
    assert isinstance(events[-1], Finished) and events[-1].indexed == FILES - len(done)
    with DocumentIndex(paths.documents_database) as index:
        for f in index.files():
            assert f.status is Status.INDEXED
            if f.path in done:
                assert (f.indexed_at, _chunks(index, f.id)) == done[f.path]
        assert index.counts()["chunks"] == index.counts()["vectors"]


def test_pause_holds_the_indexer_between_files_until_resume(tmp_path: Path, many_files: Path, minilm_path: Path):
    paths = Paths.at(tmp_path / "home").ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("reports"), [many_files])
    indexer = IndexerProcess(paths, minilm_path, n_threads=1)
    indexer.start()
    try:
        _collect(indexer, FileIndexed)
        indexer.pause()
        paused = _collect(indexer, Paused)[-1]
        assert isinstance(paused, Paused)
        with DocumentIndex(paths.documents_database) as index:
            held = len(index.files(status=Status.INDEXED))
            time.sleep(2)
            assert len(index.files(status=Status.INDEXED)) == held == paused.done
        indexer.resume()
        rest = _collect(indexer, Finished, 600)
        assert isinstance(rest[0], Resumed) and isinstance(rest[-1], Finished)
        assert sum(isinstance(e, FileIndexed) for e in rest) == FILES - paused.done
    finally:
        indexer.stop()


def _chunks(index: DocumentIndex, file_id: int) -> list[int]:
    return [r[0] for r in index.conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY id", (file_id,))]
