"""A new user who starts typing on the welcome screen is typing a message: no key is lost,
Space does not press a button, and Enter sends (the starter model answers once it has loaded)."""

from __future__ import annotations

import pytest
from gui_helpers import wait_for_model, wait_until_idle
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from slmchat.core.store.records import MessageStatus

pytestmark = pytest.mark.slow


def press(qtbot, key: str | Qt.Key) -> None:
    """One key, to whichever widget has the keyboard focus, as a real keyboard does."""
    target = QApplication.focusWidget()
    assert target is not None, "some widget of the window should have the keyboard focus"
    qtbot.keyClick(target, key)


def active_welcome(qtbot, make_window):
    window = make_window(max_tokens=8)
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    assert window.pages.currentWidget() is window.welcome
    return window


def test_typing_on_the_welcome_lands_in_the_composer_and_enter_sends_it(qtbot, make_window):
    window = active_welcome(qtbot, make_window)

    with qtbot.assertNotEmitted(window.welcome.start_button.clicked):
        for key in " Hello there":  # even a first Space is typing, not a button press
            press(qtbot, key)
    assert window.pages.currentWidget() is not window.welcome
    assert window.composer.editor.hasFocus()
    assert window.composer.editor.toPlainText() == " Hello there"

    press(qtbot, Qt.Key.Key_Return)
    assert window.composer.editor.toPlainText() == ""
    wait_until_idle(qtbot, window)
    user, reply = window.controller.store.branch(window.controller.conversation_id)
    assert user.content == "Hello there"
    assert reply.status is MessageStatus.COMPLETE and reply.content


def test_enter_on_the_welcome_starts_chatting(qtbot, make_window):
    window = active_welcome(qtbot, make_window)
    press(qtbot, Qt.Key.Key_Return)
    assert window.pages.currentWidget() is not window.welcome
    assert window.composer.editor.hasFocus()
    assert window.session.request is not None  # the starter model is on its way
    wait_for_model(qtbot, window)
