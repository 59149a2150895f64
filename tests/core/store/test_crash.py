"""Crash safety: a process streaming a reply into the store is SIGKILLed at random moments; every
time, the user's message is there and the reply is "interrupted" with exactly the text it had
last checkpointed (or the text of the checkpoint it was committing when it died)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmchat.core.generation import FinishReason, Role
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store

REPO = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("store_writer.py")
RUNS = 24
PIECES, PIECE_DELAY_S, CHECKPOINT_INTERVAL_S = 150, 0.006, 0.03  # >= 0.9 s of streaming
KILL_WINDOW_S = 0.7  # always before the stream can end


def run_and_kill(db: Path, delay_s: float) -> list[str]:
    """Start the writer, SIGKILL it `delay_s` after its reply exists; return its output lines."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writer = subprocess.Popen(
        [sys.executable, str(WRITER), str(db), str(PIECES), str(PIECE_DELAY_S), str(CHECKPOINT_INTERVAL_S)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = []
    try:
        while not (lines and lines[-1].startswith("reply ")):
            line = writer.stdout.readline()
            assert line, f"writer ended early: {lines} {writer.stderr.read()}"
            lines.append(line.rstrip("\n"))
        time.sleep(delay_s)
        writer.send_signal(signal.SIGKILL)
        # The rest through the same buffered reader: readline() may already hold the lines that
        # followed "reply" (communicate() would read past them, straight from the pipe).
        rest = writer.stdout.read()
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == -signal.SIGKILL
    complete_lines = rest.split("\n")[:-1]  # a line cut off by the kill has no newline
    return lines + complete_lines


def acceptable_texts(lines: list[str]) -> set[str]:
    """The text last reported saved, plus the text of an append that may have been committing."""
    saved, pending = "", None
    for line in lines:
        kind, _, payload = line.partition(" ")
        if kind == "saved":
            saved, pending = json.loads(payload), None
        elif kind == "pending":
            pending = json.loads(payload)
    assert "finished" not in lines, "the writer finished before it was killed: widen the stream"
    return {saved} | ({pending} if pending is not None else set())


@pytest.mark.slow
def test_sigkill_mid_stream_never_loses_the_prompt_or_checkpointed_text(tmp_path: Path) -> None:
    db = tmp_path / "chats.db"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    survivors: dict[int, tuple[str, str]] = {}  # conversation id -> (user text, reply text)
    for run in range(RUNS):
        lines = run_and_kill(db, rng.uniform(0.0, KILL_WINDOW_S))
        conversation_id = int(lines[0].split()[1])
        _, user_id, user_json = lines[1].split(" ", 2)
        reply_id = int(lines[2].split()[1])

        with Store(db) as store:
            context = f"seed {seed}, run {run}"
            assert store.interrupted == [reply_id], context
            user, reply = store.branch(conversation_id)
            assert (user.id, user.role, user.content) == (int(user_id), Role.USER, json.loads(user_json)), (
                context
            )
            assert user.status is MessageStatus.COMPLETE, context
            assert reply.id == reply_id and reply.role is Role.ASSISTANT, context
            assert (reply.status, reply.reason) == (MessageStatus.INTERRUPTED, FinishReason.INTERRUPTED), (
                context
            )
            assert reply.content in acceptable_texts(lines), context
            for earlier_id, (earlier_user, earlier_reply) in survivors.items():
                assert [m.content for m in store.branch(earlier_id)] == [earlier_user, earlier_reply], context
            survivors[conversation_id] = (user.content, reply.content)

    lengths = {len(reply_text) for _, reply_text in survivors.values()}
    assert len(lengths) > RUNS // 3, f"kills did not land at varied moments: {sorted(lengths)}"
