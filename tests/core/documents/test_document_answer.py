"""Answering with the real SmolLM2-135M in its process: the prompt numbers the sources with their
file and place, the reply streams, the sources kept with it match what the model was shown, and
a map-reduce reads every part before writing the answer from its notes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from document_corpus import CORPUS

from slmchat.core.documents import answer
from slmchat.core.documents.index import DocumentIndex
from slmchat.core.documents.indexer import index_pending
from slmchat.core.documents.retrieve import Retriever, approx_tokens
from slmchat.core.generation import ChatMessage, EngineConfig, Generation, GenerationSettings, Role
from slmchat.core.process.engine_client import EngineClient
from slmchat.core.process.task_client import TaskClient
from slmchat.paths import Paths

pytestmark = pytest.mark.slow
SHORT = GenerationSettings(max_tokens=40, temperature=0.0, seed=1)


@pytest.fixture(scope="module")
def retriever(tmp_path_factory: pytest.TempPathFactory, minilm: TaskClient) -> Iterator[Retriever]:
    home = tmp_path_factory.mktemp("answer-home")
    with DocumentIndex(Paths.at(home).documents_database) as index:
        index.add_roots(index.collection("classics"), [CORPUS])
        index_pending(index, minilm, emit=lambda event: None)
        yield Retriever(index, minilm)


@pytest.fixture(scope="module")
def engine(smollm2_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineClient]:
    paths = Paths.at(tmp_path_factory.mktemp("engine-home")).ensure()
    with EngineClient(EngineConfig(model_path=smollm2_path, n_threads=1), paths=paths) as client:
        yield client


class Recording:
    """The real engine, with every prompt it was given kept for the test to read."""

    def __init__(self, engine: EngineClient) -> None:
        self.engine = engine
        self.prompts: list[list[ChatMessage]] = []

    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: object = None) -> Generation:
        self.prompts.append(list(messages))
        return self.engine.stream_chat(messages, settings, cancel)


def test_the_prompt_numbers_each_source_with_its_file_and_place_and_the_reply_keeps_them(
        retriever: Retriever, engine: EngineClient):
    context = retriever.gather("What was the captain's leg made of?", 600)
    assert context.mode == "passages"
    model = Recording(engine)
    pieces = list(answer.answer(model, "What was the captain's leg made of?", context, SHORT))
    assert "".join(pieces).strip() and len(model.prompts) == 1
    system, user = model.prompts[0]
    assert system.role is Role.SYSTEM and "numbered sources" in system.content
    for n, source in enumerate(context.sources, 1):
        assert f"[{n}] {Path(source.path).name}, {source.place}:\n" in user.content
    kept = answer.reply_sources(context)
    assert [(s["file"], s["place"]) for s in kept] == [(p.path, p.place) for p in context.sources]
    assert all(s["snippet"] and set(s) >= {"file", "place", "snippet"} for s in kept)
    assert "ivory" in kept[0]["snippet"] or "ivory" in context.sources[0].text


def test_a_map_reduce_answer_reads_every_part_then_answers_from_the_notes(retriever: Retriever, engine: EngineClient):
    total = sum(approx_tokens(p.text) for p in retriever.documents())
    context = retriever.gather("Summarise these stories", total // 3)
    assert context.mode == "map_reduce"
    model = Recording(engine)
    reply = answer.answer(model, "Summarise these stories", context, SHORT).read()
    assert reply.strip()
    assert len(model.prompts) == len(context.parts) + 1
    for part, prompt in zip(context.parts, model.prompts):
        assert answer.NOTES_INSTRUCTION in prompt[1].content
        assert all(p.text.strip() in prompt[1].content for p in part)
    final = model.prompts[-1][1].content
    assert answer.NOTES_INSTRUCTION not in final and final.count("notes on ") == len(context.parts)
    assert len(answer.reply_sources(context)) == len(context.parts)
