"""An Embedder with several contexts embeds the batches of one call side by side (the document
indexer's way of using every core) and returns exactly the vectors one context returns.

The real all-MiniLM-L6-v2 (tests/minilm_gguf.py) is checked against a numpy forward pass of its
published float32 weights; which contexts did the work is read from llama.cpp's own counters.
"""

from __future__ import annotations

from pathlib import Path

import minilm_gguf
import numpy as np
import numpy_reference as ref
import pytest
from model_cache import MODEL_CACHE

from slmchat.core.tasks.embeddings import Embedder

PASSAGES = [
    f"Passage {n}: the lighthouse keeper wrote in the log that the storm of the night before had "
    f"torn {n} slates from the roof, and that the lamp had burned until dawn." + " More words." * (n % 7)
    for n in range(24)
]


@pytest.fixture(scope="module")
def minilm_path() -> Path:
    return minilm_gguf.cached_gguf(MODEL_CACHE)


@pytest.mark.slow
def test_two_contexts_share_the_batches_and_give_the_same_vectors_in_the_same_order(minilm_path: Path) -> None:
    with Embedder(minilm_path, n_threads=1) as one:
        alone = one.embed(PASSAGES)
    with Embedder(minilm_path, n_threads=1, workers=2) as two:
        together = two.embed(PASSAGES)
        evaluated = [context.eval_counts()[0] for context in two._contexts]
        tokens = sum(len(two.tokens(text)) for text in PASSAGES)
    # llama.cpp reports at least 1 for a context that evaluated nothing
    assert len(evaluated) == 2 and all(n > 1 for n in evaluated), evaluated
    assert sum(evaluated) == tokens  # every token once, none twice
    np.testing.assert_allclose(together, alone, atol=1e-6)


@pytest.mark.slow
def test_vectors_from_several_contexts_match_a_numpy_forward_pass_of_the_real_weights(minilm_path: Path) -> None:
    weights = minilm_gguf.hf_weights()
    with Embedder(minilm_path, n_threads=1, workers=3) as embedder:
        vectors = embedder.embed(PASSAGES[:6])
        token_lists = [embedder.tokens(text) for text in PASSAGES[:6]]
    for got, tokens in zip(vectors, token_lists):
        expected = ref.mean_pooled_unit(ref.encoder_hidden(weights, tokens, n_head=12))
        assert float(got @ expected) > 0.9999
        np.testing.assert_allclose(got, expected, atol=2e-3)


def test_closing_an_embedder_frees_every_context(minilm_path: Path) -> None:
    embedder = Embedder(minilm_path, n_threads=1, workers=2)
    contexts = list(embedder._contexts)
    embedder.close()
    assert all(context.ctx is None and context.model is None for context in contexts)
