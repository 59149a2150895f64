"""`slmchat-cli chat` with a thinking model: its thinking shown apart (dimmed on a terminal,
marked in a pipe) or hidden, switched and budgeted from the command line, counted by `--stats`.

The model is a tiny GGUF carrying Qwen3's (or DeepSeek-R1's) real chat template whose next token
is scripted (tests/tiny_gguf.py): it thinks "okay", closes the block and answers "A".
"""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
import tiny_gguf
from tiny_gguf import NEWLINE, NEWLINES

from slmchat.cli.reply_printer import ReplyPrinter
from slmchat.core.generation import ThinkingMarkers

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "tests" / "core" / "engine" / "templates"
STEPS = {"<think>": "o", "o": "k", "k": "a", "a": "y", "y": "</think>", "</think>": NEWLINES, NEWLINES: "A"}


def _template(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8").split("\n", 1)[1].removesuffix("\n")


@pytest.fixture(scope="module")
def qwen3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf.write_scripted_chat(tmp_path_factory.mktemp("cli-thinking") / "qwen3.gguf", _template("qwen3"),
                                         eos="<|im_end|>", script={NEWLINE: "<think>", **STEPS})


@pytest.fixture(scope="module")
def deepseek_r1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_gguf.write_scripted_chat(tmp_path_factory.mktemp("cli-thinking") / "r1.gguf",
                                         _template("deepseek_r1_distill_qwen"), eos="<｜end▁of▁sentence｜>",
                                         script={NEWLINE: "o", **STEPS})


def chat(model: Path, *options: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmchat.cli", "chat", "--model", str(model), "--prompt", "Hi",
                           "--no-store", "--temperature", "0", "--threads", "1", *options],
                          stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_in_a_pipe_the_thinking_comes_first_between_marker_lines_and_stats_count_its_tokens(qwen3: Path) -> None:
    result = chat(qwen3, "--stats")
    assert result.returncode == 0, result.stderr
    reply, stats = result.stdout.rsplit("\n", 2)[:2]
    assert reply == "[thinking]\nokay\n[/thinking]\n\nA"
    assert stats.endswith(", thinking tokens: 5")


def test_no_thinking_prints_the_answer_alone(qwen3: Path) -> None:
    assert chat(qwen3, "--no-thinking").stdout == "A\n"


def test_thinking_off_switches_the_model_through_its_template_and_the_budget_cuts_its_thinking(qwen3: Path) -> None:
    assert chat(qwen3, "--thinking", "off").stdout == "A\n"
    budgeted = chat(qwen3, "--thinking-budget", "2", "--stats").stdout
    assert budgeted.startswith("[thinking]\nok\n[/thinking]\n\nA\n")
    assert budgeted.rstrip().endswith(", thinking tokens: 2")


def test_a_model_that_cannot_stop_thinking_says_so_when_asked_to(deepseek_r1: Path) -> None:
    result = chat(deepseek_r1, "--thinking", "off")
    assert result.stdout == "[thinking]\nokay\n[/thinking]\n\nA\n"
    assert "always thinks before it answers; it has no switch for --thinking off" in result.stderr


def test_on_a_terminal_the_thinking_is_dimmed(qwen3: Path) -> None:
    main, terminal = pty.openpty()
    try:
        result = chat(qwen3, stdout=terminal)
        os.close(terminal)
        terminal = -1
        shown = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the other side closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(main)
        if terminal >= 0:
            os.close(terminal)
    assert result.returncode == 0, result.stderr
    assert shown.decode().replace("\r\n", "\n") == "\x1b[2mokay\x1b[0m\n\nA\n"


def test_escape_sequences_in_the_thinking_are_not_passed_to_the_terminal() -> None:
    out = io.StringIO()
    show = ReplyPrinter(out, ThinkingMarkers("<think>", "</think>"))
    for piece in ("<think>", "a\x1b]0;owned\x07b", "</think>", "\n\nc\x1b[2J"):
        show(piece)
    show.end()
    assert out.getvalue() == "[thinking]\na]0;ownedb\n[/thinking]\n\nc[2J\n"


def test_a_reply_that_fails_while_thinking_closes_its_thinking_and_leaves_the_line_to_the_error() -> None:
    out = io.StringIO()
    show = ReplyPrinter(out, ThinkingMarkers("<think>", "</think>"))
    for piece in ("<think>", "hm"):
        show(piece)
    show.end(failed=True)
    assert out.getvalue() == "[thinking]\nhm\n[/thinking]"
