"""The chat window with the real SmolLM2 model in its engine process: what a user sees and keeps."""

from __future__ import annotations

import os
import shutil
import signal

import pytest
from gui_helpers import (
    MODEL_TIMEOUT_MS,
    start_chatting,
    wait_for_model,
    wait_until_idle,
)
from heartbeat import Heartbeat
from PySide6.QtCore import Qt

from slmchat.core.generation import GenerationStats, Role
from slmchat.core.store.records import MessageStatus
from slmchat.gui.chat_view import Action
from slmchat.gui.model_session import LoadRequest

pytestmark = pytest.mark.slow


def shown(window) -> list:
    return window.controller.chat_model.messages()


def test_a_reply_streams_in_and_lands_in_the_database(qtbot, make_window):
    window = make_window(max_tokens=24)
    start_chatting(qtbot, window)
    updates: list[str] = []
    window.controller.chat_model.dataChanged.connect(
        lambda top, _bottom, _roles: updates.append(window.controller.chat_model.message(top.row()).text))

    qtbot.keyClicks(window.composer.editor, "Name three colours.")
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert window.composer.stop_button.isVisible()  # the reply is on its way: Send became Stop
    wait_until_idle(qtbot, window)

    user, reply = shown(window)
    assert (user.role, user.text) == ("user", "Name three colours.")
    assert reply.text and not reply.streaming
    assert len({text for text in updates if text}) > 1, "the reply should appear piece by piece"
    stored = window.controller.store.branch(window.controller.conversation_id)
    assert [m.role for m in stored] == [Role.USER, Role.ASSISTANT]
    assert stored[1].content == reply.text
    assert stored[1].status is MessageStatus.COMPLETE
    assert stored[1].completion_tokens and stored[1].tokens_per_s and stored[1].ttft is not None
    assert window.composer.send_button.isVisible()
    assert window.sidebar.list.count() == 2  # the "Today" header and the new conversation


def test_stop_keeps_the_text_so_far_and_offers_continue(qtbot, make_window):
    window = make_window(max_tokens=400, temperature=0.8)
    start_chatting(qtbot, window)
    window.controller.send("Write a long story about a lighthouse keeper and his cat.")
    qtbot.waitUntil(lambda: len(shown(window)[-1].text) > 20, timeout=MODEL_TIMEOUT_MS)
    qtbot.keyClick(window, Qt.Key.Key_Escape)  # Esc stops
    wait_until_idle(qtbot, window)

    reply = shown(window)[-1]
    assert reply.finish_reason == "stopped" and reply.can_continue
    stored = window.controller.store.message(reply.id)
    assert stored.status is MessageStatus.STOPPED
    assert stored.content == reply.text and len(stored.content) > 20
    assert stored.completion_tokens < 400


def test_regenerate_makes_a_branch_and_the_arrows_switch_between_them(qtbot, make_window):
    window = make_window(max_tokens=12, temperature=1.0)
    start_chatting(qtbot, window)
    window.controller.send("Say something about the moon.")
    wait_until_idle(qtbot, window)
    first = shown(window)[-1]

    window.chat_view.trigger(1, f"act:{Action.REGENERATE.value}")
    wait_until_idle(qtbot, window)
    second = shown(window)[-1]
    assert second.id != first.id
    assert (second.sibling_index, second.sibling_count) == (1, 2)

    window.chat_view.trigger(1, f"act:{Action.PREVIOUS.value}")
    assert shown(window)[-1].id == first.id and shown(window)[-1].text == first.text
    assert shown(window)[-1].sibling_index == 0
    window.chat_view.trigger(1, f"act:{Action.NEXT.value}")
    assert shown(window)[-1].id == second.id


def test_edit_and_resend_keeps_the_original_message(qtbot, make_window):
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    window.controller.send("What is two plus two?")
    wait_until_idle(qtbot, window)
    original = shown(window)[0]

    window.chat_view.trigger(0, f"act:{Action.EDIT.value}")
    assert window.composer.editor.toPlainText() == "What is two plus two?"
    window.composer.editor.setPlainText("What is three plus three?")
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    wait_until_idle(qtbot, window)

    edited = shown(window)[0]
    assert edited.text == "What is three plus three?" and edited.sibling_count == 2
    assert [m.content for m in window.controller.store.siblings(original.id)] == [
        "What is two plus two?", "What is three plus three?"]


def test_search_finds_an_old_message_and_opens_its_chat(qtbot, make_window):
    window = make_window(max_tokens=6)
    start_chatting(qtbot, window)
    window.controller.send("Tell me about the pangolin please.")
    wait_until_idle(qtbot, window)
    old_chat = window.controller.conversation_id
    window.new_chat()
    assert shown(window) == []

    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.search_box.hasFocus()
    qtbot.keyClicks(window.sidebar.search_box, "pangol")
    qtbot.waitUntil(lambda: window.sidebar.list.count() > 0, timeout=5000)
    item = window.sidebar.list.item(window.sidebar.list.count() - 1)
    window.sidebar.list.itemClicked.emit(item)
    assert window.controller.conversation_id == old_chat
    assert shown(window)[0].text == "Tell me about the pangolin please."


