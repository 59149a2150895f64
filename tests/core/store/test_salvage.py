"""Salvage: a damaged database gives back every row it still holds, and the newest backup what
the damage took; the app starts on the result and says how much came back."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pydoc_data.topics
import pytest
from disk_limits import files_may_not_grow_past

from slmchat.core.errors import BackupFailed
from slmchat.core.store import backup
from slmchat.core.store.connection import open_recovering
from slmchat.core.store.salvage import RECOVERED_TITLE
from slmchat.core.store.store import Store

PAGE = 4096
PARAGRAPHS = sorted(
    paragraph.strip() for topic in pydoc_data.topics.topics.values()
    for paragraph in topic.split("\n\n") if len(paragraph.strip()) > 40
)  # real English prose (Python's own reference manual), some of it long enough to overflow a page


def chat(path: Path, messages: int, rng: random.Random, *, backup_after: int | None = None) -> None:
    """`messages` messages over a dozen conversations, of one to eight paragraphs each."""
    with Store(path) as store:
        conversations = [store.new_conversation().id for _ in range(12)]
        for number in range(messages):
            text = "\n\n".join(rng.choice(PARAGRAPHS) for _ in range(rng.choice([1, 1, 1, 2, 3, 8])))
            store.add_user_message(rng.choice(conversations), f"{number}: {text}")
            if number + 1 == backup_after:
                backup.make_backup(path)


def stored_messages(path: Path) -> dict[int, str]:
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, content FROM messages"))


def pages_of(path: Path, table: str, kind: str | None = None) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [row[0] for row in conn.execute(
            "SELECT pageno FROM dbstat WHERE name = ? AND (? IS NULL OR pagetype = ?) ORDER BY pageno",
            [table, kind, kind])]


def overwrite_pages(path: Path, pages: list[int], rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    for page in pages:
        data[(page - 1) * PAGE: page * PAGE] = rng.randbytes(PAGE)
    path.write_bytes(bytes(data))


def test_garbage_over_random_pages_loses_under_one_percent_with_the_newest_backup(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    rng = random.Random(20240611)
    chat(path, 1000, rng, backup_after=950)  # the day's last 50 messages are in no backup
    original = stored_messages(path)  # read before the damage, to compare with
    total_pages = path.stat().st_size // PAGE
    damaged = rng.sample(range(2, total_pages + 1), 8)
    assert set(damaged) & set(pages_of(path, "messages")), "the damage must hit the messages themselves"
    overwrite_pages(path, damaged, rng)

    db, recovery = open_recovering(path)
    recovered = stored_messages(path)
    db.close()

    intact = sum(1 for message_id, text in original.items() if recovered.get(message_id) == text)
    print(f"\nrecovered {intact / len(original):.1%} of {len(original)} messages "
          f"({recovery.messages_from_backup} from the backup); pages damaged: {sorted(damaged)} of {total_pages}")
    assert intact / len(original) >= 0.99
    assert all(original.get(message_id) == text for message_id, text in recovered.items())  # nothing garbled
    assert recovery.messages == len(recovered) and recovery.conversations == 12
    assert 0 < recovery.messages_from_backup < recovery.messages  # both sources were needed
    assert recovery.damaged_file.name.startswith("chats.corrupt-")
    assert "12 conversations" in recovery.describe() and str(recovery.damaged_file) in recovery.describe()


def test_rows_after_a_bad_page_are_read_even_without_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    chat(path, 300, random.Random(7))
    original = stored_messages(path)
    leaves = pages_of(path, "messages", "leaf")
    overwrite_pages(path, [leaves[len(leaves) // 3]], random.Random(8))  # one leaf, a third of the way in

    db, recovery = open_recovering(path)
    db.close()
    recovered = stored_messages(path)
    assert recovery is not None and recovery.backup is None
    lost = sorted(set(original) - set(recovered))
    assert 0 < len(lost) <= 12  # one leaf's worth of rows
    assert max(original) in recovered  # reading went on past the bad page, to the very end
    assert all(original[message_id] == text for message_id, text in recovered.items())


def test_messages_whose_conversation_was_lost_stay_visible_in_a_recovered_conversation(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    chat(path, 200, random.Random(3))
    original = stored_messages(path)
    overwrite_pages(path, pages_of(path, "conversations"), random.Random(4))  # every conversation row

    with Store(path) as store:
        conversations = store.conversations()
        assert {c.title for c in conversations} == {RECOVERED_TITLE}
        shown = {m.id: m.content for c in conversations for m in store.branch(c.id)}
        assert shown and all(original[message_id] == text for message_id, text in shown.items())
    assert stored_messages(path) == original


def test_a_salvage_that_hits_a_full_disk_leaves_the_damaged_file_in_place(tmp_path: Path) -> None:
    path = tmp_path / "chats.db"
    chat(path, 200, random.Random(5))
    overwrite_pages(path, pages_of(path, "messages", "leaf")[3:5], random.Random(6))
    damaged = path.read_bytes()

    with files_may_not_grow_past(len(damaged) // 4), pytest.raises(BackupFailed, match="disk may be full"):
        open_recovering(path)

    assert path.read_bytes() == damaged  # still where the next start will look for it
    assert [p.name for p in tmp_path.iterdir() if ".recovering" in p.name or ".corrupt-" in p.name] == []
    db, recovery = open_recovering(path)  # with room again, the next start salvages it
    db.close()
    assert recovery is not None and recovery.messages > 150
