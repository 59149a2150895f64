"""Many processes, one database: a reply is interrupted only when the process writing it is gone.

Every test here runs real processes on one database file: writers streaming a reply
(store_writer.py, the real Store and Checkpointer), a second writer, the CLI's history commands,
and a real `slmchat-cli chat` on SmolLM2. Opening the database elsewhere must never cut a live
reply short; killing its writer must.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from slmchat.core.store.connection import connect_read_only
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store
from slmchat.core.store.writers import leases_folder
from slmchat.paths import Paths

REPO = Path(__file__).resolve().parents[3]
WRITER = Path(__file__).with_name("store_writer.py")
PIECES, PIECE_DELAY_S, CHECKPOINT_INTERVAL_S = 120, 0.01, 0.05  # about 1.2 s of streaming


def _env(home: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if home is not None:
        env["SLMCHAT_HOME"] = str(home)
    return env


class StreamingWriter:
    """store_writer.py in a process of its own, started and read up to its streaming reply."""

    def __init__(self, db: Path, pieces: int = PIECES) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WRITER), str(db), str(pieces), str(PIECE_DELAY_S), str(CHECKPOINT_INTERVAL_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )
        self.lines: list[str] = []
        while not (self.lines and self.lines[-1].startswith("reply ")):
            line = self.process.stdout.readline()
            assert line, f"writer ended early: {self.lines} {self.process.stderr.read()}"
            self.lines.append(line.rstrip("\n"))
        self.reply_id = int(self.lines[-1].split()[1])

    def finish(self) -> list[str]:
        out, err = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, err
        return self.lines + out.splitlines()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.communicate(timeout=30)


def _status(db: Path, message_id: int) -> tuple[str, str]:
    reader = connect_read_only(db)
    try:
        status, content = reader.execute("SELECT status, content FROM messages WHERE id = ?", [message_id]).fetchone()
    finally:
        reader.close()
    return status, content


def test_opening_the_database_in_another_process_leaves_a_live_reply_streaming(tmp_path: Path):
    db = tmp_path / "slmchat.db"
    Store(db).close()
    writer = StreamingWriter(db)
    other = Store(db)  # a second writer opens the file while the first is streaming
    try:
        assert other.interrupted == []
        assert _status(db, writer.reply_id)[0] == MessageStatus.STREAMING.value
        other.new_conversation(title="written by the second process meanwhile")
    finally:
        other.close()
    lines = writer.finish()
    assert lines[-1] == "finished"  # the writer never met "This reply has already ended"
    status, content = _status(db, writer.reply_id)
    assert status == MessageStatus.COMPLETE.value
    assert content.split() == [f"word{number}" for number in range(PIECES)]


def test_a_killed_writer_s_reply_is_marked_interrupted_by_the_next_store_with_its_text(tmp_path: Path):
    db = tmp_path / "slmchat.db"
    Store(db).close()
    writer = StreamingWriter(db)
    time.sleep(0.3)
    writer.kill()
    saved = _status(db, writer.reply_id)[1]
    store = Store(db)
    try:
        assert store.interrupted == [writer.reply_id]
        reply = store.message(writer.reply_id)
        assert reply.status is MessageStatus.INTERRUPTED and reply.content == saved and saved
    finally:
        store.close()


def test_of_two_streams_only_the_dead_writer_s_reply_is_interrupted(tmp_path: Path):
    db = tmp_path / "slmchat.db"
    Store(db).close()
    survivor = StreamingWriter(db, pieces=200)
    victim = StreamingWriter(db, pieces=200)
    victim.kill()
    store = Store(db)
    try:
        assert store.interrupted == [victim.reply_id]
        assert store.message(survivor.reply_id).status is MessageStatus.STREAMING
    finally:
        store.close()
    assert survivor.finish()[-1] == "finished"
    assert _status(db, survivor.reply_id)[0] == MessageStatus.COMPLETE.value


def test_a_reply_of_this_process_s_other_store_is_not_taken_for_abandoned(tmp_path: Path):
    db = tmp_path / "slmchat.db"
    first = Store(db)
    conversation = first.new_conversation()
    first.add_user_message(conversation.id, "hello")
    reply = first.start_reply(conversation.id)
    second = Store(db)  # e.g. the window's store and a CLI command run in one test process
    try:
        assert second.interrupted == []
        first.checkpoint(reply.id, "still mine")
    finally:
        second.close()
        first.close()


def test_leases_leave_no_files_behind_after_a_clean_close_or_a_kill(tmp_path: Path):
    db = tmp_path / "slmchat.db"
    Store(db).close()
    assert list(leases_folder(db).iterdir()) == []
    writer = StreamingWriter(db)
    writer.kill()
    Store(db).close()  # finds the dead writer's reply, takes its lease and removes it
    assert list(leases_folder(db).iterdir()) == []


def test_the_cli_chat_finishes_its_reply_while_history_commands_run_beside_it(tmp_path: Path, smollm2_path: Path):
    """The reported breakage, as a user meets it: `history list` in a second terminal used to cut the chat short."""
    home = tmp_path / "home"
    chat = subprocess.Popen(
        [sys.executable, "-m", "slmchat.cli", "chat", "--model", str(smollm2_path), "--threads", "1",
         "--max-tokens", "200", "--temperature", "0", "--prompt", "Tell me a long story about a lighthouse keeper."],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(home),
    )
    db = Paths.at(home).database
    deadline = time.monotonic() + 60
    reply_id = None
    while reply_id is None and time.monotonic() < deadline and chat.poll() is None:
        if db.exists():
            try:
                row = connect_read_only(db).execute(
                    "SELECT id FROM messages WHERE status = 'streaming' AND content != ''").fetchone()
                reply_id = row[0] if row else None
            except Exception:  # the file is being created
                pass
        time.sleep(0.02)
    assert reply_id is not None, f"the chat never streamed: {chat.communicate(timeout=60)}"
    for command in (["history", "list"], ["history", "search", "lighthouse"], ["history", "export", "1"]):
        done = subprocess.run([sys.executable, "-m", "slmchat.cli", *command], capture_output=True, text=True,
                              env=_env(home), timeout=120)
        assert done.returncode == 0, done.stderr
    out, err = chat.communicate(timeout=120)
    assert chat.returncode == 0, err
    status, content = _status(db, reply_id)
    assert status == MessageStatus.COMPLETE.value
    assert content.strip() and content.strip()[:40] in out

