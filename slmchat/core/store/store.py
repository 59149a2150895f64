"""The conversation store: SQLite through sqlite-utils, built so that no word is ever lost.

`Store` owns the one writing connection and belongs to one thread (the GUI thread). Long
reads (search, export, embedding back-fill) run on a worker with `store.reader()`, a separate
read-only connection: WAL lets readers work beside the writer. Never share a connection
between threads.

Messages form a tree. Editing a message or regenerating a reply adds a sibling, so nothing is
ever overwritten; each conversation remembers the leaf of the branch it shows.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from slmchat.core.errors import DatabaseBusy, DatabaseFull, StoreError
from slmchat.core.generation import GenerationSettings, GenerationStats, Role
from slmchat.core.store.connection import connect, connect_read_only, is_busy, open_recovering
from slmchat.core.store import backup as backups
from slmchat.core.store.reader import Reader
from slmchat.core.store.records import (
    STATUS_FOR_REASON,
    Conversation,
    Message,
    MessageStatus,
    Persona,
    check_sources,
    settings_to_json,
    sources_to_json,
    to_text,
    utc_now,
)
from slmchat.core.store.sqlite import Database
from slmchat.core.store.writers import Lease, sweep, writer_is_gone

__all__ = ["KEEP", "Reader", "Store", "auto_title", "purge_file"]

TITLE_LENGTH = 60
_T = TypeVar("_T")


class _Keep(enum.Enum):
    """Marks an argument of `update_conversation` that should stay as it is."""

    KEEP = 0


KEEP = _Keep.KEEP


def auto_title(text: str) -> str:
    """A title from the first line of the first message, cut at a word boundary."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = " ".join(line.split())
    if len(line) <= TITLE_LENGTH:
        return line
    cut = line[:TITLE_LENGTH].rsplit(" ", 1)[0] or line[:TITLE_LENGTH]
    return cut.rstrip(" ,.;:") + "…"


def purge_file(path: Path) -> bool:
    """`Store.purge` for a worker thread, on a writing connection of its own, closed after.

    The one exception to a single writer: the rewrite takes ~100 ms per 10 MB, too long for the
    GUI thread, and SQLite's locks make the GUI's writer wait for it (busy timeout) meanwhile.
    """
    db = connect(path)
    try:
        return _purge(db, path)
    finally:
        db.close()


