"""Waiting for the real engine in GUI tests: generous bounds that only a real hang would break."""

from __future__ import annotations

from slmchat.gui.main_window import MainWindow

MODEL_TIMEOUT_MS = 90_000  # a model load or a short reply on a busy 2-core machine


def wait_for_model(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=MODEL_TIMEOUT_MS)


def wait_until_idle(qtbot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=MODEL_TIMEOUT_MS)


def start_chatting(qtbot, window: MainWindow) -> None:
    """What a new user does: the welcome's Start chatting, with the bundled starter model."""
    assert window.pages.currentWidget() is window.welcome
    window.welcome.start_button.click()
    wait_for_model(qtbot, window)
