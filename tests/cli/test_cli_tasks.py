"""`slmchat-cli translate | summarize | classify | embed` and `history search --semantic`, as a user
runs them: every model in its own process, a model of the wrong role refused in one line first.

Tiny T5 and DistilBERT GGUFs (random weights, tests/tiny_gguf.py) and the real all-MiniLM-L6-v2
(tests/minilm_gguf.py, converted once and cached). References: the numpy forward pass of the
checkpoint for labels and scores, the published MiniLM weights for the vector size, the T5 runner
in this process for the text its child writes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import minilm_gguf
import numpy as np
import numpy_reference as ref
import psutil
import pytest
import tiny_gguf
from model_cache import MODEL_CACHE

from slmchat.cli import main
from slmchat.core.generation import FinishReason
from slmchat.core.models.library import ModelLibrary
from slmchat.core.store.store import Store
from slmchat.core.tasks.bert_convert import convert_bert
from slmchat.core.tasks.capabilities import Seq2SeqKind
from slmchat.core.tasks.t5 import Seq2SeqTask
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
TEXT = "the house is small"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("cli-task-models")
    return {
        "t5": tiny_gguf.write_t5(folder / "t5.gguf"),
        "classifier": convert_bert(tiny_gguf.write_hf_distilbert_classifier(folder / "sst2").folder,
                                   folder / "classifier.gguf"),
        "minilm": minilm_gguf.cached_gguf(MODEL_CACHE),
    }


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of one command (and nothing printed before it)."""
    capsys.readouterr()
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def model_processes_started(home: Path) -> int:
    """Every model process leaves its llama.cpp log under logs/engine."""
    return len(list((home / "logs" / "engine").glob("*.log")))


def model_processes_running() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True)
            if "spawn_main" in " ".join(child.cmdline())]


def t5_reference(path: Path, kind: Seq2SeqKind, max_tokens: int, **languages: str):
    with Seq2SeqTask(path, n_threads=1) as local:
        return local.run(kind, TEXT, max_tokens=max_tokens, **languages)


# --- Translate and Summarize ----------------------------------------------------------------
def test_translate_prints_what_the_t5_model_writes_in_its_own_process(models, capsys, slmchat_home) -> None:
    expected = t5_reference(models["t5"], Seq2SeqKind.TRANSLATE, 6, source="English", target="German")
    assert expected.tokens and expected.finish_reason is FinishReason.LENGTH  # random weights never stop early

    code, out, err = cli(capsys, "translate", "--model", models["t5"], "--to", "German", "--max-tokens", "6",
                         "--threads", "1", TEXT)

    assert (code, out) == (0, expected.text + "\n")
    assert err == "slmchat: the output stopped at --max-tokens (6 tokens).\n"
    assert model_processes_started(slmchat_home) == 1
    assert model_processes_running() == []


def test_summarize_reads_the_text_from_stdin_given_as_a_dash(models, slmchat_home) -> None:
    expected = t5_reference(models["t5"], Seq2SeqKind.SUMMARIZE, 4)
    done = subprocess.run([sys.executable, "-m", "slmchat.cli", "summarize", "--model", str(models["t5"]),
                           "--max-tokens", "4", "--threads", "1", "-"],
                          input=TEXT, capture_output=True, check=False, text=True, env=os.environ, timeout=120)
    assert (done.returncode, done.stdout) == (0, expected.text + "\n"), done.stderr
    assert expected.tokens and model_processes_started(slmchat_home) == 1


# --- sentiment and vectors ---------------------------------------------------------------------
def test_classify_prints_the_label_then_every_label_with_its_score(models, capsys, tmp_path) -> None:
    checkpoint = tiny_gguf.write_hf_distilbert_classifier(tmp_path / "same-checkpoint")  # same seed, same weights
    words = ["[CLS]", "i", "love", "this", "movie", "[SEP]"]
    hidden = ref.encoder_hidden(checkpoint.weights, [tiny_gguf.BERT_VOCAB.index(w) for w in words],
                                n_head=checkpoint.n_head, tanh_gelu=True)
    logits = ref.distilbert_classifier_logits(checkpoint.weights, hidden)
    expected = dict(zip(checkpoint.labels, np.exp(logits) / np.exp(logits).sum()))

    code, out, _ = cli(capsys, "classify", "--model", models["classifier"], "i love this movie")

    assert code == 0
    label, *rows = out.splitlines()
    assert label == max(expected, key=expected.get)
    scores = {name: float(score) for name, score in (row.split() for row in rows)}
    assert scores == pytest.approx(expected, abs=0.02)

    code, out, _ = cli(capsys, "classify", "--json", "--model", models["classifier"], "i love this movie")
    assert code == 0 and json.loads(out) == {"label": label, "scores": pytest.approx(expected, abs=0.02)}


