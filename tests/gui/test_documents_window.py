"""The document library in the real window: the Documents dialog indexes a folder in the background
(real MiniLM), a chat with the collection attached answers with SmolLM2 from numbered sources, and
the sources show under the reply, are stored with it and come back when the chat is reopened."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import minilm_gguf
import psutil
import pytest
from gui_helpers import start_chatting, wait_until_idle
from model_cache import MODEL_CACHE
from PySide6.QtCore import QElapsedTimer, QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from slmchat.gui.documents import DocumentsDialog
from slmchat.gui.documents_wiring import connect_documents

pytestmark = pytest.mark.slow

INDEX_TIMEOUT_MS = 120_000
SCREENSHOTS = Path(os.environ.get("SLMCHAT_SCREENSHOTS", tempfile.gettempdir()))  # where to look at the window
KEEPER = ("The lighthouse on Skerry Island is kept by Ingrid Vale. "
          "Ingrid Vale keeps a grey cat, and the cat is called Pepper.")


def _library_folder(root: Path) -> Path:
    folder = root / "notes"
    folder.mkdir()
    (folder / "keeper.txt").write_text(KEEPER, encoding="utf-8")
    (folder / "bread.txt").write_text("Bread needs flour, water, salt and yeast. Bake it at 220 degrees.",
                                      encoding="utf-8")
    (folder / "scan.txt").write_bytes(bytes(range(256)) * 12)  # binary data behind a .txt name
    return folder


def _with_minilm(window) -> None:
    window.library.import_file(minilm_gguf.cached_gguf(MODEL_CACHE), copy=False)
    window.refresh_models()


def _drop(widget, paths: list[Path]) -> None:
    """Drag files over `widget` and drop them, as from a file manager (Qt delivers a drop only
    where the drag entered and was accepted)."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    assert QApplication.sendEvent(widget, enter) and enter.isAccepted()
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


def _index_dropped_folder(qtbot, window, folder: Path) -> DocumentsDialog:
    dialog = connect_documents(window.controller, window.composer, window)()
    _drop(dialog, [folder])
    library = window.controller.documents
    qtbot.waitUntil(lambda: library.indexing, timeout=5_000)
    qtbot.waitUntil(lambda: not library.indexing and len(dialog.file_statuses()) == 3, timeout=INDEX_TIMEOUT_MS)
    return dialog