def _purge(db: Database, path: Path) -> bool:
    for fts in ("messages_fts", "conversations_fts"):
        db.execute(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")
    db.vacuum()
    busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if path.is_file():
        backups.compact(path)
    return busy == 0


_SQLITE_FULL = 13


def _write(method: Callable[..., _T]) -> Callable[..., _T]:
    """A write of the Store: SQLite's "disk full" and "busy" become errors a user can act on.

    Either way SQLite has rolled the statement back (and `atomic()` blocks their transaction),
    so what was stored before is intact and the caller still holds what it meant to write.
    """

    @functools.wraps(method)
    def write(self: Store, *args: Any, **kwargs: Any) -> _T:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.OperationalError as error:
            if self.db.conn.in_transaction:
                self.db.conn.rollback()
            if error.sqlite_errorcode & 0xFF == _SQLITE_FULL:
                raise DatabaseFull(
                    "There is no room left on the disk for your conversations. Free some space and try "
                    "again: nothing already saved was lost.", detail=f"{self.path}: {error}") from error
            if is_busy(error):
                raise DatabaseBusy(
                    "Another program is holding the conversation database. Try again in a moment: "
                    "nothing already saved was lost.", detail=f"{self.path}: {error}") from error
            raise

    return write


class Store(Reader):
    """The conversation database, opened (checked, recovered, upgraded) for writing.

    After construction, `recovery` says what was salvaged when the file was found damaged (tell
    the user: `recovery.describe()`), and `interrupted` lists replies whose writing process died
    mid-reply, now marked interrupted with their text. Other processes may write the same file at
    the same time: the replies they are streaming are theirs (each is tagged with its writer's
    `Lease`) and are left alone.
    """

    def __init__(self, path: str | Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.path = Path(path)
        self._clock = clock
        db, self.recovery = open_recovering(self.path)
        super().__init__(db)
        self._lease = None if str(path) == ":memory:" else Lease(self.path)
        self.interrupted: list[int] = self.mark_abandoned_replies()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Several writes as one: all of them are stored, or (on any error) none. Nestable."""
        with self.db.atomic():
            yield

    def close(self) -> None:
        super().close()
        if self._lease is not None:
            self._lease.release()

    def reader(self) -> Reader:
        """A new read-only connection for one worker thread; close it when done."""
        return Reader(connect_read_only(self.path))

    def _now(self) -> str:
        return to_text(self._clock())

    @_write
    def mark_abandoned_replies(self) -> list[int]:
        """Mark interrupted, text kept, the streaming replies whose writer process is gone.

        Returns their ids. A reply streamed by a live process (this one or another) is left as it is.
        """
        streaming = self.db.execute("SELECT id, writer FROM messages WHERE status = 'streaming'").fetchall()
        writers = {writer for _id, writer in streaming}
        own = self._lease.name if self._lease else None
        gone = {writer for writer in writers
                if writer != own and (writer is None or writer_is_gone(self.path, writer))}
        abandoned = [message_id for message_id, writer in streaming if writer in gone]
        if abandoned:
            with self.db.atomic():
                self.db.conn.executemany(
                    "UPDATE messages SET status = 'interrupted', reason = 'interrupted', updated = ? "
                    "WHERE id = ? AND status = 'streaming'",
                    [(self._now(), message_id) for message_id in abandoned],
                )
        if self._lease is not None:
            sweep(self.path, writers - gone)
        return abandoned

    # --- conversations --------------------------------------------------------------------
    @_write
    def new_conversation(
        self,
        *,
        title: str = "",
        model: str = "",
        system_prompt: str = "",
        persona_id: int | None = None,
        settings: GenerationSettings | None = None,
    ) -> Conversation:
        now = self._now()
        cursor = self.db.execute(
            "INSERT INTO conversations (title, created, updated, model, system_prompt, persona_id, settings) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [title, now, now, model, system_prompt, persona_id, settings_to_json(settings)],
        )
        return self.conversation(int(cursor.lastrowid or 0))

    @_write
    def update_conversation(
        self,
        conversation_id: int,
        *,
        title: str | _Keep = KEEP,
        model: str | _Keep = KEEP,
        system_prompt: str | _Keep = KEEP,
        persona_id: int | None | _Keep = KEEP,
        settings: GenerationSettings | None | _Keep = KEEP,
        pinned: bool | _Keep = KEEP,
    ) -> Conversation:
        """Rename, pin, or change what the next reply uses. Does not reorder the sidebar."""
        changes: dict[str, Any] = {
            "title": title,
            "model": model,
            "system_prompt": system_prompt,
            "persona_id": persona_id,
            "pinned": pinned,
        }
        changes = {column: value for column, value in changes.items() if value is not KEEP}
        if settings is not KEEP:
            changes["settings"] = settings_to_json(settings)
        self.conversation(conversation_id)
        if changes:
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            self.db.execute(
                f"UPDATE conversations SET {assignments} WHERE id = :id", {**changes, "id": conversation_id}
            )
        return self.conversation(conversation_id)

    @_write
    def trash(self, conversation_id: int) -> None:
        """Move to the trash: hidden from the list and from search, restorable."""
        self.conversation(conversation_id)
        self.db.execute(
            "UPDATE conversations SET deleted_at = ? WHERE id = ?", [self._now(), conversation_id]
        )

    @_write
    def restore(self, conversation_id: int) -> None:
        """Undo `trash`."""
        self.conversation(conversation_id)
        self.db.execute("UPDATE conversations SET deleted_at = NULL WHERE id = ?", [conversation_id])

    @_write
    def delete_forever(self, conversation_id: int) -> None:
        """Delete a trashed conversation with its messages, search index rows and embeddings.

        The words can linger in free pages of the file, and in the backups, until `purge()`.
        """
        if self.conversation(conversation_id).deleted_at is None:
            raise StoreError("Only conversations in the trash can be deleted for good.")
        self.db.execute("DELETE FROM conversations WHERE id = ?", [conversation_id])
        self._forget_in_backups([conversation_id])

    @_write
    def empty_trash(self) -> int:
        """Delete every trashed conversation for good; returns how many."""
        trashed = [row[0] for row in self.db.execute("SELECT id FROM conversations WHERE deleted_at IS NOT NULL")]
        with self.db.atomic():
            self.db.execute("DELETE FROM conversations WHERE deleted_at IS NOT NULL")
        self._forget_in_backups(trashed)
        return len(trashed)

    def _forget_in_backups(self, conversation_ids: list[int]) -> None:
        if conversation_ids and self._lease is not None:  # a file, not ":memory:"
            backups.forget(self.path, conversation_ids)

    def purge(self) -> bool:
        """Rewrite the file so deleted text is gone from its bytes; True when fully done.

        Merging the search indexes drops their deleted entries, VACUUM rebuilds the file without
        free pages, and a truncating checkpoint empties the write-ahead log. It takes time on a
        big database (it rewrites the whole file): run it after emptying the trash, not per
        message. False means an open reader kept the log from being emptied; run it again later.
        """
        return _purge(self.db, self.path)

    # --- messages -------------------------------------------------------------------------
    @_write
    def add_user_message(self, conversation_id: int, text: str) -> Message:
        """Append what the user typed to the shown branch, committed before anything else runs."""
        return self._add(
            conversation_id, self._shown_leaf(conversation_id), Role.USER, text, MessageStatus.COMPLETE
        )

    @_write
    def edit_message(self, message_id: int, text: str) -> Message:
        """Edit-and-resend: a new sibling with the new text, shown; the original is kept."""
        original = self.message(message_id)
        return self._add(
            original.conversation_id, original.parent_id, original.role, text, MessageStatus.COMPLETE
        )

    @_write
    def start_reply(self, conversation_id: int, *, model: str = "") -> Message:
        """An empty streaming assistant message after the shown leaf; checkpoint it as it grows."""
        return self._add(
            conversation_id, self._shown_leaf(conversation_id), Role.ASSISTANT, "", MessageStatus.STREAMING, model
        )

    @_write
    def regenerate(self, message_id: int, *, model: str = "") -> Message:
        """A new streaming reply beside an existing one (same parent); the old one is kept."""
        original = self.message(message_id)
        return self._add(
            original.conversation_id, original.parent_id, Role.ASSISTANT, "", MessageStatus.STREAMING, model
        )

    @_write
    def checkpoint(self, message_id: int, text: str, *, thinking: str = "",
                   thinking_seconds: float | None = None) -> None:
        """Save a streaming reply so far: its answer `text` and, from a thinking model, its
        `thinking` apart (callers throttle this to about once a second)."""
        cursor = self.db.execute(
            "UPDATE messages SET content = ?, thinking = ?, thinking_seconds = ?, updated = ? "
            "WHERE id = ? AND status = 'streaming'",
            [text, thinking or None, thinking_seconds, self._now(), message_id],
        )
        if cursor.rowcount != 1:
            raise self._not_streaming(message_id)

    @_write
    def finish_reply(self, message_id: int, text: str, stats: GenerationStats, *, thinking: str = "",
                     thinking_seconds: float | None = None) -> Message:
        """Store the final answer `text` (and thinking, apart), how the reply ended, and
        llama.cpp's counts and timings."""
        now = self._now()
        with self.db.atomic():
            cursor = self.db.execute(
                "UPDATE messages SET content = ?, thinking = ?, thinking_seconds = ?, status = ?, reason = ?, "
                "error = ?, prompt_tokens = ?, completion_tokens = ?, ttft = ?, tokens_per_s = ?, updated = ? "
                "WHERE id = ? AND status = 'streaming'",
                [
                    text,
                    thinking or None,
                    thinking_seconds,
                    STATUS_FOR_REASON[stats.finish_reason].value,
                    stats.finish_reason.value,
                    stats.error,
                    stats.prompt_tokens,
                    stats.completion_tokens,
                    stats.time_to_first_token_s,
                    stats.decode_tokens_per_s,
                    now,
                    message_id,
                ],
            )
            if cursor.rowcount != 1:
                raise self._not_streaming(message_id)
            self.db.execute(
                "UPDATE conversations SET updated = ? WHERE id = "
                "(SELECT conversation_id FROM messages WHERE id = ?)",
                [now, message_id],
            )
        return self.message(message_id)

    @_write
    def set_sources(self, message_id: int, sources: list[dict[str, Any]]) -> Message:
        """Record the documents a reply cites (each with text "file", "place" and "snippet"),
        replacing any set before; an empty list clears them. A reply's sources may be set while
        it streams or after it ended: they are facts about it, not its text."""
        try:
            checked = check_sources(sources)
        except ValueError as error:
            raise StoreError("These sources cannot be stored with the reply.", detail=str(error)) from None
        self.message(message_id)
        self.db.execute("UPDATE messages SET sources = ? WHERE id = ?", [sources_to_json(checked), message_id])
        return self.message(message_id)

    @_write
    def select(self, message_id: int) -> list[Message]:
        """Switch branch: show `message_id` and, below it, its newest leaf. Returns the branch."""
        message = self.message(message_id)
        self.db.execute(
            "UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
            [self.latest_leaf(message_id), message.conversation_id],
        )
        return self.branch(message.conversation_id)

    def _add(
        self,
        conversation_id: int,
        parent_id: int | None,
        role: Role,
        text: str,
        status: MessageStatus,
        model: str = "",
    ) -> Message:
        now = self._now()
        writer = self._lease.name if self._lease and status is MessageStatus.STREAMING else None
        with self.db.atomic():
            cursor = self.db.execute(
                "INSERT INTO messages (conversation_id, parent_id, role, content, status, model, writer, "
                "created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [conversation_id, parent_id, role.value, text, status.value, model, writer, now, now],
            )
            message_id = int(cursor.lastrowid or 0)
            self.db.execute(
                "UPDATE conversations SET current_leaf_id = ?, updated = ? WHERE id = ?",
                [message_id, now, conversation_id],
            )
            if role is Role.USER:
                self.db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ''",
                    [auto_title(text), conversation_id],
                )
        return self.message(message_id)

    def _not_streaming(self, message_id: int) -> StoreError:
        status = self.message(message_id).status.value
        return StoreError(
            "This reply has already ended and cannot be changed.", detail=f"message {message_id} is {status}"
        )

    # --- personas and settings ------------------------------------------------------------
    @_write
    def add_persona(
        self, name: str, system_prompt: str = "", settings: GenerationSettings | None = None
    ) -> Persona:
        now = self._now()
        cursor = self.db.execute(
            "INSERT INTO personas (name, system_prompt, settings, created, updated) VALUES (?, ?, ?, ?, ?)",
            [name, system_prompt, settings_to_json(settings), now, now],
        )
        return self.persona(int(cursor.lastrowid or 0))

    @_write
    def update_persona(
        self, persona_id: int, *, name: str, system_prompt: str, settings: GenerationSettings | None
    ) -> Persona:
        self.persona(persona_id)
        self.db.execute(
            "UPDATE personas SET name = ?, system_prompt = ?, settings = ?, updated = ? WHERE id = ?",
            [name, system_prompt, settings_to_json(settings), self._now(), persona_id],
        )
        return self.persona(persona_id)

    @_write
    def delete_persona(self, persona_id: int) -> None:
        """Conversations that used it keep their own copy of the system prompt."""
        self.persona(persona_id)
        self.db.execute("DELETE FROM personas WHERE id = ?", [persona_id])

    @_write
    def write_settings(self, values: dict[str, Any]) -> None:
        """Store JSON-able values by key, all in one transaction."""
        with self.db.atomic():
            for key, value in values.items():
                self.db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [key, json.dumps(value)],
                )
