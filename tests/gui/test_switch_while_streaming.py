"""Switching model (or a setting that reloads it) while a reply streams: the reply ends as
stopped with its text stored, the old engine is closed only after the worker is done with its
pipe, and there is never a second model process in memory.

Real SmolLM2 engine processes, counted with psutil as children of this test process.
"""

from __future__ import annotations

import dataclasses
import shutil

import psutil
import pytest
from gui_helpers import MODEL_TIMEOUT_MS, start_chatting, wait_until_idle
from PySide6.QtCore import QTimer

from slmchat.core.generation import Role
from slmchat.core.store.records import MessageStatus

pytestmark = pytest.mark.slow


def engine_processes() -> int:
    """Model processes alive now: `spawn`ed children of this process (not the resource tracker)."""
    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                count += 1
        except psutil.Error:  # ended while looked at
            pass
    return count


@pytest.fixture
def most_engines(qtbot):
    """The most model processes seen at once, sampled every few milliseconds on the GUI thread."""
    seen = [0]
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: seen.__setitem__(0, max(seen[0], engine_processes())))
    timer.start()
    yield seen
    timer.stop()


def stream_a_while(qtbot, window, prompt: str) -> None:
    window.controller.send(prompt)
    qtbot.waitUntil(lambda: bool(window.controller.chat_model.messages()[-1].text), timeout=MODEL_TIMEOUT_MS)
    assert window.controller.busy


def wait_for(qtbot, window, model_id: str) -> None:
    qtbot.waitUntil(lambda: window.session.engine is not None and window.session.model_id == model_id,
                    timeout=MODEL_TIMEOUT_MS)


def assert_every_reply_ended_well_and_is_shown(window) -> None:
    store = window.controller.store
    stored = [m for m in store.branch(window.controller.conversation_id) if m.role is Role.ASSISTANT]
    assert stored and all(m.status in (MessageStatus.COMPLETE, MessageStatus.STOPPED) for m in stored), \
        [(m.id, m.status, m.error) for m in stored]
    shown = {m.id: m for m in window.controller.chat_model.messages()}
    for message in stored:
        assert message.content and shown[message.id].text == message.content
        assert not shown[message.id].streaming


def test_switching_model_during_a_reply_again_and_again_stops_it_cleanly_with_one_model_in_memory(
        qtbot, make_window, smollm2_path, tmp_path, most_engines):
    copy = tmp_path / "second" / "my-second-model.gguf"
    copy.parent.mkdir()
    shutil.copy(smollm2_path, copy)
    window = make_window(max_tokens=400, temperature=0.8)
    start_chatting(qtbot, window)
    ids = [window.session.model_id, window.library.import_file(copy, copy=False).id]
    window.refresh_models()

    for turn in range(8):
        stream_a_while(qtbot, window, f"Tell me a long story about lighthouse number {turn}.")
        target = ids[(turn + 1) % 2]
        window.switch_model(target)
        wait_for(qtbot, window, target)
        wait_until_idle(qtbot, window)

    assert most_engines[0] == 1, f"{most_engines[0]} model processes were alive at once"
    replies = [m for m in window.controller.store.branch(window.controller.conversation_id)
               if m.role is Role.ASSISTANT]
    # A reply may reach its end token in the instant between the switch and the engine seeing
    # Stop (then it is complete, also fine); most are cut by the switch.
    stopped = [m for m in replies if m.status is MessageStatus.STOPPED]
    assert len(replies) == 8 and len(stopped) >= 6, [(m.status, m.reason, m.content[-40:]) for m in replies]
    assert_every_reply_ended_well_and_is_shown(window)
    assert not window.notice.isVisible(), window.notice.label.text()

    window.controller.send("One more, to the end.")  # the composer's path works as before
    wait_until_idle(qtbot, window)
    assert_every_reply_ended_well_and_is_shown(window)
    assert window.composer.send_button.isVisible()


def test_a_setting_that_reloads_the_model_during_a_reply_stops_it_cleanly(qtbot, make_window, most_engines):
    window = make_window(max_tokens=400, temperature=0.8)
    start_chatting(qtbot, window)
    model_id = window.session.model_id

    for turn, context in enumerate((2048, 1024)):
        stream_a_while(qtbot, window, f"Tell me a long story about a mountain, part {turn}.")
        first_pid = window.session.engine.pid
        window.apply_settings(dataclasses.replace(window.settings, context_size=context))
        wait_for(qtbot, window, model_id)
        wait_until_idle(qtbot, window)
        assert window.session.engine.pid != first_pid and window.session.info.n_ctx == context

    assert most_engines[0] == 1, f"{most_engines[0]} model processes were alive at once"
    assert_every_reply_ended_well_and_is_shown(window)
    assert not window.notice.isVisible(), window.notice.label.text()
