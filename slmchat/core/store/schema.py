"""The conversation database's schema: numbered migrations, the one source of truth for it.

Each migration runs in a transaction together with its row in `_sqlite_migrations`
(sqlite-utils' `Migrations`), so a crash mid-upgrade leaves the previous schema intact.
Never edit a migration that has shipped; add the next number instead.
"""

from __future__ import annotations

from slmchat.core.store.sqlite import Database, Migrations

MIGRATIONS = Migrations("slmchat")


@MIGRATIONS(name="0001_conversations")
def _conversations(db: Database) -> None:
    db.executescript(
        """
        CREATE TABLE personas (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            system_prompt TEXT NOT NULL DEFAULT '',
            settings TEXT,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        );
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            title TEXT NOT NULL DEFAULT '',
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            model TEXT NOT NULL DEFAULT '',
            system_prompt TEXT NOT NULL DEFAULT '',
            persona_id INTEGER REFERENCES personas(id) ON DELETE SET NULL,
            settings TEXT,
            pinned INTEGER NOT NULL DEFAULT 0,
            deleted_at TEXT,
            current_leaf_id INTEGER REFERENCES messages(id) ON DELETE SET NULL
        );
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            parent_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
            role TEXT NOT NULL,
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL,
            reason TEXT,
            error TEXT NOT NULL DEFAULT '',
            model TEXT NOT NULL DEFAULT '',
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft REAL,
            tokens_per_s REAL,
            created TEXT NOT NULL,
            updated TEXT NOT NULL
        );
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        CREATE INDEX messages_by_parent ON messages(parent_id, id);
        CREATE INDEX messages_streaming ON messages(id) WHERE status = 'streaming';
        CREATE INDEX conversations_by_recency ON conversations(deleted_at, pinned, updated);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );
        """
    )


def _fts_sql(table: str, columns: str | tuple[str, ...], key: str) -> str:
    """An external-content FTS5 index over one column (or several), kept in sync by triggers.

    `prefix='2 3'` indexes 2- and 3-letter prefixes: the search box matches the last word as
    a prefix while the user types, and without it a short prefix merges thousands of terms
    (benchmarks/store_bench.py, 100k messages: 12-24 ms -> 0.4 ms, for ~30% more file).
    """
    fts = f"{table}_fts"
    names = (columns,) if isinstance(columns, str) else columns
    column = ", ".join(names)
    new, old = (", ".join(f"{age}.{name}" for name in names) for age in ("new", "old"))
    return f"""
        CREATE VIRTUAL TABLE {fts} USING fts5(
            {column}, content='{table}', content_rowid='{key}', prefix='2 3',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER {fts}_insert AFTER INSERT ON {table} BEGIN
            INSERT INTO {fts}(rowid, {column}) VALUES (new.{key}, {new});
        END;
        CREATE TRIGGER {fts}_delete AFTER DELETE ON {table} BEGIN
            INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.{key}, {old});
        END;
        CREATE TRIGGER {fts}_update AFTER UPDATE OF {column} ON {table} BEGIN
            INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.{key}, {old});
            INSERT INTO {fts}(rowid, {column}) VALUES (new.{key}, {new});
        END;
        INSERT INTO {fts}({fts}) VALUES ('rebuild');
    """


@MIGRATIONS(name="0002_search")
def _search(db: Database) -> None:
    # 'rebuild' indexes whatever an earlier schema already stored.
    db.executescript(_fts_sql("messages", "content", "id") + _fts_sql("conversations", "title", "id"))


@MIGRATIONS(name="0003_embeddings")
def _embeddings(db: Database) -> None:
    # Written by the semantic index: one float32 little-endian vector per message.
    db.executescript(
        """
        CREATE TABLE embeddings (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,
            created TEXT NOT NULL
        );
        CREATE INDEX embeddings_by_model ON embeddings(model);
        """
    )


@MIGRATIONS(name="0004_reply_writers")
def _reply_writers(db: Database) -> None:
    # The lease (writers.py) of the process streaming a reply: only its death interrupts the reply.
    db.execute("ALTER TABLE messages ADD COLUMN writer TEXT")


@MIGRATIONS(name="0005_thinking_and_sources")
def _thinking_and_sources(db: Database) -> None:
    # A thinking model's reasoning, kept apart from its answer (`content`): shown folded above the
    # answer and never sent back to the model. `thinking_seconds` is how long it thought; `sources`
    # a JSON list of the documents a reply cites (each a dict with at least "file", "place" and
    # "snippet"). The search index gets a second column, so that a hit can say it is in the
    # thinking: one index rather than a second one keeps the schema (which salvage needs whole to
    # read anything) as small as it was; 'rebuild' indexes the stored messages again.
    db.executescript(
        """
        DROP TRIGGER messages_fts_insert;
        DROP TRIGGER messages_fts_delete;
        DROP TRIGGER messages_fts_update;
        DROP TABLE messages_fts;
        ALTER TABLE messages ADD COLUMN thinking TEXT;
        ALTER TABLE messages ADD COLUMN thinking_seconds REAL;
        ALTER TABLE messages ADD COLUMN sources TEXT;
        """
        + _fts_sql("messages", ("content", "thinking"), "id")
    )


def migration_names() -> list[str]:
    """Every migration this version knows, in order (all are pending on an empty database)."""
    return [migration.name for migration in MIGRATIONS.pending(Database(memory=True))]
