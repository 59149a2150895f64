"""Importing an export is all or nothing, and a file of the wrong shape is refused in words.

An export file is input from anywhere (another machine, another program, a hand edit). Each
case below takes a real export of a real store and breaks one value in the last conversation
(or a persona): a list where a number belongs, text where a list belongs, a missing field, an
object where text belongs. Every one must be refused with `NotAnExport`, whose text a person
can act on, and the database must be exactly as it was: the first, valid conversation of the
same file must not have been written either.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from slmchat.core.generation import GenerationSettings, GenerationStats
from slmchat.core.store.export import NotAnExport, export_all, import_conversations
from slmchat.core.store.store import Store

GONE = object()  # a field taken out of the file


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "chats.db")
    yield opened
    opened.close()


def fill(store: Store) -> None:
    """Two conversations (one with a branch and sampling settings) and a persona."""
    pirate = store.add_persona("Pirate", "Talk like a pirate.", GenerationSettings(top_k=5, seed=3))
    first = store.new_conversation(title="First chat", model="smol", persona_id=pirate.id)
    store.add_user_message(first.id, "Hello")
    reply = store.start_reply(first.id, model="smol")
    store.finish_reply(reply.id, "Ahoy", GenerationStats(prompt_tokens=5, completion_tokens=2,
                                                        time_to_first_token_s=0.1, decode_tokens_per_s=40.0))
    second = store.new_conversation(title="Second chat", model="smol", system_prompt="Be brief.",
                                    settings=GenerationSettings(temperature=0.2, max_tokens=64))
    question = store.add_user_message(second.id, "Pick a number")
    reply = store.start_reply(second.id, model="smol")
    store.finish_reply(reply.id, "Seven", GenerationStats(prompt_tokens=9, completion_tokens=1))
    store.edit_message(question.id, "Pick a letter")


@pytest.fixture
def document(store: Store) -> dict[str, Any]:
    """A real export, as it comes back from a JSON file."""
    fill(store)
    exported = json.loads(json.dumps(export_all(store)))
    assert len(exported["conversations"]) == 2 and len(exported["conversations"][1]["messages"]) == 3
    return exported


def database_dump(store: Store) -> list[str]:
    """Every row of every table, as SQL: equal dumps mean nothing was written."""
    return list(store.db.conn.iterdump())


def broken(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """`document` with the value at `path` replaced by `value` (or removed, for GONE)."""
    out = copy.deepcopy(document)
    holder = out
    for key in path[:-1]:
        holder = holder[key]
    if value is GONE:
        del holder[path[-1]]
    else:
        holder[path[-1]] = value
    return out


LAST = ("conversations", 1)
REPLY = (*LAST, "messages", 1)
FIRST_PERSONA = ("personas", 0)

MALFORMED = {
    # the list of conversations itself
    "conversations is text": (("conversations",), "First chat"),
    "conversations is an object": (("conversations",), {"0": {"title": "x"}}),
    "conversations is missing": (("conversations",), GONE),
    "a conversation is text": (LAST, "Second chat"),
    "a conversation is a list": (LAST, ["Second chat"]),
    "a conversation is null": (LAST, None),
    # a conversation's fields
    "title is a nested object": ((*LAST, "title"), {"text": "Second chat"}),
    "title is a list": ((*LAST, "title"), ["Second", "chat"]),
    "title is a number": ((*LAST, "title"), 42),
    "title is missing": ((*LAST, "title"), GONE),
    "title is a lone surrogate": ((*LAST, "title"), "Second \ud800 chat"),
    "created is a number": ((*LAST, "created"), 1_700_000_000),
    "created is not a date": ((*LAST, "created"), "last Tuesday"),
    "updated is missing": ((*LAST, "updated"), GONE),
    "model is null": ((*LAST, "model"), None),
    "system prompt is an object": ((*LAST, "system_prompt"), {"text": "Be brief."}),
    "pinned is a list": ((*LAST, "pinned"), [True]),
    "pinned is text": ((*LAST, "pinned"), "yes"),
    "pinned is a number": ((*LAST, "pinned"), 1),
    "deleted_at is not a date": ((*LAST, "deleted_at"), "yesterday"),
    "deleted_at is a number": ((*LAST, "deleted_at"), 5),
    "persona is a list": ((*LAST, "persona"), ["Pirate"]),
    "settings are text": ((*LAST, "settings"), "hot"),
    "settings are a list": ((*LAST, "settings"), [0.2, 64]),
    "temperature is text": ((*LAST, "settings", "temperature"), "hot"),
    "temperature is not a number": ((*LAST, "settings", "temperature"), float("nan")),
    "a speculative choice is a number": ((*LAST, "settings", "speculative"), 3),
    "max_tokens is a fraction": ((*LAST, "settings", "max_tokens"), 64.5),
    "max_tokens is true": ((*LAST, "settings", "max_tokens"), True),
    "max_tokens is null": ((*LAST, "settings", "max_tokens"), None),
    "seed is text": ((*LAST, "settings", "seed"), "7"),
    "shown leaf is text": ((*LAST, "shown_leaf_id"), "3"),
    "shown leaf is not in the conversation": ((*LAST, "shown_leaf_id"), 999_999),
    # the list of messages
    "messages are text": ((*LAST, "messages"), "Pick a number"),
    "messages are an object": ((*LAST, "messages"), {"1": {"content": "Pick a number"}}),
    "messages are null": ((*LAST, "messages"), None),
    "messages are missing": ((*LAST, "messages"), GONE),
    "a message is text": (REPLY, "Seven"),
    "a message is null": (REPLY, None),
    # a message's fields
    "id is text": ((*REPLY, "id"), "2"),
    "id is null": ((*REPLY, "id"), None),
    "id is a fraction": ((*REPLY, "id"), 1.5),
    "id is true": ((*REPLY, "id"), True),
    "id is missing": ((*REPLY, "id"), GONE),
    "parent is a list": ((*REPLY, "parent_id"), [1]),
    "parent is not in the file": ((*REPLY, "parent_id"), 999_999),
    "parent is missing": ((*REPLY, "parent_id"), GONE),
    "role is unknown": ((*REPLY, "role"), "robot"),
    "role is a list": ((*REPLY, "role"), ["assistant"]),
    "role is null": ((*REPLY, "role"), None),
    "content is a nested object": ((*REPLY, "content"), {"text": "Seven"}),
    "content is a list": ((*REPLY, "content"), ["Seven"]),
    "content is a number": ((*REPLY, "content"), 7),
    "content is missing": ((*REPLY, "content"), GONE),
    "status is unknown": ((*REPLY, "status"), "finished"),
    "status is a number": ((*REPLY, "status"), 1),
    "reason is unknown": ((*REPLY, "reason"), "because"),
    "reason is an object": ((*REPLY, "reason"), {}),
    "error is a list": ((*REPLY, "error"), ["boom"]),
    "error is null": ((*REPLY, "error"), None),
    "model is a number": ((*REPLY, "model"), 3),
    "prompt tokens are a list": ((*REPLY, "prompt_tokens"), [1, 2]),
    "prompt tokens are text": ((*REPLY, "prompt_tokens"), "12"),
    "prompt tokens are a fraction": ((*REPLY, "prompt_tokens"), 1.5),
    "prompt tokens are true": ((*REPLY, "prompt_tokens"), True),
    "completion tokens are an object": ((*REPLY, "completion_tokens"), {"n": 1}),
    "ttft is text": ((*REPLY, "ttft"), "fast"),
    "ttft is a list": ((*REPLY, "ttft"), [0.1]),
    "ttft is infinite": ((*REPLY, "ttft"), float("inf")),
    "speed is text": ((*REPLY, "tokens_per_s"), "many"),
    "speed is missing": ((*REPLY, "tokens_per_s"), GONE),
    "message created is null": ((*REPLY, "created"), None),
    "message updated is a list": ((*REPLY, "updated"), []),
    "message created is an object": ((*REPLY, "created"), {"year": 2025}),
    # personas (imported before the conversations)
    "personas are text": (("personas",), "Pirate"),
    "personas are an object": (("personas",), {"name": "Pirate"}),
    "a persona is text": (FIRST_PERSONA, "Pirate"),
    "persona name is a list": ((*FIRST_PERSONA, "name"), ["Pirate"]),
    "persona name is missing": ((*FIRST_PERSONA, "name"), GONE),
    "persona prompt is null": ((*FIRST_PERSONA, "system_prompt"), None),
    "persona settings are a list": ((*FIRST_PERSONA, "settings"), [5]),
    "persona top_p is text": ((*FIRST_PERSONA, "settings", "top_p"), "high"),
}


@pytest.mark.parametrize(("path", "value"), list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_value_of_the_wrong_type_anywhere_is_refused_in_words_and_writes_nothing(
    store: Store, document: dict[str, Any], path: tuple[Any, ...], value: Any
) -> None:
    before = database_dump(store)
    with pytest.raises(NotAnExport) as refused:
        import_conversations(store, broken(document, path, value))
    message = str(refused.value)
    assert message.startswith("This export file is damaged and was not imported")
    assert "Error" not in message and "Traceback" not in message  # no Python exception names
    assert database_dump(store) == before


def test_two_messages_with_the_same_number_are_refused(store: Store, document: dict[str, Any]) -> None:
    messages = document["conversations"][1]["messages"]
    messages[2]["id"] = messages[1]["id"]
    before = database_dump(store)
    with pytest.raises(NotAnExport):
        import_conversations(store, document)
    assert database_dump(store) == before


@pytest.mark.parametrize("data", [None, [], "slmchat-conversations", 7, {"version": 1, "conversations": []}])
def test_something_that_is_not_an_export_at_all_is_refused(store: Store, data: Any) -> None:
    before = database_dump(store)
    with pytest.raises(NotAnExport, match="not a slmchat conversation export"):
        import_conversations(store, data)
    assert database_dump(store) == before


def test_the_refusal_says_which_value_is_wrong_where(store: Store, document: dict[str, Any]) -> None:
    with pytest.raises(NotAnExport) as refused:
        import_conversations(store, broken(document, (*REPLY, "prompt_tokens"), [1, 2]))
    assert '"prompt_tokens" in conversation 2, message 2 should be a whole number' in str(refused.value)


def test_a_valid_export_still_imports_whole_with_newer_settings_fields_ignored(
    store: Store, document: dict[str, Any]
) -> None:
    document["conversations"][1]["settings"]["from_a_newer_version"] = {"anything": [1]}
    document["conversations"][1]["settings"]["temperature"] = 1  # a whole number is a number
    ids = import_conversations(store, document)
    assert [store.conversation(i).title for i in ids] == ["First chat", "Second chat"]
    assert store.conversation(ids[1]).settings == GenerationSettings(temperature=1.0, max_tokens=64)
    assert [m.content for m in store.branch(ids[1])] == ["Pick a letter"]
    assert store.conversation(ids[0]).persona_id is not None
