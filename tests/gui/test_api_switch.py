"""The window's "Let other apps on this computer use slmchat": the real window hosting the
OpenAI-compatible API on its own engine process (no second model), met by the real `openai`
client. Other apps' requests and the window's own chat take turns, the window shows when another
app is using the model, never freezes, and keeps other apps' chats only when asked to.
"""

from __future__ import annotations

import json
import socket
import time
from concurrent.futures import Future, ThreadPoolExecutor

import openai
import psutil
import pytest
from gui_helpers import MODEL_TIMEOUT_MS, start_chatting, wait_until_idle
from heartbeat import Heartbeat
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QSpinBox

from slmchat.core.serve.record import FROM_ANOTHER_APP
from slmchat.core.store.records import MessageStatus
from slmchat.gui.main_window import MainWindow

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
STORY = [{"role": "user", "content": "Write a long story about a dragon who learns to bake bread."}]
GREEDY = {"temperature": 0, "seed": 7}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def set_api(window: MainWindow, **choices: bool | int) -> None:
    """What the user does: open Settings, change the options, Save."""
    dialog = window.settings_dialog()
    for name, value in choices.items():
        widget = getattr(dialog, name)
        widget.setValue(value) if isinstance(widget, QSpinBox) else widget.setChecked(value)
    dialog.save()


def switched_on(qtbot, window: MainWindow, **choices: bool | int) -> openai.OpenAI:
    """The API switched on, then the starter model loaded (one thread: the machine is shared)."""
    set_api(window, api_server=True, api_port=free_port(), threads=1, **choices)
    assert window.api_server.address
    start_chatting(qtbot, window)
    return openai.OpenAI(base_url=window.api_server.address, api_key="unused", max_retries=0, timeout=120)


def in_background(pool: ThreadPoolExecutor, call, *args) -> Future:
    """A blocking client call off the GUI thread, so the window's event loop runs meanwhile."""
    return pool.submit(call, *args)


def chat(client: openai.OpenAI, model: str, messages=HELLO, max_tokens: int = 12, **options):
    return client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens, **GREEDY,
                                          **options)


