"""One window per data folder, decided atomically: real `python -m slmchat` processes started at
the same moment on one data folder; exactly one opens a window, every other asks it to come
forward and exits. The app's log (one file, each line with its process id) says who did what."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slmchat.paths import Paths

ROOT = Path(__file__).resolve().parents[2]
OPENED = "window open for"
HANDED_OVER = "asked it to come forward"
CAME_FORWARD = "another start asked this window to come forward"


def start_app(home: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLMCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.Popen([sys.executable, "-m", "slmchat", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def log_lines(home: Path, text: str) -> list[str]:
    log_file = Paths.at(home).log_file
    if not log_file.exists():
        return []
    return [line for line in log_file.read_text(encoding="utf-8").splitlines() if text in line]


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout_s:.0f} s in vain: {what}"
        time.sleep(0.05)


def end(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        process.wait(10)


@pytest.fixture
def apps(slmchat_home):
    started: list[subprocess.Popen] = []
    yield lambda *args: started.append(start_app(slmchat_home, *args)) or started[-1]
    for process in started:
        end(process)


def test_two_starts_at_once_open_one_window_and_the_other_brings_it_forward(apps, slmchat_home):
    first, second = apps(), apps()

    wait_for(lambda: first.poll() is not None or second.poll() is not None,
             "one of two starts should hand over and exit")
    loser = first if first.poll() is not None else second
    winner = second if loser is first else first
    assert loser.wait() == 0, loser.stderr.read()
    wait_for(lambda: log_lines(slmchat_home, CAME_FORWARD), "the window should come forward")
    time.sleep(1.0)  # time enough for a second window, if there were one
    assert winner.poll() is None, "the window that won must stay open"
    assert len(log_lines(slmchat_home, OPENED)) == 1
    assert [f" {loser.pid} " in line for line in log_lines(slmchat_home, HANDED_OVER)] == [True]
    assert all(f" {winner.pid} " in line for line in log_lines(slmchat_home, CAME_FORWARD))

    later = apps()  # a start long after: the same
    assert later.wait(60) == 0
    wait_for(lambda: len(log_lines(slmchat_home, CAME_FORWARD)) == 2, "forward again")
    assert len(log_lines(slmchat_home, OPENED)) == 1 and winner.poll() is None


def test_after_the_app_is_killed_the_next_start_opens_the_window(apps, slmchat_home):
    crashed = apps()
    wait_for(lambda: log_lines(slmchat_home, OPENED), "a window")
    crashed.kill()  # no clean exit: its lock and its socket file are left as a crash leaves them
    crashed.wait(10)

    next_start = apps()
    wait_for(lambda: len(log_lines(slmchat_home, OPENED)) == 2, "a new window")
    assert next_start.poll() is None


def test_a_model_file_opened_with_slmchat_joins_the_running_app_s_models(apps, slmchat_home, smollm2_path, tmp_path):
    """What double-clicking a .gguf does once install.sh associated the type: `slmchat FILE`."""
    from slmchat.core.models.library import ModelLibrary, ModelSource

    mine = tmp_path / "downloads" / "my-chat-model.gguf"
    mine.parent.mkdir()
    mine.write_bytes(smollm2_path.read_bytes())
    window = apps()
    wait_for(lambda: log_lines(slmchat_home, OPENED), "a window")
    assert apps(str(mine)).wait(60) == 0  # hands the file over and exits

    def imported() -> list:
        return [m for m in ModelLibrary(Paths.at(slmchat_home)).list() if m.source is ModelSource.IMPORTED]

    wait_for(imported, "the running app should add the file to its models")
    assert [m.path for m in imported()] == [mine] and not imported()[0].owned  # used where it is
    assert window.poll() is None
