"""The window beside other processes writing its database (a CLI chat, say): their live replies
stay theirs, and a reply whose process died shows as interrupted, text kept, when opened."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from slmchat.core.store.records import MessageStatus

REPO = Path(__file__).resolve().parents[2]
WRITER = REPO / "tests" / "core" / "store" / "store_writer.py"


def _start_writer(db: Path) -> tuple[subprocess.Popen, int, int]:
    """store_writer.py streaming slowly into `db`; returns it, its conversation and its reply."""
    writer = subprocess.Popen([sys.executable, str(WRITER), str(db), "2000", "0.01", "0.05"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    conversation = reply = None
    while reply is None:
        line = writer.stdout.readline()
        assert line, writer.stderr.read()
        kind, _, rest = line.partition(" ")
        if kind == "conversation":
            conversation = int(rest)
        elif kind == "reply":
            reply = int(rest)
    while not writer.stdout.readline().startswith("saved"):  # some text is stored
        pass
    return writer, conversation, reply


def test_a_reply_another_process_streams_stays_streaming_in_the_window_until_that_process_dies(qtbot, make_window):
    window = make_window()
    store = window.controller.store
    writer, conversation, reply = _start_writer(store.path)
    try:
        window.controller.open_conversation(conversation)
        assert store.message(reply).status is MessageStatus.STREAMING  # a live writer's reply is left alone
        window.controller.new_chat()
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=30)
    finally:
        if writer.poll() is None:
            writer.kill()
    saved = store.message(reply).content
    window.controller.open_conversation(conversation)
    shown = store.message(reply)
    assert shown.status is MessageStatus.INTERRUPTED and shown.content == saved and saved
    assert not window.controller.busy
