"""Make docs/screenshots/*.png from the real app, offscreen, in the light and the dark theme.

    .venv/bin/python docs/make_screenshots.py

Each theme gets a fresh data folder and four pictures: the first-run welcome (with this
machine's recommendation), the main window mid-reply (the bundled SmolLM2 answering for real,
after one finished exchange), the trash with two deleted chats, and the model manager
mid-download (from the test suite's loopback hub, held at about half of the file so the picture
shows progress).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
WINDOW_SIZE = (1200, 780)
DOWNLOAD_REPO = "mradermacher/SmolLM2-360M-Instruct-GGUF"  # a catalog entry's default file
DOWNLOAD_FILE = "SmolLM2-360M-Instruct.Q4_K_M.gguf"
DOWNLOAD_SIZE = 271_000_000
QUESTIONS = ("What is a good name for a grey cat?", "Write a Python function that adds two numbers.")
TRASHED = ("Ideas for a weekend in Lisbon", "Birthday card for Mum")


def wait_until(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    from PySide6.QtWidgets import QApplication

    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not get there in time")
        QApplication.processEvents()
        time.sleep(0.01)


def settle(milliseconds: int = 300) -> None:
    from PySide6.QtWidgets import QApplication

    end = time.monotonic() + milliseconds / 1000
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def build(theme: str, home: Path):
    from PySide6.QtWidgets import QApplication

    from slmchat.app import build_window
    from slmchat.core.generation import GenerationSettings
    from slmchat.core.store.store import Store
    from slmchat.paths import Paths
    from slmchat.settings import Settings, save_settings

    os.environ["SLMCHAT_HOME"] = str(home)
    paths = Paths.default().ensure()
    store = Store(paths.database)
    save_settings(store, Settings(theme=theme, n_threads=2,
                                  generation=GenerationSettings(max_tokens=160, temperature=0.3, seed=3)))
    store.close()
    window = build_window(paths, QApplication.instance())
    window.resize(*WINDOW_SIZE)
    window.show()
    return window


def shoot(theme: str, hub, sparse_file: Path) -> None:
    from slmchat.core.models.catalog import load_catalog
    from slmchat.core.models.hardware import detect_machine
    from slmchat.gui.trash import TrashDialog

    with tempfile.TemporaryDirectory(prefix="slmchat-shots-") as home:
        window = build(theme, Path(home))
        window.set_machine(detect_machine(probe_backend=False))
        settle()
        window.grab().save(str(OUT / f"{theme}-first-run.png"))

        window.welcome.start_button.click()
        wait_until(lambda: window.session.engine is not None)
        window.controller.send(QUESTIONS[0])
        wait_until(lambda: not window.controller.busy)
        window.controller.send(QUESTIONS[1])
        wait_until(lambda: len(window.controller.chat_model.messages()[-1].text) > 140 or not window.controller.busy)
        window.grab().save(str(OUT / f"{theme}-chat.png"))
        window.controller.stop()
        wait_until(lambda: not window.controller.busy)

        for title in TRASHED:
            window.controller.trash(window.controller.store.new_conversation(title=title).id)
        trash = TrashDialog(window.trash, window)
        trash.resize(520, 360)
        trash.show()
        settle()
        trash.grab().save(str(OUT / f"{theme}-trash.png"))
        trash.close()

        hub.reset()
        hub.add_repo(DOWNLOAD_REPO, {DOWNLOAD_FILE: sparse_file}, downloads=1200)
        hub.faults.stall_at = int(DOWNLOAD_SIZE * 0.46)
        hub.faults.stall_times = None  # a retry after the client's read timeout stalls too
        hub.faults.stall_seconds = 300
        manager = window.model_manager(load_catalog())
        manager.resize(980, 700)
        manager.show()
        card = next(card for card in manager.cards if card.file and card.file.file == DOWNLOAD_FILE)
        # The loopback hub sends the first 46 % faster than progress is reported, then holds the
        # connection. Pausing there keeps those bytes; resuming reports them with its first chunk,
        # and the hub holds the connection again further on.
        card.download_button.click()
        wait_until(hub.stalled.is_set)
        window.downloads.pause(card.key)
        wait_until(lambda: not window.downloads.running(card.key))
        hub.stalled.clear()
        hub.faults.stall_at = int(DOWNLOAD_SIZE * 0.8)
        card.download_button.click()
        wait_until(lambda: card.progress.value() > 300)
        settle(600)
        print(theme, "download at", card.progress.value() / 10, "% -", card.status.text())
        manager.grab().save(str(OUT / f"{theme}-models-downloading.png"))
        window.downloads.cancel(card.key)
        hub.release_stall()
        wait_until(lambda: not window.downloads.running(card.key))
        manager.close()
        window.close()
        for widget in (trash, manager, window):  # gone before the interpreter shuts down, not during
            widget.deleteLater()
        settle(100)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout; the loopback hub lives in tests/
    from hub_server import FakeHub  # the test suite's loopback hub
    from PySide6.QtWidgets import QApplication

    _app = QApplication.instance() or QApplication(["slmchat"])  # Qt needs one alive
    OUT.mkdir(parents=True, exist_ok=True)
    hub = FakeHub().start()
    os.environ["HF_ENDPOINT"] = hub.url
    with tempfile.TemporaryDirectory(prefix="slmchat-hub-") as folder:
        sparse_file = Path(folder) / DOWNLOAD_FILE
        with open(sparse_file, "wb") as handle:  # only its size matters: the download is held midway
            handle.truncate(DOWNLOAD_SIZE)
        try:
            for theme in ("light", "dark"):
                shoot(theme, hub, sparse_file)
        finally:
            hub.stop()
    for picture in sorted(OUT.glob("*.png")):
        print(picture.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