def test_a_dropped_folder_is_indexed_with_a_status_per_file_and_a_chat_answers_from_it_with_stored_sources(
        qtbot, make_window, tmp_path):
    window = make_window(max_tokens=40, temperature=0.0, context_size=2048)
    _with_minilm(window)
    start_chatting(qtbot, window)
    dialog = _index_dropped_folder(qtbot, window, _library_folder(tmp_path))

    statuses = dialog.file_statuses()
    assert statuses["keeper.txt"] == statuses["bread.txt"] == "Ready"
    assert statuses["scan.txt"].startswith("Not text: ") and "binary" in statuses["scan.txt"]
    assert "Done: 2 ready, 1 skipped" in dialog.status_label.text()
    dialog.grab().save(str(SCREENSHOTS / "docs_dialog.png"))
    dialog.close()

    collection = window.controller.documents.collections[0]
    assert collection["name"] == "My documents"
    menu = window.composer.documents_menu
    entry = next(action for action in menu.actions() if action.data() == collection["id"])
    entry.trigger()  # ticked in the composer's Documents menu, before the chat's first message
    assert window.composer.documents_button.text() == "Documents (1)"

    qtbot.keyClicks(window.composer.editor, "What is the name of the cat?")
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)

    reply = window.controller.chat_model.messages()[-1]
    assert reply.text and not reply.streaming
    assert [Path(s.file).name for s in reply.sources][0] == "keeper.txt"  # the closest document first
    assert {Path(s.file).name for s in reply.sources} == {"keeper.txt", "bread.txt"}  # both fit whole
    assert "Pepper" in reply.sources[0].snippet
    stored = window.controller.store.message(reply.id)
    assert [source["file"] for source in stored.sources] == [s.file for s in reply.sources]
    assert "Pepper" in reply.text, f"SmolLM2 should answer from the source: {reply.text!r}"

    row = len(window.controller.chat_model.messages()) - 1
    window.chat_view.trigger(row, "act:source:1")  # a click on "[1] keeper.txt" unfolds its words
    assert window.controller.chat_model.message(row).source_unfolded == 1
    opened: list[QUrl] = []
    window.chat_view.open_url = opened.append
    window.chat_view.trigger(row, "act:open-source:1")
    assert [url.toLocalFile() for url in opened] == [reply.sources[0].file]
    qtbot.wait(50)
    window.grab().save(str(SCREENSHOTS / "docs.png"))

    conversation_id = window.controller.conversation_id
    window.controller.new_chat()  # a new chat starts with nothing attached
    assert window.controller.attached_documents() == [] and window.composer.documents_button.text() == "Documents"
    window.controller.open_conversation(conversation_id)
    assert window.controller.chat_model.messages()[-1].sources == reply.sources
    assert window.composer.attached() == [collection["id"]]
    window.close()

    again = make_window()  # the app started again over the same data folder
    qtbot.waitUntil(lambda: bool(again.controller.documents.collections), timeout=30_000)
    again.controller.open_conversation(conversation_id)
    assert again.controller.attached_documents() == [collection["id"]]
    assert [s.file for s in again.controller.chat_model.messages()[-1].sources] == [s.file for s in reply.sources]
    again.close()


def test_without_documents_attached_a_chat_answers_as_usual_and_stores_no_sources(qtbot, make_window, tmp_path):
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    _index_dropped_folder(qtbot, window, _library_folder(tmp_path)).close()  # words only: no MiniLM here
    window.controller.send("Hello")
    wait_until_idle(qtbot, window)
    reply = window.controller.chat_model.messages()[-1]
    assert reply.text and reply.sources == ()
    assert window.controller.store.message(reply.id).sources == ()


