"""The real app window over a fresh data folder, with settings that keep real-model replies short."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtWidgets import QApplication

from slmchat.app import build_window
from slmchat.core.generation import GenerationSettings
from slmchat.core.store.store import Store
from slmchat.gui.main_window import MainWindow
from slmchat.paths import Paths
from slmchat.settings import Settings, save_settings


@pytest.fixture
def make_window(qtbot, slmchat_home) -> Callable[..., MainWindow]:
    """Build the app's real window (real store, library, engine process) in the test's data folder."""

    def make(max_tokens: int = 24, temperature: float = 0.0, context_size: int = 1024) -> MainWindow:
        paths = Paths.default().ensure()
        store = Store(paths.database)
        save_settings(store, Settings(
            generation=GenerationSettings(max_tokens=max_tokens, temperature=temperature, seed=7),
            n_threads=2,
            context_size=context_size,
        ))
        store.close()
        window = build_window(paths, QApplication.instance())
        qtbot.addWidget(window)
        window.show()
        return window

    return make
