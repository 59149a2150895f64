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
from slmchat.gui.documents_service import DocumentService

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
