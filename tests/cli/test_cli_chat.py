"""`slmchat-cli chat` and `complete`, run as a user would: a subprocess on the real models, with
what it stored checked in the SQLite rows and llama.cpp's own counts read from `--stats`.

One thread each: on a shared 2-core machine two OpenMP threads can run 10x slower than one.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import hostile_gguf
import psutil
import pytest

from slmchat.core.errors import EngineCrashed
from slmchat.core.generation import EngineConfig, GenerationSettings
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.store.recording import ChatSession
from slmchat.core.store.store import Store
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
STATS_LINE = re.compile(
    r"^\[(?P<reason>done|length|stopped)\] time to first token (?P<ttft>\d+\.\d+) s, "
    r"(?P<speed>\d+\.\d) tokens/s, prompt tokens: (?P<evaluated>\d+) evaluated, (?P<reused>\d+) reused "
    r"\((?P<generated>\d+) generated\)(?:, guessed tokens: \d+ of \d+ accepted \(\d+%\))?$",
    re.MULTILINE,
)
CONVERSATION_LINE = re.compile(r"^slmchat: conversation (\d+) \(continue it with --conversation \1\)$")
ESCAPES = ("\x1b", "\x07", "\x9b")


def cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmchat.cli", *args, "--threads", "1"], input=stdin,
                          text=True, capture_output=True, timeout=timeout, env=_env(), check=False)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}  # SLMCHAT_HOME: the test's own data folder


def rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(Paths.at(home).database) as db:
        return db.execute(sql).fetchall()


def stats_of(stdout: str) -> re.Match[str]:
    match = STATS_LINE.search(stdout)
    assert match, stdout
    return match


def prompt_tokens(stats: re.Match[str]) -> int:
    return int(stats["evaluated"]) + int(stats["reused"])


# --- one turn, stored -----------------------------------------------------------------------
def test_one_turn_streams_the_reply_and_stores_it_with_llama_cpp_figures(
    smollm2_path: Path, slmchat_home: Path
) -> None:
    result = cli("chat", "--model", str(smollm2_path), "--system", "You are a helpful assistant.",
                 "--prompt", "What is the capital of France?", "--max-tokens", "24",
                 "--temperature", "0", "--stats")
    assert result.returncode == 0, result.stderr
    reply, stats_text = result.stdout.rsplit("\n", 2)[:2]
    assert "Paris" in reply
    stats = stats_of(result.stdout)
    assert stats.group(0) == stats_text
    assert int(stats["evaluated"]) > 0 and int(stats["reused"]) == 0  # a fresh engine: nothing reused
    assert CONVERSATION_LINE.match(result.stderr.strip())

    (conversation_id, system, settings, model), = rows(
        slmchat_home, "SELECT id, system_prompt, settings, model FROM conversations")
    assert result.stderr.strip() == f"slmchat: conversation {conversation_id} (continue it with " \
                                    f"--conversation {conversation_id})"
    assert system == "You are a helpful assistant." and model == "smollm2-135m-instruct.q4_1"
    assert '"max_tokens": 24' in settings and '"temperature": 0.0' in settings
    user, answer = rows(slmchat_home, "SELECT role, content, status, parent_id, prompt_tokens, "
                                      "completion_tokens, ttft, tokens_per_s FROM messages ORDER BY id")
    assert user[:3] == ("user", "What is the capital of France?", "complete")
    assert answer[:3] == ("assistant", reply, "complete")
    assert answer[4:6] == (prompt_tokens(stats), int(stats["generated"]))  # the figures --stats showed
    assert f"{answer[6]:.2f}" == stats["ttft"] and f"{answer[7]:.1f}" == stats["speed"]


def test_a_stored_conversation_continues_and_the_model_sees_its_history(
    smollm2_path: Path, slmchat_home: Path
) -> None:
    first = cli("chat", "--model", str(smollm2_path), "--system", "Be brief.", "--prompt",
                "Name a fruit.", "--max-tokens", "16", "--temperature", "0", "--stats")
    assert first.returncode == 0, first.stderr
    conversation_id = CONVERSATION_LINE.match(first.stderr.strip()).group(1)

    second = cli("chat", "--conversation", conversation_id, "--prompt", "Name another one.", "--stats")
    assert second.returncode == 0, second.stderr
    assert second.stderr.strip() == first.stderr.strip()  # the same conversation, no new one
    turn_1, turn_2 = stats_of(first.stdout), stats_of(second.stdout)
    # llama.cpp's counts: the prompt holds the system prompt, turn 1 and its reply, then the new
    # message; what turn 1 left in the KV cache was saved with the conversation and restored.
    assert prompt_tokens(turn_2) > prompt_tokens(turn_1) + int(turn_1["generated"])
    assert int(turn_2["reused"]) >= prompt_tokens(turn_1)
    assert int(turn_2["evaluated"]) < prompt_tokens(turn_2) - prompt_tokens(turn_1)
    assert int(turn_2["generated"]) <= 16  # the conversation's own settings, kept from turn 1

    messages = rows(slmchat_home, "SELECT id, parent_id, role, content, status, prompt_tokens FROM messages "
                                  f"WHERE conversation_id = {conversation_id} ORDER BY id")
    assert [m[2] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert [m[1] for m in messages] == [None, messages[0][0], messages[1][0], messages[2][0]]  # one branch
    assert messages[2][3] == "Name another one." and messages[3][4] == "complete"
    assert messages[3][5] == prompt_tokens(turn_2)
    assert messages[3][3] == second.stdout.split("\n[")[0].rstrip("\n")


def test_no_store_leaves_no_trace(smollm2_path: Path, slmchat_home: Path) -> None:
    result = cli("chat", "--model", str(smollm2_path), "--no-store", "--prompt", "Hi", "--max-tokens", "4")
    assert result.returncode == 0 and result.stdout.strip() and result.stderr == ""
    assert not Paths.at(slmchat_home).database.exists()
    kv_states = Paths.at(slmchat_home).kv_states
    assert not kv_states.exists() or not any(kv_states.iterdir())


def test_default_model_is_the_starter_model(slmchat_home: Path) -> None:
    result = cli("chat", "--prompt", "Say hello.", "--max-tokens", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()
    assert rows(slmchat_home, "SELECT model FROM conversations") == [("smollm2-135m-instruct.q4_1",)]


# --- base models -----------------------------------------------------------------------------
def test_complete_continues_text_with_a_base_model(gemma_path: Path, slmchat_home: Path) -> None:
    result = cli("complete", "--model", str(gemma_path), "--prompt", "The capital of France is",
                 "--max-tokens", "8", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The capital of France is")
    assert len(result.stdout.strip()) > len("The capital of France is")


def test_chat_with_a_base_model_says_why_in_one_line_and_stores_nothing(
    gemma_path: Path, slmchat_home: Path
) -> None:
    result = cli("chat", "--model", str(gemma_path), "--prompt", "Hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "base model" in result.stderr and "complete" in result.stderr
    assert rows(slmchat_home, "SELECT count(*) FROM conversations") == [(0,)]


# --- bad input: one clear line ------------------------------------------------------------------
HOSTILE_FILE_NAME = "\x1b[2J\x1b]0;pwned\x07\x9b31mevil\r.gguf"


def _empty(src: Path, out: Path) -> Path:
    (out / "empty").write_bytes(b"")
    return out / "empty"


def _hostile(make: hostile_gguf.Factory) -> Callable[[Path, Path], Path]:
    """A hostile file without its weights (a sparse hole): each is refused before any load."""

    def build(src: Path, out: Path) -> Path:
        return make(src, out, False).path

    build.__name__ = make.__name__
    return build


@pytest.mark.parametrize("build", [
    _empty,
    _hostile(hostile_gguf.random_bytes),
    _hostile(hostile_gguf.truncated_in_data),
    _hostile(hostile_gguf.block_count_zero),  # would abort llama.cpp
    _hostile(hostile_gguf.sentencepiece_without_byte_tokens),  # would abort at the first "é"
], ids=lambda build: build.__name__)
def test_a_bad_model_file_is_one_clear_line(
    build, smollm2_path: Path, tmp_path: Path, slmchat_home: Path
) -> None:
    path = build(smollm2_path, tmp_path).rename(tmp_path / HOSTILE_FILE_NAME)  # escape codes in the name too
    result = cli("chat", "--model", str(path), "--prompt", "Café?")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("slmchat: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr and "went wrong" not in result.stderr
    assert not any(code in result.stdout + result.stderr for code in ESCAPES)
    assert rows(slmchat_home, "SELECT count(*) FROM conversations") == [(0,)]


def test_a_missing_model_conversation_or_prompt_is_one_clear_line(tmp_path: Path) -> None:
    result = cli("chat", "--model", str(tmp_path / "none.gguf"), "--prompt", "Hi")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "none.gguf" in result.stderr
    result = cli("chat", "--conversation", "99", "--prompt", "Hi")
    assert (result.returncode, result.stderr) == (1, "slmchat: There is no conversation number 99.\n")
    result = cli("chat", "--prompt", " ")
    assert (result.returncode, result.stderr) == (1, "slmchat: There is nothing to send: the prompt is empty.\n")


def test_a_model_name_with_escape_codes_is_shown_plain(smollm2_path: Path, tmp_path: Path) -> None:
    hostile = hostile_gguf.ansi_name(smollm2_path, tmp_path)  # general.name clears the screen
    result = cli("chat", "--model", str(hostile.path), "--max-tokens", "4", stdin="Hi\n\n")
    assert result.returncode == 0, result.stderr
    assert "Chatting with Evil Model in a new conversation." in result.stderr
    assert not any(code in result.stdout + result.stderr for code in ESCAPES)


# --- interactive, with Ctrl+C on a real terminal ---------------------------------------------
class Terminal:
    """The CLI on a pseudo-terminal: Ctrl+C is the terminal's own interrupt character, so the
    kernel sends SIGINT to the foreground process group exactly as for a user."""

    def __init__(self, *args: str) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: become the CLI
            os.execve(sys.executable, [sys.executable, "-m", "slmchat.cli", *args], _env())
        self.seen = ""  # read but not yet matched
        self.transcript = ""  # everything the terminal showed

    def read_until(self, pattern: str, timeout: float = 120) -> str:
        """Everything up to and including the first match of `pattern` not read before."""
        deadline = time.monotonic() + timeout
        while not (match := re.search(pattern, self.seen)):
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.seen!r}"
            if select.select([self.fd], [], [], 0.2)[0]:
                try:
                    text = os.read(self.fd, 4096).decode("utf-8", "replace")
                    self.seen += text
                    self.transcript += text
                except OSError:  # the child closed the terminal
                    assert re.search(pattern, self.seen), f"no {pattern!r} in {self.seen!r}"
        text, self.seen = self.seen[: match.end()], self.seen[match.end():]
        return text

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.1)
        raise AssertionError("the CLI did not exit")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


def test_interactive_ctrl_c_stops_the_reply_not_the_program(smollm2_path: Path, slmchat_home: Path) -> None:
    terminal = Terminal("chat", "--model", str(smollm2_path), "--max-tokens", "400", "--temperature", "0",
                        "--stats", "--threads", "1")
    try:
        terminal.read_until(r"> $")
        terminal.type("Tell me a very long story about a lighthouse keeper.\r")
        terminal.read_until(r"lighthouse keeper\.\r\n(\S+\s+){6}")  # the reply is streaming
        terminal.type("\x03")  # Ctrl+C
        terminal.read_until(r"\[stopped\][^\n]*\n")
        terminal.read_until(r"> $")  # still running, asking for the next message
        terminal.type("Say bye.\r")
        terminal.read_until(r"\[(done|length)\][^\n]*\n")
        terminal.read_until(r"> $")
        terminal.type("\r")  # an empty line ends the chat
        terminal.read_until(r"conversation 1 ")
        assert terminal.wait() == 0
    finally:
        terminal.close()

    user_1, reply_1, user_2, reply_2 = rows(
        slmchat_home, "SELECT role, content, status, completion_tokens FROM messages ORDER BY id")
    assert user_1[:3] == ("user", "Tell me a very long story about a lighthouse keeper.", "complete")
    assert reply_1[0] == "assistant" and reply_1[2] == "stopped"
    shown = terminal.transcript.split("keeper.\r\n", 1)[1].split("\r\n[stopped]", 1)[0]
    shown = shown.replace("^C", "").replace("\r\n", "\n")  # the terminal's echo of Ctrl+C; its newlines
    assert reply_1[1] == shown and len(shown.split()) >= 6  # stored as far as it was shown
    assert 6 <= reply_1[3] < 400  # stopped well before its token budget
    assert user_2[1] == "Say bye." and (reply_2[0], reply_2[2]) == ("assistant", "complete")


def test_interactive_chat_goes_on_after_the_model_process_dies_mid_reply(
    smollm2_path: Path, slmchat_home: Path
) -> None:
    terminal = Terminal("chat", "--model", str(smollm2_path), "--max-tokens", "400", "--temperature", "0",
                        "--threads", "1")
    try:
        terminal.read_until(r"> $")
        terminal.type("Tell me a very long story about a lighthouse keeper.\r")
        terminal.read_until(r"lighthouse keeper\.\r\n(\S+\s+){6}")
        engine, = [child for child in psutil.Process(terminal.pid).children()
                   if "spawn_main" in " ".join(child.cmdline())]
        engine.kill()  # as if llama.cpp aborted
        terminal.read_until(r"slmchat: The model stopped unexpectedly[^\n]*\n")
        terminal.read_until(r"loading the model again…\r\n> $")
        terminal.type("Say bye.\r")
        terminal.read_until(r"(?s)Say bye\.\r\n\S.*\n> $")  # a reply from the reloaded model
        terminal.type("\r")
        assert terminal.wait() == 0
    finally:
        terminal.close()
    _, interrupted, _, reply = rows(slmchat_home, "SELECT role, content, status FROM messages ORDER BY id")
    shown = terminal.transcript.split("keeper.\r\n", 1)[1].split("\r\nslmchat: The model", 1)[0]
    assert interrupted == ("assistant", shown.replace("\r\n", "\n"), "interrupted")  # its text kept
    assert reply[0] == "assistant" and reply[1] and reply[2] == "complete"


# --- the session, in-process: an engine process killed mid-reply ----------------------------
def test_a_reply_whose_engine_process_dies_is_stored_interrupted_with_its_text(
    smollm2_path: Path, slmchat_home: Path
) -> None:
    paths = Paths.at(slmchat_home).ensure()
    shown: list[str] = []
    with Store(paths.database) as store, \
            EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), paths=paths) as engine:
        session = ChatSession(store, engine, settings=GenerationSettings(max_tokens=200, temperature=0))

        def show(piece: str) -> None:
            shown.append(piece)
            if len(shown) == 5:
                os.kill(engine.pid, signal.SIGKILL)

        with pytest.raises(EngineCrashed):
            session.send("Tell me a long story.", show)
        user, reply = store.branch(session.conversation_id)
    assert user.content == "Tell me a long story."
    assert reply.status.value == "interrupted" and reply.content == "".join(shown)
