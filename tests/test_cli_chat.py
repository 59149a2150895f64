"""`slmchat-cli chat` and `complete`, run as a user would: a subprocess on the real models.

One thread each: on a shared 2-core machine two OpenMP threads can run 10x slower than one.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmchat.cli.chat import ChatSession
from slmchat.core.engine import Engine
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    GenerationSettings,
    Role,
)

pytestmark = pytest.mark.slow
STATS_LINE = re.compile(
    r"^\[(done|length)\] time to first token \d+\.\d+ s, \d+\.\d tokens/s, "
    r"prompt tokens: (\d+) evaluated, (\d+) reused \(\d+ generated\)$"
)


def cli(*args: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    return subprocess.run([sys.executable, "-m", "slmchat.cli", *args, "--threads", "1"], input=stdin, text=True,
                          capture_output=True, timeout=timeout, env=env, check=False)


def test_one_turn_streams_the_reply_and_ends_with_one_stats_line(smollm2_path: Path) -> None:
    result = cli("chat", "--model", str(smollm2_path), "--system", "You are a helpful assistant.",
                 "--prompt", "What is the capital of France?", "--max-tokens", "40",
                 "--temperature", "0", "--stats")
    assert result.returncode == 0, result.stderr
    *reply, last = result.stdout.rstrip("\n").split("\n")
    assert "Paris" in "\n".join(reply)
    match = STATS_LINE.match(last)
    assert match, last
    assert int(match.group(2)) > 0 and int(match.group(3)) == 0  # a fresh engine: nothing reused


def test_default_model_is_the_starter_model() -> None:
    result = cli("chat", "--prompt", "Say hello.", "--max-tokens", "8", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_complete_continues_text_with_a_base_model(gemma_path: Path) -> None:
    result = cli("complete", "--model", str(gemma_path), "--prompt", "The capital of France is",
                 "--max-tokens", "8", "--temperature", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The capital of France is")
    assert len(result.stdout.strip()) > len("The capital of France is")


def test_chat_with_a_base_model_says_why_in_one_line(gemma_path: Path) -> None:
    result = cli("chat", "--model", str(gemma_path), "--prompt", "Hi")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "base model" in result.stderr


@pytest.mark.parametrize("content", [b"", os.urandom(2048), b"GGUF" + os.urandom(60)])
def test_bad_model_file_is_one_clear_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    result = cli("chat", "--model", str(path), "--prompt", "Hi")
    assert result.returncode == 1
    assert result.stderr.startswith("slmchat: ") and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and "\x1b" not in result.stderr + result.stdout


def test_missing_model_file(tmp_path: Path) -> None:
    result = cli("chat", "--model", str(tmp_path / "none.gguf"), "--prompt", "Hi")
    assert result.returncode == 1 and result.stderr.count("\n") == 1


def test_interactive_ctrl_c_stops_the_reply_not_the_program(smollm2_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-m", "slmchat.cli", "chat", "--model", str(smollm2_path),
         "--max-tokens", "400", "--temperature", "0", "--stats", "--threads", "1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdin and process.stdout
        process.stdin.write("Tell me a very long story about a lighthouse.\n")
        process.stdin.flush()
        process.stdout.read(20)  # the reply is streaming
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        process.stdin.write("Say bye.\n\n")
        process.stdin.flush()
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert "[stopped]" in out  # the first reply's stats line
    assert len(re.findall(r"^\[(done|length|stopped)\]", out, re.MULTILINE)) == 2  # a second turn ran


def test_chat_session_reports_every_message_to_its_hook(smollm2_path: Path) -> None:
    seen: list[tuple[ChatMessage, FinishReason | None]] = []
    with Engine(EngineConfig(smollm2_path, n_ctx=512, n_threads=1)) as engine:
        session = ChatSession(engine, GenerationSettings(max_tokens=8, temperature=0), system="Be brief.",
                              on_message=lambda m, stats: seen.append((m, stats and stats.finish_reason)))
        pieces: list[str] = []
        session.send("Name a fruit.", pieces.append)
    assert [m.role for m, _ in seen] == [Role.USER, Role.ASSISTANT]
    assert seen[0] == (ChatMessage(Role.USER, "Name a fruit."), None)
    assert seen[1][0].content == "".join(pieces) and seen[1][1] is not None
    assert [m.role for m in session.messages] == [Role.SYSTEM, Role.USER, Role.ASSISTANT]
