"""A thinking model's reply is stored as its answer (the content) with its thinking apart, and the
documents it cites beside it: checkpointed as they grow, never sent back to the model, found by
search (a hit in the thinking says so), and carried through export and import."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmchat.core.errors import StoreError
from slmchat.core.generation import FinishReason, GenerationSettings, GenerationStats, Role, ThinkingMarkers
from slmchat.core.store.export import (
    NotAnExport,
    conversation_markdown,
    export_conversations,
    import_conversations,
)
from slmchat.core.store.recording import Checkpointer, begin_turn, history_for_engine
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store

THINK = ThinkingMarkers("<think>", "</think>")
SOURCES = [
    {"file": "Burrowers.pdf", "place": "page 3", "snippet": "The aardvark eats ants and termites."},
    {"file": "Notes on ants.md", "place": "“Diet”, paragraph 2", "snippet": "Termite mounds…", "score": 0.82},
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "chats.db")
    yield opened
    opened.close()


def thinking_reply(store: Store, thinking: str, answer: str, seconds: float = 4.0) -> tuple[int, int]:
    """A conversation whose one question has a finished reply that thought; (conversation, reply)."""
    conversation = store.new_conversation(title="Aardvarks", model="qwen3")
    store.add_user_message(conversation.id, "What do aardvarks eat?")
    reply = store.start_reply(conversation.id, model="qwen3")
    store.finish_reply(reply.id, answer, GenerationStats(completion_tokens=40), thinking=thinking,
                       thinking_seconds=seconds)
    return conversation.id, reply.id


def test_the_checkpointer_stores_the_thinking_apart_from_the_answer_as_both_grow(store: Store) -> None:
    ticks = iter([10.0, 10.2, 11.5, 12.0, 14.0, 14.2, 16.0, 16.5])
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "What do aardvarks eat?")
    reply = store.start_reply(conversation.id)
    checkpointer = Checkpointer(store, reply.id, markers=THINK, interval_s=1.0, clock=lambda: next(ticks))

    saved = []
    for piece in ["<think>", "Ants, ", "surely.", " Termites too.", "</think>", "\n\nMostly ", "ants", "."]:
        if checkpointer.append(piece):
            message = store.message(reply.id)
            saved.append((message.thinking, message.content, message.thinking_seconds))
    assert saved == [
        ("", "", 0.0),  # t=10: the block has opened, nothing in it yet
        ("Ants, surely.", "", 1.5),  # t=11.5: still thinking, for 1.5 s so far
        ("Ants, surely. Termites too.", "", 4.0),  # t=14: the thinking closed
        ("Ants, surely. Termites too.", "Mostly ants", 4.0),  # t=16: the answer grows, the time stays
    ]
    finished = checkpointer.finish(GenerationStats())
    assert (finished.thinking, finished.content, finished.thinking_seconds) == (
        "Ants, surely. Termites too.", "Mostly ants.", 4.0)


def test_a_reply_stopped_while_thinking_keeps_its_thinking_and_how_long_it_lasted(store: Store) -> None:
    ticks = iter([0.0, 0.5, 2.5])
    with begin_turn(store, "Why is the sky blue?", markers=THINK, clock=lambda: next(ticks)) as turn:
        for piece in ["<think>", "Rayleigh", " scattering"]:
            turn.append(piece)
    stopped = store.message(turn.reply.id)
    assert (stopped.status, stopped.thinking, stopped.content) == (
        MessageStatus.STOPPED, "Rayleigh scattering", "")
    assert stopped.thinking_seconds == 2.5  # from the first piece to the last


def test_a_model_without_thinking_markers_stores_its_text_whole(store: Store) -> None:
    with begin_turn(store, "Show a tag") as turn:
        turn.append("<think> is an HTML-like tag.")
        turn.finish(GenerationStats())
    kept = store.message(turn.reply.id)
    assert (kept.content, kept.thinking, kept.thinking_seconds) == ("<think> is an HTML-like tag.", "", None)


def test_the_history_sent_back_to_the_model_carries_only_the_answers(store: Store) -> None:
    conversation_id, _reply = thinking_reply(store, "Ants are small; aardvarks are not.", "Ants and termites.")
    store.add_user_message(conversation_id, "And at night?")
    assert [(m.role, m.content) for m in history_for_engine(store, conversation_id)] == [
        (Role.USER, "What do aardvarks eat?"),
        (Role.ASSISTANT, "Ants and termites."),
        (Role.USER, "And at night?"),
    ]


def test_a_reply_that_only_thought_is_left_out_of_the_history_like_an_empty_one(store: Store) -> None:
    conversation_id, _reply = thinking_reply(store, "Hmm, aardvarks… let me think about", "")
    assert [m.role for m in history_for_engine(store, conversation_id)] == [Role.USER]


def test_search_finds_words_in_the_thinking_and_says_the_hit_is_there(store: Store) -> None:
    conversation_id, reply_id = thinking_reply(store, "Aardvarks dig at night with strong claws.",
                                               "They eat ants and termites.")
    claws = store.search("claws", marks=("<b>", "</b>"))
    assert [(hit.conversation_id, hit.message_id, hit.in_thinking) for hit in claws] == [
        (conversation_id, reply_id, True)]
    assert claws[0].snippet == "Aardvarks dig at night with strong <b>claws</b>."
    termites = store.search("termites")
    assert [(hit.message_id, hit.in_thinking) for hit in termites] == [(reply_id, False)]


def test_a_message_matching_in_its_answer_and_its_thinking_is_one_hit_from_the_answer(store: Store) -> None:
    _conversation, reply_id = thinking_reply(store, "Termites first, then ants.", "Termites, mostly.")
    [hit] = store.search("termites", marks=("[", "]"))
    assert (hit.message_id, hit.in_thinking, hit.snippet) == (reply_id, False, "[Termites], mostly.")


def test_search_no_longer_finds_the_thinking_of_a_deleted_conversation(store: Store) -> None:
    conversation_id, _reply = thinking_reply(store, "Pangolins are different.", "Ants.")
    store.trash(conversation_id)
    store.delete_forever(conversation_id)
    assert store.search("pangolins") == []


def test_sources_set_on_a_reply_are_kept_with_it_and_replaced_when_set_again(store: Store) -> None:
    _conversation, reply_id = thinking_reply(store, "Check the PDF.", "Ants.")
    assert store.set_sources(reply_id, SOURCES).sources == tuple(SOURCES)
    assert store.message(reply_id).sources == tuple(SOURCES)  # read back from the file
    assert store.set_sources(reply_id, SOURCES[:1]).sources == (SOURCES[0],)
    assert store.set_sources(reply_id, []).sources == ()


@pytest.mark.parametrize("bad", [
    "Burrowers.pdf",
    [{"file": "Burrowers.pdf", "place": "page 3"}],
    [{"file": "Burrowers.pdf", "place": 3, "snippet": "ants"}],
    [{"file": "Burrowers.pdf", "place": "page 3", "snippet": "ants", "opened": object()}],
], ids=["not-a-list", "no-snippet", "place-not-text", "not-json"])
def test_sources_of_the_wrong_shape_are_refused_and_nothing_is_stored(store: Store, bad: object) -> None:
    _conversation, reply_id = thinking_reply(store, "", "Ants.")
    store.set_sources(reply_id, SOURCES[:1])
    with pytest.raises(StoreError, match="cannot be stored"):
        store.set_sources(reply_id, bad)  # type: ignore[arg-type]
    assert store.message(reply_id).sources == (SOURCES[0],)


def test_export_and_import_carry_the_thinking_its_time_and_the_sources(store: Store, tmp_path: Path) -> None:
    conversation_id, reply_id = thinking_reply(store, "Ants are everywhere.\nTermites too.", "Ants.", 12.4)
    store.set_sources(reply_id, SOURCES)
    store.update_conversation(conversation_id, settings=GenerationSettings(thinking="off", thinking_budget=256))
    document = json.loads(json.dumps(export_conversations(store, [conversation_id])))  # as a file would

    with Store(tmp_path / "other.db") as other:
        [imported] = import_conversations(other, document)
        [question, answer] = other.branch(imported)
        assert (answer.content, answer.thinking, answer.thinking_seconds) == (
            "Ants.", "Ants are everywhere.\nTermites too.", 12.4)
        assert answer.sources == tuple(SOURCES)
        assert (question.thinking, question.thinking_seconds, question.sources) == ("", None, ())
        settings = other.conversation(imported).settings
        assert (settings.thinking, settings.thinking_budget) == ("off", 256)
        assert [hit.in_thinking for hit in other.search("everywhere")] == [True]


def test_an_export_from_before_thinking_imports_with_none(store: Store, tmp_path: Path) -> None:
    conversation_id, _reply = thinking_reply(store, "", "Ants.")
    document = export_conversations(store, [conversation_id])
    for message in document["conversations"][0]["messages"]:
        for key in ("thinking", "thinking_seconds", "sources"):
            del message[key]
    with Store(tmp_path / "other.db") as other:
        [imported] = import_conversations(other, document)
        answer = other.branch(imported)[-1]
        assert (answer.content, answer.thinking, answer.thinking_seconds, answer.sources) == ("Ants.", "", None, ())


def test_an_export_whose_sources_are_damaged_imports_nothing(store: Store, tmp_path: Path) -> None:
    conversation_id, reply_id = thinking_reply(store, "", "Ants.")
    store.set_sources(reply_id, SOURCES)
    document = export_conversations(store, [conversation_id])
    del document["conversations"][0]["messages"][1]["sources"][1]["snippet"]
    with Store(tmp_path / "other.db") as other:
        with pytest.raises(NotAnExport, match='"sources" in conversation 1, message 2: source 2 should have'):
            import_conversations(other, document)
        assert other.conversations() == []


def test_markdown_shows_the_thinking_as_a_quote_before_the_answer_and_lists_the_sources(store: Store) -> None:
    conversation_id, reply_id = thinking_reply(store, "Ants are small.\n\nAardvarks are not.", "Ants.", 12.4)
    store.set_sources(reply_id, SOURCES[:1])
    markdown = conversation_markdown(store, conversation_id)
    assert (
        "## Assistant · qwen3\n\n"
        "*Thought for 12 s:*\n\n"
        "> Ants are small.\n>\n> Aardvarks are not.\n\n"
        "Ants.\n\n"
        "Sources:\n\n"
        "- Burrowers.pdf, page 3: “The aardvark eats ants and termites.”\n"
    ) in markdown


def test_a_reply_that_did_not_think_exports_to_markdown_as_before(store: Store) -> None:
    conversation = store.new_conversation(title="Plain")
    store.add_user_message(conversation.id, "Hi")
    reply = store.start_reply(conversation.id, model="smol")
    store.finish_reply(reply.id, "Hello!", GenerationStats(finish_reason=FinishReason.DONE))
    assert conversation_markdown(store, conversation.id).endswith("## Assistant · smol\n\nHello!\n")