def test_indexing_in_the_background_never_stalls_the_window(
        qtbot, make_window, tmp_path):
    window = make_window()
    _with_minilm(window)
    window.pages.setCurrentIndex(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(40):
        (folder / f"note{n:02}.md").write_text(
            f"# Note {n}\n\n" + " ".join(f"Paragraph {n}.{k} about lighthouses, bread and cats." for k in range(60)),
            encoding="utf-8")
    clock = QElapsedTimer()
    gaps: list[int] = []

    def beat() -> None:
        gaps.append(clock.restart())

    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(beat)
    clock.start()
    heartbeat.start()
    dialog = connect_documents(window.controller, window.composer, window)()
    dialog.add_paths([folder])
    library = window.controller.documents
    embedded: list[dict] = []
    library.progress.connect(lambda event: embedded.append(event) if event["kind"] == "Embedded" else None)
    qtbot.waitUntil(lambda: library.indexing, timeout=5_000)
    qtbot.waitUntil(lambda: not library.indexing, timeout=INDEX_TIMEOUT_MS)
    heartbeat.stop()

    assert embedded and embedded[-1]["done"] == embedded[-1]["total"] > 40  # the passages got their vectors
    assert sum(1 for status in dialog.file_statuses().values() if status == "Ready") == 40
    assert len(gaps) > 50
    assert max(gaps[1:]) < 250, f"the window froze for {max(gaps[1:])} ms"


def test_pause_holds_indexing_resume_finishes_it_and_removing_a_collection_deletes_what_was_read(
        qtbot, make_window, tmp_path):
    window = make_window()
    window.pages.setCurrentIndex(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(30):
        (folder / f"note{n:02}.txt").write_text(f"Note {n}: " + "lighthouse keeper " * 400, encoding="utf-8")
    dialog = connect_documents(window.controller, window.composer, window)()
    library = window.controller.documents
    seen: list[str] = []
    library.progress.connect(lambda event: seen.append(event["kind"]))
    dialog.add_paths([folder])
    dialog.pause_button.click()  # at once: the indexer pauses before its first file
    qtbot.waitUntil(lambda: "Paused" in seen, timeout=30_000)
    assert dialog.pause_button.text() == "Resume"
    dialog.grab().save(str(SCREENSHOTS / "docs_dialog_paused.png"))
    files_then = seen.count("FileIndexed")
    qtbot.wait(1500)
    assert seen.count("FileIndexed") == files_then, "nothing is read while paused"
    dialog.pause_button.click()
    qtbot.waitUntil(lambda: not library.indexing, timeout=INDEX_TIMEOUT_MS)
    assert seen.count("FileIndexed") == 30 and "Resumed" in seen
    qtbot.waitUntil(lambda: len(dialog.file_statuses()) == 30, timeout=10_000)

    library.remove(library.collections[0]["id"])
    qtbot.waitUntil(lambda: library.collections == [], timeout=30_000)
    assert dialog.file_statuses() == {} and dialog.collection_list.count() == 0
    from slmchat.core.documents.index import DocumentIndex  # the test reads the file itself

    with DocumentIndex(window.paths.documents_database) as index:
        assert index.counts() == {"collections": 0, "files": 0, "texts": 0, "chunks": 0, "vectors": 0}


def test_indexing_left_pending_by_a_closed_window_carries_on_when_the_window_opens_again(
        qtbot, make_window, tmp_path):
    window = make_window()
    window.pages.setCurrentIndex(0)
    folder = tmp_path / "many"
    folder.mkdir()
    for n in range(30):
        (folder / f"note{n:02}.txt").write_text(f"Note {n}: " + "lighthouse keeper " * 400, encoding="utf-8")
    dialog = connect_documents(window.controller, window.composer, window)()
    library = window.controller.documents
    seen: list[str] = []
    library.progress.connect(lambda event: seen.append(event["kind"]))
    dialog.add_paths([folder])
    dialog.pause_button.click()  # at once: the indexer pauses before its first file
    qtbot.waitUntil(lambda: "Paused" in seen, timeout=30_000)
    read_before = seen.count("FileIndexed")
    assert read_before == 0
    library_process = psutil.Process(library.service._process.pid)
    window.close()  # the app quits with files still to read
    library.refresh()  # a late request (a queued follow-up) must not start the library again
    qtbot.wait(300)
    assert not library.service.alive and not library_process.is_running()

    again = make_window()
    files = {}
    again.controller.documents.progress.connect(
        lambda event: files.update({event["path"]: event["status"]}) if event["kind"] == "FileIndexed" else None)
    qtbot.waitUntil(lambda: again.controller.documents.indexing, timeout=30_000)  # started by itself
    qtbot.waitUntil(lambda: not again.controller.documents.indexing, timeout=INDEX_TIMEOUT_MS)
    assert len(files) == 30 - read_before and set(files.values()) == {"indexed"}
    qtbot.waitUntil(lambda: again.controller.documents.collections[0]["chunks"] >= 30, timeout=10_000)


def test_collections_attached_to_a_deleted_chat_do_not_pass_to_a_new_chat_that_gets_its_number(qtbot, make_window):
    window = make_window()
    controller, store = window.controller, window.controller.store
    old = store.new_conversation(title="Old")
    controller.open_conversation(old.id)
    controller.attach_documents([7])
    assert controller.attached_documents() == [7]
    controller.new_chat()
    store.trash(old.id)
    store.delete_forever(old.id)
    new = store.new_conversation(title="New")
    assert new.id == old.id  # SQLite gives the freed number again
    controller.open_conversation(new.id)
    assert controller.attached_documents() == []
