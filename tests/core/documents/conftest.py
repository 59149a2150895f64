"""The document tests' shared parts: the public-domain corpus, its questions, the real MiniLM."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import minilm_gguf
import pytest
from document_corpus import CORPUS
from model_cache import MODEL_CACHE

from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.paths import Paths


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    return minilm_gguf.cached_gguf(MODEL_CACHE)


@pytest.fixture(scope="module")
def minilm(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TaskClient]:
    """The real all-MiniLM-L6-v2 in its own process, one thread, shared by a module's tests."""
    paths = Paths.at(tmp_path_factory.mktemp("minilm-home")).ensure()
    with TaskClient(TaskKind.EMBED, minilm_path, n_threads=1, paths=paths) as client:
        yield client


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A writable copy of the corpus (tests change and delete its files)."""
    return Path(shutil.copytree(CORPUS, tmp_path / "corpus"))
