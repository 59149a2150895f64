"""Retrieval over the public-domain corpus with the real MiniLM: the fusion of BM25 and cosine
ranks the answer higher than either alone, and the prompt gets whole documents when they fit,
every part for a whole-document question when they do not, else the best passages."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from document_corpus import CORPUS, QUESTIONS

from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import index_pending
from slmchat.core.documents.retrieve import Mode, Retriever, approx_tokens, is_whole_document_question
from slmchat.core.process.task_client import TaskClient
from slmchat.paths import Paths

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory, minilm: TaskClient) -> Iterator[Retriever]:
    home = tmp_path_factory.mktemp("retrieve-home")
    with DocumentIndex(Paths.at(home).documents_database) as index:
        index.add_roots(index.collection("classics"), [CORPUS])
        index_pending(index, minilm, emit=lambda event: None)
        yield Retriever(index, minilm)


def _rank(retriever: Retriever, question: dict, mode: Mode) -> int | None:
    """Where the first passage holding the known answer stands (1 = first), None if not in 10."""
    hits = retriever.search(question["question"], 10, mode=mode)
    return next((n for n, hit in enumerate(hits, 1)
                 if question["answer"] in hit.text and Path(hit.path).name == question["file"]), None)


def _mean_reciprocal_rank(retriever: Retriever, mode: Mode) -> float:
    ranks = [_rank(retriever, q, mode) for q in QUESTIONS]
    return sum(1 / r for r in ranks if r) / len(ranks)


def test_hybrid_ranks_the_answers_higher_than_words_only_or_meaning_only(retriever: Retriever):
    scores = {mode: _mean_reciprocal_rank(retriever, mode) for mode in ("fts", "vector", "hybrid")}
    assert scores["hybrid"] > scores["fts"] and scores["hybrid"] > scores["vector"], scores
    assert scores["hybrid"] >= 0.85, scores


def test_every_answer_is_in_the_hybrid_top_five(retriever: Retriever):
    ranks = {q["question"]: _rank(retriever, q, "hybrid") for q in QUESTIONS}
    assert all(rank is not None and rank <= 5 for rank in ranks.values()), ranks


def test_whole_documents_go_to_the_prompt_when_they_fit_with_the_most_relevant_first(retriever: Retriever):
    total = sum(approx_tokens(p.text) for p in retriever.documents())
    context = retriever.gather("Who owned the Pequod?", total)
    assert context.mode == "whole"
    assert len(context.sources) == 5 and Path(context.sources[0].path).name == "moby_dick.txt"
    assert "Captain Peleg and Captain Bildad" in context.sources[0].text


def test_a_question_that_does_not_fit_whole_gets_the_best_passages_within_the_budget(retriever: Retriever):
    total = sum(approx_tokens(p.text) for p in retriever.documents())
    budget = total // 2
    context = retriever.gather("Who owned the Pequod?", budget)
    assert context.mode == "passages"
    assert 1 <= len(context.sources) <= 6
    assert sum(approx_tokens(p.text) for p in context.sources) <= budget
    assert "Peleg and Captain Bildad" in context.sources[0].text and context.sources[0].place.startswith("line")


def test_a_summary_of_documents_too_long_to_fit_reads_every_part(retriever: Retriever):
    assert is_whole_document_question("Summarise these books") and is_whole_document_question("List every captain")
    assert not is_whole_document_question("Who owned the Pequod?")
    total = sum(approx_tokens(p.text) for p in retriever.documents())
    context = retriever.gather("Summarise the documents", total // 3)
    assert context.mode == "map_reduce" and len(context.parts) >= 3
    assert all(sum(approx_tokens(p.text) for p in part) <= total // 3 for part in context.parts)
    chunks = retriever.index.conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    assert sum(len(part) for part in context.parts) == chunks  # nothing left out
