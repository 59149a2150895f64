"""Starting the app: the headless self-test, a lean start-up, one window per data folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmchat.gui.single_instance import InstanceServer, ask_running_app_to_show

ROOT = Path(__file__).resolve().parents[2]


def run_python(args: list[str], home: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SLMCHAT_HOME": str(home), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.slow
def test_self_test_loads_a_real_model_generates_and_exits_0(smollm2_path, tmp_path):
    result = run_python(["-m", "slmchat", "--self-test", str(smollm2_path)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "window: ok" in result.stdout and "self-test passed" in result.stdout
    assert not (tmp_path / "data").exists(), "the self-test must use a temporary data folder"


def test_self_test_says_what_failed_for_a_broken_model(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    result = run_python(["-m", "slmchat", "--self-test", str(broken)], tmp_path)
    assert result.returncode == 1
    assert "self-test FAILED" in result.stderr and "Traceback" not in result.stderr


def test_the_window_starts_and_detects_the_hardware_without_loading_llama_cpp_numpy_or_the_hub_client(tmp_path):
    """Each costs memory and start-up time the window does not need (numpy: ~19 MB of RSS)."""
    code = (
        "import sys\n"
        "from PySide6.QtWidgets import QApplication\n"
        "from slmchat.app import build_window, resolve_paths, start_background_work\n"
        "app = QApplication([])\n"
        "window = build_window(resolve_paths(), app)\n"
        "window.show()\n"
        "start_background_work(window)\n"
        "while window.machine is None:\n"
        "    app.processEvents()\n"
        "print(window.machine.backend.value, window.machine.total_ram > 0)\n"
        "print(sorted(m for m in ('llama_cpp', 'huggingface_hub', 'numpy') if m in sys.modules))\n"
        "window.close()\n"
    )
    result = run_python(["-c", code], tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    *_, machine, modules = result.stdout.strip().splitlines()
    assert machine.endswith(" True")  # the hardware was looked at
    assert modules == "[]"


def test_a_second_start_brings_the_running_window_forward_with_the_file_it_was_given(qtbot, tmp_path):
    shown: list[Path | None] = []
    server = InstanceServer(tmp_path, shown.append)
    assert ask_running_app_to_show(tmp_path)
    qtbot.waitUntil(lambda: shown == [None], timeout=3000)
    assert ask_running_app_to_show(tmp_path, tmp_path / "a model with spaces.gguf")
    qtbot.waitUntil(lambda: shown == [None, tmp_path / "a model with spaces.gguf"], timeout=3000)
    assert not ask_running_app_to_show(tmp_path / "another data folder")
    server.deleteLater()
