"""The window's handle on the document library: indexing and retrieval happen in the library's
own process, so the window's process never loads numpy or llama.cpp for them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import minilm_gguf
import pytest
from model_cache import MODEL_CACHE

pytestmark = pytest.mark.slow

SCRIPT = """
import sys, time
from pathlib import Path
from slmchat.paths import Paths
import slmchat.gui.controller, slmchat.gui.documents, slmchat.gui.documents_wiring  # all the window's document code
from slmchat.core.documents.service import DocumentService

if __name__ == "__main__":
    home, folder, minilm = (Path(a) for a in sys.argv[1:4])
    service = DocumentService(Paths.at(home).ensure())
    service.use_embedder(minilm)
    collection = service.call("add", "Notes", [str(folder)])
    kinds = []
    deadline = time.monotonic() + 120
    while "Finished" not in kinds and time.monotonic() < deadline:
        kinds += [event["kind"] for event in service.events()]
        time.sleep(0.05)
    plan = service.call("prepare", "Which animal lives with the keeper?", 600, [collection])
    print(kinds[-1], plan["mode"], Path(plan["sources"][0]["file"]).name)
    print(sorted(m for m in ("numpy", "llama_cpp") if m in sys.modules))
    service.close()
"""


def test_indexing_and_retrieving_through_the_library_process_keep_numpy_and_llama_cpp_out_of_the_window(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keeper.txt").write_text("The keeper shares the lighthouse with a grey cat.", encoding="utf-8")
    (folder / "bread.txt").write_text("Flour, water, salt and yeast make bread.", encoding="utf-8")
    script = tmp_path / "window_side.py"  # a file: spawned processes re-import their parent's main module
    script.write_text(SCRIPT, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "home"), str(folder),
                           str(minilm_gguf.cached_gguf(MODEL_CACHE))],
                          capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Finished whole keeper.txt", "[]"]


def _indexed(service, folder: Path) -> int:
    """Add `folder` as a collection and wait until the library's process has read it."""
    import time

    collection = service.call("add", "Long", [str(folder)])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if any(event["kind"] == "Finished" for event in service.events()):
            return collection
        time.sleep(0.05)
    raise AssertionError("indexing did not finish")


def test_a_question_about_the_whole_of_a_long_document_is_answered_from_notes_on_each_part(
        tmp_path, smollm2_path):
    import threading

    from slmchat.core.generation import EngineConfig, GenerationSettings
    from slmchat.core.process.engine_client import EngineClient
    from slmchat.core.documents.service import DocumentService, answer_from_documents
    from slmchat.paths import Paths

    folder = tmp_path / "long"
    folder.mkdir()
    sections = [f"## Chapter {n}\n\n" + f"In chapter {n} the keeper repaints the lamp room and counts ships. " * 12
                for n in range(1, 7)]
    (folder / "logbook.md").write_text("# The keeper's logbook\n\n" + "\n\n".join(sections), encoding="utf-8")
    paths = Paths.at(tmp_path / "home").ensure()
    service = DocumentService(paths)  # words only: no embedding model
    try:
        collection = _indexed(service, folder)
        settings = GenerationSettings(max_tokens=16, temperature=0.0, seed=7)
        found: dict = {}
        with EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), paths=paths) as engine:
            answering = answer_from_documents(service, engine, "Summarize the logbook.", [collection], settings,
                                              threading.Event(), found)
            assert answering is not None
            text = answering.read()
        assert text.strip()
        sources = found["sources"]
        assert len(sources) >= 2 and {source["mode"] for source in sources} == {"map_reduce"}
        assert all(Path(source["file"]).name == "logbook.md" for source in sources)
        assert found["sources"][0]["place"] != found["sources"][-1]["place"]  # each part says where it is
    finally:
        service.close()


def test_a_folder_added_while_another_is_being_read_is_read_too(tmp_path):
    import time

    from slmchat.core.documents.service import DocumentService
    from slmchat.paths import Paths

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for n in range(20):
        (first / f"long{n:02}.txt").write_text("the lighthouse keeper writes " * 3000, encoding="utf-8")
    (second / "late.txt").write_text("Added while the first folder was being read.", encoding="utf-8")
    service = DocumentService(Paths.at(tmp_path / "home").ensure())
    try:
        service.call("add", "First", [str(first)])
        events: list[dict] = []
        deadline = time.monotonic() + 120
        while not any(e["kind"] == "FileIndexed" for e in events) and time.monotonic() < deadline:
            events += service.events()
            time.sleep(0.02)
        service.call("add", "Second", [str(second)])  # the running indexer scanned before this
        while time.monotonic() < deadline:
            events += service.events()
            if any(e["kind"] == "FileIndexed" and e["path"].endswith("late.txt") for e in events):
                break
            time.sleep(0.05)
        statuses = {c["name"]: [f["status"] for f in c["files"]] for c in service.call("collections")}
        assert statuses["Second"] == ["indexed"]
    finally:
        service.close()
