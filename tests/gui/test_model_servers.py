"""Models on another computer, in the real window: "Add a model server…" in the switcher, the
server's models listed beside the local ones and marked with where they run, a chat with one
streamed and stored with that place, removal — and nothing sent anywhere the user did not add.

The remote is the real `slmchat-cli serve` with the real SmolLM2 in its own process (behind a key),
or a stub server that records every request; every network connection and address look-up the
test's process makes is watched through Python's audit hook.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gui_helpers import MODEL_TIMEOUT_MS, wait_until_idle
from model_server_stub import MODEL, Behaviour, StubServer, running_stub
from PySide6.QtCore import QElapsedTimer, Qt, QTimer
from PySide6.QtWidgets import QApplication
from serve_process import Server, start_server, stop_server

from slmchat.app import build_window
from slmchat.core.generation import GenerationSettings
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store
from slmchat.gui.main_window import MainWindow
from slmchat.gui.model_bar import ADD_SERVER
from slmchat.gui.model_server_dialog import ModelServerDialog
from slmchat.paths import Paths
from slmchat.settings import Settings, load_settings, save_settings

KEY = "key-of-the-other-computer"
SCREENSHOTS_FOLDER = "SLMCHAT_TEST_SCREENSHOTS"  # where to keep the pictures to look at (else the test's folder)


# --- every connection and look-up of this process, while a test watches -------------------------
_watching: list[tuple[str, object]] | None = None


def _audit(event: str, args: tuple) -> None:
    if _watching is None:
        return
    if event == "socket.connect" and args[0].family in (socket.AF_INET, socket.AF_INET6):
        _watching.append(("connect", args[1][:2]))
    elif event == "socket.getaddrinfo":
        _watching.append(("look-up", args[0]))


sys.addaudithook(_audit)  # hooks cannot be removed: it records only inside `network_watch`


@pytest.fixture
def network_watch() -> Iterator[list[tuple[str, object]]]:
    global _watching
    _watching = []
    yield _watching
    _watching = None


# --- the window and the remote -----------------------------------------------------------------
@pytest.fixture(scope="module")
def remote(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("other-computer"), "--model", smollm2_path, "--api-key", KEY)
    yield running
    stop_server(running)


@pytest.fixture
def stub() -> Iterator[StubServer]:
    with running_stub() as server:
        yield server


def switcher_texts(window: MainWindow) -> list[str]:
    switcher = window.model_bar.switcher
    return [switcher.itemText(row) for row in range(switcher.count())]


def add_server_through_the_switcher(qtbot, window: MainWindow, address: str | None, key: str = "",
                                    then: Callable[[ModelServerDialog], None] = lambda _dialog: None) -> str:
    """Choose "Add a model server…", type the address and key, press Add, wait for the answer
    (with no address: only open the dialog); `then` runs while the dialog is still open. The
    dialog's last sentence is returned."""
    said: list[str] = []

    def in_the_dialog() -> None:
        (dialog,) = window.findChildren(ModelServerDialog)  # one, however often it opens
        assert dialog.isVisible()
        if address is not None:
            dialog.address.setText(address)
            dialog.key.setText(key)
            qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: dialog.add_button.isEnabled(), timeout=30_000)
        said.append(dialog.status.text())
        then(dialog)
        dialog.reject()

    QTimer.singleShot(100, in_the_dialog)
    switcher = window.model_bar.switcher
    switcher.activated.emit(switcher.findText(ADD_SERVER))  # returns once the dialog is closed
    assert said, "the dialog did not open"
    return said[0]


def window_with_servers(qtbot, servers: tuple[dict[str, str], ...]) -> MainWindow:
    """The real window of a user who added `servers` in an earlier session (as `make_window`,
    whose settings have none)."""
    paths = Paths.default().ensure()
    store = Store(paths.database)
    save_settings(store, Settings(generation=GenerationSettings(max_tokens=24, temperature=0.0, seed=7),
                                  n_threads=2, context_size=1024, model_servers=servers))
    store.close()
    window = build_window(paths, QApplication.instance())
    qtbot.addWidget(window)
    window.show()
    window.pages.setCurrentIndex(0)
    return window


@pytest.mark.slow
def test_a_model_on_another_computer_is_added_chosen_and_answers_streamed_and_stored_with_where_it_ran(
        qtbot, make_window, remote: Server, network_watch, tmp_path: Path):
    screenshots = Path(os.environ.get(SCREENSHOTS_FOLDER, tmp_path))
    window = make_window(max_tokens=24)
    window.pages.setCurrentIndex(0)
    local = switcher_texts(window)
    assert local[-1] == ADD_SERVER

    def look(dialog: ModelServerDialog) -> None:
        qtbot.wait(50)  # the new row shows from the event loop
        dialog.grab().save(str(screenshots / "remote_dialog.png"))

    said = add_server_through_the_switcher(qtbot, window, f"127.0.0.1:{remote.port}", KEY, look)
    assert said == "Added. The model list now has 1 model from 127.0.0.1."
    assert window.model_bar.switcher.currentText() != ADD_SERVER  # the model shown before stays shown
    remote_rows = [text for text in switcher_texts(window) if text.endswith(" — on 127.0.0.1")]
    assert len(remote_rows) == 1 and remote_rows[0].lower().startswith("smollm2")
    assert switcher_texts(window)[:len(local) - 2] == local[:-2]  # the local models stay, first
    name = remote_rows[0]

    switcher = window.model_bar.switcher
    switcher.activated.emit(switcher.findText(name))
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=MODEL_TIMEOUT_MS)
    assert window.model_bar.backend.text() == "Runs on 127.0.0.1"
    window.model_bar.grab().save(str(screenshots / "remote_bar.png"))
    switcher.showPopup()
    qtbot.wait(100)
    switcher.view().window().grab().save(str(screenshots / "remote_switcher.png"))
    switcher.hidePopup()

    updates: list[str] = []
    chat = window.controller.chat_model
    chat.dataChanged.connect(lambda top, _bottom, _roles: updates.append(chat.message(top.row()).text))
    qtbot.keyClicks(window.composer.editor, "What is the capital of France?")
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)
    window.grab().save(str(screenshots / "remote.png"))

    user, reply = window.controller.store.branch(window.controller.conversation_id)
    assert reply.model == name and reply.status is MessageStatus.COMPLETE
    assert reply.content.strip() and reply.content == chat.messages()[-1].text
    assert len({text for text in updates if text}) > 1, "the reply should appear piece by piece"
    assert reply.completion_tokens and reply.prompt_tokens
    word = max(reply.content.split(), key=len).strip(".,!?\"'")
    hits = window.controller.store.search(word)
    assert any(hit.message_id == reply.id for hit in hits)
    stored = load_settings(window.controller.store.reader()).model_servers
    assert stored == ({"url": f"http://127.0.0.1:{remote.port}/v1", "key": KEY},)
    listed: list[str] = []
    said = add_server_through_the_switcher(qtbot, window, None, then=lambda dialog: listed.extend(dialog.remove_buttons))
    assert (said, listed) == ("", [f"http://127.0.0.1:{remote.port}/v1"])  # opened again: the server, no old news
    # every connection went to the server added, and no name was looked up anywhere
    assert network_watch and set(network_watch) <= {("connect", ("127.0.0.1", remote.port)),
                                                    ("look-up", "127.0.0.1")}


