"""The conversation database: SQLite through sqlite-utils, built so that no word is ever lost.

`schema.py` is the one source of truth for the tables (numbered migrations); `connection.py` opens
a file safely (integrity check, corrupt files set aside, upgrades); `store.py` is the writer and
`reader.py` the read-only queries; `recording.py` records a chat turn while its reply streams;
`export.py` writes Markdown and JSON and reads JSON back. One `Store` writes per process (the
window's GUI thread, or a CLI command); readers open their own connections.

May import: errors, generation.
"""
