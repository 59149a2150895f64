"""The model process starts with the OpenMP settings that keep llama.cpp's waiting threads from
spinning on a busy machine (slmchat/core/process/parent.py): libgomp reads them only when it
loads, so they must be in the environment the process was started with."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmchat.core.generation import EngineConfig
from slmchat.core.process.engine_client import EngineClient
from slmchat.paths import Paths

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc (Linux)")


def _environment_of(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if entry)


def test_the_engine_process_starts_with_a_short_openmp_spin(smollm2_path: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    with EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), paths=Paths.at(tmp_path)) as client:
        assert _environment_of(client.pid)["GOMP_SPINCOUNT"] == "1000"


def test_a_spin_count_the_user_set_wins(smollm2_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOMP_SPINCOUNT", "300000")
    with EngineClient(EngineConfig(smollm2_path, n_ctx=512, n_threads=1), paths=Paths.at(tmp_path)) as client:
        assert _environment_of(client.pid)["GOMP_SPINCOUNT"] == "300000"
