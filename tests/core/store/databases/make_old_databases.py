"""Builds `schema-N.db`: a real database as slmchat left it when it knew only its first N migrations.

Each file gets the first N migrations of `slmchat/core/store/schema.py` (through sqlite-utils,
as that version did) and the conversations, branches, personas and settings below, written with
plain SQL in the columns that schema had (a value for a column it did not have yet is left out). `test_upgrades.py` upgrades a copy of each with the
current code and compares what it finds with the data here, not with the file.

Run it from the repository root after adding a migration: it builds only the files that are
missing, so the committed ones stay exactly as the older versions wrote them.

    .venv/bin/python tests/core/store/databases/make_old_databases.py
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[3]))  # the repository, when run as a script

from slmchat.core.store.schema import MIGRATIONS, migration_names  # noqa: E402
from slmchat.core.store.sqlite import Database  # noqa: E402


def _at(minute: int) -> str:
    return f"2024-03-01T10:{minute:02d}:00.000000+00:00"


PERSONAS = [
    {"id": 1, "name": "Poète 🌙", "system_prompt": "Réponds toujours en alexandrins.",
     "settings": '{"temperature": 0.9, "top_k": 50}', "created": _at(0), "updated": _at(1)},
    {"id": 2, "name": "Terse", "system_prompt": "", "settings": None, "created": _at(2), "updated": _at(2)},
]
CONVERSATIONS = [
    {"id": 1, "title": "Aardvark facts", "created": _at(3), "updated": _at(9), "model": "smollm2-135m",
     "system_prompt": "Be kind.", "persona_id": None, "settings": '{"temperature": 0.2}', "pinned": 1,
     "deleted_at": None, "current_leaf_id": 6},
    {"id": 2, "title": "日本語と العربية", "created": _at(10), "updated": _at(12), "model": "",
     "system_prompt": "Réponds toujours en alexandrins.", "persona_id": 1, "settings": None, "pinned": 0,
     "deleted_at": None, "current_leaf_id": 8},
    {"id": 3, "title": "In the trash", "created": _at(13), "updated": _at(14), "model": "", "system_prompt": "",
     "persona_id": 2, "settings": None, "pinned": 0, "deleted_at": _at(15), "current_leaf_id": 9},
]
MESSAGES = [  # conversation 1 branches twice: 3 is an edit of 1, 5 a regeneration of 2
    {"id": 1, "conversation_id": 1, "parent_id": None, "role": "user", "content": "What do aardvarks eat?",
     "status": "complete", "created": _at(3), "updated": _at(3)},
    {"id": 2, "conversation_id": 1, "parent_id": 1, "role": "assistant", "content": "Mostly termites and ants.",
     "status": "complete", "reason": "done", "model": "smollm2-135m", "prompt_tokens": 12,
     "completion_tokens": 6, "ttft": 0.125, "tokens_per_s": 41.5, "created": _at(4), "updated": _at(4),
     # from schema 5 on: a thinking model's reasoning apart, and the documents it cites
     "thinking": "They dig at night; their tongues reach into mounds.", "thinking_seconds": 3.5,
     "sources": '[{"file": "Burrowers.pdf", "place": "page 3", "snippet": "an aardvark eats ants"}]'},
    {"id": 3, "conversation_id": 1, "parent_id": None, "role": "user",
     "content": "What do aardvarks eat at night?", "status": "complete", "created": _at(5), "updated": _at(5)},
    {"id": 4, "conversation_id": 1, "parent_id": 3, "role": "assistant", "content": "Termites, by the thous",
     "status": "stopped", "reason": "stopped", "model": "smollm2-135m", "created": _at(6), "updated": _at(6)},
    {"id": 5, "conversation_id": 1, "parent_id": 1, "role": "assistant", "content": "",
     "status": "error", "reason": "error", "error": "The model process stopped.", "created": _at(7),
     "updated": _at(7)},
    {"id": 6, "conversation_id": 1, "parent_id": 4, "role": "user",
     "content": "Go on — and the zeppelin question?\n\n```python\nprint('ok')\n```", "status": "complete",
     "created": _at(9), "updated": _at(9)},
    {"id": 7, "conversation_id": 2, "parent_id": None, "role": "user",
     "content": "こんにちは 👋🏽 مرحبا e\u0301te\u0301 \u200dx\U0001F9D1\u200d\U0001F4BB", "status": "complete",
     "created": _at(10), "updated": _at(10)},
    {"id": 8, "conversation_id": 2, "parent_id": 7, "role": "assistant", "content": "Bonjour ! " * 400,
     "status": "interrupted", "reason": "interrupted", "created": _at(11), "updated": _at(12)},
    {"id": 9, "conversation_id": 3, "parent_id": None, "role": "user", "content": "Forget this one",
     "status": "complete", "created": _at(13), "updated": _at(13)},
]
SETTINGS = [
    {"key": "theme", "value": '"dark"'},
    {"key": "generation", "value": '{"temperature": 0.7, "max_tokens": 512}'},
]
EMBEDDINGS = [
    {"message_id": 1, "model": "all-MiniLM-L6-v2", "dim": 4, "vector": struct.pack("<4f", 0.5, -1.0, 0.25, 2.0),
     "created": _at(20)},
]
TABLES = {"personas": PERSONAS, "conversations": CONVERSATIONS, "messages": MESSAGES, "settings": SETTINGS,
          "embeddings": EMBEDDINGS}


def in_columns(row: dict, columns: set[str]) -> dict:
    """The values of `row` that a table with these columns can hold."""
    return {column: value for column, value in row.items() if column in columns}


def path_for(migrations: int) -> Path:
    return HERE / f"schema-{migrations}.db"


def build(path: Path, migrations: int) -> None:
    """A database with the first `migrations` migrations and every row its tables can hold."""
    names = migration_names()
    db = Database(path)
    MIGRATIONS.apply(db, stop_before=names[migrations] if migrations < len(names) else None)
    for table, rows in TABLES.items():
        if db[table].exists():
            for row in rows:
                row = in_columns(row, set(db[table].columns_dict))
                columns = ", ".join(row)
                db.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' for _ in row)})",
                           list(row.values()))
    db.vacuum()
    db.close()


if __name__ == "__main__":
    for count in range(1, len(migration_names()) + 1):
        if not path_for(count).exists():
            build(path_for(count), count)
            print("built", path_for(count))