def engine_processes() -> list[int]:
    """Model processes alive now: `spawn`ed children of this process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "spawn_main" in " ".join(child.cmdline()):
                found.append(child.pid)
        except psutil.Error:
            pass
    return found


def test_switched_on_the_openai_client_lists_the_windows_model_and_streams_a_chat_from_the_same_process(
        qtbot, make_window) -> None:
    window = make_window()
    client = switched_on(qtbot, window)
    model = window.session.model_id
    badge_seen: list[bool] = []
    window.api_server.other_app_using.connect(badge_seen.append)

    with ThreadPoolExecutor(1) as pool:
        listed = in_background(pool, lambda: [m.id for m in client.models.list()])
        qtbot.waitUntil(listed.done, timeout=MODEL_TIMEOUT_MS)
        assert listed.result() == [model]
        streamed = in_background(pool, lambda: [c.choices[0].delta.content or "" for c in chat(
            client, model, STORY, max_tokens=60, stream=True) if c.choices])
        qtbot.waitUntil(window.api_badge.isVisible, timeout=MODEL_TIMEOUT_MS)  # shown while it runs
        assert not streamed.done()
        qtbot.waitUntil(streamed.done, timeout=MODEL_TIMEOUT_MS)
    pieces = streamed.result()
    assert len([piece for piece in pieces if piece]) > 10 and "".join(pieces).strip()
    qtbot.waitUntil(lambda: not window.api_badge.isVisible(), timeout=5000)  # and cleared after
    assert badge_seen[0] is True and badge_seen[-1] is False
    assert engine_processes() == [window.session.engine.pid]  # the window's own engine, no second model


def test_allowing_the_network_makes_a_key_to_copy_and_other_computers_without_it_are_refused(
        qtbot, make_window) -> None:
    window = make_window()
    dialog = window.settings_dialog()
    assert not dialog.api_server.isChecked() and not dialog.api_key.isVisible()  # off by default
    dialog.api_server.setChecked(True)
    dialog.api_port.setValue(free_port())
    dialog.api_on_network.setChecked(True)
    key = dialog.api_key.text()
    assert len(key) >= 24 and dialog.api_key.isReadOnly()
    dialog.copy_key.click()
    assert QGuiApplication.clipboard().text() == key
    dialog.save()
    assert window.settings.api_key == key
    address = window.api_server.address.replace("0.0.0.0", "127.0.0.1")
    with ThreadPoolExecutor(1) as pool:
        refused = in_background(pool, lambda: openai.OpenAI(base_url=address, api_key="wrong",
                                                            max_retries=0).models.list())
        qtbot.waitUntil(refused.done, timeout=MODEL_TIMEOUT_MS)
        with pytest.raises(openai.AuthenticationError):
            refused.result()
        allowed = in_background(pool, lambda: openai.OpenAI(base_url=address, api_key=key,
                                                            max_retries=0).models.list())
        qtbot.waitUntil(allowed.done, timeout=MODEL_TIMEOUT_MS)
    assert allowed.result().data == []  # let in; no model loaded yet


def test_switched_off_the_port_is_closed_and_switched_on_again_it_answers(qtbot, make_window) -> None:
    window = make_window()
    client = switched_on(qtbot, window)
    port = int(window.api_server.address.rsplit(":", 1)[1].split("/")[0])
    set_api(window, api_server=False)
    assert not window.api_server.address

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        return False

    qtbot.waitUntil(refused, timeout=5000)

    set_api(window, api_server=True)
    with ThreadPoolExecutor(1) as pool:
        answered = in_background(pool, chat, client, window.session.model_id)
        qtbot.waitUntil(answered.done, timeout=MODEL_TIMEOUT_MS)
    assert answered.result().choices[0].message.content


def test_a_window_chat_sent_while_another_app_chats_waits_for_it_and_both_replies_are_whole(
        qtbot, make_window) -> None:
    window = make_window(max_tokens=24)
    client = switched_on(qtbot, window)
    first_window_text: list[float] = []
    model = window.controller.chat_model
    model.dataChanged.connect(lambda top, _b, _r: first_window_text.append(time.monotonic())
                              if model.message(top.row()).text and not first_window_text else None)

    with ThreadPoolExecutor(1) as pool:
        other = in_background(pool, lambda: (chat(client, window.session.model_id, STORY, max_tokens=80),
                                             time.monotonic()))
        qtbot.waitUntil(window.api_badge.isVisible, timeout=MODEL_TIMEOUT_MS)
        assert window.controller.send("Name three colours.")
        wait_until_idle(qtbot, window)
        qtbot.waitUntil(other.done, timeout=MODEL_TIMEOUT_MS)
    answer, other_ended = other.result()
    assert answer.usage.completion_tokens == 80 and answer.choices[0].finish_reason == "length"  # not cut short
    assert first_window_text and first_window_text[0] >= other_ended - 0.5, "the window's reply did not wait"
    reply = window.controller.store.branch(window.controller.conversation_id)[-1]
    assert reply.status is MessageStatus.COMPLETE or reply.completion_tokens == 24
    assert reply.content.strip()


def test_other_apps_chats_are_stored_only_when_the_setting_is_on_and_then_marked_as_from_another_app(
        qtbot, make_window) -> None:
    window = make_window()
    client = switched_on(qtbot, window)
    store = window.controller.store
    before = len(store.conversations())
    with ThreadPoolExecutor(1) as pool:
        kept_out = in_background(pool, chat, client, window.session.model_id)
        qtbot.waitUntil(kept_out.done, timeout=MODEL_TIMEOUT_MS)
        qtbot.wait(300)  # anything the server hands the window would have arrived
        assert kept_out.result().choices[0].message.content
        assert len(store.conversations()) == before

        set_api(window, store_api_chats=True)
        messages = [{"role": "system", "content": "Be brief."}, *HELLO]
        kept = in_background(pool, chat, client, window.session.model_id, messages)
        qtbot.waitUntil(lambda: len(store.conversations()) == before + 1, timeout=MODEL_TIMEOUT_MS)
    conversation = store.conversations()[0]
    assert conversation.title.startswith(FROM_ANOTHER_APP)
    assert conversation.system_prompt == "Be brief."
    question, reply = store.branch(conversation.id)
    assert question.content == HELLO[0]["content"]
    assert reply.content == kept.result().choices[0].message.content
    assert reply.completion_tokens == kept.result().usage.completion_tokens


def test_a_burst_of_api_requests_and_the_windows_own_chat_neither_freeze_the_window_nor_kill_the_engine(
        qtbot, make_window) -> None:
    window = make_window(max_tokens=24)
    client = switched_on(qtbot, window)
    model_id = window.session.model_id
    engine_pid = window.session.engine.pid
    with Heartbeat() as heartbeat:

        def ask(number: int) -> str:
            try:
                if number % 4 == 3:  # a client that hangs up mid-stream
                    stream = chat(client, model_id, STORY, max_tokens=60, stream=True)
                    next(iter(stream))
                    stream.close()
                    return "hung up"
                return chat(client, model_id, STORY if number % 2 else HELLO, max_tokens=20).choices[0].finish_reason
            except openai.RateLimitError:
                return "busy"

        with ThreadPoolExecutor(12) as pool:
            burst = [in_background(pool, ask, number) for number in range(12)]
            qtbot.waitUntil(window.api_badge.isVisible, timeout=MODEL_TIMEOUT_MS)
            assert window.controller.send("Name three colours.")
            wait_until_idle(qtbot, window)
            qtbot.waitUntil(lambda: all(future.done() for future in burst), timeout=4 * MODEL_TIMEOUT_MS)
    outcomes = [future.result() for future in burst]  # none raised anything but 429
    assert outcomes.count("length") + outcomes.count("stop") >= 4, outcomes
    assert len(heartbeat.gaps) > 50
    assert heartbeat.worst < 250, f"the window froze for {heartbeat.worst} ms"
    reply = window.controller.store.branch(window.controller.conversation_id)[-1]
    assert reply.content.strip() and reply.status is not MessageStatus.ERROR
    assert window.session.engine.pid == engine_pid and engine_processes() == [engine_pid]
    raw = socket.create_connection(("127.0.0.1", int(window.api_server.address.rsplit(":", 1)[1][:-3])))
    body = json.dumps({"model": model_id, "messages": HELLO, "max_tokens": 4}).encode()
    raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    with ThreadPoolExecutor(1) as pool:
        answer = in_background(pool, lambda: b"".join(iter(lambda: raw.recv(65536), b"")))
        qtbot.waitUntil(answer.done, timeout=MODEL_TIMEOUT_MS)
    raw.close()
    assert answer.result().startswith(b"HTTP/1.1 200")  # the engine still answers after the burst