def test_switching_model_keeps_the_conversation(qtbot, make_window, smollm2_path, tmp_path):
    second_file = tmp_path / "second" / "my-second-model.gguf"
    second_file.parent.mkdir()
    shutil.copy(smollm2_path, second_file)
    window = make_window(max_tokens=8)
    start_chatting(qtbot, window)
    window.controller.send("Hello!")
    wait_until_idle(qtbot, window)
    conversation = window.controller.conversation_id
    first_engine_pid = window.session.engine.pid

    second = window.library.import_file(second_file, copy=False)
    window.refresh_models()
    window.model_bar.switcher.setCurrentIndex(window.model_bar.switcher.findData(second.id))
    window.model_bar.switcher.activated.emit(window.model_bar.switcher.currentIndex())
    wait_for_model(qtbot, window)
    assert window.session.model_id == second.id
    assert window.session.engine.pid != first_engine_pid

    window.controller.send("And again!")
    wait_until_idle(qtbot, window)
    assert window.controller.conversation_id == conversation
    assert [m.role for m in shown(window)] == ["user", "assistant", "user", "assistant"]
    assert window.controller.store.conversation(conversation).model == second.id


def test_a_base_model_offers_continue_my_text_instead_of_a_chat_box(qtbot, make_window, gemma_path):
    window = make_window(max_tokens=8)
    gemma = window.library.import_file(gemma_path, copy=False)
    window.pages.setCurrentIndex(0)
    window.refresh_models()
    window.switch_model(gemma.id)
    wait_for_model(qtbot, window)

    assert window.chat_stack.currentWidget() is window.completion_pad
    assert not window.composer.isVisible()
    assert "continue text" in window.completion_pad.explanation.text()
    window.completion_pad.editor.setPlainText("The best thing about autumn is")
    window.completion_pad.continue_button.click()
    wait_until_idle(qtbot, window)
    text = window.completion_pad.editor.toPlainText()
    assert text.startswith("The best thing about autumn is") and len(text) > len("The best thing about autumn is")


def test_a_corrupt_model_file_shows_a_calm_error_and_the_app_keeps_working(qtbot, make_window, smollm2_path, tmp_path):
    window = make_window(max_tokens=6)
    start_chatting(qtbot, window)
    broken_file = tmp_path / "broken.gguf"
    shutil.copy(smollm2_path, broken_file)
    broken = window.library.import_file(broken_file, copy=False)
    with open(broken_file, "r+b") as handle:  # cut off, as by an interrupted copy
        handle.truncate(broken_file.stat().st_size // 3)
    starter = window.session.request

    window.switch_model(broken.id)  # the library sees the damage: refused before any loading
    assert window.notice.isVisible()
    assert window.notice.label.text() and "Traceback" not in window.notice.label.text()
    assert window.session.request == starter and window.session.engine is not None

    # Damaged after it was listed: the engine process meets it, says so, and the starter comes back.
    window.notice.hide()
    with qtbot.waitSignal(window.session.failed, timeout=MODEL_TIMEOUT_MS):
        window.session.load(LoadRequest(broken.id, "Broken", window.engine_config(broken)))
    assert window.notice.isVisible() and "Traceback" not in window.notice.label.text()
    assert window.session.request == starter
    assert window.model_bar.current_id() == starter.model_id

    window.controller.send("Are you still there?")
    wait_until_idle(qtbot, window)
    assert shown(window)[-1].text and shown(window)[-1].finish_reason in ("done", "length")


def test_the_gui_thread_never_stalls_while_a_reply_streams_into_a_long_chat(qtbot, make_window):
    window = make_window(max_tokens=48, temperature=0.8)
    store = window.controller.store
    long_chat = store.new_conversation(title="A long chat")
    for turn in range(100):
        store.add_user_message(long_chat.id, f"Question {turn}: what about **item {turn}**?")
        reply = store.start_reply(long_chat.id, model="earlier")
        answer = f"Answer {turn}:\n\n```python\nprint({turn})\n```\n- a point\n- another"
        store.finish_reply(reply.id, answer, GenerationStats())
    start_chatting(qtbot, window)
    window.controller.open_conversation(long_chat.id)
    assert window.controller.chat_model.rowCount() == 200
    qtbot.wait(300)  # opening a chat lays out its messages once; the streaming is what is measured

    with Heartbeat() as heartbeat:
        window.controller.send("Write a short poem about the wind.")
        wait_until_idle(qtbot, window)

    assert shown(window)[-1].text
    gaps, worst = heartbeat.gaps, heartbeat.worst
    assert len(gaps) > 20
    print(f"heartbeat gaps: max {worst} ms at beat {gaps.index(worst)} of {len(gaps)}")
    assert worst < 250, f"the GUI thread stalled for {worst} ms (beat {gaps.index(worst)} of {len(gaps)})"


def test_when_the_engine_process_dies_mid_reply_the_text_is_kept_and_the_next_message_works(qtbot, make_window):
    window = make_window(max_tokens=400, temperature=0.8)
    start_chatting(qtbot, window)
    window.controller.send("Tell me a long story about a dragon.")
    qtbot.waitUntil(lambda: len(shown(window)[-1].text) > 10, timeout=MODEL_TIMEOUT_MS)
    os.kill(window.session.engine.pid, signal.SIGKILL)
    wait_until_idle(qtbot, window)

    reply = shown(window)[-1]
    assert reply.finish_reason == "interrupted" and reply.text
    assert window.controller.store.message(reply.id).status is MessageStatus.INTERRUPTED
    assert window.notice.isVisible() and "Traceback" not in window.notice.label.text()

    window.controller.send("Are you back?")  # the model starts again by itself
    wait_until_idle(qtbot, window)
    assert shown(window)[-1].text and shown(window)[-1].finish_reason in ("done", "length")
