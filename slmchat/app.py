"""Start the desktop app: build the core objects and the window, then run Qt's event loop.

`--self-test MODEL` starts headless instead (for bundles and CI): a temporary data folder and
database, the real window built offscreen, the model loaded through the engine process, a few
tokens generated and stored; exit 0, or print what failed and exit 1.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from slmchat import __version__
from slmchat.paths import HOME_ENV, Paths

log = logging.getLogger("slmchat.app")

DEFAULT_CONTEXT = 4096


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slmchat", description="Chat with small language models, offline.")
    parser.add_argument("--version", action="version", version=f"slmchat {__version__}")
    parser.add_argument("--data-dir", metavar="DIR", help=f"keep all data under DIR (same as {HOME_ENV}=DIR)")
    parser.add_argument("--self-test", metavar="MODEL", type=Path,
                        help="start headless, load MODEL (a .gguf), generate a few tokens, exit 0 if all worked")
    parser.add_argument("model", nargs="?", metavar="MODEL.gguf", type=Path,
                        help="a model file to add to your models (used where it is) and chat with: what "
                             "opening a .gguf file with slmchat does")
    return parser.parse_args(argv)


def resolve_paths() -> Paths:
    """The platform folders (or SLMCHAT_HOME), with the data folder the user may have moved."""
    return Paths.default().ensure()


def build_window(paths: Paths, app: object) -> object:
    """Every core object, the controller and the main window, wired; returns the window."""
    from PySide6.QtGui import QGuiApplication

    from slmchat.core.errors import SlmchatError
    from slmchat.core.models.catalog import load_catalog
    from slmchat.core.models.library import ModelLibrary
    from slmchat.core.store.store import Store
    from slmchat.gui import theme as themes
    from slmchat.gui.chat_view import ChatModel
    from slmchat.gui.controller import ChatController
    from slmchat.gui.icons import app_icon
    from slmchat.gui.main_window import MainWindow
    from slmchat.gui.model_session import ModelSession
    from slmchat.gui.task_models import TaskModels
    from slmchat.settings import load_settings

    QGuiApplication.setWindowIcon(app_icon())
    store = Store(paths.database)
    settings = load_settings(store)
    theme = themes.resolve(settings.theme)
    themes.apply(app, theme, settings.font_size)

    system_prompt = ""
    if settings.default_persona_id is not None:
        system_prompt = next((p.system_prompt for p in store.personas() if p.id == settings.default_persona_id), "")
    session = ModelSession(paths)
    library = ModelLibrary(paths)
    tasks = TaskModels(library, paths, settings.n_threads)
    controller = ChatController(store, session, ChatModel(), settings.generation, tasks, system_prompt,
                                paths.log_file)
    first_run = not store.conversations() and not store.conversations(trashed=True)
    try:
        catalog = load_catalog()
    except SlmchatError as error:  # a damaged catalog must not stop the chat: log it, go on
        log.error("catalog unavailable: %s", error)
        catalog = None
    window = MainWindow(controller, session, library, paths, settings, catalog,
                        theme, first_run)
    if store.recovery is not None:
        window.notice.show_message(store.recovery.describe(), error=True)
    return window


def start_background_work(window: object) -> None:
    """After the window shows: detect the hardware, load the model the user last used.

    The backend is read from llama.cpp's library files, not by loading llama.cpp: only the
    engine's own process ever loads it.
    """
    from slmchat.core.models.hardware import detect_machine
    from slmchat.gui.workers import run_task

    run_task(lambda: detect_machine(probe_backend=False), window.set_machine, lambda error: log.warning("hardware detection failed: %s", error))
    if window.pages.currentWidget() is not window.welcome:
        window.load_default_model()


def run_gui(paths: Paths, open_file: Path | None = None) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from slmchat.core.errors import AppNotAnswering, SlmchatError
    from slmchat.gui.plain_text import as_rich_text
    from slmchat.gui.single_instance import InstanceServer, claim
    from slmchat.logsetup import setup_logging

    setup_logging(paths)
    app = QApplication(sys.argv[:1])
    app.setApplicationName("slmchat")
    app.setApplicationDisplayName("slmchat")
    app.setDesktopFileName("slmchat")
    try:
        instance = claim(paths.data, open_file=open_file)
    except AppNotAnswering as error:
        QMessageBox.critical(None, "slmchat cannot start", as_rich_text(str(error)))
        return 1
    if instance is None:
        log.info("another slmchat has this data folder: asked it to come forward")
        return 0
    try:
        try:
            window = build_window(paths, app)
        except SlmchatError as error:  # e.g. a database from a newer slmchat: refuse, touch nothing
            QMessageBox.critical(None, "slmchat cannot start", as_rich_text(str(error)))  # may quote a path
            return 1
        window.show()
        InstanceServer(paths.data, lambda file: bring_forward(window, file), window)
        log.info("window open for %s", paths.data)
        QTimer.singleShot(0, lambda: start_background_work(window))
        if open_file is not None:
            QTimer.singleShot(0, lambda: window.open_model_file(open_file))
        return app.exec()
    finally:
        instance.release()


def bring_forward(window: object, open_file: Path | None) -> None:
    log.info("another start asked this window to come forward%s", f" and open {open_file}" if open_file else "")
    window.showNormal()
    window.raise_()
    window.activateWindow()
    if open_file is not None:
        window.open_model_file(open_file)


def self_test(model_path: Path) -> int:
    """Headless check of a build: Qt, the window, the store and the engine process, for real."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="slmchat-self-test-") as home:
        os.environ[HOME_ENV] = home
        paths = Paths.default().ensure()
        try:
            return _self_test_steps(paths, model_path.expanduser().resolve())
        except Exception as error:  # report every failure in one line: this is a diagnostic
            print(f"self-test FAILED: {type(error).__name__}: {error}", file=sys.stderr)
            return 1


