"""Task models behind the process boundary: same answers as in-process, typed errors, Stop, crashes.

References are the in-process runners (tests/test_tasks.py checks those against numpy and
llama.cpp's counters); here the question is whether the boundary changes anything, and whether a
file that makes llama.cpp abort leaves this process alive with llama.cpp's reason in hand.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tiny_gguf

from slmchat.core.errors import EngineCrashed, NotEnoughMemory, UnsupportedModel
from slmchat.core.generation import FinishReason
from slmchat.core.gguf.check import check_gguf
from slmchat.core.process.parent import ProcessLimits
from slmchat.core.process.task_client import TaskClient, TaskKind
from slmchat.core.tasks.bert_convert import convert_bert
from slmchat.core.tasks.capabilities import Seq2SeqKind
from slmchat.core.tasks.embeddings import Classifier, Embedder
from slmchat.core.tasks.t5 import Seq2SeqTask
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
THREADS = 1
TEXTS = ["the cat sat on the mat", "i love this movie", "this film was awful"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("task-models")
    embedder = tiny_gguf.write_hf_sentence_bert(folder / "embedder")
    classifier = tiny_gguf.write_hf_distilbert_classifier(folder / "classifier")
    return {
        "t5": tiny_gguf.write_t5(folder / "t5.gguf"),
        "embedder": convert_bert(embedder.folder, folder / "embedder.gguf"),  # F16, as shipped
        "classifier": convert_bert(classifier.folder, folder / "classifier.gguf"),
    }


def with_f16_token_types(source: Path, target: Path) -> Path:
    """A copy whose token-type embeddings are F16: a valid GGUF that the GGUF check accepts, but
    llama.cpp's CPU add has no F32 + F16 kernel and aborts the process at the first batch."""
    return tiny_gguf.rewrite(source, target, f16_tensor="token_types.weight")


def client(kind: TaskKind, path: Path, home: Path, **limits: float) -> TaskClient:
    return TaskClient(kind, path, n_threads=THREADS, paths=Paths.at(home), limits=ProcessLimits(**limits))


def test_t5_in_its_process_gives_what_it_gives_in_process(models, tmp_path: Path) -> None:
    with Seq2SeqTask(models["t5"], n_threads=THREADS) as local:
        expected = local.run(Seq2SeqKind.TRANSLATE, "the house is small", max_tokens=6)
    with client(TaskKind.SEQ2SEQ, models["t5"], tmp_path) as remote:
        assert remote.run("translate", "the house is small", max_tokens=6) == expected
        assert remote.tokens("summarize: the house") == local_tokens(models["t5"], "summarize: the house")


def local_tokens(path: Path, text: str) -> list[int]:
    with Seq2SeqTask(path, n_threads=THREADS) as local:
        return local.tokenize(text)


def test_a_cancelled_translation_stops_with_what_it_has(models, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()  # Stop pressed before the child even started: it stops at its first check
    with client(TaskKind.SEQ2SEQ, models["t5"], tmp_path) as remote:
        stopped = remote.run(Seq2SeqKind.SUMMARIZE, "the house is small", max_tokens=50, cancel=cancel)
        assert stopped.finish_reason is FinishReason.STOPPED and stopped.tokens == ()
        assert remote.alive  # it obeyed: no need to kill it
        assert remote.run("summarize", "the house is small", max_tokens=3).finish_reason is FinishReason.LENGTH


def test_embeddings_and_labels_cross_the_boundary_unchanged(models, tmp_path: Path) -> None:
    with Embedder(models["embedder"], n_threads=THREADS) as local:
        expected = local.embed(TEXTS)
    with client(TaskKind.EMBED, models["embedder"], tmp_path) as remote:
        vectors = remote.embed(TEXTS)
        assert (remote.dim, remote.model_name) == (expected.shape[1], "embedder")  # semantic.TextEmbedder
    np.testing.assert_array_equal(vectors, expected)
    with Classifier(models["classifier"], n_threads=THREADS) as local:
        verdicts = local.classify(TEXTS)
    with client(TaskKind.CLASSIFY, models["classifier"], tmp_path) as remote:
        assert remote.labels == ["NEGATIVE", "POSITIVE"]
        assert remote.classify(TEXTS) == verdicts


def test_a_model_of_the_wrong_kind_is_refused_with_its_typed_error(models, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedModel):
        client(TaskKind.EMBED, models["classifier"], tmp_path)
    with pytest.raises(UnsupportedModel):
        client(TaskKind.SEQ2SEQ, models["embedder"], tmp_path)


def test_memory_over_the_cap_stops_a_task_process(models, tmp_path: Path) -> None:
    # The watchdog samples the child's RSS every quarter second while waiting on it; a tiny
    # model answers faster than that, so keep asking until a sample lands (a few at most).
    task: TaskClient | None = None
    give_up = time.monotonic() + 60
    with pytest.raises(NotEnoughMemory):
        task = client(TaskKind.EMBED, models["embedder"], tmp_path, memory_cap_bytes=20 * 1024**2)
        while time.monotonic() < give_up:
            task.embed(TEXTS)
    if task is not None:
        assert not task.alive
        task.close()


def test_a_file_that_makes_llama_cpp_abort_is_a_typed_error_and_the_next_model_loads(
        models, tmp_path: Path) -> None:
    bad = with_f16_token_types(models["embedder"], tmp_path / "f16-token-types.gguf")
    check_gguf(bad)  # the validator lets it through: only the process boundary saves us
    loaded: list[TaskClient] = []
    with pytest.raises(EngineCrashed) as crashed:
        loaded.append(client(TaskKind.EMBED, bad, tmp_path))
        loaded[0].embed(TEXTS)
    assert "SIGABRT" in str(crashed.value)
    assert "unsupported types" in str(crashed.value)  # llama.cpp's own words, for the user
    assert "binary_op" in crashed.value.detail
    for task in loaded:
        assert not task.alive
        task.close()
    with client(TaskKind.EMBED, models["embedder"], tmp_path) as good:  # this process is fine
        assert good.embed(TEXTS).shape == (len(TEXTS), good.dim)


def test_the_app_side_of_the_boundary_never_loads_llama_cpp() -> None:
    # What the GUI and the CLI import to talk to any model: llama.cpp stays in the children.
    code = ("import sys, slmchat.core.process.engine_client, slmchat.core.process.task_client, slmchat.core.tasks.capabilities; "
            "sys.exit('llama_cpp' in sys.modules)")
    root = Path(__file__).resolve().parents[3]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0
