"""The background indexer embeds with one single-thread llama.cpp context per core it may use
(every physical core unless told fewer), and the vectors are the same whichever way it ran.

How many contexts it made is read from llama.cpp's own log in the indexer's log file; the
vectors are compared byte for byte with those of a one-core run of the same files."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from slmchat.core.documents.background import IndexerProcess
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import Finished
from slmchat.paths import Paths

pytestmark = pytest.mark.slow


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    folder = tmp_path / "notes"
    folder.mkdir()
    for n in range(3):
        (folder / f"note_{n}.txt").write_text("\n\n".join(
            f"Note {n}, paragraph {p}: the orchard by the mill gave {n * 11 + p} baskets of apples this "
            "autumn, and the cider press ran from the first frost until the snow closed the road. " * 3
            for p in range(4)))
    return folder


def _index(home: Path, folder: Path, minilm_path: Path, cores: int | None) -> tuple[dict[str, bytes], int]:
    """Index `folder` from scratch; the vectors by passage text, and the contexts llama.cpp made."""
    paths = Paths.at(home).ensure()
    with DocumentIndex(paths.documents_database) as index:
        index.add_roots(index.collection("notes"), [folder])
    events = list(IndexerProcess(paths, minilm_path, n_threads=cores).run(timeout=600))
    assert isinstance(events[-1], Finished) and events[-1].embedded > 4, events[-1]
    with DocumentIndex(paths.documents_database) as index:
        vectors = dict(index.conn.execute(
            "SELECT chunks.text, vectors.vector FROM vectors JOIN chunks ON chunks.id = vectors.chunk_id").fetchall())
    log = (paths.logs / "indexer.log").read_text(encoding="utf-8", errors="replace")
    return vectors, log.count("constructing llama_context")


def test_the_indexer_embeds_on_every_core_unless_told_fewer_with_the_same_vectors(
        tmp_path: Path, notes: Path, minilm_path: Path) -> None:
    cores = psutil.cpu_count(logical=False) or 1
    every, contexts = _index(tmp_path / "every", notes, minilm_path, None)
    assert contexts == cores
    one, contexts = _index(tmp_path / "one", notes, minilm_path, 1)
    assert contexts == 1
    assert every == one
