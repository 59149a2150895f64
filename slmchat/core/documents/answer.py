"""A chat model answers from the library: the prompt with numbered sources, and the sources to keep.

The sources go into the user's turn, numbered [1], [2] … with their file and place, so even a
small model sees which text is which and can cite it; the system message tells it to answer from
them only. For a map-reduce context (a whole-document question over documents too long for the
context) each part is first condensed into notes, and the answer is written from the notes.
`reply_sources` is what the store keeps with the reply: file, place and snippet per source.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from slmchat.core.documents.retrieve import Context, Passage
from slmchat.core.generation import ChatMessage, Generation, GenerationSettings, Role

SNIPPET_CHARS = 300
SYSTEM = ("You answer questions about the user's documents. Use only the numbered sources given. "
          "Cite the sources you use like [1]. If the sources do not contain the answer, say so.")
NOTES_INSTRUCTION = ("Write short notes of everything in these sources that helps answer the question "
                     "below. Keep names, numbers and items exactly.")


class ChatModel(Protocol):
    """What answering needs of a chat model: EngineClient (or Engine in tests of the engine)."""

    def stream_chat(self, messages: Sequence[ChatMessage], settings: GenerationSettings | None = None,
                    cancel: threading.Event | None = None) -> Generation: ...


def _numbered(sources: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{n}] {Path(p.path).name}, {p.place}:\n{p.text.strip()}" for n, p in enumerate(sources, 1))


def prompt(question: str, sources: Sequence[Passage], instruction: str = "") -> list[ChatMessage]:
    """The messages for one answer (or, with `instruction`, one map step) over `sources`."""
    lead = f"{instruction}\n\n" if instruction else ""
    return [ChatMessage(Role.SYSTEM, SYSTEM),
            ChatMessage(Role.USER, f"{lead}Sources:\n\n{_numbered(sources)}\n\nQuestion: {question}")]


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit].rsplit(" ", 1)[0] + "…"


def _part_source(part: Sequence[Passage]) -> Passage:
    """One map-reduce part as a single source (its notes stand for it in the final prompt)."""
    first, last = part[0], part[-1]
    where = first.place if first.place == last.place else f"{first.place} to {last.place}"
    return Passage(first.file_id, first.path, where, first.own_text)


def reply_sources(context: Context) -> list[dict[str, Any]]:
    """The sources to store with the reply, numbered as the final prompt numbers them."""
    cited = context.sources if context.mode != "map_reduce" else [_part_source(p) for p in context.parts]
    return [{"n": n, "file": p.path, "place": p.place, "snippet": snippet(p.own_text), "chunk_id": p.chunk_id,
             "mode": context.mode} for n, p in enumerate(cited, 1)]


def answer(model: ChatModel, question: str, context: Context, settings: GenerationSettings | None = None,
           cancel: threading.Event | None = None) -> Generation:
    """The streaming answer to `question` from `context` (map steps, if any, run first)."""
    if context.mode != "map_reduce":
        return model.stream_chat(prompt(question, context.sources), settings, cancel)
    notes: list[Passage] = []
    for part in context.parts:
        if cancel is not None and cancel.is_set():
            break
        text = model.stream_chat(prompt(question, part, NOTES_INSTRUCTION), settings, cancel).read()
        source = _part_source(part)
        notes.append(Passage(source.file_id, source.path, f"notes on {source.place}", text))
    return model.stream_chat(prompt(question, notes), settings, cancel)
