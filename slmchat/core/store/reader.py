"""Read-only queries over the conversation database: lists, branches, search, personas.

A `Reader` wraps one connection and is used by one thread: the `Store` (which adds the writes)
on the GUI thread, or a read-only one from `Store.reader()` on a worker.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, TypeVar

from slmchat.core.errors import NotFound
from slmchat.core.generation import Role
from slmchat.core.store.records import (
    Conversation,
    Message,
    Persona,
    SearchHit,
    conversation_from_row,
    message_from_row,
    persona_from_row,
)
from slmchat.core.store.sqlite import Database

_R = TypeVar("_R", bound="Reader")
_WORD = re.compile(r"\w+", re.UNICODE)

_BRANCH_SQL = """
    WITH RECURSIVE path(id, depth) AS (
        SELECT :leaf, 0
        UNION ALL
        SELECT messages.parent_id, path.depth + 1 FROM messages JOIN path ON messages.id = path.id
        WHERE messages.parent_id IS NOT NULL
    )
    SELECT messages.* FROM path JOIN messages ON messages.id = path.id ORDER BY path.depth DESC
"""
_LATEST_LEAF_SQL = """
    WITH RECURSIVE subtree(id) AS (
        SELECT :root
        UNION ALL
        SELECT messages.id FROM messages JOIN subtree ON messages.parent_id = subtree.id
    )
    SELECT max(id) FROM subtree
"""
_SEARCH_TITLES_SQL = """
    SELECT c.id, c.title, c.updated, highlight(conversations_fts, 0, :open, :close) AS snippet
    FROM conversations_fts JOIN conversations c ON c.id = conversations_fts.rowid
    WHERE conversations_fts MATCH :query AND c.deleted_at IS NULL
    ORDER BY conversations_fts.rowid DESC LIMIT :limit
"""
_SEARCH_MESSAGES_SQL = """
    SELECT m.id, m.conversation_id, m.role, m.created, c.title,
           snippet(messages_fts, :column, :open, :close, '…', 12) AS snippet
    FROM messages_fts
    JOIN messages m ON m.id = messages_fts.rowid
    JOIN conversations c ON c.id = m.conversation_id
    WHERE messages_fts MATCH :query AND c.deleted_at IS NULL
    ORDER BY messages_fts.rowid DESC LIMIT :limit
