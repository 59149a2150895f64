"""Every non-chat model of the line-up does its job through llama.cpp.

Tiny GGUFs of each architecture (tests/tiny_gguf.py) are loaded by the real llama.cpp; the
numbers it returns are checked against an independent numpy forward pass (tests/numpy_reference.py)
and against llama.cpp's own counters, never against figures our code computes about itself.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import numpy_reference as ref
import pytest
import tiny_gguf

from slmchat.core.engine.engine import Engine
from slmchat.core.errors import NotAChatModel, UnsupportedModel
from slmchat.core.generation import (
    ChatMessage,
    EngineConfig,
    FinishReason,
    GenerationSettings,
    Role,
)
from slmchat.core.gguf.check import read_gguf
from slmchat.core.tasks.bert_convert import convert_bert
from slmchat.core.tasks.capabilities import Capability, capabilities
from slmchat.core.tasks.embeddings import Classifier, Embedder
from slmchat.core.tasks.t5 import Seq2SeqKind, Seq2SeqTask, task_prompt

THREADS = 2
SENTENCES = ["the cat sat on the mat", "i love this movie", "this film was awful", "stock market"]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """T5 and GPT-2, written straight to GGUF, once for the whole run."""
    folder = tmp_path_factory.mktemp("tiny-gguf")
    return {"t5": tiny_gguf.write_t5(folder / "t5.gguf"), "gpt2": tiny_gguf.write_gpt2(folder / "gpt2.gguf")}


@pytest.fixture(scope="session")
def bert(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[tiny_gguf.TinyCheckpoint, Path]]:
    """Tiny Hugging Face checkpoints and their GGUFs from our converter (F32, so llama.cpp and
    numpy can be compared closely; the real MiniLM test covers F16)."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    checkpoints = {
        "embedder": tiny_gguf.write_hf_sentence_bert(folder / "embedder"),
        "unpooled": tiny_gguf.write_hf_sentence_bert(folder / "unpooled", pooling=None),
        "cls-pooled": tiny_gguf.write_hf_sentence_bert(folder / "cls-pooled", pooling="cls"),
        "classifier": tiny_gguf.write_hf_bert_classifier(folder / "classifier"),
        "distilbert": tiny_gguf.write_hf_distilbert_classifier(folder / "distilbert"),
    }
    return {name: (checkpoint, convert_bert(checkpoint.folder, folder / f"{name}.gguf", f16=False))
            for name, checkpoint in checkpoints.items()}


def hidden(checkpoint: tiny_gguf.TinyCheckpoint, token_ids: list[int]) -> np.ndarray:
    return ref.encoder_hidden(checkpoint.weights, token_ids, n_head=checkpoint.n_head, tanh_gelu=True)


# --- what the app offers for each model -----------------------------------------------------
def test_capabilities_follow_the_gguf_metadata(tiny, bert) -> None:
    assert capabilities(read_gguf(tiny["t5"])) == {Capability.TRANSLATE, Capability.SUMMARIZE}
    assert capabilities(read_gguf(tiny["gpt2"])) == {Capability.COMPLETE}
    for name in ("embedder", "unpooled", "cls-pooled"):
        assert capabilities(read_gguf(bert[name][1])) == {Capability.EMBED}
    for name in ("classifier", "distilbert"):
        assert capabilities(read_gguf(bert[name][1])) == {Capability.CLASSIFY}


def test_a_model_with_a_chat_template_can_chat_and_continue_text(smollm2_path: Path) -> None:
    assert capabilities(read_gguf(smollm2_path)) == {Capability.CHAT, Capability.COMPLETE}


def test_mobilebert_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "mobilebert.gguf"
    writer = gguf.GGUFWriter(str(path), "mobilebert")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UnsupportedModel, match="MobileBERT"):
        capabilities(read_gguf(path))


# --- T5: Translate and Summarize --------------------------------------------------------------
def test_t5_translates_through_encode_then_decode(tiny) -> None:
    with Seq2SeqTask(tiny["t5"], n_threads=THREADS) as task:
        result = task.run(Seq2SeqKind.TRANSLATE, "the house is small", max_tokens=6)
        prompt = task_prompt(Seq2SeqKind.TRANSLATE, "the house is small")
        assert prompt == "translate English to German: the house is small"
        assert result.text
        assert len(result.tokens) == 6 and result.finish_reason is FinishReason.LENGTH
        # llama.cpp's own counters: the whole prompt went through the encoder, one decode per token.
        encoded, decoded = task.counters()
        assert encoded == result.prompt_tokens == len(task.tokenize(prompt))
        assert decoded == result.generated == 6


def test_t5_output_depends_on_the_input_and_nothing_else(tiny) -> None:
    with Seq2SeqTask(tiny["t5"], n_threads=THREADS) as task:
        first = task.run(Seq2SeqKind.TRANSLATE, "the house is small", max_tokens=8)
        summary = task.run(Seq2SeqKind.SUMMARIZE, "the house is small", max_tokens=8)
        again = task.run(Seq2SeqKind.TRANSLATE, "the house is small", max_tokens=8)
    assert summary.tokens != first.tokens  # the decoder reads the encoder's output
    assert again == first  # no state leaks from one run into the next


def test_t5_stops_when_asked(tiny) -> None:
    asked = iter([False, False, True])
    with Seq2SeqTask(tiny["t5"], n_threads=THREADS) as task:
        result = task.run(Seq2SeqKind.SUMMARIZE, "the house is small", max_tokens=50,
                          should_stop=lambda: next(asked))
    assert result.finish_reason is FinishReason.STOPPED
    assert len(result.tokens) == 2