def test_a_window_with_no_server_added_connects_nowhere_and_looks_up_no_name(qtbot, make_window, network_watch):
    window = make_window()
    window.pages.setCurrentIndex(0)
    qtbot.wait(500)
    assert switcher_texts(window)[-1] == ADD_SERVER
    assert not any(text.startswith("Models on") or " — on " in text for text in switcher_texts(window))
    assert network_watch == []


def test_servers_added_before_are_asked_at_start_and_only_they_and_a_removed_one_is_let_go(
        qtbot, stub: StubServer, network_watch):
    with running_stub() as unreachable_later:
        pass
    window = window_with_servers(qtbot, ({"url": stub.base_url, "key": ""},
                                         {"url": unreachable_later.base_url, "key": "k"}))
    # two servers on one computer: each name says which port
    gone = f"Models on 127.0.0.1:{unreachable_later.port}   ·   Not reachable"
    qtbot.waitUntil(lambda: {gone, f"{MODEL} — on 127.0.0.1:{stub.port}"} <= set(switcher_texts(window)),
                    timeout=20_000)
    row = window.model_bar.switcher.findText(gone)
    assert "Could not reach the model server" in window.model_bar.switcher.itemData(row, Qt.ItemDataRole.ToolTipRole)
    assert [(seen.method, seen.path) for seen in stub.requests] == [("GET", "/v1/models")]

    switcher = window.model_bar.switcher
    switcher.activated.emit(switcher.findText(f"{MODEL} — on 127.0.0.1:{stub.port}"))
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=20_000)

    def remove_both(dialog: ModelServerDialog) -> None:
        for button in list(dialog.remove_buttons.values()):
            qtbot.mouseClick(button, Qt.MouseButton.LeftButton)

    add_server_through_the_switcher(qtbot, window, None, then=remove_both)
    assert not any(" — on " in text or text.startswith("Models on") for text in switcher_texts(window))
    assert load_settings(window.controller.store.reader()).model_servers == ()
    assert window.session.request is None or window.session.request.model_id != f"remote:{stub.base_url}#{MODEL}"
    asked = len(stub.requests)
    window.controller.send("Is anyone there?")
    wait_until_idle(qtbot, window)
    assert len(stub.requests) == asked  # a removed server is never asked again
    allowed = {("connect", ("127.0.0.1", stub.port)), ("connect", ("127.0.0.1", unreachable_later.port)),
               ("look-up", "127.0.0.1")}
    assert set(network_watch) <= allowed


def test_a_reply_cut_off_refused_or_slow_from_the_server_is_said_and_stops_without_freezing_the_window(
        qtbot, stub: StubServer):
    window = window_with_servers(qtbot, ({"url": stub.base_url, "key": ""},))
    name = f"{MODEL} — on 127.0.0.1"
    qtbot.waitUntil(lambda: name in switcher_texts(window), timeout=20_000)
    switcher = window.model_bar.switcher
    switcher.activated.emit(switcher.findText(name))
    qtbot.waitUntil(lambda: window.session.engine is not None, timeout=20_000)
    stub.behaviour = Behaviour(drop_after=3)
    window.controller.send("Count for me.")
    wait_until_idle(qtbot, window)
    reply = window.controller.store.branch(window.controller.conversation_id)[-1]
    assert (reply.content, reply.status) == ("word0 word1 word2 ", MessageStatus.INTERRUPTED)
    assert "broke in the middle of the reply" in reply.error and reply.model == name

    stub.behaviour = Behaviour(status=401)
    window.controller.send("And again?")
    wait_until_idle(qtbot, window)
    assert window.notice.isVisible() and "asked for a key" in window.notice.label.text()

    stub.behaviour = Behaviour(start_delay_s=10)  # a big model still reading the conversation
    window.controller.send("Still there?")
    qtbot.wait(300)
    assert window.composer.stop_button.isVisible()
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    stopped = QElapsedTimer()
    stopped.start()
    wait_until_idle(qtbot, window)
    assert stopped.elapsed() < 1500
    reply = window.controller.store.branch(window.controller.conversation_id)[-1]
    assert reply.status is MessageStatus.STOPPED and reply.content == ""