"""
# The columns of messages_fts, searched one at a time: a message's text (a reply's answer), and
# a reply's thinking.
_MESSAGE_COLUMNS = ("content", "thinking")


def fts_query(text: str) -> str:
    """The user's words as a safe FTS5 query: every word required, the last one as a prefix.

    Punctuation never reaches FTS5 (where `"`, `*`, `AND` and `-` have meanings), and the
    prefix on the last word lets the sidebar search as the user types.
    """
    words = _WORD.findall(text)
    if not words:
        return ""
    return " ".join(f'"{word}"' for word in words) + "*"


class Reader:
    """Queries over the conversation database on one connection, used by one thread."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- conversations --------------------------------------------------------------------
    def conversation(self, conversation_id: int) -> Conversation:
        return conversation_from_row(self._row("conversations", conversation_id))

    def conversations(self, *, trashed: bool = False, limit: int | None = None) -> list[Conversation]:
        """The sidebar's list: pinned first, then the most recently active."""
        where = "deleted_at IS NOT NULL" if trashed else "deleted_at IS NULL"
        sql = f"SELECT * FROM conversations WHERE {where} ORDER BY pinned DESC, updated DESC, id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [conversation_from_row(row) for row in self.db.query(sql)]

    # --- messages -------------------------------------------------------------------------
    def message(self, message_id: int) -> Message:
        return message_from_row(self._row("messages", message_id))

    def messages(self, conversation_id: int) -> list[Message]:
        """Every message of the conversation (the whole tree), oldest first."""
        self.conversation(conversation_id)
        rows = self.db.query(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", [conversation_id]
        )
        return [message_from_row(row) for row in rows]

    def branch(self, conversation_id: int) -> list[Message]:
        """The branch that is shown, root first."""
        leaf = self._shown_leaf(conversation_id)
        if leaf is None:
            return []
        return [message_from_row(row) for row in self.db.query(_BRANCH_SQL, {"leaf": leaf})]

    def siblings(self, message_id: int) -> list[Message]:
        """The message and its alternatives (same parent, same conversation), oldest first."""
        message = self.message(message_id)
        rows = self.db.query(
            "SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY id",
            [message.conversation_id, message.parent_id],
        )
        return [message_from_row(row) for row in rows]

    def latest_leaf(self, message_id: int) -> int:
        """The newest message below `message_id` (itself when it has no replies).

        The newest message of a subtree always is a leaf, since children are younger than
        their parents.
        """
        self.message(message_id)
        return int(self.db.execute(_LATEST_LEAF_SQL, {"root": message_id}).fetchone()[0])

    def _shown_leaf(self, conversation_id: int) -> int | None:
        conversation = self.conversation(conversation_id)
        if conversation.current_leaf_id is not None:
            return conversation.current_leaf_id
        row = self.db.execute(
            "SELECT max(id) FROM messages WHERE conversation_id = ?", [conversation_id]
        ).fetchone()
        return row[0]

    # --- search ---------------------------------------------------------------------------
    def search(self, text: str, *, limit: int = 50, marks: tuple[str, str] = ("[", "]")) -> list[SearchHit]:
        """Titles, then messages, matching every word of `text`, newest first; trashed
        conversations are skipped. Snippets wrap the matched words in `marks` (the GUI passes
        markers it can style). A reply whose thinking holds the words, but not its answer, is a
        hit `in_thinking`, its snippet from the thinking.

        Newest first rather than by bm25 rank: every hit holds all the words anyway, and FTS5
        walks its index in rowid order and stops at `limit`, while ranking must score every
        match (measured on 100k messages: a common word 2-16 ms newest-first, 170-220 ms ranked).
        """
        query = fts_query(text)
        if not query:
            return []
        params = {"query": query, "open": marks[0], "close": marks[1], "limit": limit}
        hits = [
            SearchHit(
                row["id"], row["title"], None, None, row["snippet"], datetime.fromisoformat(row["updated"])
            )
            for row in self.db.query(_SEARCH_TITLES_SQL, params)
        ]
        params["limit"] = limit - len(hits)
        found: dict[int, SearchHit] = {}
        for column, name in enumerate(_MESSAGE_COLUMNS):  # an answer's hit first: it stands for its message
            in_column = {**params, "column": column, "query": f"{{{name}}} : ({query})"}
            for row in self.db.query(_SEARCH_MESSAGES_SQL, in_column):
                found.setdefault(row["id"], SearchHit(
                    row["conversation_id"],
                    row["title"],
                    row["id"],
                    Role(row["role"]),
                    row["snippet"],
                    datetime.fromisoformat(row["created"]),
                    in_thinking=name == "thinking",
                ))
        return hits + [found[message_id] for message_id in sorted(found, reverse=True)[: params["limit"]]]

    # --- personas and settings ------------------------------------------------------------
    def persona(self, persona_id: int) -> Persona:
        return persona_from_row(self._row("personas", persona_id))

    def personas(self) -> list[Persona]:
        return [persona_from_row(row) for row in self.db.query("SELECT * FROM personas ORDER BY name, id")]

    def read_settings(self) -> dict[str, Any]:
        """The stored user settings as raw JSON values (slmchat.settings gives them a type)."""
        return {row["key"]: json.loads(row["value"]) for row in self.db.query("SELECT * FROM settings")}

    def _row(self, table: str, key: int) -> dict[str, Any]:
        row = next(self.db.query(f"SELECT * FROM {table} WHERE id = ?", [key]), None)
        if row is None:
            raise NotFound(f"There is no {table[:-1]} number {key}.")
        return row