def test_embed_prints_minilms_dimension_and_with_json_its_unit_vectors(models, capsys) -> None:
    dim = minilm_gguf.hf_weights()["embeddings.word_embeddings.weight"].shape[1]  # the published width: 384
    code, out, _ = cli(capsys, "embed", "--model", models["minilm"], "a cat", "a dog")
    assert code == 0 and f"2 vector(s) of dimension {dim} " in out

    code, out, _ = cli(capsys, "embed", "--json", "--model", models["minilm"], "a cat", "a dog")
    result = json.loads(out)
    vectors = np.array(result["vectors"])
    assert code == 0 and result["dim"] == dim and vectors.shape == (2, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


# --- search by meaning -----------------------------------------------------------------------
def stored_messages() -> dict[str, int]:
    with Store(Paths.default().database) as store:
        ids = {}
        for title, text in [("Baking", "How do I bake bread at home?"),
                            ("Markets", "The stock market fell sharply today."),
                            ("Pets", "My cat sleeps on the sofa all afternoon.")]:
            conversation = store.new_conversation(title=title)
            ids[title] = store.add_user_message(conversation.id, text).id
    return ids


def ranked_message_ids(out: str) -> list[int]:
    return [int(line.split()[0].split(":")[1]) for line in out.splitlines()]


def test_semantic_search_ranks_a_paraphrase_above_unrelated_messages(models, capsys) -> None:
    ids = stored_messages()
    assert cli(capsys, "import", models["minilm"])[0] == 0  # now the library's embedding model
    minilm_id = next(m.id for m in ModelLibrary(Paths.default()).list() if m.path == models["minilm"].resolve())

    code, out, err = cli(capsys, "history", "search", "--semantic", "a recipe for homemade loaves")
    assert code == 0 and "indexed 3 new message(s)" in err
    assert ranked_message_ids(out)[0] == ids["Baking"]
    assert "How do I bake bread at home?" in out.splitlines()[0]

    code, out, err = cli(capsys, "history", "search", "--semantic", "--model", minilm_id, "shares lost value")
    assert code == 0 and "indexed" not in err  # the vectors were kept from the first search
    assert ranked_message_ids(out)[0] == ids["Markets"]
    with Store(Paths.default().database) as store:
        assert store.db.execute("SELECT count(*), min(dim) FROM embeddings").fetchone() == (3, 384)


def test_without_an_embedding_model_semantic_search_says_full_text_is_used(capsys, slmchat_home) -> None:
    ids = stored_messages()
    code, out, err = cli(capsys, "history", "search", "--semantic", "bread")
    assert code == 0 and ranked_message_ids(out) == [ids["Baking"]]
    assert err.count("\n") == 1 and "full-text search is used" in err
    assert "slmchat-cli download all-minilm-l6-v2" in err
    assert model_processes_started(slmchat_home) == 0


# --- refusals: one line, before any process ----------------------------------------------------
@pytest.mark.parametrize(("argv", "said"), [
    (["translate", "--to", "German", "--model", "{smollm2}", TEXT],
     ("is a chat model; it cannot translate. Use a T5 model such as flan-t5-base "
      "(slmchat-cli download flan-t5-base).")),
    (["classify", "--model", "{t5}", TEXT], ("is a translation and summary model; it cannot classify text. "
                                             "Use a DistilBERT model such as distilbert-sst2")),
    (["embed", "--model", "{classifier}", TEXT], "is a classifier; it cannot embed text."),
    (["summarize", "--model", "{minilm}", TEXT], "is an embedding model (for search by meaning); it cannot summarize."),
    (["history", "search", "--semantic", "--model", "{smollm2}", "bread"], "is a chat model; it cannot embed text."),
    (["embed", "--model", "no-such-model", TEXT], '"no-such-model" is neither a GGUF file nor the id of a model'),
    (["classify", "--model", "{classifier}", "  "], "There is nothing to classify: the text is empty."),
])
def test_a_model_that_cannot_do_the_task_is_refused_in_one_line(argv, said, models, smollm2_path, capsys,
                                                                 slmchat_home) -> None:
    files = {**models, "smollm2": smollm2_path}
    code, out, err = cli(capsys, *(arg.format(**files) for arg in argv))
    assert (code, out) == (1, "")
    assert err.startswith("slmchat: ") and err.count("\n") == 1 and said in err
    assert model_processes_started(slmchat_home) == 0
