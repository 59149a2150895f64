"""The indexer in its own process: it reports every file, pauses and resumes on request, and after
`kill -9` (while reading files, or while embedding) the next start redoes nothing that was
committed — proven by the index's own rows (the files' `indexed_at`, their chunk ids and the
vectors' bytes stay exactly as they were) — and does the rest."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from slmchat.core.documents.background import IndexerProcess
from slmchat.core.documents.extract import Status
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import (
    Embedded,
    Event,
    Failed,
    FileIndexed,
    Finished,
    Paused,
    Resumed,
    Scanned,
)
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


def _kill_on(indexer: IndexerProcess, wanted: Callable[[Event], bool]) -> list[Event]:
    """Read events until one is `wanted`, then kill -9 the indexer; the events seen."""
    indexer.start()
    events: list[Event] = []
    deadline = time.monotonic() + 300
    while not any(wanted(e) for e in events) and time.monotonic() < deadline:
        events += indexer.events(0.05)
        assert not any(isinstance(e, (Failed, Finished)) for e in events), events
    os.kill(indexer.pid, signal.SIGKILL)
    assert any(isinstance(e, Failed) for e in _collect(indexer, Failed, 30))
    return events


def test_kill_9_while_reading_files_keeps_every_committed_file_and_redoes_the_one_cut_short(
        tmp_path: Path, many_files: Path):
    big = many_files / "report_05_long.txt"  # seconds of work: the kill lands inside it
    big.write_text("\n\n".join(f"Ledger line {n}: {n * 3} barrels of herring landed at the quay." * 4
                                for n in range(12_000)))
    paths = Paths.at(tmp_path / "home").ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("reports"), [many_files])

    _kill_on(IndexerProcess(paths, None), lambda e: isinstance(e, FileIndexed) and e.path.endswith("report_05.txt"))
    with DocumentIndex(paths.documents_database) as index:
        done = {f.path: (f.indexed_at, _chunks(index, f.id)) for f in index.files(status=Status.INDEXED)}
        pending = index.files(status=Status.PENDING)
        assert str(big) in {f.path for f in pending}, "the kill came after the long file was done"
        assert len(done) == 6 and len(done) + len(pending) == FILES + 1
        assert all(not _chunks(index, f.id) for f in pending)  # nothing of a file cut short is kept

    events = list(IndexerProcess(paths, None).run(timeout=600))
    assert next(e for e in events if isinstance(e, Scanned)).pending == len(pending)
    redone = {e.path for e in events if isinstance(e, FileIndexed)}
    assert redone == {f.path for f in pending}
    with DocumentIndex(paths.documents_database) as index:
        assert all(f.status is Status.INDEXED for f in index.files())
        for path, before in done.items():
            row = next(f for f in index.files() if f.path == path)
            assert (row.indexed_at, _chunks(index, row.id)) == before


def test_kill_9_while_embedding_keeps_every_committed_vector_and_embeds_only_the_rest(
        tmp_path: Path, many_files: Path, minilm_path: Path):
    paths = Paths.at(tmp_path / "home").ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("reports"), [many_files])

    _kill_on(IndexerProcess(paths, minilm_path, n_threads=1), lambda e: isinstance(e, Embedded))
    with DocumentIndex(paths.documents_database) as index:
        files = {f.path: f.indexed_at for f in index.files()}
        assert len(files) == FILES and all(f.status is Status.INDEXED for f in index.files())
        kept = dict(index.conn.execute("SELECT chunk_id, vector FROM vectors").fetchall())
        chunks = index.counts()["chunks"]
        assert 0 < len(kept) < chunks

    events = list(IndexerProcess(paths, minilm_path, n_threads=1).run(timeout=600))
    assert next(e for e in events if isinstance(e, Scanned)).pending == 0
    assert not any(isinstance(e, FileIndexed) for e in events)
    assert events[-1] == Finished(0, 0, chunks - len(kept), stopped=False)
    with DocumentIndex(paths.documents_database) as index:
        assert {f.path: f.indexed_at for f in index.files()} == files
        after = dict(index.conn.execute("SELECT chunk_id, vector FROM vectors").fetchall())
        assert len(after) == chunks and all(after[i] == vector for i, vector in kept.items())


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


def test_a_second_indexer_on_the_same_library_is_turned_away_with_a_sentence(tmp_path: Path, many_files: Path):
    paths = Paths.at(tmp_path / "home").ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("reports"), [many_files])
    held = FileLock(f"{paths.documents_database}.indexer-lock", timeout=0, thread_local=False,
                    fallback_to_soft=False)
    with held:  # as the window's indexer would hold it
        events = list(IndexerProcess(paths, None).run(timeout=120))
    assert len(events) == 1 and isinstance(events[0], Failed)
    assert "already being indexed" in events[0].message
    with DocumentIndex(paths.documents_database) as index:
        assert len(index.files()) == 0  # it did not even scan
    assert isinstance(list(IndexerProcess(paths, None).run(timeout=120))[-1], Finished)  # free again


def _chunks(index: DocumentIndex, file_id: int) -> list[int]:
    return [r[0] for r in index.conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY id", (file_id,))]
