"""The conversation store: branches, streaming replies, search, trash, deletion, recovery, export."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from slmchat.core.errors import NotFound, StoreError
from slmchat.core.generation import (
    FinishReason,
    GenerationSettings,
    GenerationStats,
    Role,
)
from slmchat.core.store import connection
from slmchat.core.store.export import (
    NotAnExport,
    conversation_dict,
    conversation_markdown,
    export_all,
    export_conversations,
    import_conversations,
)
from slmchat.core.store.recording import Checkpointer, begin_turn, history_for_engine
from slmchat.core.store.records import MessageStatus
from slmchat.core.store.store import Store, auto_title
from slmchat.paths import Paths, read_data_folder, write_data_folder
from slmchat.settings import Settings, load_settings, save_settings


class FakeClock:
    """Wall clock for the store that moves only when told, so order and ages are exact."""

    def __init__(self) -> None:
        self.now = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / "chats.db", clock=FakeClock())
    yield opened
    opened.close()


def reply(store: Store, conversation_id: int, text: str, **stats: object) -> int:
    message = store.start_reply(conversation_id, model="smol")
    store.finish_reply(message.id, text, GenerationStats(**stats))
    return message.id


def contents(messages: list) -> list[str]:
    return [message.content for message in messages]


# --- opening ------------------------------------------------------------------------------
def test_a_new_database_uses_wal_and_enforces_foreign_keys(store: Store) -> None:
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.recovery is None and store.interrupted == []
    with pytest.raises(sqlite3.IntegrityError):
        store.db.execute(
            "INSERT INTO messages (conversation_id, role, status, created, updated) "
            "VALUES (999, 'user', 'complete', 'x', 'x')"
        )


@pytest.mark.parametrize("damage", ["garbage file", "torn pages"])
def test_a_damaged_database_is_set_aside_untouched_and_what_it_held_is_salvaged(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "chats.db"
    if damage == "garbage file":
        path.write_bytes(b"not a database, just words " * 500)
    else:
        with Store(path) as old:
            for number in range(30):
                old.add_user_message(old.new_conversation().id, f"message {number} " * 200)
        data = bytearray(path.read_bytes())
        for page_start in range(4096, len(data), 3 * 4096):  # wreck some b-tree page headers
            data[page_start : page_start + 64] = b"\xde\xad" * 32
        path.write_bytes(bytes(data))
    damaged_digest = hashlib.sha256(path.read_bytes()).hexdigest()

    with Store(path) as store:
        damaged = store.recovery.damaged_file
        assert damaged.parent == tmp_path and ".corrupt-" in damaged.name
        assert hashlib.sha256(damaged.read_bytes()).hexdigest() == damaged_digest
        assert len(store.conversations()) == store.recovery.conversations  # what salvage could read
        conversation = store.new_conversation()
        store.add_user_message(conversation.id, "life goes on")
    with Store(path) as reopened:
        assert reopened.recovery is None
        assert contents(reopened.branch(conversation.id)) == ["life goes on"]


def test_a_damaged_database_is_set_aside_with_its_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    path.write_bytes(b"\x00garbage" * 1000)
    Path(f"{path}-wal").write_bytes(b"log bytes")
    with Store(path) as store:
        assert Path(f"{store.recovery.damaged_file}-wal").read_bytes() == b"log bytes"


def test_a_locked_database_is_reported_not_set_aside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chats.db"
    Store(path).close()
    monkeypatch.setattr(connection, "BUSY_TIMEOUT_S", 0.1)
    holder = sqlite3.connect(path)
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="cannot be opened"):
            Store(path)
    finally:
        holder.close()
    assert [p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name] == []


# --- the message tree ---------------------------------------------------------------------
def test_the_first_user_message_titles_the_conversation_until_renamed(store: Store) -> None:
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "\n  How do   tides work?\nAnd why twice a day?")
    assert store.conversation(conversation.id).title == "How do tides work?"
    store.update_conversation(conversation.id, title="Tides")
    store.add_user_message(conversation.id, "Another question")
    assert store.conversation(conversation.id).title == "Tides"
    assert auto_title("word " * 40).endswith("…") and len(auto_title("word " * 40)) <= 61


def test_regenerate_and_edit_create_siblings_and_never_overwrite(store: Store) -> None:
    conversation = store.new_conversation()
    question = store.add_user_message(conversation.id, "Name a colour")
    first = reply(store, conversation.id, "Red")
    second = store.regenerate(first, model="smol")
    store.finish_reply(second.id, "Blue", GenerationStats())
    assert contents(store.branch(conversation.id)) == ["Name a colour", "Blue"]
    assert [m.id for m in store.siblings(first)] == [first, second.id]

    follow_up = store.add_user_message(conversation.id, "Why blue?")
    reply(store, conversation.id, "The sky")
    edited = store.edit_message(question.id, "Name a fruit")
    assert edited.parent_id is None and edited.id != question.id
    reply(store, conversation.id, "Apple")
    assert contents(store.branch(conversation.id)) == ["Name a fruit", "Apple"]

    # switching back to the first question follows its newest leaf: the "Why blue?" thread
    assert contents(store.select(question.id)) == ["Name a colour", "Blue", "Why blue?", "The sky"]
    assert contents(store.select(first)) == ["Name a colour", "Red"]
    assert store.conversation(conversation.id).current_leaf_id == first
    # every text ever written is still there
    assert sorted(contents(store.messages(conversation.id))) == sorted(
        ["Name a colour", "Red", "Blue", "Why blue?", "The sky", "Name a fruit", "Apple"]
    )
    assert store.message(follow_up.id).parent_id == second.id


def test_the_shown_branch_survives_reopening(tmp_path: Path) -> None:
    with Store(tmp_path / "chats.db") as store:
        conversation = store.new_conversation()
        store.add_user_message(conversation.id, "Hi")
        first = reply(store, conversation.id, "Hello")
        newer = store.regenerate(first)
        store.finish_reply(newer.id, "Howdy", GenerationStats())
        store.select(first)
    with Store(tmp_path / "chats.db") as reopened:
        assert contents(reopened.branch(conversation.id)) == ["Hi", "Hello"]
        assert contents(reopened.siblings(first)) == ["Hello", "Howdy"]


def test_unknown_ids_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.conversation(42)
    with pytest.raises(NotFound):
        store.add_user_message(42, "nobody home")
    with pytest.raises(NotFound):
        store.select(42)


# --- streaming replies --------------------------------------------------------------------
def test_a_reply_streams_through_checkpoints_to_its_final_status_and_figures(store: Store) -> None:
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "Count")
    message = store.start_reply(conversation.id, model="smol")
    assert message.status is MessageStatus.STREAMING and message.content == ""
    store.checkpoint(message.id, "one two")
    assert store.message(message.id).content == "one two"
    stats = GenerationStats(
        FinishReason.LENGTH,
        prompt_tokens=12,
        completion_tokens=3,
        time_to_first_token_s=0.25,
        decode_tokens_per_s=41.5,
    )
    final = store.finish_reply(message.id, "one two three", stats)
    assert (final.status, final.reason, final.content) == (
        MessageStatus.COMPLETE,
        FinishReason.LENGTH,
        "one two three",
    )
    assert (final.prompt_tokens, final.completion_tokens, final.ttft, final.tokens_per_s) == (
        12,
        3,
        0.25,
        41.5,
    )
    with pytest.raises(StoreError):
        store.checkpoint(message.id, "overwrite a finished reply")
    assert store.message(message.id).content == "one two three"


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (FinishReason.STOPPED, MessageStatus.STOPPED),
        (FinishReason.ERROR, MessageStatus.ERROR),
        (FinishReason.DONE, MessageStatus.COMPLETE),
        (FinishReason.INTERRUPTED, MessageStatus.INTERRUPTED),
    ],
)
def test_how_a_reply_ended_is_stored(store: Store, reason: FinishReason, status: MessageStatus) -> None:
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "Go")
    message = store.start_reply(conversation.id)
    final = store.finish_reply(
        message.id, "partial", GenerationStats(reason, error="boom" * (reason is FinishReason.ERROR))
    )
    assert (final.status, final.reason, final.content) == (status, reason, "partial")
    assert final.error == ("boom" if reason is FinishReason.ERROR else "")


def test_replies_left_streaming_are_interrupted_at_open_with_their_text(tmp_path: Path) -> None:
    with Store(tmp_path / "chats.db") as store:
        conversation = store.new_conversation()
        store.add_user_message(conversation.id, "Tell a story")
        message = store.start_reply(conversation.id)
        store.checkpoint(message.id, "Once upon a time")
    with Store(tmp_path / "chats.db") as reopened:
        assert reopened.interrupted == [message.id]
        recovered = reopened.message(message.id)
        assert (recovered.status, recovered.reason) == (MessageStatus.INTERRUPTED, FinishReason.INTERRUPTED)
        assert recovered.content == "Once upon a time"


def test_the_checkpointer_saves_at_most_once_per_interval(store: Store) -> None:
    ticks = iter([0.0, 0.3, 0.6, 1.1, 1.5, 2.2, 2.5])
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "Go")
    message = store.start_reply(conversation.id)
    checkpointer = Checkpointer(store, message.id, interval_s=1.0, clock=lambda: next(ticks))
    saved_texts = []
    for piece in "abcdef":
        if checkpointer.append(piece):
            saved_texts.append(store.message(message.id).content)
    assert saved_texts == ["a", "abcd", "abcdef"]  # at t=0, t=1.1 and t=2.2
    checkpointer.append("g")
    assert store.message(message.id).content == "abcdef"
    assert checkpointer.finish(GenerationStats()).content == "abcdefg"


def test_a_chat_turn_commits_the_prompt_before_the_reply_and_stores_a_stop(store: Store) -> None:
    with pytest.raises(KeyboardInterrupt):
        with begin_turn(store, "Explain rainbows", model="smol", system_prompt="Be brief.") as turn:
            assert store.message(turn.user_message.id).content == "Explain rainbows"
            assert turn.messages[0].role is Role.SYSTEM and turn.messages[-1].content == "Explain rainbows"
            turn.append("Light ")
            raise KeyboardInterrupt
    stopped = store.message(turn.reply.id)
    assert (stopped.status, stopped.content) == (MessageStatus.STOPPED, "Light ")

    with begin_turn(store, "And halos?", conversation_id=turn.conversation_id, model="smol") as second:
        second.append("Ice crystals.")
        second.finish(GenerationStats(completion_tokens=3))
    assert [(m.role, m.content) for m in history_for_engine(store, turn.conversation_id)] == [
        (Role.SYSTEM, "Be brief."),
        (Role.USER, "Explain rainbows"),
        (Role.ASSISTANT, "Light "),
        (Role.USER, "And halos?"),
        (Role.ASSISTANT, "Ice crystals."),
    ]


def test_a_failed_chat_turn_is_stored_as_an_error(store: Store) -> None:
    with pytest.raises(RuntimeError):
        with begin_turn(store, "Hi") as turn:
            raise RuntimeError("the engine crashed")
    failed = store.message(turn.reply.id)
    assert (failed.status, failed.error) == (MessageStatus.ERROR, "the engine crashed")
    assert [m.role for m in history_for_engine(store, turn.conversation_id)] == [Role.USER]


# --- search, trash, deletion --------------------------------------------------------------
def test_search_finds_words_in_old_messages_and_titles_with_highlights(store: Store) -> None:
    old = store.new_conversation()
    store.add_user_message(old.id, "What do octopuses eat?")
    reply(store, old.id, "Octopuses mostly eat crabs, shrimp and other shellfish.")
    for number in range(50):  # many newer conversations that do not mention it
        store.add_user_message(store.new_conversation().id, f"filler question {number}")
    hits = store.search("shellfish")
    assert [(h.conversation_id, h.role) for h in hits] == [(old.id, Role.ASSISTANT)]
    assert "[shellfish]" in hits[0].snippet
    title_hits = [h for h in store.search("octopus") if h.message_id is None]
    assert [h.snippet for h in title_hits] == ["What do [octopuses] eat?"]  # stemmed: octopus
    assert store.search("shell", marks=("<b>", "</b>"))[0].snippet.count("<b>shellfish</b>") == 1
    assert store.search('shrimp" AND -') != [] and store.search("?!") == []


def test_search_follows_edits_checkpoints_and_renames(store: Store) -> None:
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "Question")
    message = store.start_reply(conversation.id)
    store.checkpoint(message.id, "early draft about volcanoes")
    assert store.search("volcanoes")
    store.finish_reply(message.id, "final text about glaciers", GenerationStats())
    assert store.search("volcanoes") == [] and store.search("glaciers")
    store.update_conversation(conversation.id, title="Ice and fire")
    assert [h.conversation_id for h in store.search("fire") if h.message_id is None] == [conversation.id]


def test_trash_hides_from_list_and_search_and_restore_brings_back(store: Store) -> None:
    kept = store.new_conversation()
    store.add_user_message(kept.id, "keep me")
    binned = store.new_conversation()
    store.add_user_message(binned.id, "the zeppelin question")
    store.trash(binned.id)
    assert [c.id for c in store.conversations()] == [kept.id]
    assert [c.id for c in store.conversations(trashed=True)] == [binned.id]
    assert store.search("zeppelin") == []
    store.restore(binned.id)
    assert {c.id for c in store.conversations()} == {kept.id, binned.id}
    assert [h.message_id is not None for h in store.search("zeppelin")] == [False, True]


def test_the_list_puts_pinned_first_then_the_most_recent(store: Store) -> None:
    first, second, third = (store.new_conversation(title=t) for t in ("a", "b", "c"))
    store.add_user_message(first.id, "bump")
    store.update_conversation(third.id, pinned=True)
    assert [c.title for c in store.conversations()] == ["c", "a", "b"]
    assert [c.title for c in store.conversations(limit=1)] == ["c"]


SECRET = "Quetzalcoatlus sunflowerseed"


def test_delete_forever_removes_messages_index_rows_embeddings_and_purge_clears_the_bytes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "chats.db"
    store = Store(path)
    other = store.new_conversation()
    store.add_user_message(other.id, "an ordinary chat")
    secret = store.new_conversation()
    message = store.add_user_message(secret.id, f"my password hint is {SECRET}")
    reply(store, secret.id, f"I will remember {SECRET}.")
    vector = np.arange(4, dtype="<f4")
    store.db.execute("INSERT INTO embeddings VALUES (?, 'mini', 4, ?, 'now')", [message.id, vector.tobytes()])

    def file_bytes() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("chats.db") and p.is_file())

    assert SECRET.encode() in file_bytes()
    with pytest.raises(StoreError):
        store.delete_forever(secret.id)  # only from the trash
    store.trash(secret.id)
    store.delete_forever(secret.id)
    assert (
        store.db.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", [secret.id]).fetchone()[0]
        == 0
    )
    assert store.db.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 0
    assert (
        store.db.execute(
            "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH 'sunflowerseed'"
        ).fetchone()[0]
        == 0
    )
    assert store.search("Quetzalcoatlus") == []
    assert SECRET.encode() in file_bytes()  # deleted rows linger in free pages and the log...

    assert store.purge() is True  # ...until purged
    leftover = file_bytes().lower()
    for word in SECRET.lower().split():  # the index holds stems: look for the first 8 letters
        assert word[:8].encode() not in leftover
    assert b"password hint" not in leftover
    assert contents(store.branch(other.id)) == ["an ordinary chat"]
    store.close()


def test_empty_trash_deletes_only_trashed_conversations(store: Store) -> None:
    kept, gone = store.new_conversation(), store.new_conversation()
    store.trash(gone.id)
    assert store.empty_trash() == 1
    assert [c.id for c in store.conversations()] == [kept.id]
    with pytest.raises(NotFound):
        store.conversation(gone.id)


# --- threads ------------------------------------------------------------------------------
def test_a_worker_thread_reads_through_its_own_read_only_connection(store: Store) -> None:
    conversation = store.new_conversation()
    store.add_user_message(conversation.id, "written by the GUI thread about penguins")
    results: dict[str, object] = {}

    def worker() -> None:
        with store.reader() as reader:
            results["hits"] = [h.message_id for h in reader.search("penguins") if h.message_id]
            try:
                reader.db.execute("DELETE FROM messages")
            except sqlite3.OperationalError as error:
                results["write"] = str(error)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(timeout=30)
    assert results["hits"] == [store.branch(conversation.id)[0].id]
    assert "readonly" in str(results["write"]) or "read-only" in str(results["write"])
    assert len(store.messages(conversation.id)) == 1


# --- personas and settings ----------------------------------------------------------------
def test_personas_are_stored_and_a_deleted_one_leaves_conversations_intact(store: Store) -> None:
    pirate = store.add_persona("Pirate", "Talk like a pirate.", GenerationSettings(temperature=1.2))
    conversation = store.new_conversation(persona_id=pirate.id, system_prompt=pirate.system_prompt)
    assert store.personas() == [pirate] and pirate.settings == GenerationSettings(temperature=1.2)
    renamed = store.update_persona(pirate.id, name="Captain", system_prompt="Arr.", settings=None)
    assert (renamed.name, renamed.settings) == ("Captain", None)
    store.delete_persona(pirate.id)
    kept = store.conversation(conversation.id)
    assert (kept.persona_id, kept.system_prompt) == (None, "Talk like a pirate.")


def test_settings_round_trip_and_tolerate_unknown_and_missing_keys(store: Store) -> None:
    assert load_settings(store) == Settings()
    chosen = Settings(theme="dark", generation=GenerationSettings(top_k=7, seed=3), send_on_enter=False)
    save_settings(store, chosen)
    store.write_settings({"from_the_future": 1, "generation": {"top_k": 7, "seed": 3, "new_knob": 2}})
    assert load_settings(store) == chosen


def test_the_data_folder_choice_lives_in_a_config_file(tmp_path: Path) -> None:
    paths = Paths.at(tmp_path / "home")
    assert read_data_folder(paths) is None
    write_data_folder(paths, tmp_path / "elsewhere")
    assert read_data_folder(paths) == tmp_path / "elsewhere"
    write_data_folder(paths, None)
    assert read_data_folder(paths) is None


# --- export and import --------------------------------------------------------------------
def build_branched_conversation(store: Store) -> int:
    conversation = store.new_conversation(
        model="smol", system_prompt="Be kind.", settings=GenerationSettings(temperature=0.2)
    )
    question = store.add_user_message(conversation.id, "Pick a number")
    first = reply(store, conversation.id, "Seven", prompt_tokens=9, completion_tokens=1)
    store.regenerate(first)  # left streaming: exports must carry it too
    store.select(first)
    store.add_user_message(conversation.id, "Why seven?")
    reply(store, conversation.id, "It is *prime*.", time_to_first_token_s=0.1)
    store.edit_message(question.id, "Pick a letter")
    store.select(question.id)
    return conversation.id


def normalised(document: dict) -> dict:
    """The export with message ids replaced by their position, as ids differ after import."""
    out = json.loads(json.dumps(document))
    for conversation in out["conversations"]:
        position = {m["id"]: index for index, m in enumerate(conversation["messages"])}
        for m in conversation["messages"]:
            m["id"], m["parent_id"] = position[m["id"]], position.get(m["parent_id"])
        conversation["shown_leaf_id"] = position.get(conversation["shown_leaf_id"])
    return out


@pytest.mark.parametrize("whole_tree", [True, False])
def test_export_then_import_round_trips(store: Store, whole_tree: bool) -> None:
    conversation_id = build_branched_conversation(store)
    store.finish_reply(store.messages(conversation_id)[2].id, "Nine", GenerationStats())
    exported = export_conversations(store, [conversation_id], whole_tree=whole_tree)
    (new_id,) = import_conversations(store, json.loads(json.dumps(exported)))
    assert new_id != conversation_id
    again = export_conversations(store, [new_id], whole_tree=whole_tree)
    assert normalised(again) == normalised(exported)
    assert contents(store.branch(new_id)) == contents(store.branch(conversation_id))


def test_a_reply_exported_while_streaming_imports_as_interrupted(store: Store) -> None:
    conversation_id = build_branched_conversation(store)
    (new_id,) = import_conversations(store, export_conversations(store, [conversation_id]))
    statuses = [m.status for m in store.messages(new_id)]
    assert MessageStatus.STREAMING not in statuses and MessageStatus.INTERRUPTED in statuses


def test_export_all_restores_conversations_trash_and_personas_into_a_new_database(
    store: Store, tmp_path: Path
) -> None:
    pirate = store.add_persona("Pirate", "Talk like a pirate.", GenerationSettings(top_k=5))
    first = build_branched_conversation(store)
    store.finish_reply(store.messages(first)[2].id, "Nine", GenerationStats())  # none left streaming
    store.update_conversation(first, persona_id=pirate.id)
    binned = store.new_conversation(title="binned")
    store.trash(binned.id)
    everything = json.loads(json.dumps(export_all(store)))
    assert [c["title"] for c in everything["conversations"]] == ["Pick a number", "binned"]

    with Store(tmp_path / "restored.db") as restored:
        ids = import_conversations(restored, everything)
        assert [c.title for c in restored.conversations()] == ["Pick a number"]
        assert [c.title for c in restored.conversations(trashed=True)] == ["binned"]
        (persona,) = restored.personas()
        assert (persona.name, persona.settings) == ("Pirate", GenerationSettings(top_k=5))
        assert restored.conversation(ids[0]).persona_id == persona.id
        assert normalised(export_all(restored)) == normalised(everything)
        import_conversations(restored, everything)
        assert len(restored.personas()) == 1  # a second import adds conversations, not personas


def test_markdown_shows_the_branch_or_the_numbered_tree(store: Store) -> None:
    conversation_id = build_branched_conversation(store)
    shown = conversation_markdown(store, conversation_id)
    assert shown.startswith("# Pick a number\n")
    assert "## System prompt\n\nBe kind." in shown
    assert "## Assistant · smol\n\nIt is *prime*." in shown and "Pick a letter" not in shown
    tree = conversation_markdown(store, conversation_id, whole_tree=True)
    assert "## User (1)\n\nPick a number" in tree and "## User (2)\n\nPick a letter" in tree
    assert "## Assistant (1.2)" in tree and "*(streaming)*" in tree


@pytest.mark.parametrize(
    "document",
    [
        {"format": "something else"},
        {"format": "slmchat-conversations", "version": 99, "conversations": []},
        {"format": "slmchat-conversations", "version": 1, "conversations": [{"title": "no messages key"}]},
    ],
)
def test_import_refuses_what_is_not_a_valid_export_and_imports_nothing(store: Store, document: dict) -> None:
    with pytest.raises(NotAnExport):
        import_conversations(store, document)
    assert store.conversations() == []


def test_import_refuses_a_message_whose_parent_is_missing(store: Store) -> None:
    document = export_conversations(store, [build_branched_conversation(store)])
    document["conversations"][0]["messages"][1]["parent_id"] = 12345
    before = len(store.conversations())
    with pytest.raises(NotAnExport):
        import_conversations(store, document)
    assert len(store.conversations()) == before


def test_conversation_dict_keeps_settings_and_counts(store: Store) -> None:
    data = conversation_dict(store, build_branched_conversation(store))
    assert data["settings"]["temperature"] == 0.2
    assert data["messages"][0]["role"] == "user"
