"""Cut a document's blocks into passages that follow its structure, each keeping its place.

A chunk never crosses a page or a heading: retrieval then points the reader at one page or one
section. Paragraphs are packed up to `target_chars` (MiniLM reads about 256 tokens, some 1,000
characters of English); a paragraph longer than that is cut at sentence ends. Consecutive
chunks of one section share `overlap_chars` of text, so an answer that straddles a cut is still
found whole in one of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slmchat.core.documents.extract import Block

TARGET_CHARS = 900
OVERLAP_CHARS = 150
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    text: str  # the overlap carried from the chunk before, then this chunk's own text
    place: str  # for the reader: "page 3", "Chapter I › The Storm (lines 4–9)", "lines 10–42"
    lead: int = 0  # characters of `text` carried from the chunk before (a snippet starts after them)


def place(blocks: list[Block]) -> str:
    """Where a run of blocks of one section stands, in words."""
    first, last = blocks[0], blocks[-1]
    if first.page is not None:
        return f"page {first.page}"
    lines = ""
    if first.lines is not None and last.lines is not None:
        a, b = first.lines[0], last.lines[1]
        lines = f"line {a}" if a == b else f"lines {a}–{b}"
    heading = " › ".join(first.headings)
    if heading and lines:
        return f"{heading} ({lines})"
    return heading or lines or "text"


def _section_key(block: Block) -> tuple:
    return (block.page, block.headings)


def _pieces(block: Block, target: int) -> list[Block]:
    """A block cut at sentence ends (or, for one huge sentence, at words) to at most `target`."""
    if len(block.text) <= target:
        return [block]
    sentences = [s for s in _SENTENCE_END.split(block.text) if s]
    parts: list[str] = []
    for sentence in sentences:
        while len(sentence) > target:
            cut = sentence.rfind(" ", 0, target)
            cut = cut if cut > target // 2 else target
            parts.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if parts and len(parts[-1]) + 1 + len(sentence) <= target:
            parts[-1] += " " + sentence
        else:
            parts.append(sentence)
    return [Block(part, block.page, block.headings, block.lines, block.is_heading) for part in parts]


def _tail(text: str, size: int) -> str:
    """The last `size` characters of `text`, starting at a word."""
    if len(text) <= size:
        return text
    cut = text.find(" ", len(text) - size)
    return text[cut + 1:] if cut != -1 else text[-size:]


def chunk(blocks: list[Block], *, target_chars: int = TARGET_CHARS,
          overlap_chars: int = OVERLAP_CHARS) -> list[Chunk]:
    """The document's passages, in order."""
    chunks: list[Chunk] = []
    group: list[Block] = []
    carry = ""  # the overlap carried from the previous chunk of the same section

    def emit() -> None:
        nonlocal carry
        body = "\n\n".join(b.text for b in group)
        if any(not b.is_heading for b in group):
            lead = f"{carry} … " if carry else ""
            chunks.append(Chunk(lead + body, place(group), len(lead)))
            carry = _tail(body, overlap_chars) if overlap_chars else ""

    for block in blocks:
        for piece in _pieces(block, target_chars):
            if group and _section_key(group[-1]) != _section_key(piece):
                emit()
                group, carry = [], ""
            size = sum(len(b.text) + 2 for b in group)
            if group and size + len(piece.text) > target_chars:
                emit()
                group = []
            group.append(piece)
    if group:
        emit()
    return chunks
