"""`slmchat-cli docs` as a user runs it: add a folder (indexed in a background process, one line
per file), list what became of each file, search (file, place, snippet per hit), ask the real
SmolLM2 (the answer streams, then its sources), update after a change, remove a collection.
The real all-MiniLM-L6-v2 embeds; the public-domain corpus of tests/core/documents is the data."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import minilm_gguf
import pytest
from model_cache import MODEL_CACHE

from slmchat.cli import main
from slmchat.core.documents.index import DocumentIndex
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
CORPUS = Path(__file__).resolve().parents[1] / "core" / "documents" / "corpus"


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    """A folder of the corpus plus a binary file named .txt, added to the collection "classics"."""
    folder = Path(shutil.copytree(CORPUS, tmp_path / "books"))
    (folder / "not_text.txt").write_bytes(b"\x00\x01\x02" * 100)
    minilm = minilm_gguf.cached_gguf(MODEL_CACHE)
    code, out, err = cli(capsys, "docs", "add", folder, "--collection", "classics", "--embedder", minilm,
                         "--threads", "1")
    assert code == 0, err
    assert "6 file(s) to index" in out and "done: 5 indexed, 1 skipped" in out
    assert f"{folder / 'moby_dick.txt'}: 3 passage(s)" in out
    assert f"{folder / 'not_text.txt'}: binary: The file holds binary data" in out
    return folder, minilm


def test_add_then_list_shows_each_file_with_its_status_and_reason(
        library: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    folder, _ = library
    code, out, _ = cli(capsys, "docs", "list")
    assert code == 0
    assert out.startswith("1  classics  (6 file(s), ")
    assert f"indexed     {folder / 'pride_and_prejudice.md'}\n" in out
    assert f"binary      {folder / 'not_text.txt'}  The file holds binary data, not text, despite its name." in out


def test_search_prints_the_file_the_place_and_the_snippet_of_each_hit(
        library: tuple[Path, Path], capsys: pytest.CaptureFixture[str]):
    folder, minilm = library
    code, out, _ = cli(capsys, "docs", "search", "how many steps up to the room", "--limit", "2",
                       "--embedder", minilm, "--threads", "1")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0] == f"1. {folder / 'sherlock_holmes.html'} — The Adventures of Sherlock Holmes › A Scandal in Bohemia"
    assert "seventeen steps" in lines[1] or "seventeen steps" in (folder / "sherlock_holmes.html").read_text()
    assert lines[2].startswith("2. ") and lines[3].startswith("   ")


def test_ask_streams_an_answer_from_smollm2_then_lists_its_sources(
        library: tuple[Path, Path], capsys: pytest.CaptureFixture[str], smollm2_path: Path):
    folder, minilm = library
    code, out, err = cli(capsys, "docs", "ask", "Who owned the Pequod?", "--model", smollm2_path,
                         "--embedder", minilm, "--threads", "1", "--budget", "600")
    assert code == 0, err
    reply, _, sources = out.partition("\n\nSources (passages):\n")
    assert reply.strip() and sources
    first = sources.splitlines()[0]
    assert first.startswith(f"[1] {folder / 'moby_dick.txt'} — line")

    code, out, err = cli(capsys, "docs", "ask", "Who owned the Pequod?", "--model", smollm2_path,
                         "--embedder", minilm, "--threads", "1")
    assert code == 0, err
    assert "\n\nSources (whole):\n[1] " + str(folder / "moby_dick.txt") + " — whole document" in out


def test_update_reindexes_a_changed_file_and_forgets_a_removed_one_then_remove_empties_the_library(
        library: tuple[Path, Path], capsys: pytest.CaptureFixture[str], slmchat_home: Path):
    folder, minilm = library
    (folder / "alice_in_wonderland.txt").write_text("The Cheshire Cat grinned from the branch of a tree.\n")
    (folder / "moby_dick.txt").unlink()
    code, out, err = cli(capsys, "docs", "update", "--embedder", minilm, "--threads", "1")
    assert code == 0, err
    assert "1 file(s) to index, 1 removed (gone from disk)" in out
    assert f"{folder / 'alice_in_wonderland.txt'}: 1 passage(s)" in out
    code, out, _ = cli(capsys, "docs", "search", "Cheshire", "--limit", "1")
    assert f"{folder / 'alice_in_wonderland.txt'} — line 1" in out
    code, out, _ = cli(capsys, "docs", "search", "Pequod ivory whale")
    assert "moby_dick" not in out

    code, out, _ = cli(capsys, "docs", "remove", "classics")
    assert code == 0 and out == "removed collection 1\n"
    with DocumentIndex(Paths.at(slmchat_home).documents_database) as index:
        assert index.counts() == {"collections": 0, "files": 0, "texts": 0, "chunks": 0, "vectors": 0}
    code, _, err = cli(capsys, "docs", "remove", "classics")
    assert code == 1 and 'There is no document collection "classics"' in err


def test_the_command_runs_as_its_own_program(tmp_path: Path):
    import subprocess

    result = subprocess.run([sys.executable, "-m", "slmchat.cli", "--data-dir", tmp_path / "home", "docs", "list"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "No documents yet: add some with `slmchat-cli docs add PATH`.\n"
