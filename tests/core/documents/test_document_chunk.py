"""Chunks follow the document: never across a page or a heading, long paragraphs cut at sentence
ends, consecutive chunks of one section sharing some text, and each chunk naming its place."""

from __future__ import annotations

from pathlib import Path

from slmchat.core.documents.chunk import chunk
from slmchat.core.documents.extract import Block, extract


def test_chunks_never_cross_a_page_and_name_it():
    blocks = [Block("First page text.", page=1), Block("More on page one.", page=1), Block("Second page.", page=2)]
    found = chunk(blocks, target_chars=1000)
    assert [(c.text, c.place) for c in found] == [
        ("First page text.\n\nMore on page one.", "page 1"), ("Second page.", "page 2")]


def test_markdown_sections_become_chunks_under_their_heading_path_with_line_numbers(tmp_path: Path):
    text = "# Book\n\nOpening words.\n\n## Part One\n\nThe first part.\n\nStill the first part.\n\n# Appendix\n\nNotes.\n"
    (tmp_path / "book.md").write_text(text)
    found = chunk(extract(tmp_path / "book.md").blocks, target_chars=1000)
    assert [c.place for c in found] == ["Book (lines 1–3)", "Book › Part One (lines 5–9)", "Appendix (lines 11–13)"]
    assert found[1].text == "Part One\n\nThe first part.\n\nStill the first part."


def test_a_long_paragraph_is_cut_at_sentence_ends_and_the_next_chunk_repeats_the_end_of_the_last():
    sentences = [f"Sentence number {n} tells of the sea and the ship." for n in range(60)]
    found = chunk([Block(" ".join(sentences), lines=(1, 1))], target_chars=300, overlap_chars=60)
    assert len(found) > 5 and all(len(c.text) - c.lead <= 300 for c in found)
    assert all(c.text[c.lead:].startswith("Sentence number") for c in found)  # cut at a sentence end
    for before, after in zip(found, found[1:]):
        carried = after.text[: after.lead].removesuffix(" … ")
        assert carried and before.text.endswith(carried) and len(carried) <= 60
    assert found[0].lead == 0