def test_a_decoder_only_model_is_not_a_seq2seq_model(tiny) -> None:
    with pytest.raises(UnsupportedModel):
        Seq2SeqTask(tiny["gpt2"], n_threads=THREADS)


# --- GPT-2: "Continue my text" ----------------------------------------------------------------
def test_gpt2_without_template_continues_text_but_does_not_chat(tiny) -> None:
    config = EngineConfig(model_path=tiny["gpt2"], n_ctx=64, n_threads=THREADS)
    with Engine(config) as engine:
        generation = engine.complete("the cat", GenerationSettings(max_tokens=5, temperature=0.0, seed=1))
        text = generation.read()
        assert text
        assert generation.stats.completion_tokens == 5
        assert engine.counters().decoded >= 4  # llama.cpp decoded the continuation itself
        with pytest.raises(NotAChatModel):
            engine.stream_chat([ChatMessage(Role.USER, "hello")])


# --- BERT embeddings ----------------------------------------------------------------------------
def test_embeddings_match_a_numpy_bert_with_mean_pooling(bert) -> None:
    checkpoint, path = bert["embedder"]
    with Embedder(path, n_threads=THREADS) as embedder:
        vectors = embedder.embed(SENTENCES)
        ids = [embedder.tokens(text) for text in SENTENCES]
    assert ids[0] == [tiny_gguf.BERT_VOCAB.index(w) for w in ["[CLS]", "the", "cat", "sat", "on", "the", "mat", "[SEP]"]]
    assert vectors.shape == (len(SENTENCES), tiny_gguf.TINY_BERT["n_embd"])
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = np.stack([ref.mean_pooled_unit(hidden(checkpoint, tokens)) for tokens in ids])
    np.testing.assert_allclose(vectors, expected, atol=2e-3)


def test_pooling_follows_the_sentence_transformers_config(bert) -> None:
    for name, pool in (("unpooled", lambda h: h.mean(axis=0)), ("cls-pooled", lambda h: h[0])):
        checkpoint, path = bert[name]
        with Embedder(path, n_threads=THREADS) as embedder:
            vector = embedder.embed(["the cat sat"])[0]
            tokens = embedder.tokens("the cat sat")
        expected = pool(hidden(checkpoint, tokens))
        np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=2e-3)


def test_a_file_that_declares_no_pooling_is_mean_pooled(bert, tmp_path: Path) -> None:
    checkpoint, converted = bert["embedder"]
    path = tiny_gguf.rewrite(converted, tmp_path / "nopool.gguf", drop_key="bert.pooling_type")
    assert "bert.pooling_type" not in read_gguf(path).metadata
    with Embedder(path, n_threads=THREADS) as embedder:
        vector = embedder.embed(["the cat sat"])[0]
        tokens = embedder.tokens("the cat sat")
    np.testing.assert_allclose(vector, ref.mean_pooled_unit(hidden(checkpoint, tokens)), atol=2e-3)


def test_many_texts_in_several_batches_give_the_same_vectors_as_one_by_one(bert) -> None:
    texts = [SENTENCES[i % len(SENTENCES)] + " the cat" * (i % 5) for i in range(40)]
    with Embedder(bert["embedder"][1], n_threads=THREADS) as embedder:
        together = embedder.embed(texts)  # 40 texts cannot share one 64-token batch
        alone = np.stack([embedder.embed([text])[0] for text in texts[:6]])
    np.testing.assert_allclose(together[:6], alone, atol=1e-5)


def test_a_classifier_is_not_an_embedder(bert) -> None:
    for name in ("classifier", "distilbert"):
        with pytest.raises(UnsupportedModel):
            Embedder(bert[name][1], n_threads=THREADS)


# --- classifiers --------------------------------------------------------------------------------
def test_llama_cpp_runs_bert_s_pooler_and_classifier_itself(bert) -> None:
    checkpoint, path = bert["classifier"]
    with Classifier(path, n_threads=THREADS) as classifier:
        assert classifier.labels == ["NEGATIVE", "POSITIVE"]
        results = classifier.classify(SENTENCES)
        ids = [classifier.tokens(text) for text in SENTENCES]
    expected = np.stack([ref.bert_classifier_logits(checkpoint.weights, hidden(checkpoint, t)) for t in ids])
    np.testing.assert_allclose([r.logits for r in results], expected, rtol=1e-2, atol=2e-2)
    for result, logits in zip(results, expected):
        assert result.label == checkpoint.labels[int(np.argmax(logits))]
        assert sum(result.scores.values()) == pytest.approx(1.0)


def test_distilbert_head_is_pre_classifier_then_relu(bert) -> None:
    checkpoint, path = bert["distilbert"]
    with Classifier(path, n_threads=THREADS) as classifier:
        results = classifier.classify(SENTENCES)
        ids = [classifier.tokens(text) for text in SENTENCES]
    logits = np.array([r.logits for r in results])
    relu = np.stack([ref.distilbert_classifier_logits(checkpoint.weights, hidden(checkpoint, t)) for t in ids])
    tanh = np.stack([ref.distilbert_with_tanh_head(checkpoint.weights, hidden(checkpoint, t)) for t in ids])
    np.testing.assert_allclose(logits, relu, rtol=1e-2, atol=2e-2)
    assert np.abs(logits - tanh).max() > 0.5  # llama.cpp's own tanh head would have been wrong
    assert [r.label for r in results] == [checkpoint.labels[int(i)] for i in relu.argmax(axis=1)]


def test_an_embedding_model_is_not_a_classifier(bert) -> None:
    with pytest.raises(UnsupportedModel):
        Classifier(bert["embedder"][1], n_threads=THREADS)
