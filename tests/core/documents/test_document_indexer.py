"""The index follows the files on disk: changed files are redone, removed ones vanish with all
they left, bad files get a status and a reason while the rest is indexed, and a collection's
removal leaves nothing behind. Real MiniLM vectors, the real SQLite file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import docx
import pytest
from pdf_writer import write_pdf

from slmchat.core.documents.extract import Status
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import Event, FileIndexed, index_pending
from slmchat.core.process.task_client import TaskClient
from slmchat.paths import Paths

pytestmark = pytest.mark.slow


def _index(tmp_path: Path, *roots: Path) -> DocumentIndex:
    index = DocumentIndex(Paths.at(tmp_path / "home").documents_database)
    index.add_roots(index.collection("test"), roots)
    return index


def _by_name(index: DocumentIndex) -> dict[str, object]:
    return {Path(f.path).name: f for f in index.files()}


def _chunk_ids(index: DocumentIndex, file_id: int) -> list[int]:
    return [r[0] for r in index.conn.execute("SELECT id FROM chunks WHERE file_id = ? ORDER BY id", (file_id,))]


def _fts_hits(index: DocumentIndex, word: str) -> int:
    return index.conn.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{word}"',)).fetchone()[0]


def test_every_file_of_the_corpus_is_indexed_with_places_and_one_vector_per_chunk(
        tmp_path: Path, corpus: Path, minilm: TaskClient):
    index = _index(tmp_path, corpus)
    finished = index_pending(index, minilm, emit=lambda event: None)
    assert (finished.indexed, finished.skipped) == (5, 0)
    counts = index.counts()
    assert counts["chunks"] == counts["vectors"] > 5
    places = {r[0] for r in index.conn.execute("SELECT place FROM chunks")}
    assert any(p.startswith("Pride and Prejudice › Chapter 1") for p in places), places  # Markdown headings
    assert any(p.startswith("The Adventures of Sherlock Holmes › The Red-Headed League") for p in places)  # HTML
    assert any(p.startswith("lines ") for p in places)  # plain text


def test_a_changed_file_is_reindexed_a_touched_one_is_not_and_a_removed_one_leaves_nothing(
        tmp_path: Path, corpus: Path, minilm: TaskClient):
    index = _index(tmp_path, corpus)
    index_pending(index, minilm, emit=lambda event: None)
    before = _by_name(index)
    alice_chunks = _chunk_ids(index, before["alice_in_wonderland.txt"].id)
    moby = before["moby_dick.txt"]
    assert _fts_hits(index, "Pequod") == 1

    time.sleep(0.01)
    changed = corpus / "frankenstein_letters.txt"
    changed.write_text(changed.read_text() + "\n\nThe zeppelin hovered over Geneva.\n")
    touched = corpus / "alice_in_wonderland.txt"
    os.utime(touched, ns=(time.time_ns(), time.time_ns()))  # a new date, the same bytes
    (corpus / "moby_dick.txt").unlink()

    events: list[Event] = []
    index_pending(index, minilm, emit=events.append)
    redone = [e.path for e in events if isinstance(e, FileIndexed)]
    assert redone == [str(changed)]
    after = _by_name(index)
    assert after["frankenstein_letters.txt"].indexed_at > before["frankenstein_letters.txt"].indexed_at
    assert _fts_hits(index, "zeppelin") == 1
    assert after["alice_in_wonderland.txt"].indexed_at == before["alice_in_wonderland.txt"].indexed_at
    assert _chunk_ids(index, after["alice_in_wonderland.txt"].id) == alice_chunks
    assert "moby_dick.txt" not in after
    for table in ("chunks", "texts"):
        assert index.conn.execute(f"SELECT count(*) FROM {table} WHERE file_id = ?", (moby.id,)).fetchone()[0] == 0
    assert index.conn.execute("SELECT count(*) FROM vectors v LEFT JOIN chunks c ON c.id = v.chunk_id "
                              "WHERE c.id IS NULL").fetchone()[0] == 0
    assert _fts_hits(index, "Pequod") == 0


def test_each_bad_file_gets_its_status_and_reason_while_the_good_ones_are_indexed(
        tmp_path: Path, minilm: TaskClient):
    folder = tmp_path / "mixed"
    folder.mkdir()
    write_pdf(folder / "report.pdf", [["The harvest was good this year."], ["Page two speaks of rain."]])
    write_pdf(folder / "locked.pdf", [["secret"]], locked=True)
    (folder / "damaged.pdf").write_bytes(write_pdf(tmp_path / "whole.pdf", [["cut short"]]).read_bytes()[:200])
    with open(folder / "huge.log", "wb") as handle:  # 500 MB without writing 500 MB: a sparse file
        handle.truncate(500 * 2**20)
    (folder / "photo.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "empty.md").write_text("\n\n")
    document = docx.Document()
    document.add_heading("Minutes", 1)
    document.add_paragraph("The committee approved the new bridge.")
    document.save(folder / "minutes.docx")
    (folder / "notes.md").write_text("# Notes\n\nBuy apples.\n")
    vanishing = folder / "vanishing.txt"
    vanishing.write_text("Here now, gone soon.\n")

    def emit(event: Event) -> None:  # the first file done: another one disappears before its turn
        if isinstance(event, FileIndexed) and event.done == 1:
            vanishing.unlink()

    index = _index(tmp_path, folder)
    index_pending(index, minilm, emit=emit)
    found = {name: (row.status, row.reason) for name, row in _by_name(index).items()}
    expected = {"report.pdf": Status.INDEXED, "minutes.docx": Status.INDEXED, "notes.md": Status.INDEXED,
                "locked.pdf": Status.ENCRYPTED, "damaged.pdf": Status.DAMAGED, "huge.log": Status.TOO_LARGE,
                "photo.txt": Status.BINARY, "empty.md": Status.EMPTY, "vanishing.txt": Status.UNREADABLE}
    assert {name: status for name, (status, _) in found.items()} == expected
    for name, (status, reason) in found.items():
        assert (status is Status.INDEXED) == (reason == ""), (name, reason)
    assert "password" in found["locked.pdf"][1] and "500 MB" in found["huge.log"][1]
    assert "disappeared" in found["vanishing.txt"][1]
    places = {r[0] for r in index.conn.execute("SELECT place FROM chunks")}
    assert {"page 1", "page 2", "Minutes"} <= places


def test_removing_a_collection_deletes_its_text_chunks_and_vectors_and_shrinks_the_file(
        tmp_path: Path, corpus: Path, minilm: TaskClient):
    index = _index(tmp_path, corpus)
    other = index.collection("other")
    (tmp_path / "keep.txt").write_text("A note that stays.\n")
    index.add_roots(other, [tmp_path / "keep.txt"])
    index_pending(index, minilm, emit=lambda event: None)
    index.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size_before = index.path.stat().st_size
    index.delete_collection(index.find_collection("test"))
    assert index.counts() == {"collections": 1, "files": 1, "texts": 1, "chunks": 1, "vectors": 1}
    assert _fts_hits(index, "Ishmael") == 0 and _fts_hits(index, "stays") == 1
    index.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert index.path.stat().st_size < size_before