def _self_test_steps(paths: Paths, model_path: Path) -> int:
    from PySide6.QtWidgets import QApplication

    from slmchat.core.generation import EngineConfig, GenerationSettings
    from slmchat.core.process.engine_client import EngineClient
    from slmchat.core.store.recording import begin_turn
    from slmchat.core.store.store import Store

    started = time.monotonic()
    app = QApplication.instance() or QApplication(["slmchat"])
    window = build_window(paths, app)
    window.show()
    app.processEvents()
    print(f"window: ok ({time.monotonic() - started:.2f} s)")
    window.close()

    from slmchat.core.serve.running import self_check  # the API's web server, uvicorn's by-name imports

    print(f"api: {self_check()}")

    store = Store(paths.database)
    with EngineClient(EngineConfig(model_path=model_path, n_ctx=512, n_threads=2), paths=paths) as engine:
        print(f"model: {engine.info.name} on {engine.info.backend} ({time.monotonic() - started:.2f} s)")
        with begin_turn(store, "Say hello.", model=engine.info.name) as turn:
            settings = GenerationSettings(max_tokens=8, temperature=0.0, seed=1)
            if engine.info.is_chat:
                generation = engine.stream_chat(turn.messages, settings)
            else:
                generation = engine.complete("Hello, my name is", settings)
            for piece in generation:
                turn.append(piece)
            reply = turn.finish(generation.stats)
    if generation.stats.completion_tokens < 1 or not reply.content:
        print("self-test FAILED: the model produced no text", file=sys.stderr)
        return 1
    print(f"reply: {reply.content!r} ({generation.stats.completion_tokens} tokens, "
          f"{generation.stats.decode_tokens_per_s:.0f} tokens/s)")
    print("self-test passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    multiprocessing.freeze_support()  # the engine process is spawned from this entry point
    args = parse_args(argv)
    if args.data_dir:
        os.environ[HOME_ENV] = args.data_dir
    if args.self_test is not None:
        return self_test(args.self_test)
    return run_gui(resolve_paths(), args.model)


if __name__ == "__main__":
    raise SystemExit(main())
